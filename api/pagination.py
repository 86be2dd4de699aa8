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


def keyset_page(query, model, limit, cursor=None):
    """One page of ``query`` newest first, and the cursor of the next page (or None)."""
    if cursor is not None:
        created_at, item_id = decode_cursor(cursor)
        query = query.where(
            (model.created_at < created_at)
            | ((model.created_at == created_at) & (model.id < item_id)))
    rows = list(query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], encode_cursor(last.created_at, last.id)
