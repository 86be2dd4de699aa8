"""Every bad token on every protected route is a 401 problem, never flask-jwt-extended's 422."""
import base64
import json
import uuid
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

PROTECTED = [
    ("GET", "/api/v1/users/me", None),
    ("POST", "/api/v1/users/me/password",
     {"current_password": "correct horse battery", "new_password": "another long pass"}),
    ("POST", "/api/v1/auth/logout", None),
    ("POST", "/api/v1/auth/logout-all", None),
    ("GET", "/api/v1/content", None),
    ("POST", "/api/v1/content", {"title": "t"}),
    ("GET", f"/api/v1/content/{uuid.uuid4()}", None),
    ("PATCH", f"/api/v1/content/{uuid.uuid4()}", {"title": "t"}),
    ("DELETE", f"/api/v1/content/{uuid.uuid4()}", None),
]


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens(app, account):
    """Header values that must each be refused."""
    access = account.tokens["access_token"]
    header, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "==="))
    claims_other = {**claims, "sub": str(uuid.uuid4())}
    with app.app_context():
        expired = create_access_token(identity=claims["sub"], additional_claims={
            "sid": claims["sid"]}, expires_delta=timedelta(seconds=-60))
    return {
        "missing": None,
        "empty bearer": "Bearer ",
        "basic scheme": "Basic dXNlcjpwYXNz",
        "garbage": "Bearer not.a.jwt",
        "expired": f"Bearer {expired}",
        "tampered payload": f"Bearer {header}.{_b64(claims_other)}.{signature}",
        "tampered signature": f"Bearer {header}.{payload}.{signature[::-1]}",
        "alg none": "Bearer " + _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(claims) + ".",
        "wrong secret": "Bearer " + pyjwt.encode(claims, "x" * 32 + "another secret", "HS256"),
        "refresh as access": f"Bearer {account.tokens['refresh_token']}",
    }


# The 401 detail of each bad token (the rest: "Invalid token."), as flask-jwt-extended's loaders
# gave it before Vigil checked access tokens itself (ADR 0056).
EXPECTED_DETAIL = {
    "missing": "Missing bearer token.",
    "basic scheme": "Missing bearer token.",
    "expired": "Token has expired.",
}


@pytest.mark.parametrize("method, path, body", PROTECTED)
def test_bad_tokens_are_401_problems(app, client, auth, method, path, body):
    account = auth.signup()
    for name, value in _bad_tokens(app, account).items():
        headers = {"Authorization": value} if value is not None else {}
        r = client.open(path, method=method, json=body, headers=headers)
        assert r.status_code == 401, (name, r.status_code, r.json)
        assert r.mimetype == "application/problem+json", name
        assert r.json["status"] == 401 and "request_id" in r.json
        assert r.json["detail"] == EXPECTED_DETAIL.get(name, "Invalid token."), name
        assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', name


@pytest.mark.parametrize("method, path, body", PROTECTED)
def test_revoked_access_token_is_401_everywhere(client, auth, method, path, body):
    account = auth.signup()
    assert client.post("/api/v1/auth/logout", headers=account.headers).status_code == 204
    r = client.open(path, method=method, json=body, headers=account.headers)
    assert r.status_code == 401
    assert r.mimetype == "application/problem+json"


def test_access_token_cannot_refresh(client, auth):
    account = auth.signup()
    r = client.post("/api/v1/auth/refresh", headers=account.headers)
    assert r.status_code == 401
    assert r.mimetype == "application/problem+json"


def test_refresh_needs_a_token(client):
    r = client.post("/api/v1/auth/refresh")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/content", {"title": ""}),
    ("GET", "/api/v1/content?limit=0", None),
    ("PATCH", f"/api/v1/content/{uuid.uuid4()}", {"nope": 1}),
    ("POST", "/api/v1/users/me/password", {}),
])
def test_authentication_comes_before_validation(client, method, path, body):
    """An anonymous caller learns nothing from validation errors: 401 first."""
    r = client.open(path, method=method, json=body)
    assert r.status_code == 401


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR"])
def test_the_bearer_scheme_is_case_insensitive(client, auth, scheme):
    """RFC 9110 11.1: the authentication scheme is case-insensitive."""
    account = auth.signup()
    token = account.tokens["access_token"]
    r = client.get("/api/v1/users/me", headers={"Authorization": f"{scheme} {token}"})
    assert r.status_code == 200, r.json
    r = client.post("/api/v1/auth/refresh",
                    headers={"Authorization": f"{scheme} {account.tokens['refresh_token']}"})
    assert r.status_code == 200, r.json


