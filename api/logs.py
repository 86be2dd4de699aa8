"""Structured logging: one JSON object per line for the app, gunicorn's access and error logs.

Every line carries ``timestamp`` (RFC 3339, UTC), ``level``, ``logger``, ``message`` and the
three low-cardinality fields a log shipper may turn into labels: ``service``, ``level`` and
``env``. Everything else (request_id, trace_id, route, user_id...) stays in the JSON body.
Request bodies, headers, query strings, passwords and tokens are never logged: the access
line is built from a fixed list of fields, not from the request.

Request and trace ids, timing and the end-of-request steps (request metrics) come from
RequestTelemetry, a WSGI middleware around the Flask app; gunicorn's access lines are
queued and written in batches (BatchedAccessLog). Both are on the path of every request:
see docs/adr/0014-telemetry-hot-path.md for why they look the way they do.
"""
import atexit
import logging
import os
import re
import sys
import threading
import time
from json.encoder import encode_basestring as _json_str

from flask import has_request_context, request
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

#: Key of the request's RequestFacts in the WSGI environ (read by metrics and the access line).
ENVIRON_KEY = "vigil.request"
# The pid for access lines, without a system call per line; refreshed in forked children.
_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))
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

    def access_line(self, method, path, status, microseconds, request_id, trace_id, route,
                    user_id, remote_addr, user_agent, created):
        """One gunicorn.access line, newline included.

        Byte for byte what this formatter's python-json-logger encoder gives for the dict
        ``{timestamp, level, logger, message, service, env, pid, request_id, trace_id, method,
        route, path, status, duration_ms, user_id, remote_addr, user_agent}`` (a property test
        holds it to that), but assembled from pieces: every string is escaped by the json
        module's own C string encoder, the members that never change in a process and each
        route's encoded template are encoded once, and no dict or encoder pass is built per
        line. ``method`` and ``path`` are strings (gunicorn always sets them), ``status`` and
        ``microseconds`` (the duration) ints, ``route`` the route already encoded as JSON
        (``_route_json``) or None, ``created`` the epoch time of the request's end; the rest
        are strings or None.
        """
        pid = _pid[0]
        if pid != self._access_pid:
            self._access_pid = pid
            constant = {"service": SERVICE, "env": self.env, "pid": pid}
            self._access_tail = self._encode(constant)[1:-1]
        return (f'{{"timestamp": "{self._timestamp(created)}", '
                f'"level": "info", "logger": "{_ACCESS_LOGGER}", '
                f'"message": {_json_str(f"{method} {path} {status}")}, {self._access_tail}, '
                f'"request_id": {"null" if request_id is None else _json_str(request_id)}, '
                f'"trace_id": {"null" if trace_id is None else _json_str(trace_id)}, '
                f'"method": {_json_str(method)}, "route": {route or "null"}, '
                f'"path": {_json_str(path)}, "status": {status:d}, '
                f'"duration_ms": {microseconds / 1000!r}, '
                f'"user_id": {"null" if user_id is None else _json_str(user_id)}, '
                f'"remote_addr": {"null" if remote_addr is None else _json_str(remote_addr)}, '
                f'"user_agent": {"null" if user_agent is None else _json_str(user_agent)}}}\n')

    def jsonify_log_record(self, log_record):
        """Serialise with the cached encoder (same encoder class python-json-logger uses)."""
        return self._encode(log_record)


_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_route_cache = {}
_route_json_cache = {}


def route_template(rule):
    """``/api/v1/content/<id>`` for the matched rule (converters dropped), or ``unmatched``."""
    if rule is None:
        return "unmatched"
    template = _route_cache.get(rule.rule)
    if template is None:
        template = _route_cache[rule.rule] = _CONVERTER.sub(r"<\1>", rule.rule)
    return template


