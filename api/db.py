"""The database: a peewee proxy bound at start-up, per-request connections, timed statements.

Each app owns its database object (``app.extensions["vigil_database"]``); the models' proxy
points at the database of the app whose context is active, so a second ``create_app`` in one
process (tests, the CLI) neither shares nor closes the first one's connections.
"""
import contextlib
import hashlib
import itertools
import logging
import os
import re
import time
import uuid
import weakref
from datetime import datetime, timedelta

from flask import appcontext_pushed, current_app, request
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
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase

from api import events
from api.errors import problem

#: Models bind to this proxy; each app context points it at its app's database.
database = DatabaseProxy()


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
    """A pooled PostgreSQL database with statement timing that can say how full its pool is.

    peewee's pool has no public count of its connections, so this one remembers the
    connections it handed out (weakly: a connection the pool closes and drops disappears).
    """

    def __init__(self, *args, max_connections=20, **kwargs):
        super().__init__(*args, max_connections=max_connections, **kwargs)
        self.capacity = max_connections
        self.handed_out = weakref.WeakSet()
        # connection -> names of the statements PREPAREd on it (they live as long as it does)
        self._prepared = weakref.WeakKeyDictionary()

    def prepare(self, name, sql):
        """PREPARE statement ``name`` as ``sql`` (with $1, $2... parameters) on this thread's
        connection, unless that connection already has it.

        A prepared statement belongs to one server session and is not undone by ROLLBACK, so
        remembering it per connection object is exact: a new or reopened connection is a new
        object and prepares again. Nothing in Vigil runs DEALLOCATE or DISCARD.
        """
        connection = self.connection()
        names = self._prepared.setdefault(connection, set())
        if name not in names:
            self.execute_sql(f"PREPARE {name} AS {sql}")
            names.add(name)

    def connect(self, reuse_if_open=False):
        """Check a connection out of the pool (peewee's connect), and remember it."""
        opened = super().connect(reuse_if_open)
        self.handed_out.add(self.connection())
        return opened

    def pool_stats(self):
        """Connections of this process: in use by this thread (0 or 1), open but idle, max.

        Vigil's gunicorn workers are sync workers: one thread, so "in use by this thread"
        is "in use by this process".
        """
        open_ = sum(1 for conn in list(self.handed_out) if not conn.closed)
        in_use = 0 if self.is_closed() else 1
        return {"in_use": in_use, "idle": max(open_ - in_use, 0), "max": self.capacity}


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
    """Open the configured database for ``app`` and point the models at it."""
    url = app.config["DATABASE_URL"]
    if url.startswith("sqlite:///") and ":memory:" not in url:
        os.makedirs(os.path.dirname(url[len("sqlite:///"):]) or ".", exist_ok=True)
    db = app.extensions["vigil_database"] = open_database(url, app.config)
    database.initialize(db)

    def bind_models(sender, **_):
        if database.obj is not db:
            database.initialize(db)

    appcontext_pushed.connect(bind_models, sender=app, weak=False)
    # peewee logs every statement with its parameters at DEBUG, which would put password
    # hashes in the log whenever someone turns on debug logging.
    logging.getLogger("peewee").setLevel(logging.INFO)
    for error in (OperationalError, InterfaceError, MaxConnectionsExceeded):
        app.register_error_handler(error, handle_database_unavailable)


def close_database(app):
    """Close every connection ``app``'s database holds (pooled ones included)."""
    db = app.extensions["vigil_database"]
    if isinstance(db, PooledPostgresqlDatabase):
        db.close_all()
    elif not db.is_closed():
        db.close()


def handle_database_unavailable(e):
    """The database refused or dropped the connection: 503, and heal the pool."""
    discard_broken_connections()
    current_app.logger.warning("database unavailable: %s", type(e).__name__)
    return problem(503, detail="The database is unavailable; retry shortly.",
                   headers={"Retry-After": "5"})