@pytest.mark.parametrize("value", ["Bearerx {token}", "Basic {token}", "{token}", "Bearer"])
def test_other_schemes_are_still_refused(client, auth, value):
    token = auth.signup().tokens["access_token"]
    r = client.get("/api/v1/users/me", headers={"Authorization": value.format(token=token)})
    assert r.status_code == 401


def test_token_responses_are_never_cached(client, auth):
    """RFC 6749 5.1: Cache-Control: no-store on every response that carries tokens."""
    email, password = auth.register()
    login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert login.headers["Cache-Control"] == "no-store"
    r = client.post("/api/v1/auth/refresh",
                    headers={"Authorization": f"Bearer {login.json['refresh_token']}"})
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("how", ["logout", "deactivate", "expired session"])
def test_a_dead_session_cannot_read_even_a_published_item(app, client, auth, how):
    """Reads check the session in the item's own query: a dead one is 401, never the item."""
    owner = auth.signup()
    reader = auth.signup()
    item = client.post("/api/v1/content", json={"title": "public", "is_published": True},
                       headers=owner.headers)
    urls = [item.headers["Location"], "/api/v1/content/not-a-uuid",
            f"/api/v1/content/{uuid.uuid4()}", "/api/v1/content"]
    for url in urls:
        assert client.get(url, headers=reader.headers).status_code in (200, 404)
    if how == "logout":
        client.post("/api/v1/auth/logout", headers=reader.headers)
    elif how == "deactivate":
        app.test_cli_runner().invoke(args=["users", "deactivate", reader.email])
    else:
        from api.models import RefreshSession
        from api.models import utcnow as now
        with app.app_context():
            RefreshSession.update(expires_at=now()).execute()
    for url in urls:
        r = client.get(url, headers=reader.headers)
        assert r.status_code == 401, (url, r.json)
        assert r.json["detail"] == "Token has been revoked."


@pytest.mark.parametrize("query", ["limit=0", "cursor=garbage", "owner=someone&limit=x"])
def test_a_dead_session_gets_401_before_the_lists_422(client, auth, query):
    """The list checks the session in its page query; arguments that fail validation first
    still answer 401 for a dead session, so it learns nothing from them."""
    reader = auth.signup()
    url = f"/api/v1/content?{query}"
    assert client.get(url, headers=reader.headers).status_code == 422
    client.post("/api/v1/auth/logout", headers=reader.headers)
    r = client.get(url, headers=reader.headers)
    assert r.status_code == 401, r.json
    assert r.json["detail"] == "Token has been revoked."


def test_tokens_carry_only_the_claims_the_api_reads(client, auth):
    """No cookie CSRF claim: tokens only travel in the Authorization header, and every claim
    is parsed on every request."""
    tokens = auth.signup().tokens
    for token, kind in ((tokens["access_token"], "access"), (tokens["refresh_token"], "refresh")):
        claims = pyjwt.decode(token, options={"verify_signature": False})
        assert set(claims) == {"sub", "sid", "jti", "type", "fresh", "iat", "nbf", "exp"}
        assert claims["type"] == kind


def test_the_api_sets_no_cookie(client, auth):
    """The API keeps no Flask session: no response sets a cookie."""
    account = auth.signup()
    for r in (client.get("/api/v1/users/me", headers=account.headers),
              client.post("/api/v1/content", headers=account.headers, json={"title": "t"}),
              client.get("/api/v1/content", headers=account.headers)):
        assert r.status_code in (200, 201) and "Set-Cookie" not in r.headers


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/content?limit=5", "item"])
def test_an_access_token_is_parsed_once_per_request(client, auth, monkeypatch, path):
    """One PyJWT decode per request, no unverified header parse (ADR 0056): flask-jwt-extended's
    check parsed the token four times, a quarter of a read's worker time."""
    account = auth.signup()
    if path == "item":
        made = client.post("/api/v1/content", headers=account.headers, json={"title": "t"})
        path = f"/api/v1/content/{made.json['id']}"
    calls = []
    for name in ("decode", "decode_complete", "get_unverified_header"):
        real = getattr(pyjwt, name)
        monkeypatch.setattr(pyjwt, name, lambda *a, _real=real, _name=name, **k: (
            calls.append(_name), _real(*a, **k))[1])
    r = client.get(path, headers=account.headers)
    assert r.status_code == 200, r.json
    assert calls == ["decode"]


def test_a_token_without_a_session_claim_is_revoked(app, client, auth):
    """A validly signed access token naming no session finds no live session."""
    account = auth.signup()
    claims = pyjwt.decode(account.tokens["access_token"], options={"verify_signature": False})
    del claims["sid"]
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], "HS256")
    r = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json["detail"] == "Token has been revoked."
