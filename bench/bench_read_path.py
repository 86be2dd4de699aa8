"""Benchmark: Vigil's authenticated reads beside bare Flask and bare Flask plus one SELECT.

Starts a private PostgreSQL, the real API (4 sync workers, telemetry on, as deployed) and
bench/bare_app.py (4 sync workers, nothing but Flask and psycopg2) side by side, and loads
each endpoint with wrk on loopback in rounds whose order rotates, so noise on a shared
machine falls on every variant alike. Prints each round, then medians with their spread
and the paired ratios to the one-row baseline. The goal (issue 15): Vigil's authenticated
``GET /api/v1/content/{id}`` at least half of bare Flask + one SELECT (a read is its session
check plus its row). The list of 20 is reported against that baseline and against its own,
bare Flask plus one SELECT of a page of 20 (``flask+SELECT 20``). ``--compare-tree DIR``
also serves Vigil from another checkout (the code before a change, say:
``git worktree add DIR main``) on the same database, loaded in the same rounds;
``--telemetry-off`` also serves this checkout with ``VIGIL_TELEMETRY=off``, to show what
telemetry (issue 12) costs these reads.

    .venv/bin/python bench/bench_read_path.py [--seconds 5] [--rounds 6] [--compare-tree DIR]
        [--telemetry-off]
"""
import argparse
import contextlib
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import psycopg2
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import PostgresCluster  # noqa: E402
from tests.servers import run_api  # noqa: E402

WORKERS = 4
CONNECTIONS = 16
THREADS = 2
LIST_SIZE = 20
BASELINE = "flask+SELECT"
#: The list's own baseline, reported beside the goal: bare Flask plus one SELECT of a page.
LIST_BASELINE = f"flask+SELECT {LIST_SIZE}"


def _cpu_seconds(pids):
    """CPU seconds used so far by these processes and their descendants (gunicorn, PostgreSQL).

    A descendant that exited (a PostgreSQL backend whose connection closed) still counts:
    its parent reaped it, so its time is in the parent's children times. Without them the
    sum dropped whenever a backend exited, and a round could show negative CPU.
    """
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = proc.cpu_times()
                    total += (times.user + times.system + times.children_user
                              + times.children_system)
    return total


def _wrk(url, headers, seconds):
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if not match or not count or "Non-2xx" in out:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match.group(1)), int(count.group(1))


def _run(target, pids, seconds):
    """(requests/s, server CPU microseconds per request) of one wrk run."""
    before = _cpu_seconds(pids)
    rps, count = _wrk(*target, seconds)
    return rps, (_cpu_seconds(pids) - before) / count * 1e6


def _prepare(vigil, bare, other, quiet):
    """A user, a token and LIST_SIZE published items; returns {variant: (url, headers)}."""
    s = requests.Session()
    creds = {"email": "bench@example.com", "password": "bench-password-123456"}
    s.post(f"{vigil.url}/api/v1/auth/register", json=creds, timeout=30).raise_for_status()
    login = s.post(f"{vigil.url}/api/v1/auth/login", json=creds, timeout=30)
    auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
    for i in range(LIST_SIZE + 5):
        item = s.post(f"{vigil.url}/api/v1/content", headers=auth, timeout=30,
                      json={"title": f"bench {i}", "body": "x" * 200, "is_published": True})
        item.raise_for_status()
    item_id = item.json()["id"]
    targets = {
        "flask": (f"{bare.url}/bare/ping", {}),
        BASELINE: (f"{bare.url}/bare/content/{item_id}", {}),
        LIST_BASELINE: (f"{bare.url}/bare/content?limit={LIST_SIZE}", {}),
    }
    # The other checkout shares the database and the signing key: the same token works.
    for name, server in (("vigil", vigil), ("compared", other), ("no telemetry", quiet)):
        if server is not None:
            targets[f"{name} read"] = (f"{server.url}/api/v1/content/{item_id}", auth)
            targets[f"{name} list of {LIST_SIZE}"] = (
                f"{server.url}/api/v1/content?limit={LIST_SIZE}", auth)
    return targets


def _postmaster_pid(cluster):
    with open(Path(cluster.data) / "postmaster.pid") as f:
        return int(f.readline())


