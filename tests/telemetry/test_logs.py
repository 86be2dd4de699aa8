"""api.logs without gunicorn: the JSON line, the access line, and telemetry switched off."""
import datetime
import io
import json
import logging
import os
import time

import pytest
from gunicorn.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from api import create_app
from api.logs import (
    ENVIRON_KEY,
    BatchedAccessLog,
    GunicornLogger,
    JsonFormatter,
    RequestFacts,
    _route_json,
    new_id,
    route_template,
)


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


def _gunicorn_logger(batch="1"):
    cfg = Config()
    cfg.set("accesslog", "-")
    os.environ["VIGIL_ACCESS_LOG_BATCH"] = batch
    try:
        log = GunicornLogger(cfg)
    finally:
        del os.environ["VIGIL_ACCESS_LOG_BATCH"]
    out = io.StringIO()
    log.access_log.handlers[0].setStream(out)
    return log, out


class _Response:
    status_code = 201


class _Rule:
    rule = "/api/v1/content/<uuid:item_id>"


def _environ(**extra):
    facts = RequestFacts("rid", "tid")
    facts.rule, facts.user_id = _Rule(), "u-1"
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/content/42", "QUERY_STRING": "a=secret",
        "REMOTE_ADDR": "10.0.0.9", "HTTP_USER_AGENT": "ua/1", "HTTP_AUTHORIZATION": "Bearer t0k",
        "HTTP_COOKIE": "s=c00kie", ENVIRON_KEY: facts, **extra,
    }


def test_access_line_is_built_from_fixed_fields_only():
    log, out = _gunicorn_logger()
    log.access(_Response, None, _environ(), datetime.timedelta(milliseconds=12.5))
    text = out.getvalue()
    line = json.loads(text)
    assert line["logger"] == "gunicorn.access" and line["message"] == "POST /api/v1/content/42 201"
    assert {k: line[k] for k in ("request_id", "trace_id", "route", "user_id", "status",
                                 "duration_ms", "remote_addr", "user_agent", "path")} == {
        "request_id": "rid", "trace_id": "tid", "route": "/api/v1/content/<item_id>",
        "user_id": "u-1", "status": 201, "duration_ms": 12.5, "remote_addr": "10.0.0.9",
        "user_agent": "ua/1", "path": "/api/v1/content/42"}
    for secret in ("secret", "t0k", "c00kie"):
        assert secret not in text


def test_access_lines_are_queued_and_written_as_one_batch():
    log, out = _gunicorn_logger(batch="3")
    writes = []
    out.write = lambda text, _write=out.write: (writes.append(text), _write(text))[1]
    for n in range(5):
        log.access(_Response, None, _environ(PATH_INFO=f"/p/{n}"), datetime.timedelta(0))
    # three requests make a batch, written at once; two wait for the next batch or a flush
    assert len(writes) == 1 and writes[0].count("\n") == 3
    log.flush_access()
    assert len(writes) == 2
    paths = [json.loads(line)["path"] for line in out.getvalue().splitlines()]
    assert paths == [f"/p/{n}" for n in range(5)]  # whole lines, in request order
    log.flush_access()
    assert len(writes) == 2  # nothing queued, nothing written


def test_queued_access_lines_are_written_by_the_timer():
    handler = logging.StreamHandler(io.StringIO())
    batch = BatchedAccessLog([handler], lambda text: text, limit=1000, interval=0.05)
    batch.add(("one\n",))
    assert handler.stream.getvalue() == ""
    deadline = time.monotonic() + 5
    while not handler.stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handler.stream.getvalue() == "one\n"


def test_a_forked_child_does_not_inherit_queued_lines(tmp_path):
    handler = logging.StreamHandler(io.StringIO())
    batch = BatchedAccessLog([handler], lambda text: text, limit=1000, interval=60)
    batch.add(("parent\n",))
    report = tmp_path / "child"
    pid = os.fork()
    if pid == 0:  # the child: its queue must be empty, its ids its own
        try:
            report.write_text(json.dumps({"queued": len(batch._queue), "id": new_id()}))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child = json.loads(report.read_text())
    assert child["queued"] == 0
    assert child["id"] != new_id()  # the id pool is emptied in the child, so ids differ
    batch.flush()
    assert handler.stream.getvalue() == "parent\n"


@pytest.mark.parametrize("name,value", [("VIGIL_ACCESS_LOG_BATCH", "0"),
                                        ("VIGIL_ACCESS_LOG_BATCH", "many"),
                                        ("VIGIL_ACCESS_LOG_FLUSH_SECONDS", "0"),
                                        ("VIGIL_ACCESS_LOG_FLUSH_SECONDS", "soon")])
