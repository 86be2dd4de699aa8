"""The database: a peewee proxy bound at start-up, per-request connections, timed statements."""
import contextlib
import hashlib
import logging
import os
import time
import uuid
from datetime import datetime, timedelta

from flask import request
from peewee import (
    CharField,
    DatabaseProxy,
    DateTimeField,
    IntegerField,
    InterfaceError,
    OperationalError,
    SqliteDatabase,
    TextField,
)
from playhouse import db_url
from playhouse.pool import PooledPostgresqlDatabase

from api import events

#: Models bind to this proxy; create_app points it at the configured database.
database = DatabaseProxy()

#: Blueprints whose requests open a connection up front (health checks connect lazily,
#: so /health/live never touches the database).
CONNECT_UP_FRONT = set()


class _TimedStatements:
    """Time every statement and announce it on ``events.query_executed``."""

    def execute_sql(self, sql, params=None, *args, **kwargs):
        started = time.perf_counter()
        failed = True
        try:
            cursor = super().execute_sql(sql, params, *args, **kwargs)
            failed = False
            return cursor
        finally:
            events.query_executed.send(
                self, duration=time.perf_counter() - started, failed=failed)


class TimedSqliteDatabase(_TimedStatements, SqliteDatabase):
    """SQLite with statement timing."""


class TimedPooledPostgresqlDatabase(_TimedStatements, PooledPostgresqlDatabase):
    """A pooled PostgreSQL database with statement timing."""


def open_database(url, config):
    """Build the peewee database for ``url`` (``sqlite:///path`` or ``postgresql://...``)."""
    scheme = url.split(":", 1)[0].lower()
    params = db_url.parse(url)
    if scheme in ("postgresql", "postgres", "postgresql+pool", "postgres+pool"):
        return TimedPooledPostgresqlDatabase(
            params.pop("database"),
            max_connections=int(config["DB_POOL_MAX"]),
            stale_timeout=int(config["DB_POOL_STALE_SECONDS"]),
            timeout=float(config["DB_POOL_WAIT_SECONDS"]),
            connect_timeout=5,
            **params,
        )
    if scheme in ("sqlite", "sqlite+pool"):
        return TimedSqliteDatabase(
            params.pop("database"),
            pragmas={
                # WAL lets gunicorn workers read while one writes; busy_timeout makes
                # writers queue instead of failing at once.
                "journal_mode": "wal",
                "synchronous": "normal",
                "foreign_keys": 1,
                "busy_timeout": 5000,
            },
            **params,
        )
    raise ValueError(f"unsupported VIGIL_DATABASE_URL scheme {scheme!r}")


def init_app(app):
    """Bind ``database`` to the configured URL."""
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///") and ":memory:" not in url:
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    previous = database.obj
    database.initialize(open_database(url, app.config))
    if previous is not None:
        # The proxy is process-wide: a second create_app (tests, CLI) replaces the database,
        # so release what the previous one still holds.
        _close_everything(previous)
    # peewee logs every statement with its parameters at DEBUG, which would put password
    # hashes in the log whenever someone turns on debug logging.
    logging.getLogger("peewee").setLevel(logging.INFO)
    app.extensions["vigil_database"] = database.obj


def register_request_hooks(app):
    """Connect before API requests; release the connection whenever an app context ends."""

    @app.before_request
    def _connect():
        if request.blueprint in CONNECT_UP_FRONT:
            database.connect(reuse_if_open=True)

    @app.teardown_appcontext
    def _close(exc):
        # An inner app context ending inside an open transaction must not close it.
        if database.obj is not None and not database.is_closed() and (
                not database.in_transaction()):
            database.close()


def _close_everything(db):
    if isinstance(db, PooledPostgresqlDatabase):
        db.close_all()
    elif not db.is_closed():
        db.close()


def discard_broken_connections():
    """Drop this thread's connection and the idle pool after a connection-level failure."""
    db = database.obj
    if db is None:
        return
    if isinstance(db, PooledPostgresqlDatabase):
        try:
            db.manual_close()
        except (OperationalError, InterfaceError):
            pass
        # Idle connections were opened before the outage; they would fail one by one.
        db.close_idle()
    elif not db.is_closed():
        db.close()