def _route_json(rule):
    """route_template(rule) as a JSON string, encoded once per rule."""
    key = rule.rule if rule is not None else None
    encoded = _route_json_cache.get(key)
    if encoded is None:
        encoded = _route_json_cache[key] = _json_str(route_template(rule))
    return encoded


class RequestFacts:
    """What telemetry knows of one request; lives in ``environ[ENVIRON_KEY]``.

    RequestTelemetry sets the ids before the app runs, and the status and
    matched URL rule when the response starts; the app adds ``user_id`` (note_user) and
    ``failed`` (an exception reached Flask's handler). Metrics and gunicorn's access line
    read them after the response.
    """

    __slots__ = ("request_id", "trace_id", "status", "rule", "user_id", "failed")

    def __init__(self, request_id, trace_id):
        self.request_id = request_id
        self.trace_id = trace_id
        self.status = self.rule = self.user_id = None
        self.failed = False


def current_facts():
    """The RequestFacts of the request being handled, or None (no request, telemetry off)."""
    if has_request_context():
        return request.environ.get(ENVIRON_KEY)
    return None


def current_request_id():
    """The request id sent back in X-Request-ID, or None outside a request."""
    facts = current_facts()
    return facts.request_id if facts is not None else None


def note_user(user_id):
    """Record the authenticated user of the current request for its log lines."""
    facts = current_facts()
    if facts is not None:
        facts.user_id = None if user_id is None else str(user_id)


def note_exception():
    """Record that the current request's handler raised (flask_http_request_exceptions_total)."""
    facts = current_facts()
    if facts is not None:
        facts.failed = True


class RequestContextFilter(logging.Filter):
    """Adds the current request's ids, route and user to app log lines written during it."""

    def filter(self, record):
        if has_request_context():
            facts = request.environ.get(ENVIRON_KEY)
            if facts is not None:
                record.request_id = facts.request_id
                record.trace_id = facts.trace_id
                record.user_id = facts.user_id
            record.method = request.method
            record.path = request.path
            record.route = route_template(request.url_rule)
        return True


#: Ids are made in batches: one getrandom() call and one hex conversion per 128 ids, and a
#: list pop per request. Emptied in a forked child, so no two workers ever share an id.
_ID_BATCH = 128
_ids = []
os.register_at_fork(after_in_child=_ids.clear)


def _refill_ids():
    text = os.urandom(16 * _ID_BATCH).hex()
    _ids.extend([text[i:i + 32] for i in range(0, len(text), 32)])


def new_id():
    """32 random hex digits (128 bits from os.urandom): a request id or a W3C trace id."""
    if not _ids:
        _refill_ids()
    return _ids.pop()


