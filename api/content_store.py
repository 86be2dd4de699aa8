"""Content rules: who sees an item, who may change it, and lost-update protection."""
import uuid
from types import SimpleNamespace

from peewee import JOIN, SQL, IntegerField, NodeList

from api.db import PreparedQuery
from api.models import Content, RefreshSession, User, utcnow
from api.pagination import newest_first, rows_after, split_page
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


#: The columns a page shows (ContentSchema's, from the content table).
_PAGE_COLUMNS = (Content.id, Content.title, Content.body, Content.is_published, Content.owner,
                 Content.created_at, Content.updated_at)
#: Converts a page's size for the database (a LIMIT has no column of its own).
_PAGE_SIZE = IntegerField()


def _page_query(has_cursor, mine, published, has_q):
    """The prepared query for one combination of the list's filters: the token's session
    (SESSION_COLUMNS) LEFT JOINed to a page of visible items, so one round trip answers
    both and a live session with no items still gives its row. Parameters: session id,
    caller id, then the title pattern, the cursor's (created_at, id) and the row count when
    the shape has them."""
    fields = [RefreshSession.id, Content.owner]
    fields += [Content.title] if has_q else []
    fields += [Content.created_at, Content.id] if has_cursor else []
    fields.append(_PAGE_SIZE)

    def build(session_id, user_id, *rest):
        rest = list(rest)
        pattern = rest.pop(0) if has_q else None
        position = (rest.pop(0), rest.pop(0)) if has_cursor else None
        rows = rest.pop(0)
        visible = Content.is_published | (Content.owner == user_id)
        if mine:
            visible &= Content.owner == user_id
        if published is not None:
            # The filter's value is part of the shape, not a parameter.
            visible &= Content.is_published if published else ~Content.is_published
        if has_q:
            visible &= Content.title ** NodeList((pattern, SQL("ESCAPE '\\'")))
        if has_cursor:
            visible &= rows_after(Content, position)
        page = (Content.select(*_PAGE_COLUMNS).where(visible).order_by(*newest_first(Content))
                .limit(rows).alias("page"))
        return (RefreshSession.select(*SESSION_COLUMNS, *[page.c[f.column_name]
                                                          for f in _PAGE_COLUMNS])
                .join(User)
                .join_from(RefreshSession, page, JOIN.LEFT_OUTER, on=SQL("1 = 1"))
                .where(RefreshSession.id == session_id)
                .order_by(page.c.created_at.desc(), page.c.id.desc()))

    return PreparedQuery(Content, fields, build)


_PAGE_QUERIES = {}  # (has_cursor, mine, published, has_q) -> PreparedQuery


class _Row(SimpleNamespace):
    """One row of the read's or a page's query, the session's columns and an item's, as
    plain attributes: peewee's model instances cost the read more than its round trip."""


def _like_pattern(text):
    """A LIKE pattern (escape character \\) matching ``text`` anywhere, literally."""
    for special in ("\\", "%", "_"):
        text = text.replace(special, "\\" + special)
    return f"%{text}%"


def visible_page_for_token(claims, limit, after=None, owner=None, published=None, q=None):
    """(user, items, next_cursor) for a token whose revocation check was skipped: the
    session check and the page share one query. Items are everyone's published ones plus
    the caller's drafts, newest first, after the ``after`` position (a decoded cursor),
    filtered by ``owner`` ("me"), ``published`` and ``q`` (a title substring, any case).
    user is None when the session is not live (a 401), and then there are no items.
    """
    shape = (after is not None, owner == "me", published, bool(q))
    query = _PAGE_QUERIES.get(shape)
    if query is None:
        query = _PAGE_QUERIES[shape] = _page_query(*shape)
    values = [session_id_of(claims), claims.get("sub")]
    values += [_like_pattern(q)] if q else []
    values += list(after) if after is not None else []
    found = query.records(_Row, *values, limit + 1)
    user = user_of_live_session(found[0] if found else None, claims)
    if user is None:
        return None, [], None
    items = [item for item in found if item.id is not None]
    items, next_cursor = split_page(items, limit, lambda item: (item.created_at, item.id))
    return user, items, next_cursor


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
    found = _SESSION_AND_ITEM.records(_Row, session_id_of(claims), parsed)
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
