"""The database layer: URL mapping, pooling, WAL, per-statement timing signal, health checks."""
import os
import threading

import pytest
from peewee import DatabaseError
from playhouse.pool import PooledPostgresqlDatabase

from api import create_app, events
from api.db import (
    TimedPooledPostgresqlDatabase,
    TimedSqliteDatabase,
    _numbered_parameters,
    close_database,
    database,
    pool_stats,
)
from api.migrate import upgrade
from api.sessions import count_active_sessions
from tests.conftest import AuthActions, _truncate_all, make_app


def test_backend_is_what_the_url_says(app, backend):
    db = app.extensions["vigil_database"]
    assert database.obj is db
    if backend == "sqlite":
        assert isinstance(db, TimedSqliteDatabase)
        with app.app_context():
            assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert pool_stats(db) is None
    else:
        assert isinstance(db, TimedPooledPostgresqlDatabase)
        assert isinstance(db, PooledPostgresqlDatabase)


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+pool"])
def test_postgres_urls_are_pooled(tmp_path, scheme):
    app = create_app({"DATABASE_URL": f"{scheme}://u:p@127.0.0.1:1/db", "DB_POOL_MAX": 7,
                      "JWT_SECRET_KEY": "k" * 40})
    db = app.extensions["vigil_database"]
    assert isinstance(db, TimedPooledPostgresqlDatabase)
    assert pool_stats(db) == {"in_use": 0, "idle": 0, "max": 7}
    assert app.config["DB_POOL_MAX"] == 7


@pytest.mark.postgres
def test_pool_stats_count_connections(postgres_url):
    app = make_app(postgres_url, DB_POOL_MAX=5)
    db = app.extensions["vigil_database"]
    try:
        with app.app_context():
            database.connect()
            assert pool_stats(db) == {"in_use": 1, "idle": 0, "max": 5}
            database.close()
            assert pool_stats(db) == {"in_use": 0, "idle": 1, "max": 5}
        app.test_client().get("/health/ready")
        assert pool_stats(db)["in_use"] == 0
        db.close_all()  # closed connections no longer count as idle
        assert pool_stats(db) == {"in_use": 0, "idle": 0, "max": 5}
    finally:
        db.close_all()


def test_default_database_is_sqlite_in_the_instance_folder(monkeypatch):
    monkeypatch.delenv("VIGIL_DATABASE_URL", raising=False)
    app = create_app({"JWT_SECRET_KEY": "k" * 40})
    assert app.config["DATABASE_URL"] == "sqlite:///" + os.path.join(
        app.instance_path, "vigil.sqlite3")
    assert isinstance(database.obj, TimedSqliteDatabase)


def test_settings_come_from_vigil_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    monkeypatch.setenv("VIGIL_LOCKOUT_THRESHOLD", "4")
    monkeypatch.setenv("VIGIL_ACCESS_TOKEN_TTL_SECONDS", "120")
    monkeypatch.setenv("VIGIL_JWT_SECRET_KEY", "1234567890" * 4)
    app = create_app()
    assert app.config["LOCKOUT_THRESHOLD"] == 4
    assert app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds() == 120
    assert app.config["JWT_SECRET_KEY"] == "1234567890" * 4
    assert app.config["DATABASE_URL"].endswith("env.db")


def test_every_statement_is_timed(app, client, auth):
    seen = []

    def listener(sender, duration, failed):
        seen.append((duration, failed))

    events.query_executed.connect(listener)
    try:
        auth.signup()
        with app.app_context():
            with pytest.raises(DatabaseError):
                database.execute_sql("SELECT * FROM no_such_table")
    finally:
        events.query_executed.disconnect(listener)
    assert len(seen) >= 4
    assert all(isinstance(d, float) and d >= 0 for d, _ in seen)
    assert seen[-1][1] is True and not any(f for _, f in seen[:-1])


def test_health_live_and_ready(client):
    live = client.get("/health/live")
    assert live.status_code == 200 and live.json == {"status": "ok"}
    assert client.get("/health/ready").status_code == 200


