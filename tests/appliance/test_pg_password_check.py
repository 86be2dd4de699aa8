"""The postgresql role's password checker (files/vigil-pg-password-check.py) against the SCRAM
verifiers a real PostgreSQL stores: what makes deleting a secret file rotate the role's
password (issue 14: roles were never altered once created)."""
import importlib.util
import uuid

import psycopg2
import pytest
from appliance_env import ROLES

pytestmark = pytest.mark.postgres

_spec = importlib.util.spec_from_file_location(
    "vigil_pg_password_check", ROLES / "postgresql" / "files" / "vigil-pg-password-check.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)


@pytest.fixture
def verifier(postgres_server_url):
    """(stored SCRAM verifier, password) of a throwaway login role."""
    role, password = f"pwcheck_{uuid.uuid4().hex[:8]}", "Ab3" + uuid.uuid4().hex
    conn = psycopg2.connect(postgres_server_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SET password_encryption = 'scram-sha-256'")
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (password,))
            cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))
            yield cur.fetchone()[0], password
            cur.execute(f"DROP ROLE {role}")
    finally:
        conn.close()


def test_the_servers_verifier_matches_the_password_it_was_made_from(verifier):
    stored, password = verifier
    assert stored.startswith("SCRAM-SHA-256$")
    assert check.verifier_matches(stored, password)


@pytest.mark.parametrize("other", ["", "wrong", "Ab3", "x" * 64])
def test_another_password_does_not_match(verifier, other):
    stored, _ = verifier
    assert not check.verifier_matches(stored, other)


def test_a_password_that_is_not_scram_never_matches(verifier):
    _, password = verifier
    assert not check.verifier_matches("md5" + "0" * 32, password)
    assert not check.verifier_matches("", password)


def test_a_bad_role_name_is_refused_before_any_query(capsys):
    assert check.main(["robert'); DROP TABLE users;--", "/nonexistent"]) == 3
