"""Keyset pagination over (created_at, id), newest first, with HMAC-signed opaque cursors."""
import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime

from flask import current_app

#: The shape of every cursor (payload.signature, base64url), as the OpenAPI document states it.
CURSOR_PATTERN = "^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]{22}$"


class BadCursor(ValueError):
    """The cursor was not issued by this API (or was altered)."""


def _key():
    secret = current_app.config["JWT_SECRET_KEY"].encode()
    # A derived key: a cursor signature can never double as a token signature.
    return hmac.new(secret, b"vigil pagination cursor v1", hashlib.sha256).digest()


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_cursor(created_at, item_id):
    """An opaque, signed cursor pointing just after (created_at, item_id)."""
    payload = json.dumps([created_at.isoformat(timespec="microseconds"), item_id.hex],
                         separators=(",", ":")).encode()
    signature = hmac.new(_key(), payload, hashlib.sha256).digest()[:16]
    return f"{_b64(payload)}.{_b64(signature)}"


def decode_cursor(cursor):
    """(created_at, id) from a cursor; raises BadCursor unless this API signed it."""
    try:
        payload_text, signature_text = cursor.split(".")
        payload, signature = _unb64(payload_text), _unb64(signature_text)
    except (ValueError, TypeError) as e:
        raise BadCursor("malformed cursor") from e
    expected = hmac.new(_key(), payload, hashlib.sha256).digest()[:16]
    if not hmac.compare_digest(signature, expected):
        raise BadCursor("cursor signature does not match")
    try:
        created, item_id = json.loads(payload)
        return datetime.fromisoformat(created), uuid.UUID(hex=item_id)
    except (ValueError, TypeError) as e:
        raise BadCursor("cursor payload unreadable") from e


def rows_after(model, position):
    """The condition for rows after ``position`` (created_at, id) in newest-first order."""
    created_at, item_id = position
    return (model.created_at < created_at) | (
        (model.created_at == created_at) & (model.id < item_id))


def newest_first(model):
    """The order of every page: newest first, the id breaking ties."""
    return (model.created_at.desc(), model.id.desc())


def split_page(rows, limit, position_of):
    """(the first ``limit`` of ``rows``, the cursor of the next page or None): fetch one row
    more than a page to know whether another follows. ``position_of(row)`` gives the row's
    (created_at, id)."""
    if len(rows) <= limit:
        return rows, None
    return rows[:limit], encode_cursor(*position_of(rows[limit - 1]))
