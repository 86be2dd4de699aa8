"""Structured logging: one JSON object per line, from python-json-logger's formatter.

Every line carries ``timestamp`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
``message``, ``pid``, ``service`` and ``env``; only ``service``, ``level`` and ``env`` are
meant as log-shipper labels. App lines written during a request also carry the request's
ids, method, path, route and user (RequestContextFilter); gunicorn's access and error logs
use the same formatter (api.telemetry.access).
"""
import logging
import sys
import time

from flask import has_request_context, request
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonEncoder
from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

from api.telemetry.context import ENVIRON_KEY

SERVICE = "vigil-api"
# One encoder for every line: json.dumps(cls=...) would build a new one per line.
_ENCODE = JsonEncoder(ensure_ascii=False).encode


def _serialize(log_record, **_json_dumps_options):
    """python-json-logger's ``json_serializer`` option: json.dumps with its own encoder."""
    return _ENCODE(log_record)


class JsonFormatter(_JsonFormatter):
    """python-json-logger's formatter with Vigil's fixed fields, configured by its options."""

    # logging.Formatter's documented time hooks: UTC, RFC 3339 with milliseconds.
    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self, env):
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            rename_fields={"asctime": "timestamp", "levelname": "level", "name": "logger",
                           "process": "pid"},
            static_fields={"service": SERVICE, "env": env},
            # RESERVED_ATTRS predates LogRecord.taskName (Python 3.12): plumbing, not data.
            reserved_attrs=[*RESERVED_ATTRS, "taskName"],
            json_serializer=_serialize,
        )
        self._second = None  # format_fields: the last second formatted, and its text
        self._second_text = ""

    def process_log_record(self, log_record):
        """Level names in lower case (``info``, ``warning``), as log shippers label them."""
        log_record["level"] = log_record["level"].lower()
        return log_record

    def format_fields(self, created, level, logger, message, pid, fields):
        """The line ``format`` gives for a record with these attributes and ``fields`` as its
        extras, without making the record: the same members in the same order, serialised by
        this formatter's ``jsonify_log_record`` (python-json-logger's encoder). For lines made
        in bulk (gunicorn's batched access lines); a test holds it equal to ``format``."""
        second = int(created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime(self.default_time_format, self.converter(second))
        log_record = {
            "timestamp": self.default_msec_format % (self._second_text, (created - second) * 1000),
            "level": level, "logger": logger, "message": message, "pid": pid,
            **self.static_fields, **fields,
        }
        return self.jsonify_log_record(self.process_log_record(log_record))


class RequestContextFilter(logging.Filter):
    """Adds the current request's ids, route and user to app log lines written during it."""

    def filter(self, record):
        if has_request_context():
            facts = request.environ.get(ENVIRON_KEY)
            if facts is not None:
                record.request_id = facts.request_id
                record.trace_id = facts.trace_id
                record.user_id = facts.user_id
                record.route = facts.route
            record.method = request.method
            record.path = request.path
        return True


def configure_root_logging(level, env, stream=None):
    """Send every Python logger through one JSON handler (stderr by default)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "vigil"]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name("vigil")
    handler.setFormatter(JsonFormatter(env))
    handler.addFilter(RequestContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    return handler