def test_readiness_runs_every_registered_check(app, client):
    app.extensions["vigil_readiness_checks"].append(lambda: "drill in progress")
    r = client.get("/health/ready")
    assert r.status_code == 503 and "drill in progress" in r.json["detail"]
    assert r.mimetype == "application/problem+json"


def test_count_active_sessions(app, auth):
    with app.app_context():
        assert count_active_sessions() == 0
    account = auth.signup()
    auth.login(account.email, account.password)
    with app.app_context():
        assert count_active_sessions() == 2


@pytest.mark.postgres
def test_an_exhausted_pool_is_a_503_not_a_hang(postgres_url):
    app = make_app(postgres_url, DB_POOL_MAX=1, DB_POOL_WAIT_SECONDS=0.2)
    with app.app_context():
        upgrade()
    holding, release = threading.Event(), threading.Event()

    def hold_the_only_connection():
        database.connect()
        holding.set()
        release.wait(10)
        database.close()

    holder = threading.Thread(target=hold_the_only_connection)
    holder.start()
    try:
        assert holding.wait(10)
        r = app.test_client().get("/api/v1/content", headers={"Authorization": "Bearer x"})
        assert r.status_code == 503
        assert r.mimetype == "application/problem+json" and r.headers["Retry-After"]
    finally:
        release.set()
        holder.join(10)
        database.obj.close_all()
    assert app.test_client().get("/health/ready").status_code == 200


def test_prepared_text_numbers_parameters_by_value():
    sql = "SELECT 1 FROM t WHERE a = %s AND b LIKE '100%%' AND c = %s AND d = %s"
    assert _numbered_parameters(sql, [1, 0, 1]) == (
        "SELECT 1 FROM t WHERE a = $2 AND b LIKE '100%%' AND c = $1 AND d = $2")


def _statements_per_request(client, url, headers):
    seen = []

    def count(sender, **_):
        seen.append(1)

    events.query_executed.connect(count)
    try:
        r = client.get(url, headers=headers)
    finally:
        events.query_executed.disconnect(count)
    assert r.status_code == 200, r.json
    return len(seen)


@pytest.mark.parametrize("path", ["/api/v1/content/{id}", "/api/v1/content?limit=20"])
def test_a_warm_read_is_one_statement(client, auth, path):
    """The item read and the list check the token's session in their own query."""
    account = auth.signup()
    item = client.post("/api/v1/content", headers=account.headers,
                       json={"title": "t", "is_published": True}).json
    url = path.format(id=item["id"])
    client.get(url, headers=account.headers)  # first use: PostgreSQL prepares it
    assert [_statements_per_request(client, url, account.headers) for _ in range(3)] == [1] * 3


@pytest.mark.postgres
def test_hot_reads_are_prepared_once_per_connection(postgres_url):
    app = make_app(postgres_url, DB_POOL_MAX=1)
    with app.app_context():
        upgrade()
    client = app.test_client()
    try:
        account = AuthActions(client).signup()
        item = client.post("/api/v1/content", headers=account.headers,
                           json={"title": "t", "is_published": True}).json
        url = f"/api/v1/content/{item['id']}"
        assert _statements_per_request(client, url, account.headers) == 2  # PREPARE, EXECUTE
        assert _statements_per_request(client, url, account.headers) == 1
        with app.app_context():  # the pool's only connection, the one the reads used
            prepared = database.execute_sql(
                "SELECT name, statement FROM pg_prepared_statements").fetchall()
        assert any(name.startswith("vigil_query_") and '"content"' in statement
                   and '"sessions"' in statement and "$2" in statement
                   for name, statement in prepared), prepared
        # A new connection (the pool dropped the old one) prepares again.
        app.extensions["vigil_database"].close_all()
        assert _statements_per_request(client, url, account.headers) == 2
    finally:
        with app.app_context():
            _truncate_all(app.extensions["vigil_database"])
        close_database(app)
