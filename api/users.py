"""The users blueprint: the caller's own account and password."""
import click
from flask import Blueprint as FlaskBlueprint

from api.accounts import LockedOut, change_password, deactivate_user
from api.emails import InvalidEmail, normalise_email
from api.errors import problem, validation_problem
from api.extensions import ApiBlueprint
from api.models import User
from api.schemas import PasswordChangeSchema, UserSchema
from api.sessions import token_user
from api.tokens import access_token_required, token_claims, token_identity

bp = ApiBlueprint("users", __name__, url_prefix="/api/v1/users", description="The caller's account")
cli = FlaskBlueprint("users_cli", __name__, cli_group="users")
BEARER = [{"bearer": []}]


def current_user_with_password():
    """The caller's whole User row, password hash included (the token check reads less)."""
    return User.get_by_id(token_identity())


@bp.get("/me")
@bp.common_errors()
@bp.doc(security=BEARER)
@access_token_required()
@bp.response(200, UserSchema)
@bp.alt_response(401, response="UNAUTHORIZED")
def me():
    """The caller's account."""
    return token_user()


@bp.post("/me/password")
@bp.common_errors(body=True)
@bp.doc(security=BEARER)
@access_token_required()
@bp.arguments(PasswordChangeSchema)
@bp.response(204)
@bp.alt_response(401, response="UNAUTHORIZED")
@bp.alt_response(429, response="TOO_MANY_REQUESTS")
def password(data):
    """Change the password; every other session is revoked."""
    try:
        changed = change_password(current_user_with_password(), data["current_password"],
                                  data["new_password"], session_id=token_claims()["sid"])
    except LockedOut as e:
        return problem(429, detail="Too many wrong passwords; try again later.",
                       headers={"Retry-After": str(e.retry_after)})
    if not changed:
        return validation_problem(
            [{"field": "current_password", "message": "Current password is incorrect."}])


@cli.cli.command("deactivate")
@click.argument("email")
def deactivate_command(email):
    """Deactivate an account: no more logins, its live tokens are rejected."""
    try:
        email = normalise_email(email)
    except InvalidEmail as e:
        raise click.ClickException(f"not a valid email address: {e}") from e
    user = User.get_or_none(User.email == email)
    if user is None:
        raise click.ClickException(f"no account with email {email}")
    deactivate_user(user.id)
    click.echo(f"deactivated {user.email}")
