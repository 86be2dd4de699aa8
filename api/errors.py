"""Every error the API returns, built by one function as RFC 9457 problem JSON."""
import json

from flask import Response, g, has_app_context
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.http import HTTP_STATUS_CODES

from api.passwords import BUSY_RETRY_AFTER, PasswordHashingBusy

PROBLEM_MIMETYPE = "application/problem+json"


class FieldErrorSchema(Schema):
    field = fields.String(required=True)
    message = fields.String(required=True)


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error response carries them."""

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    request_id = fields.String(allow_none=True)
    errors = fields.List(fields.Nested(FieldErrorSchema))


def problem(status, title=None, detail=None, type_=None, errors=None, headers=None):
    """Build an ``application/problem+json`` response for ``status``."""
    body = {
        "type": type_ or "about:blank",
        "title": title or HTTP_STATUS_CODES.get(status, "Error"),
        "status": status,
    }
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    # Telemetry leaves the request's id in g (api.telemetry.context); None when it is off.
    body["request_id"] = g.get("request_id") if has_app_context() else None
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def field_errors(messages, prefix=""):
    """Flatten marshmallow's nested messages into ``[{field, message}]``."""
    out = []
    for key, value in messages.items():
        if key == "_schema":
            name = prefix.rstrip(".") or "body"
        else:
            name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(field_errors(value, f"{name}."))
        else:
            for message in value if isinstance(value, list) else [value]:
                out.append({"field": name, "message": str(message)})
    return out


def validation_problem(errors, detail="The request did not validate."):
    """422 with a list of field errors."""
    return problem(422, "Unprocessable Content", detail, errors=errors)


def handle_http_exception(e):
    """werkzeug and flask-smorest errors: keep the status, reshape the body."""
    status = e.code or 500
    headers = {}
    if status == 405 and getattr(e, "valid_methods", None):
        headers["Allow"] = ", ".join(e.valid_methods)
    data = getattr(e, "data", None) or {}
    messages = data.get("messages")
    if status == 422 and messages:
        errors = []
        for location, by_field in messages.items():
            prefix = "" if location in ("json", "query", "path") else f"{location}."
            errors.extend(field_errors(by_field, prefix))
        return validation_problem(errors)
    detail = e.description if status < 500 else None
    if status == 400 and messages:
        detail = "The request body is not valid JSON."
    return problem(status, detail=detail, headers=headers)


def handle_hashing_busy(e):
    """Every password-hashing slot of the node is taken: 503, try again shortly."""
    return problem(503, detail="Too many password checks at once; retry shortly.",
                   headers={"Retry-After": str(BUSY_RETRY_AFTER)})


def handle_unexpected(e):
    """An exception no handler took: 500 without the trace (Flask has logged it)."""
    return problem(500, detail="An unexpected error occurred; quote the request_id.")


def init_app(app):
    """Route every error through ``problem`` (api.db adds the database-unavailable 503).

    An exception without a handler of its own reaches Flask's ``handle_exception``, which
    logs it, passes it to teardown hooks (prometheus-flask-exporter counts it there) and
    calls the ``InternalServerError`` handler for the response.
    """
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(PasswordHashingBusy, handle_hashing_busy)
    app.register_error_handler(InternalServerError, handle_unexpected)
