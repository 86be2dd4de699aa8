"""A login flood through real gunicorn at production argon2 cost: reads keep their latency.

The per-node hashing bound turns logins beyond capacity into immediate 503s, so gunicorn's
workers stay free for reads. The figure with its spread is bench/bench_login_flood.py's
(make bench); this test asserts the mechanism and a bound far below the unbounded failure
(GET /users/me from 5 ms to 713 ms median), generous enough for a shared machine.
"""
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
FLOOD_SECONDS = 6
CREDS = {"email": "flood@example.com", "password": "correct horse battery"}


def _read_latencies(url, headers, stop=None, count=40):
    """Sequential GET /users/me: latencies in ms, until ``stop`` is set (or ``count`` done)."""
    session, out = requests.Session(), []
    while (stop is None and len(out) < count) or (stop is not None and not stop.is_set()):
        started = time.perf_counter()
        r = session.get(f"{url}/api/v1/users/me", headers=headers, timeout=30)
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return out


def test_reads_keep_their_latency_during_a_login_flood(tmp_path):
    # production argon2 defaults (t=3, 64 MiB, p=4), one hash at a time on this node
    env = {"VIGIL_PASSWORD_HASH_CONCURRENCY": "1"}
    with run_api(tmp_path, workers=5, env=env) as api:
        assert requests.post(f"{api.url}/api/v1/auth/register", json=CREDS,
                             timeout=30).status_code == 201
        token = requests.post(f"{api.url}/api/v1/auth/login", json=CREDS,
                              timeout=30).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        idle = statistics.median(_read_latencies(api.url, headers))

        stop, statuses, lock = threading.Event(), [], threading.Lock()

        def flood():
            session = requests.Session()
            next_at = time.monotonic()
            while not stop.is_set():
                r = session.post(f"{api.url}/api/v1/auth/login", json=CREDS, timeout=30)
                with lock:
                    statuses.append((r.status_code, r.headers.get("Retry-After")))
                next_at += FLOOD_INTERVAL
                stop.wait(max(0.0, next_at - time.monotonic()))

        clients = [threading.Thread(target=flood) for _ in range(FLOOD_CLIENTS)]
        for c in clients:
            c.start()
        time.sleep(0.5)  # the flood is under way
        reader_stop = threading.Event()
        threading.Timer(FLOOD_SECONDS, reader_stop.set).start()
        during = _read_latencies(api.url, headers, stop=reader_stop)
        stop.set()
        for c in clients:
            c.join(30)
        flooded = statistics.median(during)

    codes = [code for code, _ in statuses]
    print(f"reads: idle median {idle:.1f} ms, during the flood {flooded:.1f} ms "
          f"({len(during)} reads); logins: {codes.count(200)} x 200, {codes.count(503)} x 503")
    assert set(codes) <= {200, 503}, sorted(set(codes))
    assert codes.count(503) > 0, "the flood never exceeded the bound: nothing was tested"
    assert codes.count(200) > 0
    assert all(retry == "1" for code, retry in statuses if code == 503)
    # generous for a shared 2-core host (the goal, x2, is the benchmark's); unbounded measured x7
    assert flooded <= 3 * idle + 50, f"reads {flooded:.1f} ms during the flood, {idle:.1f} idle"
