"""Each request's telemetry context: request and trace ids, X-Request-ID, route and user.

A WSGI middleware (RequestContextMiddleware) makes the request's RequestFacts before Flask
runs and leaves them in the environ, where gunicorn's access logger reads them after the
response; it puts X-Request-ID on every response and refuses unknown HTTP methods, so
clients cannot mint metric series. A ``before_request`` hook (registered before any other,
so it runs first) notes the matched route and leaves the request id in ``g.request_id``,
where problem bodies read it.
"""
import functools
import os
import re

from flask import g, has_request_context, request

from api import events
from api.errors import problem

#: Key of the request's RequestFacts in the WSGI environ.
ENVIRON_KEY = "vigil.request"
#: The methods HTTP defines (RFC 9110 9.3, PATCH from RFC 5789, QUERY from the httpbis
#: draft). Any other is answered 501 before the app (RFC 9110 9.1); a known method a route
#: does not allow is Flask's 405, with Allow.
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS",
                           "TRACE", "CONNECT", "QUERY"))

#: A client's X-Request-ID is kept only when it is a short token of safe characters, so
#: nobody can inject log lines, JSON or unbounded data through it.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+=/-]{0,127}")
#: W3C Trace Context: version-traceid-parentid-flags, lowercase hex.
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CONVERTER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


class RequestFacts:
    """What telemetry knows of one request: ids, the route template, the authenticated user."""

    __slots__ = ("request_id", "trace_id", "route", "user_id")

    def __init__(self, request_id, trace_id, route=None):
        self.request_id = request_id
        self.trace_id = trace_id
        self.route = route
        self.user_id = None


@functools.lru_cache(maxsize=4096)
def route_template(rule):
    """``/api/v1/content/<id>`` for the rule ``/api/v1/content/<uuid:id>`` (converters dropped)."""
    return _CONVERTER.sub(r"<\1>", rule)


def route(req):
    """The route label of Flask request ``req``: its rule's template, or ``unmatched``.

    Named ``route`` because prometheus-flask-exporter names its ``group_by`` label after
    the function.
    """
    rule = req.url_rule
    return "unmatched" if rule is None else route_template(rule.rule)


def trace_id_of(traceparent):
    """The trace id of a valid W3C traceparent header, else None."""
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match and match[1] != "ff" and match[2] != "0" * 32 and match[3] != "0" * 16:
        return match[2]
    return None


def new_facts(environ):
    """RequestFacts for a WSGI request: the client's ids when they are valid, else new ones.

    New ids are 128 random bits each (32 hex digits), one os.urandom call for both.
    """
    fresh = os.urandom(32).hex()
    given = environ.get("HTTP_X_REQUEST_ID")
    parent = environ.get("HTTP_TRACEPARENT")
    request_id = given if given and _SANE_REQUEST_ID.fullmatch(given) else fresh[:32]
    trace_id = (trace_id_of(parent) if parent else None) or fresh[32:]
    return RequestFacts(request_id, trace_id)


def current_facts():
    """The RequestFacts of the request being handled (None outside one, or telemetry off)."""
    return request.environ.get(ENVIRON_KEY) if has_request_context() else None


class RequestContextMiddleware:
    """WSGI middleware around the Flask app: the request's facts, X-Request-ID, known methods.

    Before the app runs it leaves the request's RequestFacts in the environ (where gunicorn's
    access logger reads them after the response); when the app starts its response it adds
    X-Request-ID to the WSGI header list (cheaper than an ``after_request`` hook, and it
    reaches every response the app sends). A method outside KNOWN_METHODS is answered 501
    problem JSON without running the app: request metrics carry the method as a label, so
    an arbitrary method would mint a series, and RFC 9110 asks for 501 for a method the
    server does not recognise.
    """

    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        facts = environ[ENVIRON_KEY] = new_facts(environ)
        header = ("X-Request-ID", facts.request_id)

        def start_with_request_id(status, headers, exc_info=None):
            headers.append(header)
            return start_response(status, headers, exc_info)

        if environ.get("REQUEST_METHOD") in KNOWN_METHODS:
            return self.wsgi_app(environ, start_with_request_id)
        with self.app.app_context():
            g.request_id = facts.request_id
            response = problem(501, detail="The API does not implement this method.")
        return response(environ, start_with_request_id)


def init_app(app):
    """Request ids, X-Request-ID and the facts gunicorn's access line reads, on ``app``."""

    @app.before_request
    def note_route():
        # The app's first hook: routing is done, nothing can have failed yet.
        facts = request.environ[ENVIRON_KEY]
        facts.route = route(request)
        g.request_id = facts.request_id

    def note_user(sender, user_id=None, **_):
        facts = current_facts()
        if facts is not None:
            facts.user_id = None if user_id is None else str(user_id)

    events.request_authenticated.connect(note_user, sender=app, weak=False)
    app.wsgi_app = RequestContextMiddleware(app, app.wsgi_app)
