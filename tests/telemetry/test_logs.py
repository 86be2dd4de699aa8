"""api.telemetry's logging without a server: the JSON line, the access queue, the settings."""
import datetime
import io
import json
import logging
import logging.handlers
import os
import threading
import time

import pytest
from gunicorn.config import Config
from hypothesis import given, settings
from hypothesis import strategies as st

from api import create_app
from api.config import ConfigError
from api.telemetry.access import AccessLogQueue, GunicornLogger, access_fields, access_record
from api.telemetry.context import ENVIRON_KEY, RequestFacts
from api.telemetry.logs import JsonFormatter


def make_app(database_url, **config):
    return create_app({"DATABASE_URL": database_url, "JWT_SECRET_KEY": "t" * 40, **config})


def _format(record):
    return json.loads(JsonFormatter(env="production").format(record))


def test_app_line_has_fixed_fields_then_extras():
    logger = logging.getLogger("test.vigil")
    record = logger.makeRecord("test.vigil", logging.WARNING, __file__, 1, "disk %s full", ("/",),
                               None, extra={"fault": "error", "ratio": 0.5})
    line = _format(record)
    assert list(line)[:7] == ["timestamp", "level", "logger", "message", "pid", "service", "env"]
    assert line["message"] == "disk / full" and line["level"] == "warning"
    assert line["service"] == "vigil-api" and line["env"] == "production"
    assert line["pid"] == os.getpid()
    assert line["fault"] == "error" and line["ratio"] == 0.5
    for plumbing in ("args", "msg", "pathname", "taskName", "threadName", "levelno"):
        assert plumbing not in line


def test_timestamp_is_rfc3339_utc_with_milliseconds():
    record = logging.makeLogRecord({"msg": "x", "created": 1700000000.25, "msecs": 250.0})
    assert _format(record)["timestamp"] == "2023-11-14T22:13:20.250Z"


def test_exceptions_are_one_line():
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info())
    text = JsonFormatter(env="x").format(record)
    assert "\n" not in text and "RuntimeError: boom" in json.loads(text)["exc_info"]


def _gunicorn_logger(monkeypatch, batch="1", handler=None):
    # gunicorn's loggers are process-wide: start from no handler, as a fresh gunicorn does.
    logging.getLogger("gunicorn.access").handlers.clear()
    monkeypatch.setenv("VIGIL_ACCESS_LOG_BATCH", batch)
    cfg = Config()
    cfg.set("accesslog", "-")
    log = GunicornLogger(cfg)
    out = io.StringIO()
    if handler is None:
        log.access_log.handlers[0].setStream(out)
    else:
        log.access_log.handlers = [handler]
        handler.setFormatter(JsonFormatter(env="x"))
    return log, out


class _Response:
    status = "201 Created"


def _environ(**extra):
    facts = RequestFacts("rid", "tid", route="/api/v1/content/<item_id>")
    facts.user_id = "u-1"
    return {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/content/42", "QUERY_STRING": "a=secret",
        "REMOTE_ADDR": "10.0.0.9", "HTTP_USER_AGENT": "ua/1", "HTTP_AUTHORIZATION": "Bearer t0k",
        "HTTP_COOKIE": "s=c00kie", ENVIRON_KEY: facts, **extra,
    }


def test_access_line_is_built_from_fixed_fields_only(monkeypatch):
    log, out = _gunicorn_logger(monkeypatch)
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


def test_a_refusal_without_a_status_code_still_gets_its_line(monkeypatch):
    """gunicorn's handle_error passes a Response with only ``status`` set (issue 15, #9)."""
    log, out = _gunicorn_logger(monkeypatch)

    class Refusal:
        status = "400 Bad Request"

    log.access(Refusal, None, {"REQUEST_METHOD": "GET", "PATH_INFO": "/x",
                               "REMOTE_ADDR": "10.0.0.1"}, datetime.timedelta(0))
    line = json.loads(out.getvalue())
    assert line["status"] == 400 and line["request_id"] is None and line["path"] == "/x"


def test_access_lines_are_queued_and_written_by_batch(monkeypatch):
    log, out = _gunicorn_logger(monkeypatch, batch="3")
    for n in range(5):
        log.access(_Response, None, _environ(PATH_INFO=f"/p/{n}"), datetime.timedelta(0))
    # three requests make a batch, written at once; two wait for the next batch or a flush
    assert [json.loads(x)["path"] for x in out.getvalue().splitlines()] == ["/p/0", "/p/1", "/p/2"]
    log.close_access()
    paths = [json.loads(line)["path"] for line in out.getvalue().splitlines()]
    assert paths == [f"/p/{n}" for n in range(5)]  # whole lines, in request order


def test_batched_lines_go_through_the_handler_so_a_rotating_file_rotates(monkeypatch, tmp_path):
    path = tmp_path / "access.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=4000, backupCount=20)
    log, _ = _gunicorn_logger(monkeypatch, batch="50", handler=handler)
    for n in range(40):
        log.access(_Response, None, _environ(PATH_INFO=f"/p/{n}"), datetime.timedelta(0))
    log.close_access()
    handler.close()
    files = sorted(tmp_path.glob("access.log*"))
    assert len(files) > 1, "the rotating handler never rotated"
    lines = [json.loads(x) for f in files for x in f.read_text().splitlines()]
    assert sorted(x["path"] for x in lines) == sorted(f"/p/{n}" for n in range(40))
    assert all(f.stat().st_size <= 4000 for f in files)


