"""The caller's account, password change and deactivated users."""
from api.sessions import count_active_sessions

ME = "/api/v1/users/me"
PASSWORD = "/api/v1/users/me/password"
LOGIN = "/api/v1/auth/login"


def test_me_returns_the_account(client, auth):
    account = auth.signup("Me@Example.com")
    r = client.get(ME, headers=account.headers)
    assert r.status_code == 200
    assert set(r.json) == {"id", "email", "is_active", "created_at"}
    assert r.json["email"] == "me@example.com" and r.json["is_active"] is True


def test_password_change_revokes_every_other_session(client, auth):
    account = auth.signup()
    other = auth.login(account.email, account.password)
    r = client.post(PASSWORD, headers=account.headers, json={
        "current_password": account.password, "new_password": "a brand new passphrase"})
    assert r.status_code == 204
    assert client.get(ME, headers=account.headers).status_code == 200
    assert client.post("/api/v1/auth/refresh", headers=account.refresh_headers
                       ).status_code == 200
    assert client.get(ME, headers={
        "Authorization": f"Bearer {other['access_token']}"}).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers={
        "Authorization": f"Bearer {other['refresh_token']}"}).status_code == 401
    assert client.post(LOGIN, json={"email": account.email, "password": account.password}
                       ).status_code == 401
    assert client.post(LOGIN, json={"email": account.email,
                                    "password": "a brand new passphrase"}).status_code == 200


def test_password_change_needs_the_current_password(client, auth):
    account = auth.signup()
    r = client.post(PASSWORD, headers=account.headers, json={
        "current_password": "not my password", "new_password": "a brand new passphrase"})
    assert r.status_code == 422
    assert r.json["errors"][0]["field"] == "current_password"
    assert client.post(LOGIN, json={"email": account.email, "password": account.password}
                       ).status_code == 200


def test_new_password_is_length_checked(client, auth):
    account = auth.signup()
    r = client.post(PASSWORD, headers=account.headers, json={
        "current_password": account.password, "new_password": "short"})
    assert r.status_code == 422
    assert r.json["errors"] == [{"field": "new_password",
                                 "message": r.json["errors"][0]["message"]}]


def test_deactivated_user_cannot_log_in_and_its_tokens_die(app, client, auth):
    account = auth.signup()
    result = app.test_cli_runner().invoke(args=["users", "deactivate", account.email.upper()])
    assert result.exit_code == 0, result.output
    assert client.get(ME, headers=account.headers).status_code == 401
    assert client.post("/api/v1/auth/refresh", headers=account.refresh_headers
                       ).status_code == 401
    r = client.post(LOGIN, json={"email": account.email, "password": account.password})
    assert r.status_code == 401
    with app.app_context():
        assert count_active_sessions() == 0


def test_deactivating_an_unknown_email_fails_clearly(app):
    result = app.test_cli_runner().invoke(args=["users", "deactivate", "ghost@example.com"])
    assert result.exit_code != 0
    assert "no account" in result.output


def test_guessing_the_current_password_locks_out(client, auth):
    account = auth.signup()
    guess = {"current_password": "not my password", "new_password": "a brand new passphrase"}
    for _ in range(10):
        assert client.post(PASSWORD, headers=account.headers, json=guess).status_code == 422
    r = client.post(PASSWORD, headers=account.headers, json={
        "current_password": account.password, "new_password": "a brand new passphrase"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert client.post(LOGIN, json={"email": account.email, "password": account.password}
                       ).status_code == 429
