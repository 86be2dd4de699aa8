"""Back-pressure and the token rule against the real API: behind the appliance's own nginx site
(its auth rate limit) on loopback, and with an account whose login the API refuses."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.nginx_front import run_nginx

pytestmark = [pytest.mark.stack, pytest.mark.postgres, pytest.mark.slow]
FAST = ("--think-time", "0.1:0.4")


def by_status(url: str) -> Counter:
    """Requests by (method, route, status), read from the API itself (the request histogram's
    _count: the exporter's flask_http_request_total has no route label)."""
    counts: Counter = Counter()
    text = requests.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "flask_http_request_duration_seconds_count":
                key = (s.labels["method"], s.labels["route"], int(s.labels["status"]))
                counts[key] += int(s.value)
    return counts


def since(before: Counter, after: Counter) -> Counter:
    return Counter({k: after[k] - before[k] for k in after if after[k] - before[k]})


def test_a_spike_behind_the_auth_limit_waits_out_429s_and_never_goes_without_a_token(
    live_api, tmp_path, run_locust
):
    """The issue's cascade, reproduced: users that all register and log in at once, behind a
    tight per-address limit. Refused requests are waited out and counted apart; none of them
    is a failure, and no request reaches the API without a token."""
    thresholds = tmp_path / "thresholds.yml"
    thresholds.write_text(
        "spike:\n  all: ['error_ratio == 0', 'backpressure > 0']\n"
        "  recovered: ['error_ratio < 0.5']\n  run: ['recovery_s < 30']\n"
    )
    host, port = live_api.url.removeprefix("http://").split(":")
    with run_nginx(
        tmp_path / "nginx", upstream=f"{host}:{port}", nginx_auth_rate="4r/s", nginx_auth_burst=4
    ) as front:
        before = by_status(live_api.url)
        done = run_locust(
            "--headless",
            "--host",
            front.url,
            "--scenario",
            "spike",
            "--accounts",
            "register",  # every user registers as it arrives: the storm from the issue
            "--backoff-retries",
            "10",
            "--load-users",
            "3",
            "--load-ramp",
            "4s",
            "--spike-multiplier",
            "4",
            "--spike-duration",
            "10s",
            "--spike-recovery",
            "8s",
            *FAST,
            "--thresholds",
            str(thresholds),
            "--report-dir",
            str(tmp_path / "r"),
            timeout=150,
        )
        seen = since(before, by_status(live_api.url))
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    verdict = json.loads((tmp_path / "r" / "thresholds.json").read_text())
    pushed_back = {(r["method"], r["name"], r["status"]): r for r in verdict["backpressure"]}
    assert pushed_back, verdict["backpressure"]
    assert all(name.startswith("/api/v1/auth/") for _m, name, _s in pushed_back)  # the limit
    # 429 from nginx's limit; 503 from the API when its one hashing slot is taken (ADR 0051)
    assert all(
        status in (429, 503) and r["gave_up"] == 0 for (_m, _n, status), r in pushed_back.items()
    )
    assert verdict["totals"]["backpressure"] == sum(r["answers"] for r in pushed_back.values())
    # A request served after waiting out a Retry-After of 1 s took at least that long for its
    # user, and is recorded so.
    routes = {(r["method"], r["name"]): r for r in verdict["routes"]}
    assert all(routes[(m, n)]["max_ms"] >= 1000 for m, n, _s in pushed_back)
    assert verdict["totals"]["failures"] == 0  # every 429 was waited out, none is a failure
    assert "Back-pressure (429/503 with Retry-After" in done.stdout

    # The API itself: nginx kept the 429s from it, so each account was registered exactly
    # once; no request came without a token (401) or tripped the lockout (429).
    assert seen[("POST", "/api/v1/auth/register", 201)] == 12  # the spike's peak of users
    hashing_busy = {k: n for k, n in seen.items() if k[2] == 503}
    assert all(route.startswith("/api/v1/auth/") for _m, route, _s in hashing_busy)
    assert not [k for k in seen if k[2] in (401, 409, 429) or (k[2] >= 500 and k[2] != 503)]
    # Locust counted the answers the API gave (its 503s are back-pressure, counted apart).
    locust_requests = sum(r["requests"] for r in verdict["routes"])
    served = sum(seen.values()) - sum(hashing_busy.values())
    assert locust_requests <= served <= locust_requests + 12


def test_a_user_whose_login_is_refused_sends_nothing_that_needs_a_token(
    live_api, tmp_path, run_locust
):
    """Accounts from a file whose password the API refuses: the users try to log in, and only
    that; the lockout's long Retry-After is beyond the budget, so they stop asking."""
    accounts = tmp_path / "accounts.csv"
    accounts.write_text("# email,password\nnobody-here@example.com,not-the-password\n")
    before = by_status(live_api.url)
    done = run_locust(
        "--headless",
        "--host",
        live_api.url,
        "--scenario",
        "smoke",
        "--load-duration",
        "8s",
        *FAST,
        "--accounts-file",
        str(accounts),
        "--report-dir",
        str(tmp_path / "r"),
    )
    seen = since(before, by_status(live_api.url))
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-4000:]
    # Nothing but logins reached the API: no content, no /users/me, no refresh or logout.
    assert {route for _m, route, _s in seen} == {"/api/v1/auth/login"}, seen
    refused = seen[("POST", "/api/v1/auth/login", 401)]
    locked = seen[("POST", "/api/v1/auth/login", 429)]
    assert 10 <= refused <= 13, seen  # the lockout threshold, give or take users in flight
    assert 1 <= locked <= 3, seen  # one 429 each, then they wait out the lockout
    assert seen[("POST", "/api/v1/auth/login", 200)] == 0

    verdict = json.loads((tmp_path / "r" / "thresholds.json").read_text())
    assert verdict["accounts"]["source"] == str(accounts)
    [row] = verdict["routes"]
    assert (row["method"], row["name"]) == ("POST", "/api/v1/auth/login")
    assert row["failures"] == row["requests"] == refused + locked
    # A Retry-After far beyond the budget: given up. (A 503 while another user's password is
    # hashed, if any, is waited out: ADR 0051.)
    [lockout] = [r for r in verdict["backpressure"] if r["status"] == 429]
    assert (lockout["status"], lockout["answers"], lockout["gave_up"]) == (429, 0, locked)
    assert "Missing bearer token" not in done.stdout + done.stderr
