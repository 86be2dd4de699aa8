"""Account rules: registration, login with lockout, password change, deactivation."""
import contextlib
import math
from datetime import timedelta

from flask import current_app
from peewee import IntegrityError

from api import events
from api.db import database, write_transaction_for
from api.models import LoginFailure, User, utcnow
from api.passwords import (
    burn_verification_time,
    hash_password,
    hashing_slot,
    needs_rehash,
    verify_password,
)
from api.sessions import revoke_user_sessions, start_session


class EmailTaken(Exception):
    """Another account already uses this email."""


class InvalidCredentials(Exception):
    """Unknown email, wrong password or deactivated account (one answer for all)."""


class LockedOut(Exception):
    """Too many recent failures; ``retry_after`` seconds until the window passes."""

    def __init__(self, retry_after):
        super().__init__(f"locked for {retry_after}s")
        self.retry_after = retry_after


def register_user(email, password):
    """Create an account; raises EmailTaken."""
    password_hash = hash_password(password)
    try:
        with database.atomic():
            return User.create(email=email, password_hash=password_hash)
    except IntegrityError as e:
        raise EmailTaken(email) from e


def _notify(event, user_id=None):
    events.auth_event.send(current_app._get_current_object(), event=event,
                           user_id=str(user_id) if user_id else None)


def lockout_retry_after(email):
    """Seconds until ``email`` may try again, or 0 when not locked out.

    Locked while at least LOCKOUT_THRESHOLD failures fall inside the last
    LOCKOUT_WINDOW_SECONDS; the lock lifts when the oldest of them leaves the window.
    Failures are counted per email, known or not, so a 429 says nothing about whether
    an account exists.
    """
    threshold = int(current_app.config["LOCKOUT_THRESHOLD"])
    window = timedelta(seconds=int(current_app.config["LOCKOUT_WINDOW_SECONDS"]))
    now = utcnow()
    recent = (LoginFailure.select(LoginFailure.at)
              .where((LoginFailure.email == email) & (LoginFailure.at > now - window))
              .order_by(LoginFailure.at.desc()).limit(threshold))
    times = [row.at for row in recent]
    if len(times) < threshold:
        return 0
    return max(1, math.ceil((times[-1] + window - now).total_seconds()))


def authenticate(email, password):
    """Check credentials and start a session; returns the token pair.

    Raises LockedOut (even for the right password) or InvalidCredentials.
    """
    with hashing_slot():  # first: a login refused for capacity touches nothing else
        user = User.get_or_none(User.email == email)
        user_id = user.id if user else None
        try:
            attempt = _reserve_attempt(email)
        except LockedOut:
            _notify("lockout", user_id)
            raise
        with _released_if_unchecked(attempt):
            if user is None:
                burn_verification_time()
            matched = user is not None and verify_password(user.password_hash, password)
        if matched and user.is_active and needs_rehash(user.password_hash):
            new_hash = hash_password(password)
            User.update(password_hash=new_hash).where(User.id == user.id).execute()
    if not matched or not user.is_active:
        _notify("login_failure", user_id)
        raise InvalidCredentials()
    LoginFailure.delete().where(LoginFailure.email == email).execute()
    tokens = start_session(user)
    _notify("login_success", user.id)
    return tokens


def _reserve_attempt(email):
    """Count an attempt as a failure *before* its password check; raises LockedOut.

    Checking the count and recording the failure in one transaction per email makes the
    threshold exact under concurrency: parallel guesses each take a place in the count, and
    the one past the threshold is refused without a check. A success clears the count.
    """
    window = timedelta(seconds=int(current_app.config["LOCKOUT_WINDOW_SECONDS"]))
    with write_transaction_for(f"login {email}"):
        retry_after = lockout_retry_after(email)
        if retry_after:
            raise LockedOut(retry_after)
        now = utcnow()
        # Rows older than the window say nothing any more, for any email: prune as we go
        # (indexed on ``at``), so guessed emails cannot grow the table without bound.
        LoginFailure.delete().where(LoginFailure.at <= now - window).execute()
        return LoginFailure.create(email=email[:320], at=now)


@contextlib.contextmanager
def _released_if_unchecked(attempt):
    """Withdraw a reserved attempt when its password check never ran to an answer."""
    try:
        yield
    except BaseException:
        LoginFailure.delete().where(LoginFailure.id == attempt.id).execute()
        raise


def change_password(user, current_password, new_password, session_id):
    """Set a new password and revoke every session except the caller's; False if wrong.

    Wrong current passwords count toward the login lockout (LockedOut), so a stolen access
    token cannot be used to guess the password.
    """
    with hashing_slot():
        attempt = _reserve_attempt(user.email)
        with _released_if_unchecked(attempt):
            matched = verify_password(user.password_hash, current_password)
        if not matched:
            return False
        new_hash = hash_password(new_password)  # before the transaction: hashing takes a while
    with database.atomic():
        LoginFailure.delete().where(LoginFailure.id == attempt.id).execute()
        User.update(password_hash=new_hash).where(User.id == user.id).execute()
        revoke_user_sessions(user.id, reason="password_changed", keep=session_id)
    return True


def deactivate_user(user_id):
    """Switch an account off: it cannot log in and its live tokens stop working."""
    with database.atomic():
        User.update(is_active=False).where(User.id == user_id).execute()
        revoke_user_sessions(user_id, reason="deactivated")
