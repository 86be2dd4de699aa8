"""Baselines for bench_read_path.py: bare Flask, and bare Flask plus one psycopg2 SELECT.

No telemetry, no authentication, no ORM: one persistent autocommit connection per worker
(opened on first use, after the fork) and one SELECT: a content row by primary key, or a
page of the newest published rows (the list's baseline, reported beside the goal's).
"""
import os

import psycopg2
from flask import Flask, request

app = Flask(__name__)
_connection = []

_SELECT = ("SELECT id, owner_id, title, body, is_published, version, created_at, updated_at "
           "FROM content WHERE id = %s")
_PAGE = ("SELECT id, owner_id, title, body, is_published, version, created_at, updated_at "
         "FROM content WHERE is_published ORDER BY created_at DESC, id DESC LIMIT %s")


def _cursor():
    if not _connection or _connection[0].closed:
        conn = psycopg2.connect(os.environ["VIGIL_DATABASE_URL"])
        conn.autocommit = True
        _connection[:] = [conn]
    return _connection[0].cursor()


@app.get("/bare/ping")
@app.get("/health/live")  # what tests.servers.run_api waits for
def ping():
    """A constant JSON body."""
    return {"status": "ok"}


_NAMES = ("id", "owner_id", "title", "body", "is_published", "version", "created_at",
          "updated_at")


def _document(row):
    item = dict(zip(_NAMES, row, strict=True))
    for key in ("id", "owner_id"):
        item[key] = str(item[key])
    for key in ("created_at", "updated_at"):
        item[key] = item[key].isoformat() + "Z"
    return item


@app.get("/bare/content/<item_id>")
def content(item_id):
    """One row by primary key, as JSON."""
    with _cursor() as cur:
        cur.execute(_SELECT, (item_id,))
        row = cur.fetchone()
    if row is None:
        return {"status": 404}, 404
    return _document(row)


@app.get("/bare/content")
def page():
    """The newest ``limit`` published rows (a keyset-ordered page, no cursor), as JSON."""
    with _cursor() as cur:
        cur.execute(_PAGE, (int(request.args.get("limit", 20)),))
        rows = cur.fetchall()
    return {"items": [_document(row) for row in rows], "next_cursor": None}
