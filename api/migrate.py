"""Apply the versioned migrations in api/migrations, recording each in schema_migrations."""
import importlib
import pkgutil
import re

import click
from flask import Blueprint
from peewee import PostgresqlDatabase

from api import migrations
from api.db import database
from api.models import utcnow

bp = Blueprint("db_cli", __name__, cli_group="db")

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+$")
# An arbitrary constant: every migrator of every node takes the same advisory lock.
_PG_LOCK_KEY = 0x5649_4749_4C


def available_migrations():
    """(version, module name) of every migration file, in order."""
    found = []
    for info in pkgutil.iter_modules(migrations.__path__):
        match = _NAME.match(info.name)
        if match:
            found.append((int(match.group(1)), info.name))
    return sorted(found)


def _ensure_table(db):
    db.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name VARCHAR(200) NOT NULL,"
        " applied_at TIMESTAMP NOT NULL)"
    )


def applied_versions(db):
    """Versions already recorded in schema_migrations (empty when the table is missing)."""
    if "schema_migrations" not in db.get_tables():
        return set()
    return {row[0] for row in db.execute_sql("SELECT version FROM schema_migrations")}


def pending_migrations(db=None):
    """Migrations not yet applied to ``db`` (default: the app's database)."""
    db = db or database.obj
    done = applied_versions(db)
    return [(v, name) for v, name in available_migrations() if v not in done]


def upgrade(db=None):
    """Apply every pending migration in one transaction; returns the names applied.

    Safe to run on every deploy and from several nodes at once: PostgreSQL
    serialises runners with an advisory lock, SQLite with BEGIN IMMEDIATE, and the
    list of pending versions is read only after the lock is held.
    """
    db = db or database.obj
    applied = []
    if isinstance(db, PostgresqlDatabase):
        txn = db.atomic()
    else:
        txn = db.atomic(lock_type="IMMEDIATE")
    with txn:
        if isinstance(db, PostgresqlDatabase):
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_KEY,))
        _ensure_table(db)
        done = applied_versions(db)
        for version, name in available_migrations():
            if version in done:
                continue
            module = importlib.import_module(f"{migrations.__name__}.{name}")
            module.upgrade(db)
            db.execute_sql(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"
                .replace("?", db.param),
                (version, name, utcnow()),
            )
            applied.append(name)
    return applied


def check_schema_current():
    """Readiness check: None when every migration is applied, else which are pending."""
    pending = pending_migrations()
    if pending:
        return "migrations pending (run flask --app api db upgrade): " + ", ".join(
            name for _, name in pending)
    return None


@bp.cli.command("upgrade")
def upgrade_command():
    """Apply pending schema migrations (idempotent)."""
    applied = upgrade()
    for name in applied:
        click.echo(f"applied {name}")
    click.echo("schema is current" if not applied else f"{len(applied)} migration(s) applied")


@bp.cli.command("status")
def status_command():
    """List migrations and whether each is applied."""
    done = applied_versions(database.obj)
    for version, name in available_migrations():
        click.echo(f"{'applied' if version in done else 'pending'}  {name}")
