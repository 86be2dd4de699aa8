"""JSON logs from real gunicorn: format of every line, request and trace ids, no secrets."""
import os
import re
import signal
import socket
import uuid

import pytest
import requests

from tests.servers import run_api
from tests.telemetry.live import FAST_ENV, access_lines, log_lines, sign_up, wait_for

pytestmark = pytest.mark.stack

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
HEX32 = re.compile(r"[0-9a-f]{32}")
ACCESS_FIELDS = {"request_id", "trace_id", "method", "route", "path", "status", "duration_ms",
                 "user_id", "remote_addr", "user_agent"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    with run_api(tmp_path_factory.mktemp("logs"), workers=2, env=FAST_ENV) as server:
        yield server


def _access_line(api, request_id):
    found = wait_for(lambda: [x for x in access_lines(api) if x["request_id"] == request_id], 10)
    assert found, f"no access line for {request_id}"
    return found[0]


def test_every_line_is_one_json_object_with_the_fixed_fields(api):
    r = requests.get(f"{api.url}/api/v1/content/{uuid.uuid4()}", timeout=30)
    _access_line(api, r.headers["X-Request-ID"])  # access lines come in batches: wait for it
    lines = log_lines(api)
    loggers = {line["logger"] for line in lines}
    assert {"gunicorn.error", "gunicorn.access"} <= loggers
    for line in lines:
        assert RFC3339_UTC.fullmatch(line["timestamp"]), line
        assert line["level"] in {"debug", "info", "warning", "error", "critical"}
        assert isinstance(line["message"], str)
        assert line["service"] == "vigil-api" and line["env"] == "development"


def test_shipper_labels_are_few_and_fixed(api):
    lines = log_lines(api)
    # The fields meant as labels have a handful of values; request data varies per line.
    assert len({(x["service"], x["level"], x["env"]) for x in lines}) <= 10
    access = access_lines(api)  # read once: a line may land between two reads
    assert len({x["request_id"] for x in access}) == len(access)


def test_access_line_has_every_request_field(api):
    email, _, tokens = sign_up(api)
    me = requests.get(f"{api.url}/api/v1/users/me", timeout=30,
                      headers={"Authorization": f"Bearer {tokens['access_token']}",
                               "User-Agent": "vigil-test/1.0", "X-Request-ID": "req-me-1"})
    assert me.status_code == 200
    line = _access_line(api, "req-me-1")
    assert ACCESS_FIELDS <= set(line)
    assert line["method"] == "GET" and line["route"] == "/api/v1/users/me"
    assert line["path"] == "/api/v1/users/me" and line["status"] == 200
    assert line["user_id"] == me.json()["id"]
    assert line["remote_addr"] == "127.0.0.1" and line["user_agent"] == "vigil-test/1.0"
    assert isinstance(line["duration_ms"], float) and 0 < line["duration_ms"] < 30_000
    assert HEX32.fullmatch(line["trace_id"])


def test_route_is_the_template(api):
    item = str(uuid.uuid4())
    r = requests.get(f"{api.url}/api/v1/content/{item}?page=2", timeout=30)
    line = _access_line(api, r.headers["X-Request-ID"])
    assert line["route"] == "/api/v1/content/<id>"
    assert line["path"] == f"/api/v1/content/{item}"  # the query string is never logged


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/health/live", 200),
    ("GET", "/metrics", 200),
    ("GET", "/api/v1/openapi.json", 200),
    ("GET", "/api/v1/users/me", 401),
    ("GET", "/no/such/path", 404),
    ("DELETE", "/api/v1/auth/login", 405),
    ("POST", "/api/v1/auth/login", 422),
])
def test_request_id_is_returned_on_every_response(api, method, path, status):
    generated = requests.request(method, f"{api.url}{path}", json={}, timeout=30)
    assert generated.status_code == status
    assert HEX32.fullmatch(generated.headers["X-Request-ID"])
    kept = requests.request(method, f"{api.url}{path}", json={}, timeout=30,
                            headers={"X-Request-ID": "client-chosen_id.42"})
    assert kept.headers["X-Request-ID"] == "client-chosen_id.42"
    if status >= 400:
        assert kept.json()["request_id"] == "client-chosen_id.42"