def _trace_id(traceparent):
    """The trace id of a valid W3C traceparent header, else None."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match and match[1] != "ff" and match[2] != _ZERO_TRACE and match[3] != _ZERO_SPAN:
        return match[2]
    return None


class RequestTelemetry:
    """WSGI middleware around the Flask app: request and trace ids, timing, end-of-request steps.

    Before the app runs it creates the request's RequestFacts: the client's X-Request-ID when
    it is a sane token, else a new one; the trace id of a valid W3C ``traceparent``, else a
    new one. When the app starts its response it adds X-Request-ID to the headers and notes
    the status and the matched rule (Flask's request is still in the environ then). After
    the app returns, each ``finishers`` callable gets ``(environ, facts, seconds)``, the
    seconds timed around the app: that is where the request metrics are written.

    Middleware rather than Flask ``before/after_request`` hooks because it is the cheapest
    place for work done on every request: Flask runs an ``ensure_sync`` coroutine check and
    a context-local lookup per hook, and setting a header through werkzeug's ``Headers``
    costs more than appending to the WSGI header list.
    """

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app
        self.finishers = []

    def __call__(self, environ, start_response):
        started = _perf_counter()
        given = environ.get("HTTP_X_REQUEST_ID")
        parent = environ.get("HTTP_TRACEPARENT")
        if given is None and parent is None:  # the usual case: two new ids
            ids = _ids
            if len(ids) < 2:
                _refill_ids()
            facts = RequestFacts(ids.pop(), ids.pop())
        else:
            request_id = given if given and _SANE_REQUEST_ID.fullmatch(given) else None
            trace_id = _trace_id(parent) if parent else None
            facts = RequestFacts(request_id or new_id(), trace_id or new_id())
        environ[ENVIRON_KEY] = facts
        header = ("X-Request-ID", facts.request_id)

        def start(status, headers, exc_info=None):
            headers.append(header)
            facts.status = status
            flask_request = environ.get("werkzeug.request")
            if flask_request is not None:
                facts.rule = getattr(flask_request, "url_rule", None)
            return start_response(status, headers, exc_info)

        body = self.wsgi_app(environ, start)
        if self.finishers:
            seconds = _perf_counter() - started
            for finish in self.finishers:
                finish(environ, facts, seconds)
        return body


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


_MIDDLEWARE = "vigil_telemetry"


def init_app(app):
    """JSON logging for ``app``; request ids, timing and X-Request-ID by RequestTelemetry."""
    from flask.logging import default_handler

    level = str(app.config.get("LOG_LEVEL", "INFO")).upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"VIGIL_LOG_LEVEL must be a logging level name, not {level!r}")
    configure_root_logging(level, env=app.config.get("ENV"))
    app.logger.removeHandler(default_handler)
    if not telemetry_enabled(app):
        return
    app.wsgi_app = app.extensions[_MIDDLEWARE] = RequestTelemetry(app.wsgi_app)


def on_request_end(app, finish):
    """Call ``finish(environ, facts, seconds)`` after every request ``app`` answers."""
    app.extensions[_MIDDLEWARE].finishers.append(finish)


def _setting(name, default, kind, low, high):
    """A number from the environment within [low, high]; a clear exit otherwise."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise SystemExit(f"{name} must be a number from {low} to {high}, not {text!r}")
    return value


class BatchedAccessLog:
    """Access lines formatted and written in batches; a request only queues its values.

    The request path appends one tuple; a batch of queued requests is formatted and written
    in one go when ``limit`` requests are queued, when a background thread finds requests
    older than ``interval`` seconds, and on ``flush()`` (worker exit, log reopening). This is
    the benchmark's largest saving (about 8 µs of CPU per request here): it saves a write()
    system call per request, and formatting many lines in one tight loop runs on warm CPU
    caches, where one line formatted between two requests runs on caches the rest of the
    request (and the other workers) just evicted.

    What a batch can lose is bounded: the lines of at most ``interval`` seconds, and only if
    the process dies by SIGKILL (a timed-out worker gets SIGABRT and leaves through
    gunicorn's ``worker_exit``, which flushes; a normal exit flushes at ``atexit`` too).
    ``limit`` of 1 writes every line at once. Lines are never split, interleaved or
    reordered: batches are formatted and written under one lock, as whole lines.
    """

    def __init__(self, handlers, format_line, limit, interval):
        self.handlers = handlers
        self.format_line = format_line
        self.limit = limit
        self.interval = interval
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self):
        # A forked child starts empty: queued requests belong to the parent, which writes them.
        self._queue = []
        self._lock = threading.Lock()
        self._flusher = None

    def add(self, entry):
        """Queue one request's ``format_line`` arguments; write the batch when it is full."""
        if self.limit <= 1:
            self._emit(self.format_line(*entry))
            return
        if self._flusher is None:
            self._start_flusher()
        with self._lock:
            queue = self._queue
            queue.append(entry)
            if len(queue) >= self.limit:
                self._write_batch()

    def flush(self):
        """Format and write whatever is queued now."""
        with self._lock:
            if self._queue:
                self._write_batch()

    def _write_batch(self):
        queue, self._queue = self._queue, []
        format_line = self.format_line
        try:
            text = "".join([format_line(*entry) for entry in queue])
        except Exception:  # one bad entry must not cost the batch its other lines
            text = "".join(self._format_each(queue))
        self._emit(text)

    def _format_each(self, queue):
        for entry in queue:
            try:
                yield self.format_line(*entry)
            except Exception:
                logging.getLogger(__name__).exception("access log line dropped: %r", entry[:3])

    def _emit(self, text):
        for handler in self.handlers:
            handler.acquire()
            try:
                stream = handler.stream  # read now: gunicorn's USR1 reopening replaces it
                stream.write(text)
                stream.flush()
            finally:
                handler.release()

    def _start_flusher(self):
        thread = threading.Thread(target=self._flush_periodically, name="vigil-access-log",
                                  daemon=True)
        self._flusher = thread
        thread.start()

    def _flush_periodically(self):
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a full disk must not kill the flusher; the next try may pass
                logging.getLogger(__name__).exception("could not write access log lines")


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
        handlers = self.access_log.handlers
        streams = [h for h in handlers if isinstance(h, logging.StreamHandler) and not h.filters]
        self.access_writer = None
        if streams and len(streams) == len(handlers):
            self.access_writer = BatchedAccessLog(
                streams, formatter.access_line,
                limit=_setting("VIGIL_ACCESS_LOG_BATCH", 128, int, 1, 100_000),
                interval=_setting("VIGIL_ACCESS_LOG_FLUSH_SECONDS", 1.0, float, 0.01, 60.0))

    def flush_access(self):
        """Write the access lines still queued (worker exit, log reopening)."""
        if getattr(self, "access_writer", None) is not None:
            self.access_writer.flush()

    def reopen_files(self):
        """USR1 (log rotation): queued lines go to the old file before it is reopened."""
        self.flush_access()
        super().reopen_files()

    def access(self, resp, req, environ, request_time):
        """One line per request from a fixed list of fields (never headers or bodies).

        The request path only queues the line's values, as a tuple of strings and numbers;
        the line is built when its batch is written (JsonFormatter.access_line). Plain
        values, so a queue never keeps a request's environ, body reader or socket alive.
        """
        if not self._access_on:
            return
        try:
            if self.access_writer is None:
                self.access_log.handle(self._access_record(resp.status_code, request_time,
                                                           environ))
                return
            facts = environ.get(ENVIRON_KEY)
            if facts is None:
                ids = (None, None, None, None)
            else:
                rule = facts.rule
                route = _route_json_cache.get(rule.rule if rule is not None else None)
                ids = (facts.request_id, facts.trace_id,
                       route if route is not None else _route_json(rule), facts.user_id)
            self.access_writer.add((
                environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), resp.status_code,
                request_time.days * 86_400_000_000 + request_time.seconds * 1_000_000
                + request_time.microseconds, *ids, environ.get("REMOTE_ADDR"),
                environ.get("HTTP_USER_AGENT"), time.time()))
        except Exception:
            self.exception("could not write the access log line")

    def _access_record(self, status, request_time, environ):
        """The same fields as a LogRecord, for handlers that are not plain streams (syslog)."""
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO")
        facts = environ.get(ENVIRON_KEY)
        record = _new_record(_ACCESS_LOGGER, f"{method} {path} {status}")
        record.vigil_fields = {
            "request_id": facts.request_id if facts else None,
            "trace_id": facts.trace_id if facts else None, "method": method,
            "route": route_template(facts.rule) if facts else None, "path": path,
            "status": status, "duration_ms": _milliseconds(request_time),
            "user_id": facts.user_id if facts else None,
            "remote_addr": environ.get("REMOTE_ADDR"),
            "user_agent": environ.get("HTTP_USER_AGENT"),
        }
        return record


def _milliseconds(delta):
    """A timedelta in milliseconds with microsecond precision (what round(x, 3) would give)."""
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) / 1000


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
