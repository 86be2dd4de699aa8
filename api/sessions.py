"""Refresh sessions (token families): issue, rotate, detect reuse, revoke -- all in the database."""
import logging
import uuid
from datetime import timedelta

from flask import current_app, has_request_context, request
from flask_jwt_extended import create_access_token, create_refresh_token

from api import events
from api.db import write_transaction
from api.models import RefreshSession, User, utcnow

log = logging.getLogger(__name__)


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


def token_is_revoked(claims):
    """True unless the token's session is live and its user active (one query)."""
    session = (RefreshSession.select(RefreshSession, User).join(User)
               .where(RefreshSession.id == _uuid(claims.get("sid"))).first())
    if session is None or not _live(session):
        return True
    return str(session.user_id) != claims.get("sub")


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
