"""Every bad token on every protected route is a 401 problem, never flask-jwt-extended's 422;
a token verified once is remembered (ADR 0057) and checked as strictly as before."""
import base64
import json
import time
import uuid
from datetime import timedelta

import jwt as pyjwt
import pytest
from flask_jwt_extended import create_access_token

from api import tokens
from api.config import ConfigError
from api.migrate import upgrade
from tests.conftest import make_app

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


def _count_pyjwt_parses(monkeypatch):
    """The names of PyJWT's parsing functions, as they are called from now on."""
    calls = []
    for name in ("decode", "decode_complete", "get_unverified_header"):
        real = getattr(pyjwt, name)
        monkeypatch.setattr(pyjwt, name, lambda *a, _real=real, _name=name, **k: (
            calls.append(_name), _real(*a, **k))[1])
    return calls


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/content?limit=5", "item"])
def test_an_access_token_is_parsed_once_then_remembered(client, auth, monkeypatch, path):
    """One PyJWT decode for a token's first request and none for its next ones, never an
    unverified header parse (ADRs 0056, 0057): flask-jwt-extended's check parsed the token
    four times per request, a quarter of a read's worker time."""
    account = auth.signup()
    calls = _count_pyjwt_parses(monkeypatch)
    if path == "item":
        made = client.post("/api/v1/content", headers=account.headers, json={"title": "t"})
        assert made.status_code == 201 and calls == ["decode"]
        path = f"/api/v1/content/{made.json['id']}"
    else:
        assert client.get(path, headers=account.headers).status_code == 200
        assert calls == ["decode"]
    calls.clear()
    r = client.get(path, headers=account.headers)
    assert r.status_code == 200, r.json
    assert calls == []


def test_a_token_without_a_session_claim_is_revoked(app, client, auth):
    """A validly signed access token naming no session finds no live session."""
    account = auth.signup()
    claims = pyjwt.decode(account.tokens["access_token"], options={"verify_signature": False})
    del claims["sid"]
    token = pyjwt.encode(claims, app.config["JWT_SECRET_KEY"], "HS256")
    r = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and r.json["detail"] == "Token has been revoked."


# Access tokens are verified once and remembered per app (ADR 0057), and stay exactly as
# strict: expiry, the signing key, revocation and bad tokens are all checked as before.
REMEMBERED = "vigil_verified_tokens"
READS = ["/api/v1/users/me", "/api/v1/content?limit=5"]


def _remembered(app):
    return app.extensions[REMEMBERED].cache_info().currsize


class _Clock:
    """``time.time`` of api.tokens, moved ``offset`` seconds from the real one."""

    def __init__(self, offset):
        self.offset = offset

    def time(self):
        return time.time() + self.offset


def test_a_remembered_token_still_expires(app, client, auth, monkeypatch):
    """The signature is remembered, the expiry is not: once past ``exp`` the token is a 401
    with the same detail PyJWT's check gives."""
    account = auth.signup()
    assert client.get("/api/v1/users/me", headers=account.headers).status_code == 200
    assert _remembered(app) == 1
    ttl = app.config["ACCESS_TOKEN_TTL_SECONDS"]
    monkeypatch.setattr(tokens, "time", _Clock(ttl + 1))
    for path in READS:
        r = client.get(path, headers=account.headers)
        assert r.status_code == 401 and r.json["detail"] == "Token has expired.", path
        assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    monkeypatch.setattr(tokens, "time", _Clock(ttl - 60))  # a minute before: still good
    assert client.get("/api/v1/users/me", headers=account.headers).status_code == 200


def test_a_refused_token_is_never_remembered(app, client, auth, monkeypatch):
    """A token with a forged signature is checked, and refused, on every request."""
    account = auth.signup()
    header, payload, _ = account.tokens["access_token"].split(".")
    forged = {"Authorization": f"Bearer {header}.{payload}.{'A' * 43}"}
    calls = _count_pyjwt_parses(monkeypatch)
    for _ in range(3):
        r = client.get("/api/v1/users/me", headers=forged)
        assert r.status_code == 401 and r.json["detail"] == "Invalid token."
    assert calls == ["decode"] * 3
    assert _remembered(app) == 0


