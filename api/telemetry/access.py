"""gunicorn's logging for Vigil: JSON error lines, and one JSON access line per request.

gunicorn's ``logger_class`` (GunicornLogger) formats its error and access logs with Vigil's
JsonFormatter. The access line is built from a fixed list of fields (never headers, bodies
or the query string) and queued; the queue is written in batches (AccessLogQueue): every
``VIGIL_ACCESS_LOG_BATCH`` requests, every ``VIGIL_ACCESS_LOG_FLUSH_SECONDS`` from a thread
the worker starts after it booted, on USR1 (log reopening) and when the worker exits. Each
line goes through the access logger's handlers as an ordinary LogRecord, so any handler
(a rotating file, syslog) works as it would without batching.
"""
import logging
import os
import threading
import time

from gunicorn import glogging
from gunicorn.http import errors as http_errors
from gunicorn.workers.sync import SyncWorker as _SyncWorker

from api.config import server_settings
from api.telemetry.context import ENVIRON_KEY
from api.telemetry.logs import JsonFormatter

ACCESS_LOGGER = "gunicorn.access"
#: Handlers whose emit() is only format, write and flush: a batch may go as one write.
PLAIN_HANDLERS = (logging.StreamHandler, logging.FileHandler)
#: Statuses gunicorn answers when it refuses a request it could not parse (its handle_error).
_REFUSAL_STATUS = (
    (http_errors.LimitRequestHeaders, 431),
    (http_errors.ForbiddenProxyRequest, 403),
    (http_errors.UnsupportedTransferCoding, 501),
    (http_errors.ConfigurationProblem, 500),
    (http_errors.ParseException, 400),
)


def _status_code(status):
    """200 for gunicorn's ``resp.status`` of ``"200 OK"`` (or an int)."""
    return int(str(status).split(None, 1)[0])


def access_fields(method, path, status, microseconds, request_id, trace_id, route, user_id,
                  remote_addr, user_agent):
    """The members an access line carries after the fixed ones, in order."""
    return {"request_id": request_id, "trace_id": trace_id, "method": method, "route": route,
            "path": path, "status": status, "duration_ms": microseconds / 1000,
            "user_id": user_id, "remote_addr": remote_addr, "user_agent": user_agent}


def access_message(method, path, status):
    return f"{method or '-'} {path or '-'} {status}"


def access_record(created, method, path, status, *rest):
    """The LogRecord of one access line (its fields become the line's JSON members)."""
    return logging.makeLogRecord({
        "name": ACCESS_LOGGER, "levelno": logging.INFO, "levelname": "INFO",
        "msg": access_message(method, path, status),
        # The request's end, not the moment its batch is written.
        "created": created, "msecs": (created - int(created)) * 1000,
        **access_fields(method, path, status, *rest),
    })


def _record(entry):
    try:
        return access_record(*entry)
    except Exception:  # one bad entry must not cost the batch its other lines
        logging.getLogger(__name__).exception("access log line dropped: %r", entry[1:4])
        return None


class AccessLogQueue:
    """Access lines queued by requests and handed to ``logger`` in batches.

    A request only appends a tuple of plain values (no environ, body or socket is kept
    alive); lines are made and written when ``limit`` are queued, on ``flush()`` and, once
    ``start()`` was called, every ``interval`` seconds from a daemon thread. Batches are
    written whole and in order, in one write() for gunicorn's own stream and file handlers.
    What can be lost is bounded: a process killed by SIGKILL loses at most ``interval``
    seconds of lines.
    """

    def __init__(self, logger, limit, interval):
        self.logger = logger
        self.limit = limit
        self.interval = interval
        self.entries = []
        self.queue_lock = threading.Lock()   # held only to append or take the queue
        self.write_lock = threading.Lock()   # held while a batch is written, so batches keep order
        self.stopping = threading.Event()
        self.wake = threading.Event()        # asks the flusher thread to write now
        self.flusher = None

    def add(self, entry):
        """Queue one request's access_record arguments; write the batch when it is full."""
        with self.queue_lock:
            self.entries.append(entry)
            full = len(self.entries) >= self.limit
        if full:
            self.flush()

    def flush(self, wait=True):
        """Write every queued line now.

        ``wait=False`` is for signal handlers (USR1), which may have interrupted this very
        thread inside ``add`` or ``flush`` holding a lock that waiting would deadlock on:
        when a lock is taken, the flusher thread is woken to write the lines instead, as
        soon as the interrupted code lets go of it.
        """
        if not self.write_lock.acquire(blocking=wait):
            self.wake.set()
            return
        try:
            if not self.queue_lock.acquire(blocking=wait):
                self.wake.set()
                return
            try:
                batch, self.entries = self.entries, []
            finally:
                self.queue_lock.release()
            if batch and self.logger.isEnabledFor(logging.INFO):
                for handler in self.logger.handlers:
                    self._write(handler, batch)
        finally:
            self.write_lock.release()

    @staticmethod
    def _write(handler, batch):
        """Hand the batch to ``handler``. A plain stream or file handler (its emit is format,
        write, flush) with Vigil's formatter gets the lines in one write, made by the
        formatter's ``format_fields``; any other handler (rotating, watched, syslog) gets a
        LogRecord per line through ``handle``, as without batching."""
        formatter = handler.formatter
        if (type(handler) not in PLAIN_HANDLERS or handler.stream is None or handler.filters
                or handler.level > logging.INFO or not isinstance(formatter, JsonFormatter)):
            for entry in batch:
                record = _record(entry)
                if record is not None:
                    handler.handle(record)
            return
        pid = os.getpid()
        lines = []
        for entry in batch:
            try:
                created, method, path, status = entry[:4]
                lines.append(formatter.format_fields(
                    created, "info", ACCESS_LOGGER, access_message(method, path, status), pid,
                    access_fields(*entry[1:])) + handler.terminator)
            except Exception:  # one bad entry must not cost the batch its other lines
                logging.getLogger(__name__).exception("access log line dropped: %r",
                                                      entry[1:4])
        handler.acquire()
        try:
            handler.stream.write("".join(lines))
            handler.flush()
        except Exception:
            handler.handleError(logging.makeLogRecord({"msg": "access log batch"}))
        finally:
            handler.release()

    def start(self):
        """Write queued lines every ``interval`` seconds from a daemon thread (in a worker,
        after gunicorn forked it: a process that forks must not run threads)."""
        if self.flusher is None and self.limit > 1:
            self.stopping.clear()
            self.wake.clear()
            self.flusher = threading.Thread(target=self._flush_periodically, daemon=True,
                                            name="vigil-access-log")
            self.flusher.start()

    def stop(self):
        """Stop the thread (if any) and write what is queued."""
        if self.flusher is not None:
            self.stopping.set()
            self.wake.set()
            self.flusher.join(timeout=5)
            self.flusher = None
        self.flush()

    def _flush_periodically(self):
        while True:
            self.wake.wait(self.interval)
            self.wake.clear()
            if self.stopping.is_set():
                return  # stop() writes what is left
            try:
                self.flush()
            except Exception:  # a full disk must not kill the flusher; the next try may pass
                logging.getLogger(__name__).exception("could not write access log lines")


