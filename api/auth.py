"""The auth blueprint: register, login, refresh (rotation), logout, logout-all."""
from flask import current_app
from flask_jwt_extended import get_jwt, jwt_required

from api import events
from api.accounts import (
    EmailTaken,
    InvalidCredentials,
    LockedOut,
    authenticate,
    register_user,
)
from api.errors import problem
from api.extensions import ApiBlueprint
from api.schemas import LoginSchema, RegisteredSchema, RegisterSchema, TokenPairSchema
from api.sessions import SessionRejected, revoke_family, revoke_user_sessions, rotate
from api.tokens import access_token_required, token_claims, token_identity

bp = ApiBlueprint("auth", __name__, url_prefix="/api/v1/auth", description="Accounts and tokens")
BEARER = [{"bearer": []}]
#: RFC 6749 5.1: responses carrying tokens must not be stored by any cache.
NO_STORE = {"Cache-Control": "no-store"}
NO_STORE_HEADER = {"Cache-Control": {"description": "no-store: tokens are never cached",
                                     "schema": {"type": "string", "enum": ["no-store"]}}}


@bp.post("/register")
@bp.common_errors(body=True)
@bp.arguments(RegisterSchema)
@bp.response(201, RegisteredSchema)
@bp.alt_response(409, response="CONFLICT")
def register(data):
    """Create an account."""
    try:
        return register_user(data["email"], data["password"])
    except EmailTaken:
        return problem(409, detail="An account with this email already exists.")


@bp.post("/login")
@bp.common_errors(body=True)
@bp.arguments(LoginSchema)
@bp.response(200, TokenPairSchema, headers=NO_STORE_HEADER)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
def login(data):
    """Exchange email and password for an access and a refresh token."""
    try:
        return authenticate(data["email"], data["password"]), 200, NO_STORE
    except LockedOut as e:
        return problem(429, detail="Too many failed logins; try again later.",
                       headers={"Retry-After": str(e.retry_after)})
    except InvalidCredentials:
        return problem(401, detail="Email or password is incorrect.")


@bp.post("/refresh")
@bp.common_errors(body=True)
@bp.doc(security=BEARER, description="Present the refresh token as the bearer token.")
@jwt_required(refresh=True)
@bp.response(200, TokenPairSchema, headers=NO_STORE_HEADER)
@bp.alt_response(401, response="UNAUTHORIZED")
def refresh():
    """Spend a refresh token for a new token pair; a reused one revokes the session."""
    try:
        return rotate(get_jwt()), 200, NO_STORE
    except SessionRejected as e:
        return problem(401, detail=str(e))


@bp.post("/logout")
@bp.common_errors(body=True)
@bp.doc(security=BEARER)
@access_token_required()
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
def logout():
    """Revoke this session: its access and refresh tokens stop working."""
    revoke_family(token_claims()["sid"], reason="logout")
    events.auth_event.send(current_app._get_current_object(), event="logout",
                           user_id=token_identity())


@bp.post("/logout-all")
@bp.common_errors(body=True)
@bp.doc(security=BEARER)
@access_token_required()
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
def logout_all():
    """Revoke every session of the caller."""
    revoke_user_sessions(token_identity(), reason="logout_all")
    events.auth_event.send(current_app._get_current_object(), event="logout",
                           user_id=token_identity())
