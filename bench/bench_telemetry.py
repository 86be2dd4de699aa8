"""Benchmark: requests per second of the same endpoints with telemetry on and off.

Starts the real API under gunicorn twice with identical settings (4 sync workers, no
recycling), VIGIL_TELEMETRY=on and =off, side by side, and loads each endpoint with wrk on
loopback. Each round runs both servers back to back (the order alternates), so a round's
on/off ratio compares the two under the same machine load: the machine is shared, and its
speed drifts. Printed per endpoint: median req/s of each mode, the median of the paired
ratios and their spread (lowest to highest), server CPU per request; and the machine's
1-minute load average at each round, since other work on it moves every figure.

Goal (issue 12): on/off >= 0.95 on the API's real endpoints, the authenticated item read and
the list of 20. The do-nothing route is reported as a figure, not a goal.

    .venv/bin/python bench/bench_telemetry.py [--seconds 5] [--rounds 10] [--endpoint read]
"""
import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.servers import run_api  # noqa: E402

WORKERS = 4
CONNECTIONS = 16
THREADS = 2
LIST_SIZE = 20
ENDPOINTS = ("read", "list", "ping")
GOAL = {"read": 0.95, "list": 0.95}  # ping: a reported figure, not a goal


def _prepare(api):
    """A user, a token and one published item; returns (path, headers) per endpoint."""
    s = requests.Session()
    creds = {"email": "bench@example.com", "password": "bench-password-123456"}
    s.post(f"{api.url}/api/v1/auth/register", json=creds, timeout=30).raise_for_status()
    token = s.post(f"{api.url}/api/v1/auth/login", json=creds, timeout=30).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for n in range(LIST_SIZE):
        item = s.post(f"{api.url}/api/v1/content", headers=auth, timeout=30,
                      json={"title": f"bench {n}", "body": "x" * 200, "is_published": True})
        item.raise_for_status()
    return {
        # an authenticated read: JWT check, revocation lookup, one SELECT
        "read": (f"/api/v1/content/{item.json()['id']}", auth),
        # an authenticated page of 20 items: the same checks, a keyset query, 20 rows
        "list": (f"/api/v1/content?limit={LIST_SIZE}", auth),
        # a trivial JSON route mounted in the real app (bench/ping_app.py): telemetry's
        # cost with nothing else to hide it, comparable to FACTS.md's bare-Flask figure
        "ping": ("/api/v1/bench/ping", {}),
    }


def _server_cpu(api):
    """CPU seconds used so far by the gunicorn master and its live workers."""
    master = psutil.Process(api.pid)
    total = 0.0
    for proc in [master, *master.children()]:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _load(api, path, headers, seconds):
    """(requests/s, server CPU microseconds per request) of one wrk run."""
    before = _server_cpu(api)
    rps, count = _wrk(api.url + path, headers, seconds)
    return rps, (_server_cpu(api) - before) / count * 1e6


def _wrk(url, headers, seconds):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if not match or not count or "Non-2xx" in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match.group(1)), int(count.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=10, help="on/off pairs per endpoint")
    parser.add_argument("--endpoint", choices=(*ENDPOINTS, "all"), default="all")
    args = parser.parse_args()
    # A SIGTERM (timeout, CI) unwinds like Ctrl-C, so both gunicorn servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(f"stopped by signal {signum}"))
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    endpoints = ENDPOINTS if args.endpoint == "all" else (args.endpoint,)
    env = {"VIGIL_MAX_REQUESTS": "0", "VIGIL_ARGON2_TIME_COST": "1",
           "VIGIL_ARGON2_MEMORY_KIB": "8192", "VIGIL_ARGON2_PARALLELISM": "1"}
    print(f"gunicorn: {WORKERS} sync workers, wrk -t{THREADS} -c{CONNECTIONS}, "
          f"{args.rounds} rounds of one {args.seconds}s run per mode, all on loopback")
    results = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp, \
            contextlib.ExitStack() as stack:
        # Both servers run side by side and idle while the other is loaded, so background
        # noise on a shared machine falls on both modes alike.
        servers = {
            mode: stack.enter_context(run_api(
                Path(tmp) / mode, workers=WORKERS, env={**env, "VIGIL_TELEMETRY": mode},
                app="bench.ping_app:app"))
            for mode in ("on", "off")
        }
        targets = {mode: _prepare(api) for mode, api in servers.items()}
        for endpoint in endpoints:
            rates = {"on": [], "off": []}
            cpu = {"on": [], "off": []}
            for mode in ("on", "off"):
                path, headers = targets[mode][endpoint]
                _wrk(servers[mode].url + path, headers, 2)  # warm-up
            for round_no in range(args.rounds):
                for mode in ("on", "off") if round_no % 2 == 0 else ("off", "on"):
                    path, headers = targets[mode][endpoint]
                    rps, cpu_us = _load(servers[mode], path, headers, args.seconds)
                    rates[mode].append(rps)
                    cpu[mode].append(cpu_us)
                loads.append(os.getloadavg()[0])
                print(f"  {endpoint:<5} round {round_no + 1}: on {rates['on'][-1]:7.0f} req/s"
                      f" {cpu['on'][-1]:5.0f} us CPU/req   off {rates['off'][-1]:7.0f} req/s"
                      f" {cpu['off'][-1]:5.0f} us CPU/req   ratio "
                      f"{rates['on'][-1] / rates['off'][-1]:.3f}   load {loads[-1]:.1f}",
                      flush=True)
            results[endpoint] = (rates, cpu)
        size = servers["on"].log_path.stat().st_size
    _report(results)
    print(f"1-minute load average at the start and after each round: {min(loads):.1f} to "
          f"{max(loads):.1f}, median {statistics.median(loads):.1f} (the benchmark's own wrk "
          "threads and gunicorn workers count in it)")
    print(f"JSON log written by the telemetry-on server: {size / 1e6:.1f} MB")


def _report(results):
    print()
    print("| endpoint | on req/s | off req/s | paired on/off ratio: median (lowest-highest) "
          "| server CPU per request on / off | paired CPU ratio off/on: median (lowest-highest) "
          "| goal |")
    print("|---|---|---|---|---|---|---|")
    for endpoint, (rates, cpu) in results.items():
        ratios = sorted(a / b for a, b in zip(rates["on"], rates["off"], strict=True))
        # Server CPU per request varies far less than req/s on a shared machine; when the
        # server is CPU-bound, off/on CPU is the throughput ratio to expect.
        cpu_ratios = sorted(b / a for a, b in zip(cpu["on"], cpu["off"], strict=True))
        on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
        cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
        goal = GOAL.get(endpoint)
        verdict = ("figure only" if goal is None else
                   f">= {goal}: {'met' if statistics.median(ratios) >= goal else 'NOT met'}")
        print(f"| {endpoint} | {on:.0f} | {off:.0f} | {statistics.median(ratios):.3f} "
              f"({ratios[0]:.3f}-{ratios[-1]:.3f}) | {cpu_on:.0f} / {cpu_off:.0f} us "
              f"({cpu_on - cpu_off:+.0f} us) | {statistics.median(cpu_ratios):.3f} "
              f"({cpu_ratios[0]:.3f}-{cpu_ratios[-1]:.3f}) | {verdict} |", flush=True)


if __name__ == "__main__":
    main()