def write_transaction():
    """A transaction that reads, then writes.

    On SQLite it takes the write lock up front (BEGIN IMMEDIATE): a deferred transaction
    that read first cannot upgrade once another writer committed, and fails at once instead
    of waiting out the busy timeout.
    """
    if isinstance(database.obj, SqliteDatabase):
        return database.atomic(lock_type="IMMEDIATE")
    return database.atomic()


@contextlib.contextmanager
def write_transaction_for(name):
    """A write_transaction that no other transaction naming ``name`` runs beside.

    SQLite's BEGIN IMMEDIATE already admits one writer at a time; on PostgreSQL a
    transaction-scoped advisory lock on a 64-bit hash of ``name`` serialises only those
    transactions, so unrelated writes go on in parallel.
    """
    with write_transaction():
        if not isinstance(database.obj, SqliteDatabase):
            digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
            key = int.from_bytes(digest, "big", signed=True)
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (key,))
        yield


class PreparedQuery:
    """A peewee query turned into SQL once per kind of database, then run with new values.

    peewee rebuilds a query's SQL each time it runs, and for a primary-key lookup that costs
    several times the round trip itself (profiled: about 1 ms against 0.3 ms on a busy host).
    The reads every request makes are built once, through peewee's own ``Query.sql()``, with
    one marker value per parameter, and run through ``Model.raw`` with the real values; the
    model's columns are converted as a normal select would convert them. ``build(*values)``
    returns the query; ``fields`` convert the values for the database, in ``build``'s order,
    and their types choose the markers (UUIDs, integers, datetimes or text no request sends).
    """

    def __init__(self, model, fields, build):
        self.model, self.fields, self.build = model, tuple(fields), build
        self._compiled = {}  # database class -> (SQL text, parameter order)

    def rows(self, *values):
        """The model instances the query finds for ``values`` (a list)."""
        return list(self._raw(values))

    def records(self, constructor, *values):
        """The rows as ``constructor(**columns)`` (a SimpleNamespace, say), converted as
        ``rows`` would and named as peewee's ``dicts()`` names them (a foreign key by its
        field's name): cheaper than model instances, for queries that return many rows."""
        return list(self._raw(values).objects(constructor))

    def _raw(self, values):
        kind = type(database.obj)
        compiled = self._compiled.get(kind)
        if compiled is None:
            compiled = self._compiled[kind] = self._compile()
        sql, order = compiled
        converted = [field.db_value(value) for field, value in zip(self.fields, values,
                                                                    strict=True)]
        return self.model.raw(sql, *[converted[i] for i in order])

    def _compile(self):
        markers = [_marker(field, i) for i, field in enumerate(self.fields)]
        sql, params = self.build(*markers).sql()
        expected = [str(field.db_value(m)) for field, m in zip(self.fields, markers,
                                                                strict=True)]
        # Every parameter must be a marker (a constant would be lost) and every value used
        # (a value may appear more than once: the caller's id in two conditions, say).
        if set(map(str, params)) != set(expected) or len(set(expected)) != len(expected):
            raise ValueError(f"the query's parameters {params} are not its values {expected}")
        return sql, [expected.index(str(param)) for param in params]


def _marker(field, index):
    """A value of ``field``'s type that no request sends, told apart by ``index``."""
    number = 0x7157_0000 + index
    if isinstance(field, DateTimeField):
        return datetime(1971, 1, 1) + timedelta(microseconds=number)
    if isinstance(field, IntegerField):
        return number
    if isinstance(field, (CharField, TextField)):
        return f"vigil-query-marker-{number}"
    return uuid.UUID(int=number)


def pool_stats():
    """Connections in use, idle and the maximum, or None when the database is not pooled."""
    db = database.obj
    if not isinstance(db, PooledPostgresqlDatabase):
        return None
    return {"in_use": len(db._in_use), "idle": len(db._connections),
            "max": db._max_connections or 0}


def check_database():
    """Readiness check: None when the database answers ``SELECT 1``, else why not."""
    try:
        database.execute_sql("SELECT 1")
    except (OperationalError, InterfaceError) as e:
        discard_broken_connections()
        return f"database unavailable: {type(e).__name__}"
    return None
