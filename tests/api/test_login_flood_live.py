"""A login flood through real gunicorn at production argon2 cost: reads stay within 2x of
their idle latency (issue 15).

Hashes run one at a time per node (ADR 0051) in a thread at SCHED_IDLE (ADR 0053), so reads
preempt them. Idle and flooded reads are measured in alternating phases of one run, each
figure the median of hundreds of reads: load from other work on a shared host falls on both
alike, and the comparison is the issue's (x2), not a figure from another time.
"""
import os
import statistics
import threading
import time

import pytest
import requests

from tests.servers import run_api

pytestmark = [pytest.mark.stack, pytest.mark.slow]

# The flood: four clients at 3.5 logins a second each, under nginx's old per-address
# limit of 10/s, which took GET /users/me from 5 ms to 713 ms median on 2 cores.
FLOOD_CLIENTS = 4
FLOOD_INTERVAL = 1 / 3.5
PHASES = 6  # pairs of (idle, flood)
PHASE_SECONDS = 2.5
SETTLE_SECONDS = 0.5  # reads this soon after a switch belong to neither phase
CREDS = {"email": "flood@example.com", "password": "correct horse battery"}


def _until_ok(call, seconds=60):
    """Setup calls hash too, at low priority: on a busy host they may get 503 at first."""
    deadline = time.monotonic() + seconds
    while True:
        r = call()
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        time.sleep(1)


class Flood:
    """FLOOD_CLIENTS threads logging in every FLOOD_INTERVAL while ``on`` is set."""

    def __init__(self, url):
        self.url, self.on, self.done = url, threading.Event(), threading.Event()
        self.statuses, self._lock = [], threading.Lock()
        self.threads = [threading.Thread(target=self._client) for _ in range(FLOOD_CLIENTS)]

    def _client(self):
        session = requests.Session()
        while not self.done.is_set():
            if not self.on.wait(0.1):
                continue
            started = time.monotonic()
            r = session.post(f"{self.url}/api/v1/auth/login", json=CREDS, timeout=30)
            with self._lock:
                self.statuses.append((r.status_code, r.headers.get("Retry-After")))
            self.done.wait(max(0.0, FLOOD_INTERVAL - (time.monotonic() - started)))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for t in self.threads:
            t.join(35)


def test_reads_stay_within_twice_their_idle_latency_during_a_login_flood(tmp_path):
    # production argon2 defaults (t=3, 64 MiB, p=4) and hashing priority (idle); one hash at
    # a time, the default on 2 cores
    env = {"VIGIL_PASSWORD_HASH_CONCURRENCY": "1"}
    with run_api(tmp_path, workers=5, env=env) as api:
        register = _until_ok(lambda: requests.post(f"{api.url}/api/v1/auth/register",
                                                   json=CREDS, timeout=30))
        assert register.status_code == 201, register.text
        login = _until_ok(lambda: requests.post(f"{api.url}/api/v1/auth/login", json=CREDS,
                                                timeout=30))
        assert login.status_code == 200, login.text
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        reads = {"idle": [], "flood": []}
        session = requests.Session()
        with Flood(api.url) as flood:
            for phase in ["idle", "flood"] * PHASES:
                (flood.on.set if phase == "flood" else flood.on.clear)()
                started = time.monotonic()
                while (elapsed := time.monotonic() - started) < PHASE_SECONDS:
                    t = time.perf_counter()
                    r = session.get(f"{api.url}/api/v1/users/me", headers=headers, timeout=30)
                    assert r.status_code == 200, r.text
                    if elapsed >= SETTLE_SECONDS:
                        reads[phase].append((time.perf_counter() - t) * 1000)
            flood.on.clear()

    idle, flooded = statistics.median(reads["idle"]), statistics.median(reads["flood"])
    codes = [code for code, _ in flood.statuses]
    print(f"reads: idle median {idle:.1f} ms ({len(reads['idle'])}), during the flood "
          f"{flooded:.1f} ms ({len(reads['flood'])}): x{flooded / idle:.2f}; logins: "
          f"{codes.count(200)} x 200, {codes.count(503)} x 503; load average "
          f"{os.getloadavg()[0]:.1f}")
    assert set(codes) <= {200, 503}, sorted(set(codes))
    assert codes.count(200) > 0, "no login was hashed: the flood did not compete for the CPU"
    assert codes.count(503) > 0, "the flood never exceeded the bound: nothing was tested"
    assert all(retry == "1" for code, retry in flood.statuses if code == 503)
    assert len(reads["idle"]) >= 50 and len(reads["flood"]) >= 50, reads
    assert flooded <= 2 * idle, f"reads {flooded:.1f} ms during the flood, {idle:.1f} idle"
