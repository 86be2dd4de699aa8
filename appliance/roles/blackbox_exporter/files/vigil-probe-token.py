#!/usr/bin/env python3
"""Keep a fresh access token for the authenticated-read probe (blackbox module https_content_read).

Usage: vigil-probe-token.py --base-url https://HOST --email E --password-file F --ca-file CA
           --state-dir DIR [--max-age-minutes 10]
Run every minute by a systemd timer. When DIR/access-token is younger than --max-age-minutes it
does nothing; otherwise it rotates the probe session's refresh token (POST /api/v1/auth/refresh)
and, when that is refused or there is none, logs in (registering the probe account the first
time). Tokens are written atomically, 0640, for the blackbox exporter (group prometheus) to read.
Stdlib only. Exits 0 when the token is fresh, 1 when the API could not be reached (the probe
then fails on its own, which is what an outage should look like), 2 on bad arguments.
"""
import argparse
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def call(base, path, ca_file, body=None, bearer=None, timeout=10):
    """POST JSON; return (status, parsed body or None)."""
    request = urllib.request.Request(
        base.rstrip("/") + path, method="POST", data=json.dumps(body or {}).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "vigil-probe/1 (token)",
                 **({"Authorization": f"Bearer {bearer}"} if bearer else {})})
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None


def write_private(path, text):
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def fresh_pair(args, state):
    """A new token pair: rotate the stored refresh token, else log in (register once)."""
    refresh = state / "refresh-token"
    if refresh.exists():
        status, body = call(args.base_url, "/api/v1/auth/refresh", args.ca_file,
                            bearer=refresh.read_text().strip())
        if status == 200:
            return body
    password = Path(args.password_file).read_text().strip()
    credentials = {"email": args.email, "password": password}
    status, body = call(args.base_url, "/api/v1/auth/login", args.ca_file, credentials)
    if status == 401:
        call(args.base_url, "/api/v1/auth/register", args.ca_file, credentials)
        status, body = call(args.base_url, "/api/v1/auth/login", args.ca_file, credentials)
    if status != 200:
        raise RuntimeError(f"login answered {status}")
    return body


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--max-age-minutes", type=float, default=10)
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    access = state / "access-token"
    if access.exists() and time.time() - access.stat().st_mtime < args.max_age_minutes * 60:
        return 0
    try:
        pair = fresh_pair(args, state)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"vigil-probe-token: no fresh token: {exc}", file=sys.stderr)
        return 1
    write_private(state / "refresh-token", pair["refresh_token"])
    write_private(access, pair["access_token"])
    print("vigil-probe-token: access token renewed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
