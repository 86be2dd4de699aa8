"""Content rules: who sees an item, who may change it, and lost-update protection."""
import uuid

from api.db import write_transaction
from api.models import Content, utcnow


class NotOwner(Exception):
    """The caller may see the item but not change it."""


class EditConflict(Exception):
    """If-Match named a version that is no longer current."""


def etag_of(item):
    """The strong entity tag (unquoted) of the item's current version."""
    return f"{item.id.hex}.{item.version}"


def _parse_id(item_id):
    try:
        return uuid.UUID(str(item_id))
    except ValueError:
        return None


def list_visible(user_id, owner=None, published=None, q=None):
    """Query for items the user may see: everyone's published items plus the user's drafts."""
    query = Content.select().where(Content.is_published | (Content.owner == user_id))
    if owner == "me":
        query = query.where(Content.owner == user_id)
    if published is not None:
        query = query.where(Content.is_published == published)
    if q:
        query = query.where(Content.title.contains(q))
    return query


def find_visible(item_id, user_id):
    """The item when it exists and the user may see it, else None (drafts stay hidden)."""
    parsed = _parse_id(item_id)
    if parsed is None:
        return None
    item = Content.get_or_none(Content.id == parsed)
    if item is None or (not item.is_published and str(item.owner_id) != str(user_id)):
        return None
    return item


def _owned(item_id, user_id):
    """The item for changing: LookupError if hidden or missing, NotOwner if only visible."""
    item = find_visible(item_id, user_id)
    if item is None:
        raise LookupError(item_id)
    if str(item.owner_id) != str(user_id):
        raise NotOwner(item_id)
    return item


def _check_precondition(item, if_match):
    if if_match and not if_match.star_tag and not if_match.contains(etag_of(item)):
        raise EditConflict(item.id)


def create_item(user_id, title, body="", is_published=False):
    """Store a new item owned by ``user_id``."""
    now = utcnow()
    return Content.create(owner=user_id, title=title, body=body, is_published=is_published,
                          version=1, created_at=now, updated_at=now)


def update_item(item_id, user_id, changes, if_match=None):
    """Apply ``changes`` to the caller's item, atomically against its current version."""
    for _ in range(3):
        item = _owned(item_id, user_id)
        _check_precondition(item, if_match)
        fields = {getattr(Content, name): value for name, value in changes.items()}
        fields[Content.version] = item.version + 1
        fields[Content.updated_at] = utcnow()
        # The version guard makes a concurrent writer's change fail instead of vanish;
        # without If-Match the caller asked for last-writer-wins, so read again and retry.
        updated = (Content.update(fields)
                   .where((Content.id == item.id) & (Content.version == item.version))
                   .execute())
        if updated:
            return Content.get_by_id(item.id)
        if if_match:
            raise EditConflict(item.id)
    raise EditConflict(item_id)


def delete_item(item_id, user_id, if_match=None):
    """Delete the caller's item."""
    with write_transaction():
        item = _owned(item_id, user_id)
        _check_precondition(item, if_match)
        deleted = (Content.delete()
                   .where((Content.id == item.id) & (Content.version == item.version))
                   .execute())
        if not deleted:
            raise EditConflict(item.id)
