"""Structured logging: one JSON object per line for the app, gunicorn's access and error logs.

Every line carries ``timestamp`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and the
three low-cardinality fields a log shipper may turn into labels: ``service``, ``level`` and
``env``. Everything else (request_id, trace_id, route, user_id...) stays in the JSON body.
Request bodies, headers, query strings, passwords and tokens are never logged: the access
line is built from a fixed list of fields, not from the request.
"""
import logging
import os
import random
import re
import sys
import time

from flask import g, has_request_context, request
from gunicorn import glogging
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

SERVICE = "vigil-api"

#: A client's X-Request-ID is kept only when it is a short token of safe characters, so
#: nobody can inject log lines, JSON or unbounded data through it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}")
#: W3C Trace Context: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16

#: Key under which the app leaves request facts in the WSGI environ for gunicorn's access line.
ENVIRON_KEY = "vigil.request"
# The pid for access lines, without a system call per line; refreshed in forked children.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
_getrandbits = random.getrandbits
_perf_counter = time.perf_counter

#: LogRecord attributes that are plumbing, not data: never copied into the JSON body.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(_JsonFormatter):
    """python-json-logger with Vigil's fixed leading fields, tuned for the hot access log."""

    def __init__(self, env=None):
        super().__init__(json_ensure_ascii=False)
        self.env = env or os.environ.get("VIGIL_ENV", "development")
        self._second = None
        self._second_text = ""
        self._access_pid = None
        self._access_tail = ""
        # One encoder for every line instead of one per call (json.dumps(cls=...) builds one).
        self._encode = JsonEncoder(ensure_ascii=False, check_circular=False).encode

    def _timestamp(self, created):
        second = int(created)
        if second != self._second:
            # One strftime per second instead of per line.
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}Z"

    def add_fields(self, log_record, record, message_dict):
        """Fixed fields first, then the record's own fields or whatever ``extra`` passed."""
        log_record["timestamp"] = self._timestamp(record.created)
        log_record["level"] = record.levelname.lower()
        log_record["logger"] = record.name
        log_record["message"] = record.message
        log_record["service"] = SERVICE
        log_record["env"] = self.env
        log_record["pid"] = record.process
        fields = record.__dict__.get("vigil_fields")
        if fields is not None:
            log_record.update(fields)
        else:
            for key, value in record.__dict__.items():
                if key not in _RECORD_ATTRS and key not in log_record:
                    log_record[key] = value
        if message_dict:
            log_record.update(message_dict)

    def access_line(self, message, fields):
        """One gunicorn.access line (newline included): the fixed fields, then ``fields``.

        The same JSON the encoder would give for one dict in that order, but the members
        that never change in a process (level, logger, service, env, pid) are encoded once
        per process, not once per request.
        """
        pid = _pid[0]
        if pid != self._access_pid:
            self._access_pid = pid
            self._access_tail = self._encode({"service": SERVICE, "env": self.env, "pid": pid})
        tail = self._access_tail
        body = self._encode(fields) if fields else "{}"
        # Both are JSON objects: join their members, dropping one closing and one opening brace.
        members = f"{tail[1:-1]}, {body[1:]}" if len(body) > 2 else tail[1:]
        return (f'{{"timestamp": "{self._timestamp(time.time())}", "level": "info", '
                f'"logger": "{_ACCESS_LOGGER}", "message": {self._encode(message)}, '
                f"{members}\n")

    def jsonify_log_record(self, log_record):
        """Serialise with the cached encoder (same encoder class python-json-logger uses)."""
        return self._encode(log_record)


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_route_cache = {}


def route_template(rule):
    """``/api/v1/content/<id>`` for the matched rule (converters dropped), or ``unmatched``."""
    if rule is None:
        return "unmatched"
    template = _route_cache.get(rule.rule)
    if template is None:
        template = _route_cache[rule.rule] = _CONVERTER.sub(r"<\1>", rule.rule)
    return template


class RequestContextFilter(logging.Filter):
    """Adds the current request's ids, route and user to app log lines written during it."""

    def filter(self, record):
        if has_request_context():
            record.request_id = g.get("request_id")
            record.trace_id = g.get("trace_id")
            record.user_id = g.get("user_id")
            record.method = request.method
            record.path = request.path
            record.route = route_template(request.url_rule)
        return True


def new_id():
    """32 random hex digits: a request id or a W3C trace id.

    Unique, not secret: the per-process generator (reseeded after every fork) is several
    times cheaper than os.urandom on the request path.
    """
    return f"{_getrandbits(128):032x}"


def _trace_id(traceparent):
    """The trace id of a valid W3C traceparent header, else None."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match and match[1] != "ff" and match[2] != _ZERO_TRACE and match[3] != _ZERO_SPAN:
        return match[2]
    return None


def _start_request():
    """The app's first before_request hook: request id, trace id and start time.

    Sets ``g.request_id``, ``g.trace_id`` and ``g.request_started`` (perf_counter), which
    every later hook, error response and log line relies on.
    """
    environ = request.environ
    ctx = g._get_current_object()  # one proxy lookup instead of one per attribute
    ctx.request_started = _perf_counter()
    given = environ.get("HTTP_X_REQUEST_ID")
    request_id = given if given and _SANE_REQUEST_ID.fullmatch(given) else None
    parent = environ.get("HTTP_TRACEPARENT")
    trace_id = _trace_id(parent) if parent else None
    if request_id is None and trace_id is None:  # the usual case: one draw for both
        both = f"{_getrandbits(256):064x}"
        request_id, trace_id = both[:32], both[32:]
    ctx.request_id = request_id or new_id()
    ctx.trace_id = trace_id or new_id()


def _finish_request(response):
    """Return the request id and leave the facts gunicorn's access line needs in the environ."""
    ctx = g._get_current_object()
    facts = ctx.__dict__
    request_id = facts.get("request_id")
    if request_id is None:  # a hook before ours failed; still give the client an id
        ctx.request_id = request_id = new_id()
    response.headers["X-Request-ID"] = request_id
    req = request._get_current_object()
    req.environ[ENVIRON_KEY] = (
        request_id, facts.get("trace_id"), route_template(req.url_rule), facts.get("user_id"))
    return response


