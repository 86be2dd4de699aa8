"""The access-token check every authenticated view runs: one PyJWT decode per request.

flask-jwt-extended issues every token and checks refresh tokens (``POST /auth/refresh``).
Its ``jwt_required`` has PyJWT parse the token four times per request (an unverified
decode and header to choose the key, the verified decode, the header again), a quarter of
a worker's time on the item read, with no option to avoid it (ADR 0056). Access tokens are
therefore checked here with one public ``jwt.decode``, answering exactly what the
flask-jwt-extended check answered: the same claims, the same 401 problems.

A client sends the same access token with each request for the token's life, so each app
remembers the tokens PyJWT accepted (VerifiedTokens, ADR 0057): a later request with the
same token skips the signature check and checks only what time can change, its expiry.
"""
import functools
import time
from datetime import timedelta

import jwt
from flask import current_app, g, request

from api import errors, events
from api.sessions import live_session_user, remember_token_user

TOKEN_PROBLEM = "https://vigil.invalid/problems/invalid-token"
# Claims every token Vigil issues carries; a token without one is not Vigil's. (A token
# without "sid" is left to the session check, which finds no session: revoked.)
REQUIRED_CLAIMS = ["exp", "iat", "sub", "type"]


class TokenRejected(Exception):
    """The request carries no usable access token; ``detail`` says why (the 401's detail)."""

    def __init__(self, detail):
        super().__init__(detail)
        self.detail = detail


def unauthorized(detail):
    """The 401 problem every token failure answers."""
    return errors.problem(401, "Unauthorized", detail, type_=TOKEN_PROBLEM,
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def revoked_token_problem():
    """The 401 a token gets when its session is revoked or expired, or its user deactivated."""
    return unauthorized("Token has been revoked.")


def authenticated(user_id):
    """Announce that this request's token is valid and live (telemetry notes the user)."""
    events.request_authenticated.send(current_app._get_current_object(), user_id=user_id)


def bearer_credentials(value):
    """The token of an ``Authorization: Bearer <token>`` value (scheme case-insensitive,
    RFC 9110 11.1); TokenRejected when there is none or the value has another shape."""
    parts = (value or "").split()
    if not parts or parts[0].lower() != "bearer":
        raise TokenRejected("Missing bearer token.")
    if len(parts) != 2:
        raise TokenRejected("Invalid token.")
    return parts[1]


def _checked_claims(token, key, algorithms, leeway):
    """PyJWT's whole check of ``token``: signature, algorithm, required and timed claims."""
    return jwt.decode(token, key, algorithms=list(algorithms), leeway=leeway,
                      options={"require": REQUIRED_CLAIMS})


class VerifiedTokens:
    """The access tokens an app accepted lately, so a token's signature is checked once.

    PyJWT's decode (base64, two JSON parses, HMAC, claim checks) was the largest single cost
    of an authenticated read after its query (ADR 0057). Remembered, least recently used
    first out, are at most ``size`` tokens (0: none) that passed the whole check, keyed by
    the token and the key and algorithms that checked it; a later request with the same
    token checks only its expiry, by PyJWT's own rule. A token that failed is not
    remembered, so a forged or malformed one is checked (and refused) every time; the
    session behind a token is still checked in the database on every request.
    """

    def __init__(self, size):
        self._check = functools.lru_cache(maxsize=size)(_checked_claims)

    def claims(self, token, config):
        """The claims of a valid, unexpired access token signed with ``config``'s key."""
        leeway = config.get("JWT_DECODE_LEEWAY", 0)
        if isinstance(leeway, timedelta):
            leeway = leeway.total_seconds()
        try:
            claims = self._check(token, config["JWT_SECRET_KEY"],
                                 tuple(config["JWT_DECODE_ALGORITHMS"]), leeway)
        except jwt.ExpiredSignatureError:
            raise TokenRejected("Token has expired.") from None
        except jwt.InvalidTokenError:
            raise TokenRejected("Invalid token.") from None
        # A remembered token may have expired since: PyJWT's own rule, expired when
        # exp <= now - leeway.
        if int(claims["exp"]) <= time.time() - leeway:
            raise TokenRejected("Token has expired.")
        if claims["type"] != "access":  # a refresh token is never an access token
            raise TokenRejected("Invalid token.")
        return dict(claims)  # a copy: the remembered claims are shared between requests

    def cache_info(self):
        """functools' hits, misses, maxsize and currsize of the remembered tokens."""
        return self._check.cache_info()


def init_app(app):
    """Give ``app`` its own remembered tokens (VERIFIED_TOKEN_CACHE_SIZE of them)."""
    app.extensions["vigil_verified_tokens"] = VerifiedTokens(
        app.config["VERIFIED_TOKEN_CACHE_SIZE"])


def decode_access_token(token, app):
    """The claims of a valid, unexpired access token signed with ``app``'s key."""
    return app.extensions["vigil_verified_tokens"].claims(token, app.config)


def access_token_required(check_session=True):
    """Decorate a view that needs a valid access token.

    With ``check_session`` the token's session and user are loaded and checked live (one
    query; the user is kept for ``api.sessions.token_user``). Views that check the session
    in their own query (the item read, the list) pass False and call ``authenticated``.
    """
    def decorate(view):
        @functools.wraps(view)
        def checked(*args, **kwargs):
            try:
                claims = decode_access_token(
                    bearer_credentials(request.headers.get("Authorization")), current_app)
            except TokenRejected as e:
                return unauthorized(e.detail)
            g.vigil_token_claims = claims
            if check_session:
                user = live_session_user(claims)
                if user is None:
                    return revoked_token_problem()
                authenticated(claims["sub"])
                remember_token_user(user)
            return view(*args, **kwargs)
        return checked
    return decorate


def token_claims():
    """The claims of this request's access token (after ``access_token_required``)."""
    return g.vigil_token_claims


def token_identity():
    """The user id (``sub``) of this request's access token."""
    return g.vigil_token_claims["sub"]


def token_checked():
    """Whether ``access_token_required`` accepted a token in this request."""
    return "vigil_token_claims" in g
