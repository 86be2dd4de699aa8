"""What the runbooks rely on: the client's address behind nginx, and a log line per token reuse."""
import json
import logging

import pytest

from api.config import ConfigError
from tests.conftest import make_app

REFRESH = "/api/v1/auth/refresh"


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def captured():
    handler = _Lines()
    logging.getLogger("api.sessions").addHandler(handler)
    try:
        yield handler.records
    finally:
        logging.getLogger("api.sessions").removeHandler(handler)


@pytest.mark.parametrize("app_config", [{"PROXY_COUNT": 1}])
def test_a_refresh_token_reuse_is_logged_with_user_and_client_address(client, auth, captured,
                                                                      app_config):
    account = auth.signup()
    user_id = account.id
    assert client.post(REFRESH, headers=account.refresh_headers).status_code == 200
    reuse = client.post(REFRESH, headers={**account.refresh_headers,
                                          "X-Forwarded-For": "203.0.113.7"})
    assert reuse.status_code == 401
    [record] = [r for r in captured if getattr(r, "event", None) == "refresh_reuse"]
    assert record.levelname == "WARNING"
    assert record.getMessage() == "refresh token reused; session revoked"
    assert record.remote_addr == "203.0.113.7"
    assert record.reuse_user_id == str(user_id)
    assert record.session_id


def test_a_normal_refresh_logs_no_reuse(client, auth, captured):
    account = auth.signup()
    assert client.post(REFRESH, headers=account.refresh_headers).status_code == 200
    assert not [r for r in captured if getattr(r, "event", None) == "refresh_reuse"]


@pytest.mark.parametrize("proxies, forwarded, seen", [
    (0, "203.0.113.7", "127.0.0.1"),  # no proxy configured: the header is not trusted
    (1, "203.0.113.7", "203.0.113.7"),  # nginx appended the client: trusted
    (1, "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # a client-forged first hop is ignored
    (2, "198.51.100.1, 203.0.113.7", "198.51.100.1"),
])
def test_proxy_count_decides_which_forwarded_address_is_the_client(tmp_path, proxies, forwarded,
                                                                   seen):
    app = make_app(f"sqlite:///{tmp_path / 'v.db'}", PROXY_COUNT=proxies)

    @app.get("/test-remote-addr")
    def remote_addr():
        from flask import request
        return {"remote_addr": request.remote_addr}

    environ = {}

    def capture(env, start_response):
        body = inner(env, start_response)
        environ.update(env)
        return body

    inner = app.wsgi_app
    app.wsgi_app = capture
    r = app.test_client().get("/test-remote-addr", headers={"X-Forwarded-For": forwarded})
    assert json.loads(r.data)["remote_addr"] == seen
    # The WSGI environ itself is fixed, so gunicorn's access line (which reads REMOTE_ADDR from
    # the environ after the response) carries the same address.
    assert environ["REMOTE_ADDR"] == seen


@pytest.mark.parametrize("value", [-1, 6])
def test_a_bad_proxy_count_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="VIGIL_PROXY_COUNT"):
        make_app(f"sqlite:///{tmp_path / 'v.db'}", PROXY_COUNT=value)
