"""Benchmark: requests per second of the same endpoint with telemetry on and off.

Starts the real API under gunicorn twice with identical settings (4 sync workers, no
recycling), VIGIL_TELEMETRY=on and =off, and loads one endpoint with wrk on loopback.
Rounds alternate on/off so machine noise hits both; the medians and their ratio are printed.
The goal (issue 3) is on/off >= 0.93.

    .venv/bin/python bench/bench_telemetry.py [--seconds 10] [--rounds 3] [--endpoint read]
"""
import argparse
import contextlib
import re
import shutil
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


def _prepare(api):
    """A user, a token and one published item; returns (path, headers) per endpoint."""
    s = requests.Session()
    creds = {"email": "bench@example.com", "password": "bench-password-123456"}
    s.post(f"{api.url}/api/v1/auth/register", json=creds, timeout=30).raise_for_status()
    token = s.post(f"{api.url}/api/v1/auth/login", json=creds, timeout=30).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    item = s.post(f"{api.url}/api/v1/content", headers=auth, timeout=30,
                  json={"title": "bench", "body": "x" * 200, "is_published": True})
    item.raise_for_status()
    return {
        # an authenticated read: JWT check, revocation lookup, one SELECT
        "read": (f"/api/v1/content/{item.json()['id']}", auth),
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
    parser.add_argument("--endpoint", choices=("read", "ping", "both"), default="both")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    endpoints = ("read", "ping") if args.endpoint == "both" else (args.endpoint,)
    env = {"VIGIL_MAX_REQUESTS": "0", "VIGIL_ARGON2_TIME_COST": "1",
           "VIGIL_ARGON2_MEMORY_KIB": "8192", "VIGIL_ARGON2_PARALLELISM": "1"}
    print(f"gunicorn: {WORKERS} sync workers, wrk -t{THREADS} -c{CONNECTIONS}, "
          f"{args.rounds} alternating {args.seconds}s runs per mode, all on loopback")
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
                print(f"  {endpoint:<5} round {round_no + 1}: on {rates['on'][-1]:7.0f} req/s"
                      f" {cpu['on'][-1]:5.0f} us CPU/req   off {rates['off'][-1]:7.0f} req/s"
                      f" {cpu['off'][-1]:5.0f} us CPU/req", flush=True)
            on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
            pair = statistics.median(a / b for a, b in zip(rates["on"], rates["off"], strict=True))
            print(f"{endpoint:<5} median on {on:7.0f} req/s  off {off:7.0f} req/s  "
                  f"ratio {on / off:.3f}  (median of paired ratios {pair:.3f}; goal >= 0.93)",
                  flush=True)
            # Server CPU per request is steadier than req/s on a shared machine: when the
            # server is CPU-bound, off/on CPU per request is the throughput ratio to expect.
            cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
            print(f"{endpoint:<5} server CPU per request: on {cpu_on:.0f} us  "
                  f"off {cpu_off:.0f} us  telemetry {cpu_on - cpu_off:+.0f} us  "
                  f"CPU ratio off/on {cpu_off / cpu_on:.3f}", flush=True)
        size = servers["on"].log_path.stat().st_size
        print(f"JSON log written by the telemetry-on server: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
