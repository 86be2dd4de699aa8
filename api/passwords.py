"""Password hashing with argon2id at the configured (OWASP or stronger) cost."""
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app


def _hasher():
    cfg = current_app.config
    key = (int(cfg["ARGON2_TIME_COST"]), int(cfg["ARGON2_MEMORY_KIB"]),
           int(cfg["ARGON2_PARALLELISM"]))
    cache = current_app.extensions.setdefault("vigil_password_hashers", {})
    if key not in cache:
        cache[key] = PasswordHasher(time_cost=key[0], memory_cost=key[1],
                                    parallelism=key[2], type=Type.ID)
    return cache[key]


def hash_password(password):
    """An argon2id hash string of ``password``."""
    return _hasher().hash(password)


def verify_password(password_hash, password):
    """True when ``password`` matches ``password_hash``."""
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash):
    """True when the hash was made with weaker parameters than configured now."""
    return _hasher().check_needs_rehash(password_hash)


def burn_verification_time():
    """Spend as long as a real verification, so unknown emails answer no faster."""
    cache = current_app.extensions.setdefault("vigil_password_hashers", {})
    dummy = cache.get("dummy")
    if dummy is None:
        dummy = cache["dummy"] = hash_password("not-a-real-password-0000")
    verify_password(dummy, "a-wrong-password-0000")
