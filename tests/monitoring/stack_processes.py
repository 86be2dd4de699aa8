"""Start real Prometheus, Alertmanager and the local alert receiver on loopback for tests."""
from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from rule_files import ALERTS

RECEIVER = ALERTS / "alertmanager" / "alert_log_receiver.py"
START_TIMEOUT = 30.0
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def binary(*names):
    """First of ``names`` found on PATH, or None."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


PROMETHEUS = binary("prometheus")
ALERTMANAGER = binary("prometheus-alertmanager", "alertmanager")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout, interval=0.25, what="condition"):
    """Poll ``predicate`` until it returns a truthy value; raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(requests.RequestException):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def _process(args, log_path, ready_url):
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{args[0]} exited {proc.returncode}:\n"
                                   + Path(log_path).read_text(errors="replace")[-3000:])
            return requests.get(ready_url, timeout=2).status_code == 200
        wait_for(ready, START_TIMEOUT, what=f"{args[0]} ready")
        yield proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def run_receiver(tmp_path):
    """The real alert_log_receiver.py on a free port; yields (base_url, jsonl_path)."""
    path = Path(tmp_path) / "notifications.jsonl"
    proc = subprocess.Popen([sys.executable, str(RECEIVER), "--file", str(path),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        match = re.match(r"listening on ([\d.]+):(\d+)$", first)
        if not match:
            raise RuntimeError(f"receiver did not start: {first!r}")
        yield f"http://{match.group(1)}:{match.group(2)}", path
    finally:
        _stop(proc)
        proc.stdout.close()


def notifications(path):
    """Every record the receiver wrote so far."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def run_alertmanager(tmp_path, config_path):
    """Debian's Alertmanager on a free loopback port, gossip off; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [ALERTMANAGER, f"--config.file={config_path}",
            f"--storage.path={Path(tmp_path) / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
            f"--web.external-url={url}"]
    with _process(args, Path(tmp_path) / "alertmanager.log", f"{url}/-/ready"):
        yield url


@contextlib.contextmanager
def run_prometheus(tmp_path, config_path):
    """Debian's Prometheus on a free loopback port; yields its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [PROMETHEUS, f"--config.file={config_path}",
            f"--storage.tsdb.path={Path(tmp_path) / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with _process(args, Path(tmp_path) / "prometheus.log", f"{url}/-/ready"):
        yield url


def _scale(duration, factor):
    """``duration`` divided by ``factor``, as a Prometheus duration in whole milliseconds."""
    total = sum(int(n) * _UNITS_MS[u] for n, u in re.findall(r"(\d+)(ms|[smhdw])", duration))
    return f"{max(1, round(total / factor))}ms"


def time_scaled_rules(text, factor):
    """A rule file with every range selector and ``for`` divided by ``factor``.

    This is the only change: expressions, thresholds, labels and annotations stay as committed,
    so a drill at time-scale 60 exercises the real rules with minutes played as seconds.
    """
    text = re.sub(r"\[(\d+(?:ms|[smhdw]))+\]",
                  lambda m: f"[{_scale(m.group(0)[1:-1], factor)}]", text)
    return re.sub(r"^(\s+for:\s*)(\S+)\s*$",
                  lambda m: f"{m.group(1)}{_scale(m.group(2), factor)}", text, flags=re.M)
