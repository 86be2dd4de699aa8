"""Registration, login, lockout, refresh rotation with reuse detection, logout."""
import threading
import time
import unicodedata

import pytest
from flask_jwt_extended import decode_token

from api import accounts
from api.sessions import count_active_sessions
from tests.conftest import make_app

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"


def test_register_returns_the_account_with_a_lower_cased_email(client):
    r = client.post(REGISTER, json={"email": "Ada.Lovelace@Example.COM", "password": "p" * 12})
    assert r.status_code == 201
    assert set(r.json) == {"id", "email", "created_at"}
    assert r.json["email"] == "ada.lovelace@example.com"
    assert r.json["created_at"].endswith("Z")


@pytest.mark.parametrize("body, field", [
    ({"email": "not-an-email", "password": "p" * 12}, "email"),
    ({"email": "a@", "password": "p" * 12}, "email"),
    ({"email": "a@example.com", "password": "p" * 11}, "password"),
    ({"email": "a@example.com", "password": "p" * 129}, "password"),
    ({"email": "a@example.com"}, "password"),
    ({"password": "p" * 12}, "email"),
    ({"email": 7, "password": "p" * 12}, "email"),
])
def test_register_rejects_bad_input(client, body, field):
    r = client.post(REGISTER, json=body)
    assert r.status_code == 422
    assert r.mimetype == "application/problem+json"
    assert field in [e["field"] for e in r.json["errors"]]


def test_password_bounds_are_inclusive(client):
    assert client.post(REGISTER, json={"email": "a@example.com", "password": "p" * 12}
                       ).status_code == 201
    assert client.post(REGISTER, json={"email": "b@example.com", "password": "p" * 128}
                       ).status_code == 201


def test_register_twice_is_a_conflict_whatever_the_case(client):
    client.post(REGISTER, json={"email": "a@example.com", "password": "p" * 12})
    r = client.post(REGISTER, json={"email": "A@EXAMPLE.com", "password": "q" * 12})
    assert r.status_code == 409
    assert r.mimetype == "application/problem+json"


def test_login_returns_a_bearer_pair(client, auth, app):
    email, password = auth.register()
    r = client.post(LOGIN, json={"email": email.upper(), "password": password})
    assert r.status_code == 200
    assert r.json["token_type"] == "Bearer"
    assert r.json["expires_in"] == 1800
    with app.app_context():
        access = decode_token(r.json["access_token"])
        refresh = decode_token(r.json["refresh_token"])
    assert access["type"] == "access" and refresh["type"] == "refresh"
    assert access["exp"] - access["iat"] == 30 * 60
    assert refresh["exp"] - refresh["iat"] == 7 * 24 * 3600


@pytest.mark.parametrize("app_config", [
    {"ACCESS_TOKEN_TTL_SECONDS": 60, "REFRESH_TOKEN_TTL_SECONDS": 3600}])
def test_token_lifetimes_are_configurable(auth, app):
    account = auth.signup()
    assert account.tokens["expires_in"] == 60
    with app.app_context():
        access = decode_token(account.tokens["access_token"])
        refresh = decode_token(account.tokens["refresh_token"])
    assert access["exp"] - access["iat"] == 60
    assert refresh["exp"] - refresh["iat"] == 3600


def test_unknown_email_and_wrong_password_get_the_same_answer(client, auth):
    email, _ = auth.register()
    wrong = client.post(LOGIN, json={"email": email, "password": "wrong password!"})
    unknown = client.post(LOGIN, json={"email": "nobody@example.com", "password": "whatever"})
    assert wrong.status_code == unknown.status_code == 401
    strip = {"request_id"}
    assert ({k: v for k, v in wrong.json.items() if k not in strip}
            == {k: v for k, v in unknown.json.items() if k not in strip})


def _fail(client, email, times):
    for _ in range(times):
        assert client.post(LOGIN, json={"email": email, "password": "bad password!"}
                           ).status_code == 401


def test_ten_failures_lock_the_account_even_for_the_right_password(client, auth):
    email, password = auth.register()
    _fail(client, email, 10)
    r = client.post(LOGIN, json={"email": email, "password": password})
    assert r.status_code == 429
    assert r.mimetype == "application/problem+json"
    assert 0 < int(r.headers["Retry-After"]) <= 15 * 60


def test_nine_failures_do_not_lock_and_success_resets_the_count(client, auth):
    email, password = auth.register()
    _fail(client, email, 9)
    assert client.post(LOGIN, json={"email": email, "password": password}).status_code == 200
    _fail(client, email, 9)
    assert client.post(LOGIN, json={"email": email, "password": password}).status_code == 200