@contextlib.contextmanager
def _servers(tmp, compare_tree, telemetry_off):
    cluster = PostgresCluster()
    try:
        cluster.start()
        admin = psycopg2.connect(cluster.url)
        admin.autocommit = True
        admin.cursor().execute("CREATE DATABASE vigil")
        admin.close()
        env = {"VIGIL_DATABASE_URL": cluster.url.rsplit("/", 1)[0] + "/vigil",
               "VIGIL_MAX_REQUESTS": "0", "VIGIL_ARGON2_TIME_COST": "1",
               "VIGIL_ARGON2_MEMORY_KIB": "8192", "VIGIL_ARGON2_PARALLELISM": "1",
               "VIGIL_JWT_SECRET_KEY": secrets.token_hex(32)}
        with contextlib.ExitStack() as stack:
            vigil = stack.enter_context(run_api(Path(tmp) / "vigil", workers=WORKERS, env=env))
            bare = stack.enter_context(run_api(
                Path(tmp) / "bare", workers=WORKERS, migrate=False,
                env={**env, "VIGIL_TELEMETRY": "off"}, app="bench.bare_app:app"))
            other = compare_tree and stack.enter_context(run_api(
                Path(tmp) / "compared", workers=WORKERS, migrate=False, env=env,
                root=compare_tree))
            quiet = telemetry_off and stack.enter_context(run_api(
                Path(tmp) / "quiet", workers=WORKERS, migrate=False,
                env={**env, "VIGIL_TELEMETRY": "off"}))
            yield vigil, bare, other or None, quiet or None, _postmaster_pid(cluster)
    finally:
        cluster.destroy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=6, help="runs per variant")
    parser.add_argument("--compare-tree", type=Path, metavar="DIR",
                        help="also serve Vigil from this checkout, in the same rounds")
    parser.add_argument("--telemetry-off", action="store_true",
                        help="also serve this checkout with VIGIL_TELEMETRY=off")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    print(f"gunicorn: {WORKERS} sync workers each, wrk -t{THREADS} -c{CONNECTIONS}, "
          f"{args.rounds} rounds of {args.seconds}s per variant, PostgreSQL on the same host")
    if args.compare_tree:
        print(f"compared: Vigil served from {args.compare_tree.resolve()}")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp, \
            _servers(tmp, args.compare_tree, args.telemetry_off) as servers:
        *apis, postgres = servers
        targets = _prepare(*apis)
        # Server CPU: the variant's gunicorn plus PostgreSQL (one-row reads cost both).
        pids = {name: [next(api.pid for api in apis if api and url.startswith(api.url + "/")),
                       postgres]
                for name, (url, _) in targets.items()}
        names = list(targets)
        for url, headers in targets.values():
            _wrk(url, headers, 2)  # warm-up: pools, caches, imports
        rates = {name: [] for name in names}
        cpu = {name: [] for name in names}
        for round_no in range(args.rounds):
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            for name in order:
                rps, cpu_us = _run(targets[name], pids[name], args.seconds)
                rates[name].append(rps)
                cpu[name].append(cpu_us)
            print(f"  round {round_no + 1}: " + "  ".join(
                f"{name} {rates[name][-1]:.0f}/s {cpu[name][-1]:.0f}us" for name in names),
                flush=True)
    for baseline, shown in ((BASELINE, names),
                            (LIST_BASELINE, [name for name in names if " list " in name])):
        print(f"\nagainst {baseline}:")
        print(f"{'variant':<26} {'req/s median':>12} {'(min-max)':>13}  {'paired ratio':>12} "
              f"{'(min-max)':>11}  {'CPU us/req':>10}  {'CPU ratio':>9}")
        base_cpu = statistics.median(cpu[baseline])
        for name in shown:
            ratios = [a / b for a, b in zip(rates[name], rates[baseline], strict=True)]
            cpu_us = statistics.median(cpu[name])
            print(f"{name:<26} {statistics.median(rates[name]):12.0f} "
                  f"({min(rates[name]):5.0f}-{max(rates[name]):5.0f})  "
                  f"{statistics.median(ratios):12.2f} ({min(ratios):.2f}-{max(ratios):.2f})  "
                  f"{cpu_us:10.0f}  {base_cpu / cpu_us:9.2f}", flush=True)
    print(f"\ngoal: vigil read >= 0.50 of {BASELINE} (paired req/s ratio; the CPU ratio is "
          "the same comparison in server CPU per request, steadier on a busy host); the list "
          f"against {BASELINE} and {LIST_BASELINE} are reported figures")


if __name__ == "__main__":
    main()