class GunicornLogger(glogging.Logger):
    """gunicorn's logger with JSON lines for its error log and a batched JSON access log."""

    def setup(self, cfg):
        """Install gunicorn's handlers as usual, then make them write JSON."""
        super().setup(cfg)
        settings = server_settings()
        # logging's documented optimisation: record fields Vigil's lines never show are not
        # collected (gunicorn processes only; the pid still is).
        logging.logThreads = logging.logMultiprocessing = False
        logging.logAsyncioTasks = False
        formatter = JsonFormatter(settings.env)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(formatter)
        self.access_enabled = bool(cfg.accesslog)
        self.access_queue = AccessLogQueue(self.access_log, settings.access_log_batch,
                                           settings.access_log_flush_seconds)

    def access(self, resp, req, environ, request_time):
        """Queue one request's access line: fixed fields only, never headers or bodies."""
        if not self.access_enabled:
            return
        try:
            facts = environ.get(ENVIRON_KEY)
            ids = ((None,) * 4 if facts is None else
                   (facts.request_id, facts.trace_id, facts.route, facts.user_id))
            # A request gunicorn refused has no PATH_INFO in its environ, only req.path.
            path = environ.get("PATH_INFO") or getattr(req, "path", None)
            self.access_queue.add((
                time.time(), environ.get("REQUEST_METHOD"), path,
                _status_code(resp.status),
                request_time.days * 86_400_000_000 + request_time.seconds * 1_000_000
                + request_time.microseconds, *ids, environ.get("REMOTE_ADDR"),
                environ.get("HTTP_USER_AGENT")))
        except Exception:
            self.exception("could not queue the access log line")

    def refused(self, exc, addr):
        """An access line for a request gunicorn refused before it could parse one."""
        if not self.access_enabled:
            return
        status = next((code for kind, code in _REFUSAL_STATUS if isinstance(exc, kind)), 500)
        remote = addr[0] if addr and addr[0] else None
        self.access_queue.add((time.time(), None, None, status, 0, None, None, None, None,
                               remote, None))

    def start_access_flusher(self):
        """In a booted worker: write queued access lines every flush interval."""
        self.access_queue.start()

    def close_access(self):
        """Worker exit: write the queued access lines and stop the flusher."""
        self.access_queue.stop()

    def reopen_files(self):
        """USR1 (log rotation): queued lines go to the old file before it is reopened.

        gunicorn calls this inside its USR1 handler, which may have interrupted the queue
        holding its lock (an access line is queued after the client has its answer), so
        the flush never waits: then the flusher thread writes the lines, to the new file.
        """
        self.access_queue.flush(wait=False)
        super().reopen_files()


class SyncWorker(_SyncWorker):
    """gunicorn's sync worker; a request refused before it could be parsed (an oversized
    header block, a malformed request line) still gets its access line."""

    def handle_error(self, req, client, addr, exc):
        """gunicorn's error answer; then the access line gunicorn writes only with a request."""
        super().handle_error(req, client, addr, exc)
        # gunicorn logs the access itself when it has a request: one parsed, or the one a
        # bad header carries (what its handle_error checks).
        header_error = isinstance(exc, (http_errors.InvalidHeader, http_errors.InvalidHeaderName))
        logged = req is not None or (header_error and getattr(exc, "req", None) is not None)
        if not logged and isinstance(exc, http_errors.ParseException):
            self.log.refused(exc, addr)
