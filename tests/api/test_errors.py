"""Every error is RFC 9457 problem JSON: malformed input, routing, crashes, oversized bodies."""
import logging

import pytest
from flask import g

from api.errors import problem

PROBLEM_KEYS = {"type", "title", "status", "request_id"}


def _is_problem(r, status):
    assert r.status_code == status, r.get_data(as_text=True)
    assert r.mimetype == "application/problem+json"
    assert PROBLEM_KEYS <= set(r.json) and r.json["status"] == status
    return r.json


@pytest.mark.parametrize("raw", [b"{bad json", b'{"email": "a@example.com",}', b"\xff\xfe"])
def test_malformed_json_is_400(client, raw):
    r = client.post("/api/v1/auth/register", data=raw, content_type="application/json")
    _is_problem(r, 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_wrong_content_type_is_415(client, content_type):
    r = client.post("/api/v1/auth/register", content_type=content_type,
                    data='{"email": "a@example.com", "password": "correct horse battery"}')
    _is_problem(r, 415)


@pytest.mark.parametrize("raw", [b"[]", b'["a"]', b'"text"', b"42", b"null"])
def test_json_that_is_not_an_object_is_422(client, raw):
    r = client.post("/api/v1/auth/register", data=raw, content_type="application/json")
    problem_body = _is_problem(r, 422)
    assert problem_body["errors"] and all({"field", "message"} == set(e)
                                          for e in problem_body["errors"])


def test_unknown_fields_and_wrong_types_are_422_with_field_errors(client):
    r = client.post("/api/v1/auth/register",
                    json={"email": ["x"], "password": 123456789012, "admin": True})
    body = _is_problem(r, 422)
    assert {e["field"] for e in body["errors"]} == {"email", "password", "admin"}


def test_body_over_one_mebibyte_is_413(client, auth):
    account = auth.signup()
    big = b'{"title": "x", "body": "' + b"y" * (1024 * 1024) + b'"}'
    r = client.post("/api/v1/content", data=big, content_type="application/json",
                    headers=account.headers)
    _is_problem(r, 413)


def test_unknown_route_is_404(client):
    _is_problem(client.get("/api/v1/nowhere"), 404)
    _is_problem(client.get("/nowhere"), 404)


def test_wrong_method_is_405_with_allow(client):
    r = client.put("/api/v1/auth/login", json={})
    _is_problem(r, 405)
    assert "POST" in r.headers["Allow"]


def test_unexpected_exception_is_500_without_a_trace(app, caplog):
    def explode():
        raise RuntimeError("kaboom in the view")

    app.add_url_rule("/api/v1/test-explode", "explode", explode)
    with caplog.at_level(logging.ERROR):
        r = app.test_client().get("/api/v1/test-explode")
    body = _is_problem(r, 500)
    text = r.get_data(as_text=True)
    assert "kaboom" not in text and "Traceback" not in text and "explode" not in text
    assert "request_id" in body
    traced = [rec for rec in caplog.records if rec.exc_info]
    assert traced and "kaboom in the view" in str(traced[0].exc_info[1])


def test_problem_carries_the_request_id(app):
    with app.test_request_context():
        g.request_id = "req-123"  # what telemetry's first hook leaves for every request
        r = problem(418, detail="short and stout", errors=[{"field": "f", "message": "m"}])
    assert r.mimetype == "application/problem+json"
    assert r.json == {"type": "about:blank", "title": "I'm a teapot", "status": 418,
                      "detail": "short and stout", "errors": [{"field": "f", "message": "m"}],
                      "request_id": "req-123"}


def test_error_responses_echo_the_request_id_header(client):
    """When telemetry assigns a request id, problem JSON names the same one."""
    r = client.get("/api/v1/nowhere", headers={"X-Request-ID": "abc-123-def"})
    if "X-Request-ID" not in r.headers:
        pytest.fail("no X-Request-ID on the response: telemetry's request id hook is missing")
    assert r.json["request_id"] == r.headers["X-Request-ID"]


@pytest.mark.parametrize("body", [{"title": "nul\u0000byte"}, {"title": "ok", "body": "a\u0000"},
                                  {"title": "lone \ud800 surrogate"}])
def test_nul_characters_are_422_not_500(client, auth, body):
    """PostgreSQL cannot store NUL in text; schemathesis found this as a 500."""
    r = client.post("/api/v1/content", json=body, headers=auth.signup().headers)
    _is_problem(r, 422)
    r = client.get("/api/v1/content?q=a%00b", headers=auth.signup().headers)
    _is_problem(r, 422)


@pytest.mark.parametrize("raw", [
    b'{"email": "\\ud800@example.com", "password": "correct horse battery"}',
    b'{"email": "a@example.com", "password": "\\udfff correct horse battery"}',
])
def test_lone_surrogates_are_422_not_500(client, raw):
    for path in ("/api/v1/auth/register", "/api/v1/auth/login"):
        r = client.post(path, data=raw, content_type="application/json")
        _is_problem(r, 422)


@pytest.mark.parametrize("raw", [b"[" * 100_000, b'{"a":' * 50_000], ids=["arrays", "objects"])
def test_absurdly_nested_json_is_a_client_error(client, raw):
    r = client.post("/api/v1/auth/register", data=raw, content_type="application/json")
    assert 400 <= r.status_code < 500
    assert r.mimetype == "application/problem+json"


HUGE_NUMBER = b"1" * 5000
STRICT_JSON_CASES = {
    # Python's int() refuses more than 4,300 digits: a ValueError, once a 500
    "huge-integer": b'{"email": "a@example.com", "password": ' + HUGE_NUMBER + b"}",
    "huge-integer-alone": HUGE_NUMBER,
    "duplicate-key": b'{"email": "a@example.com", "email": "b@example.com", '
                     b'"password": "correct horse battery"}',
    "nested-duplicate-key": b'{"title": "t", "x": {"a": 1, "a": 2}}',
    "nan": b'{"email": "a@example.com", "password": NaN}',
    "infinity": b'{"email": "a@example.com", "password": -Infinity}',
    "unterminated-deep-array": b"[" * 100_000,
    "deep-array": b"[" * 50_000 + b"]" * 50_000,
    "unterminated-array": b"[1, 2",
    "empty": b"",
    "blank": b"  \r\n ",
}


@pytest.mark.parametrize("raw", STRICT_JSON_CASES.values(), ids=STRICT_JSON_CASES.keys())
@pytest.mark.parametrize("method, path", [("POST", "/api/v1/auth/register"),
                                          ("POST", "/api/v1/auth/login"),
                                          ("POST", "/api/v1/content"),
                                          ("PATCH", "/api/v1/content/{id}"),
                                          ("POST", "/api/v1/users/me/password")])
def test_every_body_is_strict_json_or_a_400(client, auth, method, path, raw):
    """Malformed JSON is a 400 naming the flaw, never a 500 and never read as an empty body."""
    account = auth.signup()
    item = client.post("/api/v1/content", json={"title": "before"}, headers=account.headers)
    r = client.open(path.format(id=item.json["id"]), method=method, data=raw,
                    content_type="application/json", headers=account.headers)
    body = _is_problem(r, 400)
    assert body["detail"].startswith("The request body is not valid JSON: ")
    after = client.get(item.headers["Location"], headers=account.headers)
    assert after.headers["ETag"] == item.headers["ETag"], "a malformed PATCH changed the item"


def test_duplicate_keys_name_the_key(client):
    r = client.post("/api/v1/auth/login", data=STRICT_JSON_CASES["duplicate-key"],
                    content_type="application/json")
    assert '"email" appears more than once' in _is_problem(r, 400)["detail"]


def test_a_body_without_a_content_type_is_still_required(client, auth):
    account = auth.signup()
    item = client.post("/api/v1/content", json={"title": "before"}, headers=account.headers)
    r = client.patch(item.headers["Location"], headers=account.headers)
    _is_problem(r, 400)
