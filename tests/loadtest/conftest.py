"""Fixtures for the load-test tier: run Locust as a subprocess (gevent stays out of pytest)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from loadtest import thresholds

ROOT = Path(__file__).resolve().parents[2]
LOCUST = Path(sys.executable).parent / "locust"
LOCUSTFILE = ROOT / "loadtest" / "locustfile.py"
#: Cheap argon2 so registrations and logins do not swamp two shared cores during tests.
FAST_ARGON2 = {
    "VIGIL_ARGON2_TIME_COST": "1",
    "VIGIL_ARGON2_MEMORY_KIB": "8",
    "VIGIL_ARGON2_PARALLELISM": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def locust_env(**extra: str) -> dict:
    """The environment a Locust subprocess gets: no inherited VIGIL_LOAD_* or LOCUST_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_LOAD_", "LOCUST_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def locust_command(*args: str) -> list[str]:
    return [str(LOCUST), "-f", str(LOCUSTFILE), *args]


def _run_locust(*args: str, env: dict | None = None, timeout: float = 120):
    return subprocess.run(
        locust_command(*args),
        cwd=ROOT,
        env=env or locust_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_locust():
    """``run_locust(*ARGS, env=None, timeout=120)``: run ``locust -f loadtest/locustfile.py ARGS``
    to completion (bounded), output captured."""
    return _run_locust


@pytest.fixture(scope="module")
def live_api(tmp_path_factory, module_postgres_url):
    """The real API under gunicorn (2 workers) on a loopback port, on a fresh PostgreSQL database
    (what the appliance runs), shared by a module's runs."""
    from tests.servers import run_api

    env = {**FAST_ARGON2, "VIGIL_DATABASE_URL": module_postgres_url}
    with run_api(tmp_path_factory.mktemp("api"), workers=2, env=env) as api:
        yield api


@pytest.fixture(name="locust_env")
def _locust_env_fixture():
    """``locust_env(**extra)``: the environment for a Locust subprocess."""
    return locust_env


@pytest.fixture(name="locust_command")
def _locust_command_fixture():
    """``locust_command(*args)``: the argv of ``locust -f loadtest/locustfile.py ARGS``."""
    return locust_command


@pytest.fixture(name="free_port")
def _free_port_fixture():
    """``free_port()``: a port the OS just handed out on loopback."""
    return free_port


class _Tables(HTMLParser):
    """Every <table> of a page as lists of cell texts, headings first."""

    def __init__(self):
        super().__init__()
        self.tables, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def verdict_rows(report_html: Path) -> list[list[str]]:
    """The verdict table of report.html: [result, selector, threshold, measured, note] rows."""
    parser = _Tables()
    parser.feed(report_html.read_text())
    [table] = [
        t for t in parser.tables if t[0] == ["result", "selector", "threshold", "measured", "note"]
    ]
    return table[1:]


LATENCY_SLACK = 10


def shipped_smoke_on_a_shared_host(path: Path) -> str:
    """The shipped smoke thresholds with their latency bounds (``p(..)``, ``avg``, ``med``,
    ``max``) times LATENCY_SLACK; every other bound (errors, throughput) as shipped.

    The shipped latency bounds are goals for the appliance. Here the API shares 2 cores with
    two VM lanes of CI: a p95 over the 10 s run's few dozen reads is a timing assertion that
    flakes (CI measured 450 ms against the read's 300 once). What this test proves, the verdict
    and the counts, does not depend on how fast the host is that minute."""
    shipped = yaml.safe_load(thresholds.DEFAULT_FILE.read_text())["smoke"]
    latency = re.compile(r"^(p\([\d.]+\)|avg|med|max)\s*<\s*([\d.]+)$")

    def slack(expression: str) -> str:
        found = latency.match(expression.strip())
        if found is None:
            return expression
        return f"{found[1]} < {float(found[2]) * LATENCY_SLACK:g}"

    scaled = {selector: [slack(e) for e in exprs] for selector, exprs in shipped.items()}
    assert scaled != shipped  # the shipped smoke has latency bounds to relax
    path.write_text(yaml.safe_dump({"smoke": scaled}))
    return str(path)
