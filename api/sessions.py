"""Refresh sessions (token families): issue, rotate, detect reuse, revoke -- all in the database."""
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, g, has_request_context, request
from flask_jwt_extended import create_access_token, create_refresh_token

from api import events
from api.db import PreparedQuery, write_transaction
from api.models import RefreshSession, User, utcnow

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SessionUser:
    """The caller as a token's session check read it: UserSchema's fields, no password hash.

    A plain record, not a peewee ``User``: a model instance cost every authenticated request
    about 1.5 % of its instructions (callgrind, a read on PostgreSQL), and views only read
    these four fields.
    """

    id: uuid.UUID
    email: str
    is_active: bool
    created_at: datetime


class SessionRejected(Exception):
    """The refresh token is spent, revoked, expired or belongs to a deactivated user."""


def _ttl(name):
    return timedelta(seconds=int(current_app.config[name]))


def _issue_pair(session, user_id):
    """An access token and a refresh token, both bound to ``session`` by the ``sid`` claim."""
    claims = {"sid": str(session.id)}
    access = create_access_token(identity=str(user_id), additional_claims=claims)
    refresh = create_refresh_token(
        identity=str(user_id), additional_claims={**claims, "jti": session.current_jti})
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": int(current_app.config["ACCESS_TOKEN_TTL_SECONDS"]),
    }


def start_session(user):
    """A new token family for ``user`` (one login); returns the first token pair."""
    session = RefreshSession.create(
        user=user.id, current_jti=uuid.uuid4().hex,
        expires_at=utcnow() + _ttl("REFRESH_TOKEN_TTL_SECONDS"))
    return _issue_pair(session, user.id)


def rotate(claims):
    """Spend the refresh token described by ``claims`` and return the next pair.

    A refresh token that was already spent means someone holds a copy: the whole
    family is revoked and the caller gets SessionRejected.
    """
    session_id, jti = claims.get("sid"), claims.get("jti")
    with write_transaction():
        session = (RefreshSession.select(RefreshSession, User).join(User)
                   .where(RefreshSession.id == _uuid(session_id)).first())
        if session is None or not _live(session):
            raise SessionRejected("session revoked or expired")
        new_jti = uuid.uuid4().hex
        # Compare-and-swap, so two concurrent refreshes cannot both win.
        swapped = (RefreshSession
                   .update(current_jti=new_jti,
                           expires_at=utcnow() + _ttl("REFRESH_TOKEN_TTL_SECONDS"))
                   .where((RefreshSession.id == session.id)
                          & (RefreshSession.current_jti == jti)
                          & RefreshSession.revoked_at.is_null())
                   .execute())
    if not swapped:
        revoke_family(session.id, reason="reuse")
        # The runbook of ApiRefreshTokenReuseSpike searches for this line (event, user, address).
        log.warning("refresh token reused; session revoked", extra={
            "event": "refresh_reuse", "session_id": str(session.id),
            "reuse_user_id": str(session.user_id),
            "remote_addr": request.remote_addr if has_request_context() else None})
        events.auth_event.send(current_app._get_current_object(), event="refresh_reuse",
                               user_id=str(session.user_id))
        raise SessionRejected("refresh token reused; session revoked")
    session.current_jti = new_jti
    events.auth_event.send(current_app._get_current_object(), event="refresh",
                           user_id=str(session.user_id))
    return _issue_pair(session, session.user_id)


def revoke_family(session_id, reason):
    """Revoke one session: every access and refresh token issued from that login dies."""
    return (RefreshSession.update(revoked_at=utcnow(), revoked_reason=reason)
            .where((RefreshSession.id == _uuid(session_id))
                   & RefreshSession.revoked_at.is_null())
            .execute())


def revoke_user_sessions(user_id, reason, keep=None):
    """Revoke every live session of ``user_id`` except ``keep``."""
    query = (RefreshSession.update(revoked_at=utcnow(), revoked_reason=reason)
             .where((RefreshSession.user == user_id) & RefreshSession.revoked_at.is_null()))
    if keep is not None:
        query = query.where(RefreshSession.id != _uuid(keep))
    return query.execute()


#: What a request needs to know of its token's session and user (never the password hash).
SESSION_COLUMNS = (RefreshSession.revoked_at, RefreshSession.expires_at, RefreshSession.user,
                   User.email, User.is_active, User.created_at.alias("user_created_at"))
_SESSION_AND_USER = PreparedQuery(RefreshSession, [RefreshSession.id], lambda session_id: (
    RefreshSession.select(*SESSION_COLUMNS).join(User).where(RefreshSession.id == session_id)))


def remember_token_user(user):
    """Keep the user the token check loaded for the rest of the request (token_user)."""
    g.vigil_token_user = user


def token_user():
    """The caller as the token check loaded it (UserSchema's fields, no password hash)."""
    return g.vigil_token_user


def token_user_known():
    """Whether this request's token check already loaded its user (its session is live)."""
    return "vigil_token_user" in g


def session_id_of(claims):
    """The session id a token names (a UUID that matches no session when unusable)."""
    return _uuid(claims.get("sid"))


def live_session_user(claims):
    """The active user (a SessionUser) behind a token whose session is live, else None
    (one query)."""
    found = _SESSION_AND_USER.rows(session_id_of(claims))
    return user_of_live_session(found[0] if found else None, claims)


def user_of_live_session(row, claims):
    """The SessionUser of a row holding SESSION_COLUMNS when the session is live, the user
    active and the token's subject that user; else None.

    The user is built from the same row as the check, so views need no second query for it.
    """
    if row is None or row.user_id is None:
        return None
    # Columns of another model's table arrive as the driver gives them: convert as peewee would.
    user_id = RefreshSession.user.python_value(row.user_id)
    revoked_at = RefreshSession.revoked_at.python_value(row.revoked_at)
    expires_at = RefreshSession.expires_at.python_value(row.expires_at)
    if (revoked_at is not None or expires_at <= utcnow()
            or not User.is_active.python_value(row.is_active)
            or str(user_id) != claims.get("sub")):
        return None
    return SessionUser(user_id, row.email, True, User.created_at.python_value(row.user_created_at))


def count_active_sessions():
    """Live, unrevoked refresh sessions (for the vigil_active_sessions gauge)."""
    return (RefreshSession.select()
            .where(RefreshSession.revoked_at.is_null() & (RefreshSession.expires_at > utcnow()))
            .count())


def _live(session):
    return (session.revoked_at is None and session.expires_at > utcnow()
            and session.user.is_active)


def _uuid(value):
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        # A token without a usable sid matches no session.
        return uuid.UUID(int=0)