def configure_root_logging(level="INFO", env=None, stream=None):
    """Send every Python logger through one JSON handler on stderr (idempotent)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_vigil", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._vigil = True
    handler.setFormatter(JsonFormatter(env=env))
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def telemetry_enabled(app):
    """False when VIGIL_TELEMETRY=off (used by the benchmark's baseline)."""
    value = str(app.config.get("TELEMETRY", "on")).lower()
    if value not in ("on", "off"):
        raise ValueError(f"VIGIL_TELEMETRY must be on or off, not {value!r}")
    return value == "on"


def init_app(app):
    """JSON logging for ``app``; request and trace ids set in the app's very first hook."""
    from flask.logging import default_handler

    level = str(app.config.get("LOG_LEVEL", "INFO")).upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"VIGIL_LOG_LEVEL must be a logging level name, not {level!r}")
    configure_root_logging(level, env=app.config.get("ENV"))
    app.logger.removeHandler(default_handler)
    if not telemetry_enabled(app):
        return
    before_steps, after_steps = app.extensions[_STEPS] = ([], [])

    def start_request():
        _start_request()
        for step in before_steps:
            response = step()
            if response is not None:
                return response
        return None

    def finish_request(response):
        for step in after_steps:
            response = step(response)
        return _finish_request(response)

    # First in the list whatever registered before us: every later hook, error and log
    # line can rely on g.request_id and g.trace_id.
    app.before_request_funcs.setdefault(None, []).insert(0, start_request)
    app.after_request(finish_request)


_STEPS = "vigil_telemetry_steps"


def add_request_step(app, before=None, after=None):
    """Run ``before`` right after the request ids are set, ``after`` before the id header.

    Telemetry's per-request work (ids, fault switches, metrics) shares one before_request
    and one after_request hook: Flask pays an ``ensure_sync`` check (inspect's coroutine
    test) and a call for every hook on every request, about a microsecond each.
    ``before`` may return a response to end the request, as a before_request hook can.
    Without the logging hooks (``init_app`` not called) they become ordinary hooks.
    """
    steps = app.extensions.get(_STEPS)
    if before is not None:
        if steps is None:
            app.before_request(before)
        else:
            steps[0].append(before)
    if after is not None:
        if steps is None:
            app.after_request(after)
        else:
            steps[1].insert(0, after)  # later registrations first, as Flask runs after hooks


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with JSON lines for its error log and a lean JSON access log."""

    def setup(self, cfg):
        """Install gunicorn's handlers as usual, then make them write JSON."""
        super().setup(cfg)
        # Read once: gunicorn's Config.__getattr__ costs about a microsecond per request.
        self._access_on = bool(cfg.accesslog)
        self.json_formatter = formatter = JsonFormatter()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
        # The access line may skip logging's record machinery when nothing but plain
        # stream handlers (stderr, stdout, a file) would see the record anyway.
        self._stream_handlers = [
            h for h in self.access_log.handlers
            if isinstance(h, logging.StreamHandler) and not h.filters]
        if len(self._stream_handlers) != len(self.access_log.handlers):
            self._stream_handlers = None

    def access(self, resp, req, environ, request_time):
        """One line per request from a fixed list of fields (never headers or bodies).

        The line is written for every request, so its cost shows in requests per second:
        it is serialised once by the JSON formatter's cached python-json-logger encoder and
        written straight to the stream handlers, without building a LogRecord (stack frame
        lookup, a dozen unused attributes, the generic format pipeline).
        """
        if not self._access_on:
            return
        facts = environ.get(ENVIRON_KEY) or _NO_FACTS
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO")
        status = resp.status_code
        message = f"{method} {path} {status}"
        fields = {
            "request_id": facts[0], "trace_id": facts[1], "method": method,
            "route": facts[2], "path": path, "status": status,
            # Whole microseconds / 1000: the float round(total_seconds() * 1000, 3) gives,
            # without round()'s decimal conversion.
            "duration_ms": (request_time.days * 86_400_000_000 + request_time.seconds
                            * 1_000_000 + request_time.microseconds) / 1000,
            "user_id": facts[3], "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        try:
            if self._stream_handlers is None:
                record = _new_record(_ACCESS_LOGGER, message)
                record.vigil_fields = fields
                self.access_log.handle(record)
                return
            line = self.json_formatter.access_line(message, fields)
            for handler in self._stream_handlers:
                handler.acquire()
                try:
                    stream = handler.stream
                    stream.write(line)
                    stream.flush()
                finally:
                    handler.release()
        except Exception:
            self.exception("could not write the access log line")


_NO_FACTS = (None, None, None, None)
_ACCESS_LOGGER = "gunicorn.access"


def _new_record(name, message):
    """A bare INFO LogRecord with only what handlers and JsonFormatter read."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    record.name = name
    record.msg = message
    record.args = None
    record.levelname = "INFO"
    record.levelno = logging.INFO
    record.created = time.time()
    record.exc_info = record.exc_text = record.stack_info = None
    record.process = os.getpid()
    return record
