"""argon2id at OWASP's parameters or above; no password, token or hash in logs or responses."""
import logging

import pytest
from argon2 import extract_parameters
from argon2.low_level import Type

from api import create_app
from api.config import DEFAULTS, OWASP_ARGON2_MIN, ConfigError
from api.models import User

# OWASP Password Storage Cheat Sheet: argon2id, m >= 19 MiB, t >= 2, p >= 1.
OWASP = {"memory_cost": 19 * 1024, "time_cost": 2, "parallelism": 1}


def test_production_defaults_meet_owasp():
    assert DEFAULTS["ARGON2_MEMORY_KIB"] >= OWASP["memory_cost"]
    assert DEFAULTS["ARGON2_TIME_COST"] >= OWASP["time_cost"]
    assert DEFAULTS["ARGON2_PARALLELISM"] >= OWASP["parallelism"]
    assert OWASP_ARGON2_MIN == {"ARGON2_MEMORY_KIB": 19456, "ARGON2_TIME_COST": 2,
                                "ARGON2_PARALLELISM": 1}


def test_default_hash_is_argon2id_with_the_default_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_JWT_SECRET_KEY", "k" * 40)
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
                      "PASSWORD_HASH_SLOTS_DIR": str(tmp_path / "slots")})
    with app.app_context():
        from api.passwords import hash_password, verify_password

        hashed = hash_password("correct horse battery")
        assert verify_password(hashed, "correct horse battery")
        assert not verify_password(hashed, "correct horse battery!")
    params = extract_parameters(hashed)
    assert params.type is Type.ID
    assert params.memory_cost >= OWASP["memory_cost"]
    assert params.time_cost >= OWASP["time_cost"]
    assert params.parallelism >= OWASP["parallelism"]


def test_stored_hash_is_argon2id(app, auth):
    email, _ = auth.register()
    with app.app_context():
        stored = User.get(User.email == email).password_hash
    assert stored.startswith("$argon2id$")


@pytest.mark.parametrize("weak", [{"ARGON2_MEMORY_KIB": 8192}, {"ARGON2_TIME_COST": 1},
                                  {"ARGON2_PARALLELISM": 0}])
def test_production_refuses_weak_argon2(tmp_path, weak):
    with pytest.raises(ConfigError, match="argon2"):
        create_app({"ENV": "production", "JWT_SECRET_KEY": "k" * 40,
                    "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", **weak})


def test_production_refuses_to_start_without_a_jwt_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_ENV", "production")
    monkeypatch.delenv("VIGIL_JWT_SECRET_KEY", raising=False)
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match="VIGIL_JWT_SECRET_KEY"):
        create_app()
    monkeypatch.setenv("VIGIL_JWT_SECRET_KEY", "short")
    with pytest.raises(ConfigError, match="32"):
        create_app()
    monkeypatch.setenv("VIGIL_JWT_SECRET_KEY", "s" * 48)
    assert create_app().config["ENV"] == "production"


def test_development_shares_one_generated_secret(tmp_path, monkeypatch):
    monkeypatch.delenv("VIGIL_JWT_SECRET_KEY", raising=False)
    monkeypatch.delenv("VIGIL_ENV", raising=False)
    first = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    second = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    assert len(first.config["JWT_SECRET_KEY"]) >= 32
    assert first.config["JWT_SECRET_KEY"] == second.config["JWT_SECRET_KEY"]


def test_no_secret_reaches_a_log_line_or_a_response(app, client, auth, caplog):
    caplog.set_level(logging.DEBUG)
    password, new_password = "a very secret passphrase", "another secret passphrase"
    responses = []
    email, _ = auth.register(password=password)
    responses.append(client.post("/api/v1/auth/login",
                                 json={"email": email, "password": "wrong guess here"}))
    login = client.post("/api/v1/auth/login", json={"email": email, "password": password})
    responses.append(login)
    tokens = login.json
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    responses.append(client.post("/api/v1/auth/refresh", headers={
        "Authorization": f"Bearer {tokens['refresh_token']}"}))
    responses.append(client.get("/api/v1/users/me", headers=headers))
    responses.append(client.post("/api/v1/users/me/password", headers=headers, json={
        "current_password": password, "new_password": new_password}))
    responses.append(client.post("/api/v1/auth/refresh", headers={
        "Authorization": f"Bearer {tokens['refresh_token']}"}))
    with app.app_context():
        stored_hash = User.get(User.email == email).password_hash

    logged = "\n".join(r.getMessage() + " " + str(r.__dict__) for r in caplog.records)
    secrets = [password, new_password, tokens["access_token"], tokens["refresh_token"],
               stored_hash, stored_hash.split("$")[-1]]
    for secret in secrets:
        assert secret not in logged
    answered = " ".join(r.get_data(as_text=True) for r in responses if r is not login)
    for secret in secrets:
        assert secret not in answered
    assert password not in login.get_data(as_text=True)
    assert "argon2" not in answered + login.get_data(as_text=True)


def test_hashes_are_upgraded_at_login_when_the_cost_rises(app, auth):
    email, password = auth.register()
    with app.app_context():
        before = extract_parameters(User.get(User.email == email).password_hash)
    app.config["ARGON2_TIME_COST"] = before.time_cost + 1
    auth.login(email, password)
    with app.app_context():
        after = extract_parameters(User.get(User.email == email).password_hash)
    assert after.time_cost == before.time_cost + 1


def test_unknown_vigil_env_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="VIGIL_ENV"):
        create_app({"ENV": "staging", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
