"""How many requests per second one Locust process drives on this machine, FastHttpUser vs
HttpUser, against trivial loopback endpoints (nginx, and a one-line WSGI app under gunicorn).

Run: ``.venv/bin/python bench/bench_locust_clients.py [--seconds 15] [--users 20]``. It prints
one line per (server, client) pair: requests/s, median and p95 latency, and the Locust process's
CPU use (100 % = the one core a Locust process can use). Not a test: figures go in README.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import requests

BIN = Path(sys.executable).parent
LOCUSTFILE = textwrap.dedent("""
    from locust import FastHttpUser, HttpUser, constant, task

    class Fast(FastHttpUser):
        wait_time = constant(0)

        @task
        def hit(self):
            self.client.get("/health/live")

    class Requests(HttpUser):
        wait_time = constant(0)

        @task
        def hit(self):
            self.client.get("/health/live")
""")
WSGI_APP = textwrap.dedent("""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
        return [b"ok\\n"]
""")
NGINX_CONF = """
worker_processes 1;
daemon off;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "/health/live", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def server(kind: str, workdir: Path):
    port = free_port()
    if kind == "nginx":
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=workdir, port=port))
        argv = [shutil.which("nginx") or "/usr/sbin/nginx", "-p", str(workdir), "-c", str(conf)]
    else:
        (workdir / "trivial.py").write_text(WSGI_APP)
        argv = [str(BIN / "gunicorn"), "--chdir", str(workdir), "-w", "1",
                "-b", f"127.0.0.1:{port}", "--log-level", "warning", "trivial:app"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proc)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def drive(url: str, user_class: str, users: int, seconds: int, workdir: Path) -> dict:
    locustfile = workdir / "bench_locustfile.py"
    locustfile.write_text(LOCUSTFILE)
    prefix = workdir / f"{user_class}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        [str(BIN / "locust"), "-f", str(locustfile), user_class, "--headless", "--host", url,
         "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(prefix),
         "--only-summary", "--loglevel", "WARNING"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    watched = psutil.Process(proc.pid)
    started = time.monotonic()
    cpu = 0.0
    while proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            times = watched.cpu_times()
            cpu = times.user + times.system
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"locust failed ({proc.returncode}): {proc.stderr.read()[-2000:]}")
    with open(f"{prefix}_stats.csv", newline="") as f:
        total = next(row for row in csv.DictReader(f) if row["Name"] == "Aggregated")
    return {"rps": float(total["Requests/s"]), "requests": int(total["Request Count"]),
            "failures": int(total["Failure Count"]), "p50": total["50%"], "p95": total["95%"],
            "cpu": 100.0 * cpu / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    servers = (["nginx"] if shutil.which("nginx") or Path("/usr/sbin/nginx").exists() else [])
    servers.append("gunicorn")
    print(f"one Locust process, {args.users} users, no wait, {args.seconds} s per run, "
          f"{os.cpu_count()} cores shared with the server")
    print(f"{'server':28} {'client':15} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'fails':>6} {'locust CPU':>10}")
    for kind in servers:
        label = "nginx (1 worker)" if kind == "nginx" else "gunicorn (1 sync worker)"
        for user_class, client in (("Fast", "FastHttpUser"), ("Requests", "HttpUser")):
            with tempfile.TemporaryDirectory(prefix="bench-locust-") as tmp:
                with server(kind, Path(tmp)) as url:
                    r = drive(url, user_class, args.users, args.seconds, Path(tmp))
            print(f"{label:28} {client:15} {r['rps']:8.0f} {r['p50']:>7} {r['p95']:>7} "
                  f"{r['failures']:6d} {r['cpu']:9.0f}%", flush=True)


if __name__ == "__main__":
    main()