def test_bad_access_log_settings_stop_gunicorn_with_a_clear_message(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    cfg = Config()
    cfg.set("accesslog", "-")
    with pytest.raises(SystemExit, match=name):
        GunicornLogger(cfg)


_text = st.text(st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(method=_text, path=_text, status=st.integers(100, 599),
       microseconds=st.integers(0, 10**10), request_id=st.none() | _text,
       trace_id=st.none() | _text, user_id=st.none() | _text, remote_addr=st.none() | _text,
       user_agent=st.none() | _text,
       rule=st.none() | st.sampled_from(["/a/<id>", '/b/<int:n>/"q"', "/\u00e9/\\x"]),
       created=st.floats(0, 4e9), env=_text)
def test_access_line_is_exactly_what_the_json_encoder_writes(
        method, path, status, microseconds, request_id, trace_id, user_id, remote_addr,
        user_agent, rule, created, env):
    formatter = JsonFormatter(env=env or "x")
    rule = None if rule is None else type("Rule", (), {"rule": rule})()
    line = formatter.access_line(method, path, status, microseconds, request_id, trace_id,
                                 _route_json(rule), user_id, remote_addr, user_agent, created)
    expected = {
        "timestamp": formatter._timestamp(created), "level": "info", "logger": "gunicorn.access",
        "message": f"{method} {path} {status}", "service": "vigil-api", "env": env or "x",
        "pid": os.getpid(), "request_id": request_id, "trace_id": trace_id, "method": method,
        "route": route_template(rule), "path": path, "status": status,
        "duration_ms": microseconds / 1000, "user_id": user_id, "remote_addr": remote_addr,
        "user_agent": user_agent,
    }
    assert line == formatter.jsonify_log_record(expected) + "\n"
    assert line.count("\n") == 1  # one line whatever the request carried


def test_telemetry_off_removes_request_hooks_and_metrics(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'off.db'}", TELEMETRY="off")
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert "X-Request-ID" not in client.get("/health/live").headers


def test_telemetry_on_in_process_serves_metrics(tmp_path):
    app = make_app(f"sqlite:///{tmp_path / 'on.db'}")
    client = app.test_client()
    assert client.get("/health/live").headers["X-Request-ID"]
    r = client.get("/api/v1/content/00000000-0000-0000-0000-000000000000",
                   headers={"X-Request-ID": "in-process-1"})
    assert r.status_code == 401 and r.headers["X-Request-ID"] == "in-process-1"
    assert r.json["request_id"] == "in-process-1"
    body = client.get("/metrics").get_data(as_text=True)
    assert "vigil_build_info" in body and "vigil_process_resident_memory_bytes" in body
    # The middleware hands the matched rule to the metrics in one process too.
    assert ('flask_http_request_total{method="GET",route="/api/v1/content/<id>",status="401"}'
            in body)


@pytest.mark.parametrize("setting,value", [("TELEMETRY", "maybe"), ("LOG_LEVEL", "LOUD")])
def test_bad_settings_are_refused(tmp_path, setting, value):
    with pytest.raises(ValueError, match=f"VIGIL_{setting}"):
        make_app(f"sqlite:///{tmp_path / 'bad.db'}", **{setting: value})


def test_a_line_that_cannot_be_formatted_costs_only_itself(caplog):
    handler = logging.StreamHandler(io.StringIO())

    def format_line(text):
        return text.upper() + "\n"  # None has no upper(): that entry fails

    batch = BatchedAccessLog([handler], format_line, limit=3, interval=60)
    for entry in (("a",), (None,), ("b",)):
        batch.add(entry)
    assert handler.stream.getvalue() == "A\nB\n"
    assert "access log line dropped" in caplog.text


def test_access_line_through_logging_when_a_handler_is_not_a_plain_stream():
    # e.g. a syslog handler, or one with a filter: the line goes through a LogRecord
    log, out = _gunicorn_logger()
    log.access_writer = None
    log.access(_Response, None, _environ(), datetime.timedelta(microseconds=1500))
    line = json.loads(out.getvalue())
    assert line["logger"] == "gunicorn.access" and line["route"] == "/api/v1/content/<item_id>"
    assert line["request_id"] == "rid" and line["duration_ms"] == 1.5 and line["status"] == 201
    assert "secret" not in out.getvalue() and "t0k" not in out.getvalue()