@pytest.mark.parametrize("app_config", [{"LOCKOUT_THRESHOLD": 3, "LOCKOUT_WINDOW_SECONDS": 4}])
def test_lockout_threshold_and_window_are_configurable_and_lift(client, auth):
    email, password = auth.register()
    _fail(client, email, 3)
    r = client.post(LOGIN, json={"email": email, "password": password})
    assert r.status_code == 429
    retry_after = int(r.headers["Retry-After"])
    assert 1 <= retry_after <= 4
    time.sleep(retry_after + 0.1)
    assert client.post(LOGIN, json={"email": email, "password": password}).status_code == 200


def test_unknown_emails_lock_out_the_same_way(client, auth):
    """A 429 must not reveal that an account exists."""
    known, _ = auth.register()
    unknown = "nobody-here@example.com"
    _fail(client, known, 10)
    _fail(client, unknown, 10)
    answers = [client.post(LOGIN, json={"email": email, "password": "bad password!"})
               for email in (known, unknown)]
    assert [a.status_code for a in answers] == [429, 429]
    assert answers[0].json["detail"] == answers[1].json["detail"]
    assert abs(int(answers[0].headers["Retry-After"])
               - int(answers[1].headers["Retry-After"])) <= 2


def test_lockout_counts_the_normalised_email(client, auth):
    email, password = auth.register()
    _fail(client, email.upper(), 10)
    assert client.post(LOGIN, json={"email": email, "password": password}).status_code == 429


def test_lockout_of_one_account_leaves_others_alone(client, auth):
    victim, _ = auth.register()
    other, password = auth.register()
    _fail(client, victim, 10)
    assert client.post(LOGIN, json={"email": other, "password": password}).status_code == 200


def test_refresh_rotates_the_pair(client, auth):
    account = auth.signup()
    r = client.post(REFRESH, headers=account.refresh_headers)
    assert r.status_code == 200
    assert r.json["refresh_token"] != account.tokens["refresh_token"]
    new = {"Authorization": f"Bearer {r.json['access_token']}"}
    assert client.get(ME, headers=new).status_code == 200
    again = client.post(REFRESH, headers={"Authorization": f"Bearer {r.json['refresh_token']}"})
    assert again.status_code == 200


def test_reusing_a_spent_refresh_token_revokes_the_whole_session(client, auth):
    account = auth.signup()
    other_session = auth.login(account.email, account.password)
    rotated = client.post(REFRESH, headers=account.refresh_headers).json
    reuse = client.post(REFRESH, headers=account.refresh_headers)
    assert reuse.status_code == 401
    assert reuse.mimetype == "application/problem+json"
    # every token of that login is dead: the first access token and the rotated pair
    assert client.get(ME, headers=account.headers).status_code == 401
    assert client.get(ME, headers={
        "Authorization": f"Bearer {rotated['access_token']}"}).status_code == 401
    assert client.post(REFRESH, headers={
        "Authorization": f"Bearer {rotated['refresh_token']}"}).status_code == 401
    # another login of the same user is a different family and lives on
    assert client.get(ME, headers={
        "Authorization": f"Bearer {other_session['access_token']}"}).status_code == 200


def test_logout_rejects_that_access_token_and_its_refresh_token(client, auth):
    account = auth.signup()
    other = auth.login(account.email, account.password)
    assert client.post("/api/v1/auth/logout", headers=account.headers).status_code == 204
    assert client.get(ME, headers=account.headers).status_code == 401
    assert client.post(REFRESH, headers=account.refresh_headers).status_code == 401
    assert client.get(ME, headers={
        "Authorization": f"Bearer {other['access_token']}"}).status_code == 200


def test_logout_all_revokes_every_session(client, auth, app):
    account = auth.signup()
    second = auth.login(account.email, account.password)
    with app.app_context():
        assert count_active_sessions() == 2
    assert client.post("/api/v1/auth/logout-all", headers=account.headers).status_code == 204
    for tokens in (account.tokens, second):
        assert client.get(ME, headers={
            "Authorization": f"Bearer {tokens['access_token']}"}).status_code == 401
        assert client.post(REFRESH, headers={
            "Authorization": f"Bearer {tokens['refresh_token']}"}).status_code == 401
    with app.app_context():
        assert count_active_sessions() == 0
    # a fresh login still works
    assert auth.login(account.email, account.password)["access_token"]


