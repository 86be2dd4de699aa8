"""Migrations: versioned, idempotent, concurrent-safe, never implicit at request time."""
import threading

import pytest

from api.db import database
from api.migrate import applied_versions, available_migrations, upgrade
from tests.conftest import make_app, scratch_database


def test_upgrade_is_idempotent(app):
    with app.app_context():
        assert upgrade() == []
        assert applied_versions(database.obj) == {v for v, _ in available_migrations()}


def test_migration_files_are_numbered_in_the_api_range():
    versions = [v for v, _ in available_migrations()]
    assert versions[0] == 1 and versions == sorted(set(versions))


@pytest.fixture
def empty_url(backend, request, tmp_path):
    """A database URL with no tables yet, on either backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    with scratch_database(request.getfixturevalue("postgres_server_url")) as url:
        yield url
        if database.obj is not None:
            database.obj.close_all()


def test_app_never_creates_tables_at_request_time(empty_url):
    app = make_app(empty_url)
    client = app.test_client()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert "migrations pending" in ready.json["detail"]
    r = client.post("/api/v1/auth/register",
                    json={"email": "a@example.com", "password": "x" * 12})
    assert r.status_code >= 500 and r.mimetype == "application/problem+json"
    with app.app_context():
        assert database.obj.get_tables() == []


def test_concurrent_upgrades_apply_each_migration_once(empty_url):
    app = make_app(empty_url)
    results, failures = [], []

    def run():
        try:
            with app.app_context():
                results.append(upgrade())
                database.close()
        except Exception as e:  # collected and asserted below
            failures.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures
    assert sorted(len(r) for r in results) == [0, 0, 0, len(available_migrations())]
