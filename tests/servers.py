"""Start the real API under gunicorn for tests: ``with run_api(tmp_path) as api: ...``."""
from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
#: The virtualenv running the tests (.venv, or .venv-py313 in the Python 3.13 tier).
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 45.0
STOP_TIMEOUT = 15.0


@dataclass
class RunningApi:
    """A gunicorn serving ``api.wsgi:app`` on loopback, and how to reach and inspect it."""

    url: str
    port: int
    log_path: Path
    env: dict
    metrics_dir: Path
    process: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        """The gunicorn master's pid."""
        return self.process.pid

    def flask(self, *args, check=False, timeout=120, input=None) -> subprocess.CompletedProcess:
        """Run ``flask --app api ARGS`` with the server's environment (same database)."""
        return run_flask(self.env, *args, check=check, timeout=timeout, input=input)

    def read_log(self) -> str:
        """Everything gunicorn and the app wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def base_env(tmp_path: Path, env: dict | None = None) -> dict:
    """A test server's environment: no inherited VIGIL_* settings, a private database."""
    full = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("VIGIL_") and not k.startswith("VIGIL_TEST_"))
        and k not in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
    }
    full["PATH"] = f"{VENV_BIN}{os.pathsep}{full.get('PATH', '')}"
    full["PYTHONUNBUFFERED"] = "1"
    full["VIGIL_DATABASE_URL"] = f"sqlite:///{tmp_path / 'vigil.db'}"
    full["VIGIL_JWT_SECRET_KEY"] = secrets.token_hex(32)
    full["VIGIL_METRICS_DIR"] = str(tmp_path / "metrics")
    full["VIGIL_GRACEFUL_TIMEOUT"] = "5"
    # A test server's hashing slots are its own (the bound is per node: parallel tests on one
    # machine would share it) and plentiful unless a test sets the bound it examines.
    full["VIGIL_PASSWORD_HASH_SLOTS_DIR"] = str(tmp_path / "hash-slots")
    full["VIGIL_PASSWORD_HASH_CONCURRENCY"] = "64"
    full.update(env or {})
    return full


def run_flask(env: dict, *args, check=False, timeout=120, input=None):
    """Run the Flask CLI of the app from the repository root."""
    return subprocess.run(
        [str(VENV_BIN / "flask"), "--app", "api", *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=check, timeout=timeout,
        input=input,
    )


def _listening_socket() -> socket.socket:
    # gunicorn inherits an already-bound socket (fd://N), so no other test can grab the port
    # between choosing it and binding it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _wait_live(proc: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {proc.returncode} while starting:\n"
                + log_path.read_text(errors="replace")[-5000:]
            )
        try:
            if requests.get(f"{url}/health/live", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(
        f"gunicorn not live after {START_TIMEOUT}s:\n"
        + log_path.read_text(errors="replace")[-5000:]
    )


def stop_gunicorn(proc: subprocess.Popen) -> None:
    """TERM the master (graceful), then KILL its whole process group if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    # Workers orphaned by a killed master would keep the port: clear the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=STOP_TIMEOUT)


@contextlib.contextmanager
def run_api(tmp_path, workers=2, env=None, extra_args=(), migrate=True, app="api.wsgi:app",
            root=ROOT):
    """Migrate a private database, start gunicorn with ``workers`` workers, yield a RunningApi.

    ``root`` is the checkout whose code gunicorn serves (another one than this, say, for a
    benchmark of the code before a change).
    """
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    full_env = base_env(tmp_path, {"VIGIL_WORKERS": str(workers), **(env or {})})
    if migrate:
        done = run_flask(full_env, "db", "upgrade")
        if done.returncode != 0:
            raise RuntimeError(f"flask db upgrade failed:\n{done.stdout}\n{done.stderr}")

    sock = _listening_socket()
    port = sock.getsockname()[1]
    full_env["VIGIL_BIND"] = f"fd://{sock.fileno()}"
    log_path = tmp_path / f"gunicorn-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "-c", "gunicorn.conf.py", *extra_args, app],
            cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),), start_new_session=True,
        )
    sock.close()
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_live(proc, url, log_path)
        yield RunningApi(
            url=url, port=port, log_path=log_path, env=full_env,
            metrics_dir=Path(full_env["VIGIL_METRICS_DIR"]), process=proc,
        )
    finally:
        stop_gunicorn(proc)