@pytest.mark.parametrize("bad", [
    "has spaces in it", "x" * 129, '{"json":1}', "semi;colon", "-leading-dash", "é-unicode",
])
def test_insane_request_ids_are_replaced(api, bad):
    r = requests.get(f"{api.url}/health/live", timeout=30,
                     headers={"X-Request-ID": bad.encode("utf-8")})
    assert HEX32.fullmatch(r.headers["X-Request-ID"])
    assert bad not in api.read_log()


def test_valid_traceparent_is_honoured(api):
    trace = uuid.uuid4().hex
    r = requests.get(f"{api.url}/api/v1/content/{uuid.uuid4()}", timeout=30,
                     headers={"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
    assert _access_line(api, r.headers["X-Request-ID"])["trace_id"] == trace


@pytest.mark.parametrize("bad", [
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero parent id
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # forbidden version
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase
    "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",    # short
    "garbage",
])
def test_invalid_traceparent_gets_a_new_trace_id(api, bad):
    r = requests.get(f"{api.url}/api/v1/content/{uuid.uuid4()}", timeout=30,
                     headers={"traceparent": bad})
    trace_id = _access_line(api, r.headers["X-Request-ID"])["trace_id"]
    assert HEX32.fullmatch(trace_id) and trace_id not in bad.lower()


def test_app_lines_carry_the_request_context(api):
    # An injected fault is logged by the app during the request.
    assert api.flask("faults", "error", "--ratio", "1", "--for", "30s").returncode == 0
    try:
        def injected():
            r = requests.get(f"{api.url}/api/v1/content/{uuid.uuid4()}", timeout=30,
                             headers={"X-Request-ID": f"fault-{uuid.uuid4().hex[:8]}"})
            return r if r.status_code == 500 else None

        r = wait_for(injected, 10)
        assert r is not None
    finally:
        api.flask("faults", "clear")
    rid = r.headers["X-Request-ID"]
    app_line = wait_for(lambda: [x for x in log_lines(api) if x.get("request_id") == rid
                                 and x["logger"] == "api.faults"], 10)
    assert app_line, "the fault was not logged with the request id"
    line = app_line[0]
    assert line["level"] == "warning" and line["fault"] == "error"
    assert line["route"] == "/api/v1/content/<id>" and HEX32.fullmatch(line["trace_id"])


def test_secrets_never_reach_the_log(tmp_path):
    # DEBUG level: even the chattiest logging must not leak them.
    with run_api(tmp_path, workers=2, env={**FAST_ENV, "VIGIL_LOG_LEVEL": "DEBUG"}) as api:
        secrets = []

        def secret(kind):
            value = f"{kind}-{uuid.uuid4().hex}"
            secrets.append(value)
            return value

        url = f"{api.url}/api/v1"
        password = secret("password")
        email, _, tokens = sign_up(api, password)
        secrets += [tokens["access_token"], tokens["refresh_token"]]
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        new_password = secret("newpw")
        calls = [
            ("POST", "/auth/register", {"email": email, "password": secret("password")}, {}),
            ("POST", "/auth/login", {"email": email, "password": secret("wrong")}, {}),
            ("POST", "/auth/login", {"email": "nobody@example.com",
                                     "password": secret("nobody")}, {}),
            ("GET", "/users/me", None, {"Authorization": f"Bearer {secret('forged')}"}),
            ("GET", f"/users/me?access_token={secret('query')}", None, bearer),
            ("POST", "/users/me/password", {"current_password": secret("wrongold"),
                                            "new_password": secret("newpw-a")}, bearer),
            ("POST", "/users/me/password", {"current_password": password,
                                            "new_password": new_password}, bearer),
            ("POST", "/content", {"title": "t", "body": secret("body")}, bearer),
            ("POST", "/auth/refresh", None,
             {"Authorization": f"Bearer {tokens['refresh_token']}"}),
            ("POST", "/auth/refresh", None,  # reuse: the family is revoked
             {"Authorization": f"Bearer {tokens['refresh_token']}"}),
            ("POST", "/auth/logout", None, bearer),
            ("POST", "/auth/logout-all", None, bearer),
            ("POST", "/auth/login", {"email": email, "password": new_password}, {}),
        ]
        for method, path, body, headers in calls:
            r = requests.request(method, url + path, json=body, timeout=30,
                                 headers={**headers, "Cookie": f"session={secret('cookie')}"})
            assert r.status_code < 500, (path, r.text)
        wait_for(lambda: len(access_lines(api)) >= len(calls) + 2, 10)
        log = api.read_log()
        assert len(access_lines(api)) >= len(calls) + 2, "requests were not logged at all"
        for value in secrets:
            assert value not in log, f"a {value.split('-')[0]} reached the log"
        for token in (tokens["access_token"], tokens["refresh_token"]):
            assert token.split(".")[2] not in log  # not even the signature alone
        assert "Bearer" not in log and "Authorization" not in log


def _logged(api, prefix):
    return [x["request_id"] for x in access_lines(api) if x["request_id"].startswith(prefix)]


def _get_with_ids(api, prefix, count=20):
    ids = [f"{prefix}{n}" for n in range(count)]
    for request_id in ids:
        requests.get(f"{api.url}/health/live", headers={"X-Request-ID": request_id}, timeout=30)
    return ids


def test_access_lines_are_batched_and_never_lost(tmp_path):
    # A long timer and a large batch: lines can only come out through the reopen and exit
    # paths, which is what this test is about.
    env = {"VIGIL_ACCESS_LOG_BATCH": "1000", "VIGIL_ACCESS_LOG_FLUSH_SECONDS": "60"}
    with run_api(tmp_path, workers=2, env=env) as api:
        first = _get_with_ids(api, "batch-a-")
        assert _logged(api, "batch-a-") == []  # queued in the workers, not yet written
        # USR1 (log rotation: gunicorn reopens its files) writes what is queued first. A
        # client has its answer before the worker queues the line, so the last line can be
        # queued just after a USR1: it is sent again until every line is out (the 60 s timer
        # and the batch of 1000 cannot write them within the wait).
        def rotated():
            os.kill(api.pid, signal.SIGUSR1)
            return len(_logged(api, "batch-a-")) == len(first)

        assert wait_for(rotated, 10)
        second = _get_with_ids(api, "batch-b-")
    # A graceful stop: every worker exits through worker_exit, which writes its queue.
    assert sorted(_logged(api, "batch-a-")) == sorted(first)
    assert sorted(_logged(api, "batch-b-")) == sorted(second)


def test_queued_access_lines_are_written_within_the_flush_interval(tmp_path):
    env = {"VIGIL_ACCESS_LOG_BATCH": "1000", "VIGIL_ACCESS_LOG_FLUSH_SECONDS": "0.5"}
    with run_api(tmp_path, workers=2, env=env) as api:
        ids = _get_with_ids(api, "timer-", count=5)
        assert wait_for(lambda: len(_logged(api, "timer-")) == len(ids), 10)


def _raw(api, head):
    """Send raw request bytes; the status line of the answer."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=30) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("head,status,path", [
    # gunicorn refuses these itself, before the app; each still gets its access line.
    (b"GET /refused/431 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, None),
    (b"POST /refused/length HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400,
     "/refused/length"),
    (b"GET /refused/name HTTP/1.1\r\nHost: x\r\nBad Name: x\r\n\r\n", 400, None),
    (b"GET /refused/line\r\n\r\n", 400, None),
], ids=["oversized-header", "bad-content-length", "bad-header-name", "bad-request-line"])
def test_requests_gunicorn_refuses_get_an_access_line(api, head, status, path):
    def refusals():
        return [x for x in access_lines(api) if x["status"] == status and x["path"] == path]

    already = len(refusals())
    assert _raw(api, head).startswith(f"HTTP/1.1 {status} ")
    assert wait_for(lambda: len(refusals()) == already + 1, 10)
    line = refusals()[-1]
    assert line["remote_addr"] == "127.0.0.1" and line["request_id"] is None
    assert "could not queue the access log line" not in api.read_log()
