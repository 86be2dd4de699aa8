"""Content rules: who sees an item, who may change it, and lost-update protection."""
import uuid

from peewee import JOIN

from api.db import PreparedQuery
from api.models import Content, RefreshSession, User, utcnow
from api.sessions import SESSION_COLUMNS, live_session_user, session_id_of, user_of_live_session


class NotOwner(Exception):
    """The caller may see the item but not change it."""


class EditConflict(Exception):
    """The request's preconditions do not hold for the item's current version (412)."""


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


_BY_ID = PreparedQuery(Content, [Content.id],
                       lambda item_id: Content.select().where(Content.id == item_id))
#: A token's session (SESSION_COLUMNS) and the item it asks for, in one round trip.
_SESSION_AND_ITEM = PreparedQuery(
    Content, [RefreshSession.id, Content.id], lambda session_id, item_id: (
        RefreshSession.select(*SESSION_COLUMNS, *Content._meta.sorted_fields)
        .join(User)
        .join_from(RefreshSession, Content, JOIN.LEFT_OUTER, on=(Content.id == item_id))
        .where(RefreshSession.id == session_id)))


def find_visible(item_id, user_id):
    """The item when it exists and the user may see it, else None (drafts stay hidden)."""
    parsed = _parse_id(item_id)
    if parsed is None:
        return None
    found = _BY_ID.rows(parsed)
    if not found or (not found[0].is_published and str(found[0].owner_id) != str(user_id)):
        return None
    return found[0]


def find_visible_for_token(item_id, claims):
    """(user, item) for a token whose revocation check was skipped: the session check and
    the item read share one query. user is None when the session is not live (a 401);
    item is None when it is missing or hidden from that user.
    """
    parsed = _parse_id(item_id)
    if parsed is None:
        return live_session_user(claims), None
    found = _SESSION_AND_ITEM.rows(session_id_of(claims), parsed)
    user = user_of_live_session(found[0] if found else None, claims)
    if user is None or found[0].id is None:
        return user, None
    item = found[0]
    if not item.is_published and item.owner_id != user.id:
        return user, None
    return user, item


def _owned(item_id, user_id):
    """The item for changing: LookupError if hidden or missing, NotOwner if only visible."""
    item = find_visible(item_id, user_id)
    if item is None:
        raise LookupError(item_id)
    if str(item.owner_id) != str(user_id):
        raise NotOwner(item_id)
    return item


def create_item(user_id, title, body="", is_published=False):
    """Store a new item owned by ``user_id``."""
    now = utcnow()
    return Content.create(owner=user_id, title=title, body=body, is_published=is_published,
                          version=1, created_at=now, updated_at=now)


def update_item(item_id, user_id, changes, preconditions):
    """Apply ``changes`` to the caller's item; returns the item as stored afterwards.

    Values equal to the stored ones are no change: the version and ETag stay, so other
    clients' If-Match keeps holding. A request with preconditions writes only over the
    version it checked (EditConflict if another writer came first); one without asked for
    last-writer-wins, so the version is bumped in SQL and no retry is needed.
    """
    item = _owned(item_id, user_id)
    if not preconditions.allow_change(etag_of(item)):
        raise EditConflict(item.id)
    changed = {getattr(Content, name): value for name, value in changes.items()
               if getattr(item, name) != value}
    if not changed:
        return item
    changed[Content.version] = Content.version + 1
    changed[Content.updated_at] = utcnow()
    query = Content.update(changed).where(Content.id == item.id)
    if preconditions.present:
        query = query.where(Content.version == item.version)
    stored = list(query.returning(Content).execute())
    if stored:
        return stored[0]
    raise _why_missed(item, preconditions)


def delete_item(item_id, user_id, preconditions):
    """Delete the caller's item (over the checked version only when preconditions were sent)."""
    item = _owned(item_id, user_id)
    if not preconditions.allow_change(etag_of(item)):
        raise EditConflict(item.id)
    query = Content.delete().where(Content.id == item.id)
    if preconditions.present:
        query = query.where(Content.version == item.version)
    if not query.execute():
        raise _why_missed(item, preconditions)


def _why_missed(item, preconditions):
    """A guarded write hit no row: the item is gone (404) or another writer changed it (412)."""
    if preconditions.present and Content.select().where(Content.id == item.id).exists():
        return EditConflict(item.id)
    return LookupError(item.id)