def test_revocation_lives_in_the_database_not_the_process(auth, app):
    """A second app on the same database (another worker, node or a restart) agrees."""
    account = auth.signup()
    assert app.test_client().post("/api/v1/auth/logout", headers=account.headers
                                  ).status_code == 204
    other_node = make_app(app.config["DATABASE_URL"])
    other = other_node.test_client()
    assert other.get(ME, headers=account.headers).status_code == 401
    assert other.post(REFRESH, headers=account.refresh_headers).status_code == 401


EMAIL_FORMS = {
    "nfd": unicodedata.normalize("NFD", "José@Bücher.example"),
    "fullwidth-domain": "jose@ｂｕｃｈｅｒ.example",
    "punycode": "Jose@xn--bcher-kva.example",
    "upper-case": "JOSE@EXAMPLE.COM",
}


@pytest.mark.parametrize("form", EMAIL_FORMS.values(), ids=EMAIL_FORMS.keys())
def test_login_accepts_exactly_the_string_that_registered(client, form):
    """Register and login share one normalisation: whatever registered also logs in."""
    r = client.post(REGISTER, json={"email": form, "password": "correct horse battery"})
    assert r.status_code == 201, r.json
    stored = r.json["email"]
    for login_form in (form, stored):
        r = client.post(LOGIN, json={"email": login_form, "password": "correct horse battery"})
        assert r.status_code == 200, (login_form, r.json)
    r = client.post(REGISTER, json={"email": stored, "password": "correct horse battery"})
    assert r.status_code == 409


def test_failures_under_every_form_count_toward_one_lockout(client):
    client.post(REGISTER, json={"email": EMAIL_FORMS["nfd"], "password": "correct horse battery"})
    forms = [EMAIL_FORMS["nfd"], "josé@bücher.example", "José@xn--bcher-kva.example"]
    for i in range(10):
        client.post(LOGIN, json={"email": forms[i % 3], "password": "wrong password!"})
    r = client.post(LOGIN, json={"email": "josé@bücher.example",
                                 "password": "correct horse battery"})
    assert r.status_code == 429


@pytest.mark.parametrize("path", [REGISTER, LOGIN])
@pytest.mark.parametrize("email", [" ada@example.com", "ada@example.com ", "\tada@example.com"])
def test_surrounding_spaces_are_refused_alike_by_register_and_login(client, path, email):
    r = client.post(path, json={"email": email, "password": "correct horse battery"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json["errors"]] == ["email"]


def test_deactivate_cli_normalises_the_email(app, client):
    client.post(REGISTER, json={"email": EMAIL_FORMS["nfd"], "password": "correct horse battery"})
    result = app.test_cli_runner().invoke(args=["users", "deactivate",
                                                EMAIL_FORMS["punycode"].replace("Jose", "José")])
    assert result.exit_code == 0, result.output
    r = client.post(LOGIN, json={"email": EMAIL_FORMS["nfd"], "password": "correct horse battery"})
    assert r.status_code == 401


PARALLEL_GUESSES = 8


@pytest.mark.parametrize("earlier_failures", [0, 6])
@pytest.mark.parametrize("path", [LOGIN, "/api/v1/users/me/password"])
def test_lockout_threshold_is_exact_under_concurrency(app, auth, monkeypatch, earlier_failures,
                                                      path):
    """Eight parallel wrong passwords: never more than the threshold of password checks."""
    account = auth.signup()
    checks, lock = [], threading.Lock()
    real_verify = accounts.verify_password

    def slow_counted_verify(password_hash, password):
        with lock:
            checks.append(password)
        time.sleep(0.05)  # keeps every guess in flight at once
        return real_verify(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", slow_counted_verify)
    if path == LOGIN:
        body = {"email": account.email, "password": "bad password!"}
    else:
        body = {"current_password": "bad password!", "new_password": "another long password"}
    headers = account.headers if path != LOGIN else {}
    client = app.test_client()
    for _ in range(earlier_failures):
        assert client.post(path, json=body, headers=headers).status_code in (401, 422)
    barrier = threading.Barrier(PARALLEL_GUESSES)
    statuses = []

    def guess():
        barrier.wait(10)
        status = app.test_client().post(path, json=body, headers=headers).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=guess) for _ in range(PARALLEL_GUESSES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    threshold = 10
    expected_checks = min(threshold, earlier_failures + PARALLEL_GUESSES)
    assert len(checks) == expected_checks, f"{len(checks)} password checks, threshold 10"
    assert statuses.count(429) == earlier_failures + PARALLEL_GUESSES - expected_checks, statuses
