"""Benchmark: read latency during a login flood, by hashing bound and hashing priority.

Starts the real API (5 sync workers, the default for 2 cores; production argon2id t=3,
64 MiB, p=4) once per variant, side by side: one hashing slot (the default on 2 cores) with
hashes at SCHED_IDLE (the default), at nice 19 and at normal priority, and 64 slots at
normal priority (unbounded in effect). For each, in rotating rounds: the median and 90th
percentile of sequential GET /users/me idle and during the issue's flood (4 clients at 3.5
logins/s each); then the node's hashing capacity: logins/s answered 200 under an unpaced
flood of 8 clients, which sets nginx's per-address auth rate (appliance/roles/nginx).

    .venv/bin/python bench/bench_login_flood.py [--rounds 2] [--seconds 8]
"""
import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import run_api  # noqa: E402

CREDS = {"email": "flood@example.com", "password": "correct horse battery"}
#: name -> the variant's settings (VIGIL_PASSWORD_HASH_CONCURRENCY and _PRIORITY)
MODES = {
    "1 slot, idle": ("1", "idle"),  # the defaults on 2 cores (ADR 0053)
    "1 slot, nice 19": ("1", "nice"),
    "1 slot, normal": ("1", "normal"),  # ADR 0051 alone
    "64 slots, normal": ("64", "normal"),  # unbounded in effect: the finding
}


def _reads(url, headers, seconds=None, count=60):
    session, out = requests.Session(), []
    deadline = time.monotonic() + seconds if seconds else None
    while (deadline and time.monotonic() < deadline) or (not deadline and len(out) < count):
        started = time.perf_counter()
        session.get(f"{url}/api/v1/users/me", headers=headers, timeout=60).raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return out


@contextlib.contextmanager
def _flood(url, clients, interval):
    """Logins from ``clients`` threads, each every ``interval`` s (0: back to back)."""
    stop, codes, lock = threading.Event(), [], threading.Lock()

    def client():
        session, next_at = requests.Session(), time.monotonic()
        while not stop.is_set():
            r = session.post(f"{url}/api/v1/auth/login", json=CREDS, timeout=60)
            with lock:
                codes.append(r.status_code)
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        yield codes
    finally:
        stop.set()
        for t in threads:
            t.join(60)


def _p90(values):
    return statistics.quantiles(values, n=10)[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=8, help="length of each flood")
    args = parser.parse_args()
    results = {mode: {"idle": [], "flood": [], "p90": [], "ok": [], "capacity": []}
               for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        servers = {mode: stack.enter_context(run_api(
            Path(tmp) / str(i), workers=5, env={"VIGIL_PASSWORD_HASH_CONCURRENCY": limit,
                                                "VIGIL_PASSWORD_HASH_PRIORITY": priority}))
            for i, (mode, (limit, priority)) in enumerate(MODES.items())}
        headers = {}
        for mode, api in servers.items():
            requests.post(f"{api.url}/api/v1/auth/register", json=CREDS,
                          timeout=60).raise_for_status()
            token = requests.post(f"{api.url}/api/v1/auth/login", json=CREDS,
                                  timeout=60).json()["access_token"]
            headers[mode] = {"Authorization": f"Bearer {token}"}
        for round_no in range(args.rounds):
            order = list(MODES)[round_no % len(MODES):] + list(MODES)[:round_no % len(MODES)]
            for mode in order:
                api, r = servers[mode], results[mode]
                idle = _reads(api.url, headers[mode])
                with _flood(api.url, 4, 1 / 3.5) as codes:
                    during = _reads(api.url, headers[mode], seconds=args.seconds)
                with _flood(api.url, 8, 0) as unpaced:
                    time.sleep(args.seconds)
                    capacity = unpaced.count(200) / (args.seconds + 0.5)
                r["idle"].append(statistics.median(idle))
                r["flood"].append(statistics.median(during))
                r["p90"].append(_p90(during))
                r["ok"].append(f"{codes.count(200)}x200/{codes.count(503)}x503")
                r["capacity"].append(capacity)
                print(f"  round {round_no + 1} {mode:<16} reads idle {r['idle'][-1]:6.1f} ms, "
                      f"flood median {r['flood'][-1]:6.1f} ms p90 {r['p90'][-1]:6.1f} ms "
                      f"(x{r['flood'][-1] / r['idle'][-1]:.1f}); flood logins {r['ok'][-1]}; "
                      f"capacity {capacity:.1f} logins/s", flush=True)
    for mode, r in results.items():
        ratios = [f / i for f, i in zip(r["flood"], r["idle"], strict=True)]
        print(f"{mode:<16} read median idle {statistics.median(r['idle']):.1f} ms, flood "
              f"{statistics.median(r['flood']):.1f} ms: x{statistics.median(ratios):.1f} "
              f"(x{min(ratios):.1f}-x{max(ratios):.1f}); hashing capacity "
              f"{statistics.median(r['capacity']):.1f} logins/s "
              f"({min(r['capacity']):.1f}-{max(r['capacity']):.1f})")
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("goal: reads within x2 of idle during the flood")


if __name__ == "__main__":
    main()
