"""Where telemetry's cost goes: instructions per request with each part of it taken away.

Builds the real app in this process (Flask's test client, SQLite, prometheus_client's
multiprocess mode on) once with ``VIGIL_TELEMETRY=off`` and once per variant with it on,
each variant with one part of telemetry removed after ``create_app`` through public APIs
(Flask's hook lists, blinker's ``disconnect``, the app's ``wsgi_app``). It runs itself
under valgrind's callgrind, which counts the instructions of each block of requests
exactly, whatever else loads the machine; wall-clock timings on this shared 2-core host
move more than the differences measured here. Prints instructions per request and each
variant's excess over telemetry off. Not part of ``make bench``: it needs valgrind
(``apt-get install valgrind``) and takes a few minutes.

    .venv/bin/python bench/profile_telemetry.py [--endpoint read] [--requests 100]
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = {
    "off": "VIGIL_TELEMETRY=off",
    "on": "VIGIL_TELEMETRY=on, everything",
    "-exporter": "without prometheus-flask-exporter's request hooks",
    "-exporter-after": "without the exporter's after_request hook only",
    "-statements": "without the per-statement observe (vigil_db_query_duration_seconds)",
    "-user": "without noting the authenticated user",
    "-context": "without the request context (ids, route, user, X-Request-ID)",
    "-faults": "without the fault switches' hook",
}
LIST_SIZE = 20


def _strip(app, variant):
    """Remove one part of telemetry from ``app`` (public attributes of Flask and blinker)."""
    from api import events

    def drop(hooks, test):
        hooks[None] = [f for f in hooks.get(None, []) if not test(f)]

    def from_exporter(f):
        return f.__module__.startswith("prometheus_flask_exporter")

    if variant == "-exporter":
        for hooks in (app.before_request_funcs, app.after_request_funcs,
                      app.teardown_request_funcs):
            drop(hooks, from_exporter)
    elif variant == "-exporter-after":
        drop(app.after_request_funcs, from_exporter)
    elif variant == "-statements":
        database = app.extensions["vigil_database"]
        for receiver in list(events.query_executed.receivers_for(database)):
            events.query_executed.disconnect(receiver, sender=database)
    elif variant in ("-user", "-context"):
        for receiver in list(events.request_authenticated.receivers_for(app)):
            events.request_authenticated.disconnect(receiver, sender=app)
        if variant == "-context":
            app.wsgi_app = app.wsgi_app.wsgi_app  # the RequestContextMiddleware's inner app
            drop(app.before_request_funcs, lambda f: f.__name__ == "note_route")
    elif variant == "-faults":
        drop(app.before_request_funcs, lambda f: f.__name__ == "inject_faults")


def _client(variant, tmp):
    """A migrated app with a user, a token and 20 items; (client, {endpoint: (path, headers)})."""
    import api.faults
    from api import create_app
    from api.migrate import upgrade

    # Under valgrind 2 s pass within a few requests: no re-read of the switches mid-block.
    api.faults.POLL_SECONDS = 1e9
    app = create_app({
        "DATABASE_URL": f"sqlite:///{tmp}/{variant}.db", "JWT_SECRET_KEY": "p" * 48,
        "TELEMETRY": "off" if variant == "off" else "on", "ARGON2_TIME_COST": 1,
        "ARGON2_MEMORY_KIB": 8192, "ARGON2_PARALLELISM": 1,
        "PASSWORD_HASH_SLOTS_DIR": f"{tmp}/slots"})
    with app.app_context():
        upgrade()
    client = app.test_client()
    creds = {"email": "profile@example.com", "password": "profile-password-123456"}
    client.post("/api/v1/auth/register", json=creds)
    token = client.post("/api/v1/auth/login", json=creds).json["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for n in range(LIST_SIZE):
        item = client.post("/api/v1/content", headers=auth,
                           json={"title": f"p{n}", "body": "x" * 200, "is_published": True})
    _strip(app, variant)
    return client, {"read": (f"/api/v1/content/{item.json['id']}", auth),
                    "list": (f"/api/v1/content?limit={LIST_SIZE}", auth)}


def _run_blocks(endpoint, requests):
    """Inside valgrind: each variant's block of requests between two os.getppid() marks."""
    tmp = tempfile.mkdtemp(prefix="vigil-profile-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(dir=tmp)
    sys.path.insert(0, str(ROOT))
    clients = {variant: _client(variant, tmp) for variant in VARIANTS}
    for variant, (client, targets) in clients.items():
        path, headers = targets[endpoint]
        for _ in range(50):  # warm: caches, label children, lazily built state
            client.get(path, headers=headers)
        os.getppid()  # callgrind dumps its counters here (--dump-before=getppid)
        for _ in range(requests):
            status = client.get(path, headers=headers).status_code
        os.getppid()
        if status != 200:
            sys.exit(f"{variant}: {path} answered {status}")
    shutil.rmtree(tmp, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", choices=("read", "list"), default="read")
    parser.add_argument("--requests", type=int, default=100, help="requests per variant")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        return _run_blocks(args.endpoint, args.requests)
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="vigil-callgrind-") as out:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--cache-sim=no", "--dump-instr=no",
             "--dump-before=getppid", f"--callgrind-out-file={out}/cg.out",
             sys.executable, __file__, "--inside", "--endpoint", args.endpoint,
             "--requests", str(args.requests)],
            capture_output=True, text=True, check=False)
        if done.returncode:
            sys.exit(f"the profiled run failed:\n{done.stdout}\n{done.stderr[-3000:]}")
        parts = {}
        for dump in glob.glob(f"{out}/cg.out.*"):
            text = Path(dump).read_text()
            part = re.search(r"^part: (\d+)", text, re.M)
            total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            parts[int(part.group(1))] = int(total.group(1))
    # Part 1 runs to the first mark; then each variant's block and the gap after it.
    counts = [parts[n] for n in sorted(parts)][1::2]
    print(f"{args.endpoint}: instructions per request (callgrind), {args.requests} requests "
          "per variant, in process")
    off = counts[0] / args.requests
    for (variant, meaning), count in zip(VARIANTS.items(), counts, strict=True):
        per = count / args.requests
        excess = "" if variant == "off" else f"   {per - off:+10,.0f} over off"
        print(f"  {variant:16} {per:12,.0f}{excess}   {meaning}")


if __name__ == "__main__":
    main()
