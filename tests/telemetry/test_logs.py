"""api.logs without gunicorn: the JSON line, the access line, and telemetry switched off."""
import datetime
import io
import json
import logging

import pytest
from gunicorn.config import Config

from api import create_app
from api.logs import ENVIRON_KEY, GunicornLogger, JsonFormatter


def make_app(database_url, **config):
    return create_app({"DATABASE_URL": database_url, "JWT_SECRET_KEY": "t" * 40, **config})


def _format(record):
    return json.loads(JsonFormatter(env="production").format(record))


def test_app_line_has_fixed_fields_then_extras():
    logger = logging.getLogger("test.vigil")
    record = logger.makeRecord("test.vigil", logging.WARNING, __file__, 1, "disk %s full", ("/",),
                               None, extra={"fault": "error", "ratio": 0.5})
    line = _format(record)
    assert list(line)[:7] == ["timestamp", "level", "logger", "message", "service", "env", "pid"]
    assert line["message"] == "disk / full" and line["level"] == "warning"
    assert line["service"] == "vigil-api" and line["env"] == "production"
    assert line["fault"] == "error" and line["ratio"] == 0.5
    assert "args" not in line and "msg" not in line and "pathname" not in line


def test_exceptions_are_one_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    text = JsonFormatter().format(record)
    assert "\n" not in text and "RuntimeError: boom" in json.loads(text)["exc_info"]


def test_access_line_is_built_from_fixed_fields_only():
    cfg = Config()
    cfg.set("accesslog", "-")
    log = GunicornLogger(cfg)
    out = io.StringIO()
    log.access_log.handlers[0].setStream(out)

    class Response:
        status_code = 201

    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/auth/login", "QUERY_STRING": "a=secret",
        "REMOTE_ADDR": "10.0.0.9", "HTTP_USER_AGENT": "ua/1", "HTTP_AUTHORIZATION": "Bearer t0k",
        "HTTP_COOKIE": "s=c00kie", ENVIRON_KEY: ("rid", "tid", "/api/v1/auth/login", "u-1"),
    }
    log.access(Response, None, environ, datetime.timedelta(milliseconds=12.5))
    text = out.getvalue()
    line = json.loads(text)
    assert line["logger"] == "gunicorn.access" and line["message"] == "POST /api/v1/auth/login 201"
    assert {k: line[k] for k in ("request_id", "trace_id", "route", "user_id", "status",
                                 "duration_ms", "remote_addr", "user_agent", "path")} == {
        "request_id": "rid", "trace_id": "tid", "route": "/api/v1/auth/login", "user_id": "u-1",
        "status": 201, "duration_ms": 12.5, "remote_addr": "10.0.0.9", "user_agent": "ua/1",
        "path": "/api/v1/auth/login"}
    for secret in ("secret", "t0k", "c00kie"):
        assert secret not in text


def test_telemetry_off_removes_request_hooks_and_metrics(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'off.db'}", TELEMETRY="off")
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert "X-Request-ID" not in client.get("/health/live").headers


def test_telemetry_on_in_process_serves_metrics(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'on.db'}")
    client = app.test_client()
    assert client.get("/health/live").headers["X-Request-ID"]
    body = client.get("/metrics").get_data(as_text=True)
    assert "vigil_build_info" in body and "vigil_process_resident_memory_bytes" in body


@pytest.mark.parametrize("setting,value", [("TELEMETRY", "maybe"), ("LOG_LEVEL", "LOUD")])
def test_bad_settings_are_refused(tmp_path, setting, value):
    with pytest.raises(ValueError, match=f"VIGIL_{setting}"):
        make_app(f"sqlite:///{tmp_path / 'bad.db'}", **{setting: value})
