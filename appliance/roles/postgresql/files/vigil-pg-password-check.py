#!/usr/bin/env python3
"""Say whether a PostgreSQL login role's password is the one in a secrets file.

Usage: vigil-pg-password-check ROLE PASSWORD_FILE
Exit 0 when the role's stored SCRAM-SHA-256 verifier matches the file's password, 1 when it does
not (or the role has no SCRAM password), 2 when there is no such role, 3 on any other error.

The postgresql role runs it on the primary at every provision, so a secret file that was
deleted (and generated again) or edited is applied with ALTER ROLE, and an unchanged one changes
nothing. The verifier is read from pg_authid through psql as the postgres user; the password is
read from the file, never from the command line. Passwords are compared as PostgreSQL hashes
them for plain ASCII (the generated ones are letters and digits; SASLprep leaves those alone).
"""
import base64
import hashlib
import hmac
import re
import subprocess
import sys


def verifier_matches(verifier, password):
    """True when ``verifier`` (SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, RFC
    5803 as PostgreSQL stores it) was made from ``password``."""
    match = re.fullmatch(r"SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)", verifier)
    if match is None:
        return False
    iterations, salt, stored_key = int(match[1]), base64.b64decode(match[2]), match[3]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return hmac.compare_digest(hashlib.sha256(client_key).digest(), base64.b64decode(stored_key))


def stored_verifier(role):
    """The role's rolpassword ('' when it has none), or None when there is no such role."""
    query = f"SELECT 'role:' || coalesce(rolpassword, '') FROM pg_authid WHERE rolname = '{role}'"
    out = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-XtAc", query],
                         capture_output=True, text=True, check=True).stdout.strip()
    return out.removeprefix("role:") if out.startswith("role:") else None


def main(argv):
    if len(argv) != 2 or not re.fullmatch(r"[a-z_][a-z0-9_]*", argv[0]):
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 3
    role, password_file = argv
    try:
        with open(password_file) as handle:
            password = handle.read().strip()
        verifier = stored_verifier(role)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"vigil-pg-password-check: {exc}", file=sys.stderr)
        return 3
    if verifier is None:
        print(f"no role {role}")
        return 2
    if verifier_matches(verifier, password):
        print(f"{role}: the password matches {password_file}")
        return 0
    print(f"{role}: the password differs from {password_file}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
