"""``make load``: one command per scenario, parameters as variables, the locust line shown."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.loadtest.conftest import shipped_smoke_on_a_shared_host

ROOT = Path(__file__).resolve().parents[2]


def make(*args, timeout=60, env=None):
    # The virtualenv running these tests (.venv, or .venv-py313 in the Python 3.13 tier);
    # -o keeps make from reinstalling it when someone just touched pyproject.toml.
    venv = Path(sys.prefix)
    return subprocess.run(
        ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_dry_run_shows_the_underlying_locust_command():
    done = make(
        "-n",
        "load",
        "SCENARIO=spike",
        "HOST=http://127.0.0.1:8000",
        "USERS=5",
        "SPIKE_MULTIPLIER=4",
        "DURATION=90s",
        "ACCOUNTS_RATE=2",
        "BACKOFF_RETRIES=5",
        "REPORT_DIR=reports/x",
    )
    assert done.returncode == 0, done.stderr
    line = " ".join(done.stdout.replace("\\\n", " ").split())
    assert "VIGIL_LOAD_USERS='5'" in line and "VIGIL_LOAD_SPIKE_MULTIPLIER='4'" in line
    assert "VIGIL_LOAD_DURATION='90s'" in line and "VIGIL_LOAD_RAMP" not in line
    assert (
        "locust -f loadtest/locustfile.py --scenario spike --host http://127.0.0.1:8000 --headless"
    ) in line
    assert "--html reports/x/locust.html --csv reports/x/locust" in line
    assert "VIGIL_LOAD_ACCOUNTS_RATE='2'" in line and "VIGIL_LOAD_BACKOFF_RETRIES='5'" in line
    # the console gets the verdict; Locust's periodic tables and INFO lines stay out of it
    assert "--headless --only-summary" in line and "--logfile reports/x/locust.log" in line
    assert "--prometheus-port 9646" in line


@pytest.mark.parametrize(
    "variables, expected, absent",
    [
        (["WEB=1"], "--web-host 127.0.0.1 --web-port 8089", "--headless"),
        (["PROCESSES=2"], "--headless --only-summary --processes 2", "--master "),
        (["WORKERS=3"], "--master --expect-workers 3 --master-bind-port 5557", "--processes"),
    ],
)
def test_modes(variables, expected, absent):
    done = make("-n", "load", *variables)
    line = " ".join(done.stdout.replace("\\\n", " ").split())
    assert expected in line and absent not in line


def test_a_worker_needs_its_master():
    done = make("load-worker")
    assert done.returncode != 0 and "MASTER=" in done.stdout
    line = " ".join(
        make("-n", "load-worker", "MASTER=10.0.0.7").stdout.replace("\\\n", " ").split()
    )
    assert "--worker --master-host 10.0.0.7 --master-port 5557" in line


def test_make_refuses_a_remote_host_not_allowed(tmp_path):
    done = make("load", "HOST=http://192.0.2.1:8000", "PROM_PORT=0", f"REPORT_DIR={tmp_path}")
    assert done.returncode != 0
    assert "refusing to send load to 192.0.2.1" in done.stderr


@pytest.mark.stack
@pytest.mark.postgres
@pytest.mark.slow
def test_make_load_with_local_processes(live_api, tmp_path):
    done = make(
        "load",
        "SCENARIO=smoke",
        f"HOST={live_api.url}",
        "DURATION=10s",  # long enough for the reader to find a writer's item on a fresh database
        "PROCESSES=2",
        "PROM_PORT=0",
        "THINK_TIME=0.1:0.4",
        f"REPORT_DIR={tmp_path}",
        timeout=120,
        env={
            **os.environ,
            "VIGIL_LOAD_THRESHOLDS": shipped_smoke_on_a_shared_host(tmp_path / "bounds.yml"),
        },
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verdict = json.loads((tmp_path / "thresholds.json").read_text())
    assert verdict["passed"] and verdict["workers"] == 2 and verdict["totals"]["requests"] > 0
    # judged by the file given in VIGIL_LOAD_THRESHOLDS, through make
    read = [t["expression"] for t in verdict["thresholds"] if t["selector"].endswith("/<id>")]
    assert read == ["p(95) < 3000"]
    assert (tmp_path / "locust.html").exists() and (tmp_path / "locust_stats.csv").exists()
    assert (tmp_path / "report.html").exists()
    # Quiet console: no INFO lines, no periodic tables; they are in the log file.
    assert "/INFO/" not in done.stdout + done.stderr
    assert "/INFO/locust.main: Starting Locust" in (tmp_path / "locust.log").read_text()
    assert done.stdout.rstrip().splitlines()[-1].startswith(f"Report: {tmp_path}/report.html")