def test_the_flusher_writes_queued_lines_and_runs_only_once_started():
    out = io.StringIO()
    logger = logging.getLogger("test.vigil.access")
    logger.propagate = False
    logger.setLevel(logging.INFO)  # as gunicorn sets its access logger
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(env="x"))
    logger.handlers = [handler]
    queue = AccessLogQueue(logger, limit=1000, interval=0.05)
    threads = threading.active_count()
    queue.add((time.time(), "GET", "/one", 200, 0, None, None, None, None, None, None))
    time.sleep(0.2)
    # No thread until start(): gunicorn forks workers from the master, and a process that
    # forks must not run threads (Python 3.12+ warns, and forked locks can deadlock).
    assert out.getvalue() == "" and threading.active_count() == threads
    queue.start()
    try:
        deadline = time.monotonic() + 5
        while not out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert json.loads(out.getvalue())["path"] == "/one"
    finally:
        queue.stop()
    assert threading.active_count() == threads


def test_usr1_never_waits_on_a_lock_the_interrupted_code_holds():
    """gunicorn runs reopen_files in its USR1 handler, which can interrupt the worker inside
    ``add`` (an access line is queued after the client has its answer) holding the queue's
    lock: the flush must not wait for it (in the same thread that wait never ends), and the
    flusher thread writes the lines once the lock is free."""
    out = io.StringIO()
    logger = logging.getLogger("test.vigil.access.usr1")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(env="x"))
    logger.handlers = [handler]
    queue = AccessLogQueue(logger, limit=1000, interval=60)
    queue.start()
    try:
        queue.add((time.time(), "GET", "/queued", 200, 0, None, None, None, None, None, None))
        for lock in (queue.queue_lock, queue.write_lock):
            with lock:  # what the interrupted code holds
                signal_path = threading.Thread(target=queue.flush, kwargs={"wait": False})
                signal_path.start()
                signal_path.join(timeout=2)
                assert not signal_path.is_alive(), "the USR1 flush waited on a held lock"
                assert out.getvalue() == ""
            deadline = time.monotonic() + 5  # the flusher, woken, writes (not the 60 s timer)
            while not out.getvalue() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert json.loads(out.getvalue())["path"] == "/queued"
            out.seek(0)
            out.truncate()
            queue.add((time.time(), "GET", "/queued", 200, 0, None, None, None, None, None,
                       None))
    finally:
        queue.stop()


def test_a_line_that_cannot_be_made_costs_only_itself(caplog):
    out = io.StringIO()
    logger = logging.getLogger("test.vigil.access2")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.handlers = [logging.StreamHandler(out)]
    queue = AccessLogQueue(logger, limit=3, interval=60)
    good = (time.time(), "GET", "/a", 200, 0, None, None, None, None, None, None)
    queue.add(good)
    queue.add(("not", "enough", "fields"))
    queue.add(good[:2] + ("/b",) + good[3:])
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["/a", "/b"]
    assert "access log line dropped" in caplog.text


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


@settings(max_examples=200, deadline=None)
@given(method=_text, path=_text, status=st.integers(100, 599),
       microseconds=st.integers(0, 10**10), request_id=st.none() | _text,
       user_agent=st.none() | _text, created=st.floats(0, 4e9), env=_text)
def test_batched_lines_are_exactly_what_the_formatter_writes_for_the_record(
        method, path, status, microseconds, request_id, user_agent, created, env):
    """The batch path (format_fields) and python-json-logger's format of the same LogRecord
    give the same bytes, for any request data: one JSON line carrying the values."""
    formatter = JsonFormatter(env=env)
    args = (created, method, path, status, microseconds, request_id, "t", "/a/<id>", None,
            "10.0.0.1", user_agent)
    record = access_record(*args)
    text = formatter.format(record)
    assert formatter.format_fields(created, "info", "gunicorn.access", record.getMessage(),
                                   record.process, access_fields(*args[1:])) == text
    assert "\n" not in text and "\r" not in text
    line = json.loads(text)
    assert (line["method"], line["path"], line["status"], line["request_id"],
            line["user_agent"], line["duration_ms"]) == (
        method, path, status, request_id, user_agent, microseconds / 1000)


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
    assert ('flask_http_request_duration_seconds_count{method="GET",'
            'route="/api/v1/content/<id>",status="401"} 1.0' in body)
    assert 'flask_http_request_total{method="GET",status="401"} 1.0' in body


@pytest.mark.parametrize("setting,value", [("TELEMETRY", "maybe"), ("LOG_LEVEL", "LOUD")])
def test_bad_settings_are_refused(tmp_path, setting, value):
    with pytest.raises(ConfigError, match=f"VIGIL_{setting}"):
        make_app(f"sqlite:///{tmp_path / 'bad.db'}", **{setting: value})


def test_a_batch_is_one_write_to_a_plain_stream(monkeypatch):
    log, out = _gunicorn_logger(monkeypatch, batch="4")
    writes = []
    out.write = lambda text, _write=out.write: (writes.append(text), _write(text))[1]
    for n in range(4):
        log.access(_Response, None, _environ(PATH_INFO=f"/p/{n}"), datetime.timedelta(0))
    assert len(writes) == 1 and writes[0].count("\n") == 4
    assert [json.loads(x)["path"] for x in out.getvalue().splitlines()] == [
        f"/p/{n}" for n in range(4)]