def test_a_remembered_token_is_refused_under_another_key(app, client, auth):
    """A token is remembered with the key that verified it: after the key changes, a token
    signed with the old one is refused, not served from memory."""
    account = auth.signup()
    assert client.get("/api/v1/users/me", headers=account.headers).status_code == 200
    app.config["JWT_SECRET_KEY"] = "another-key-" + "y" * 40
    r = client.get("/api/v1/users/me", headers=account.headers)
    assert r.status_code == 401 and r.json["detail"] == "Invalid token."


def test_a_remembered_token_is_refused_after_logout(client, auth):
    """Revocation is checked in the database on every request, remembered token or not."""
    account = auth.signup()
    made = client.post("/api/v1/content", headers=account.headers, json={"title": "t"})
    paths = [*READS, f"/api/v1/content/{made.json['id']}"]
    for path in paths:
        assert client.get(path, headers=account.headers).status_code == 200, path
    assert client.post("/api/v1/auth/logout", headers=account.headers).status_code == 204
    for path in paths:
        r = client.get(path, headers=account.headers)
        assert r.status_code == 401 and r.json["detail"] == "Token has been revoked.", path


def test_a_refresh_token_is_refused_as_access_token_every_time(client, auth):
    """A refresh token passes PyJWT's check and is remembered; its type is still checked."""
    account = auth.signup()
    for _ in range(2):
        r = client.get("/api/v1/users/me", headers=account.refresh_headers)
        assert r.status_code == 401 and r.json["detail"] == "Invalid token."


def test_remembered_claims_are_a_copy(app, auth):
    """Each request gets its own claims: changing them changes nothing remembered."""
    token = auth.signup().tokens["access_token"]
    first = tokens.decode_access_token(token, app)
    first["sub"] = "someone else"
    assert tokens.decode_access_token(token, app)["sub"] != "someone else"


def test_at_most_the_configured_number_of_tokens_are_remembered(app, auth):
    """Least recently used first out: memory stays bounded whatever the clients send."""
    app.extensions[REMEMBERED] = tokens.VerifiedTokens(2)
    account = auth.signup()
    for _ in range(3):
        fresh = auth.login(account.email, account.password)["access_token"]
        tokens.decode_access_token(fresh, app)
    assert app.extensions[REMEMBERED].cache_info().currsize == 2


def test_size_zero_verifies_every_request(monkeypatch, tmp_path):
    """VERIFIED_TOKEN_CACHE_SIZE=0: PyJWT checks the signature on every request."""
    app = make_app(f"sqlite:///{tmp_path / 'zero.db'}", VERIFIED_TOKEN_CACHE_SIZE=0)
    with app.app_context():
        upgrade()
    zero = app.test_client()
    creds = {"email": "zero@example.com", "password": "correct horse battery"}
    assert zero.post("/api/v1/auth/register", json=creds).status_code == 201
    token = zero.post("/api/v1/auth/login", json=creds).json["access_token"]
    calls = _count_pyjwt_parses(monkeypatch)
    for _ in range(2):
        assert zero.get("/api/v1/users/me",
                        headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert calls == ["decode", "decode"]
    assert app.extensions[REMEMBERED].cache_info().currsize == 0


@pytest.mark.parametrize("size", [-1, "many", True, 1.5])
def test_a_bad_cache_size_refuses_to_start(size, tmp_path):
    with pytest.raises(ConfigError, match="VIGIL_VERIFIED_TOKEN_CACHE_SIZE"):
        make_app(f"sqlite:///{tmp_path / 'bad.db'}", VERIFIED_TOKEN_CACHE_SIZE=size)


def test_the_size_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_VERIFIED_TOKEN_CACHE_SIZE", "7")
    app = make_app(f"sqlite:///{tmp_path / 'env.db'}")
    assert app.extensions[REMEMBERED].cache_info().maxsize == 7