def register_request_hooks(app, connect_up_front):
    """Connect before requests of the ``connect_up_front`` blueprints (health checks connect
    lazily, so /health/live never touches the database); release the connection whenever
    an app context ends."""
    connect_up_front = frozenset(connect_up_front)

    @app.before_request
    def _connect():
        if request.blueprint in connect_up_front:
            database.connect(reuse_if_open=True)

    @app.teardown_appcontext
    def _close(exc):
        # An inner app context ending inside an open transaction must not close it.
        if database.obj is not None and not database.is_closed() and (
                not database.in_transaction()):
            database.close()


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

    On PostgreSQL the SQL is also a server-side prepared statement (``PREPARE`` once per
    connection, then ``EXECUTE``): planning the joins of the session check cost PostgreSQL
    two to three times their execution on every request (docs/adr/0055).
    """

    _names = itertools.count(1)

    def __init__(self, model, fields, build):
        self.model, self.fields, self.build = model, tuple(fields), build
        self.name = f"vigil_query_{next(self._names)}"
        self._compiled = {}  # database class -> (SQL text, parameter order)
        self._converters = {}  # database class -> records' (column, converter) pairs
        self._execute = "EXECUTE {}({})".format(self.name, ", ".join(["%s"] * len(fields)))

    def rows(self, *values):
        """The model instances the query finds for ``values`` (a list)."""
        sql, params = self._statement(values)
        return list(self.model.raw(sql, *params))

    def records(self, constructor, *values):
        """The rows as ``constructor(**columns)`` (a SimpleNamespace, say), named by their
        columns: for queries that return many rows, where peewee's row wrappers cost more
        than the round trip (timed: 2.2 ms of 6.6 for a page of 20 on a busy host). A
        column of the query's model is converted as its field converts it (a UUID or a
        datetime from SQLite's text); the others arrive as the driver gives them."""
        cursor = database.execute_sql(*self._statement(values))
        kind = type(database.obj)
        converters = self._converters.get(kind)
        if converters is None:
            # The columns are the SQL's, fixed per kind of database: read them once.
            columns = self.model._meta.columns
            converters = self._converters[kind] = [
                (column[0], columns[column[0]].python_value if column[0] in columns else None)
                for column in cursor.description]
        return [constructor(**{name: value if convert is None or value is None
                               else convert(value)
                               for (name, convert), value in zip(converters, row, strict=True)})
                for row in cursor.fetchall()]

    def _statement(self, values):
        """(SQL, parameters) that run the query for ``values`` on the current database."""
        db = database.obj
        kind = type(db)
        compiled = self._compiled.get(kind)
        if compiled is None:
            compiled = self._compiled[kind] = self._compile()
        sql, order = compiled
        converted = [field.db_value(value) for field, value in zip(self.fields, values,
                                                                    strict=True)]
        if isinstance(db, TimedPooledPostgresqlDatabase):
            db.prepare(self.name, _numbered_parameters(sql, order))
            return self._execute, converted
        return sql, [converted[i] for i in order]

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


def _numbered_parameters(sql, order):
    """psycopg2's SQL as the text of a PREPARE: the n-th ``%s`` parameter becomes ``$k``, k
    being its value's place (1-based). ``%%`` stays: peewee runs the PREPARE through
    psycopg2's formatting too, which turns it into one percent sign."""
    parameters = iter(order)
    return re.sub(r"%[%s]", lambda m: "%%" if m[0] == "%%" else f"${next(parameters) + 1}",
                  sql)


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


def pool_stats(db):
    """Connections in use, idle and the maximum of ``db``, or None when it is not pooled."""
    if not isinstance(db, TimedPooledPostgresqlDatabase):
        return None
    return db.pool_stats()


def check_database():
    """Readiness check: None when the database answers ``SELECT 1``, else why not."""
    try:
        database.execute_sql("SELECT 1")
    except (OperationalError, InterfaceError) as e:
        discard_broken_connections()
        return f"database unavailable: {type(e).__name__}"
    return None
