"""End to end: a real gunicorn API, Prometheus with Vigil's rules, Alertmanager with Vigil's config.

The error fault switch is turned on with the API's own CLI; the test asserts that ApiHighErrorRatio
reaches the local receiver with the committed labels and annotations, then resolves once the
switch is cleared. Rules run at TIME_SCALE: every range selector and `for` in the committed files
is divided by it (nothing else changes), so the 5-minute window is 5 s and `for: 2m` is 2 s.
Scrape and evaluation run every second. Bounded: each hop has HOP_TIMEOUT seconds.
"""
import importlib.util
import re
import subprocess
import sys
import time

import pytest
import yaml
from rule_files import ALERTS, ROOT, rule_files, rules_in
from stack_processes import (
    ALERTMANAGER,
    PROMETHEUS,
    run_alertmanager,
    run_prometheus,
    run_receiver,
    time_scaled_rules,
)

from tests.servers import VENV_BIN, run_api

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                       reason="needs Debian's prometheus and prometheus-alertmanager packages"),
]
TIME_SCALE = 60
HOP_TIMEOUT = 90


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


drill = _load("vigil_drill", ALERTS / "drill.py")
am_render = _load("am_render", ALERTS / "alertmanager" / "render.py")


def test_time_scaling_changes_only_durations():
    text = (ALERTS / "rules" / "api.yml").read_text()
    scaled = time_scaled_rules(text, TIME_SCALE)
    assert "[5000ms]" in scaled and "for: 2000ms" in scaled and "[5m]" not in scaled
    strip = [line for line in text.splitlines() if "[" not in line and "for:" not in line]
    assert strip == [line for line in scaled.splitlines()
                     if "[" not in line and "for:" not in line]


def test_error_fault_fires_api_high_error_ratio_end_to_end_and_resolves(tmp_path):
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for path in rule_files():
        (rules_dir / path.name).write_text(time_scaled_rules(path.read_text(), TIME_SCALE))
    expected = next(r for r in rules_in(ALERTS / "rules" / "api.yml")
                    if r["alert"] == "ApiHighErrorRatio")

    with run_api(tmp_path / "api", workers=2) as api, run_receiver(tmp_path) as (receiver, log):
        config = am_render.render(tmp_path / "am", {
            "alertmanager_local_receiver_url": f"{receiver}/alerts",
            "alertmanager_group_wait": "1s", "alertmanager_page_group_wait": "1s",
            "alertmanager_group_interval": "1s",
        })
        with run_alertmanager(tmp_path, config) as am_url:
            prometheus_yml = tmp_path / "prometheus.yml"
            prometheus_yml.write_text(yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules_dir / "*.yml")],
                "alerting": {"alertmanagers": [
                    {"static_configs": [{"targets": [am_url.removeprefix("http://")]}]}]},
                "scrape_configs": [{"job_name": "vigil-api", "static_configs": [
                    {"targets": [api.url.removeprefix("http://")]}]}],
            }))
            with run_prometheus(tmp_path, prometheus_yml) as prom_url:
                # The same command `make drill` runs, with the API's environment (its database).
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, str(ALERTS / "drill.py"), "--api", api.url,
                     "--prometheus", prom_url, "--alertmanager", am_url,
                     "--receiver-log", str(log), "--timeout", str(HOP_TIMEOUT),
                     "--flask", f"{VENV_BIN / 'flask'} --app api"],
                    env=api.env, cwd=ROOT, capture_output=True, text=True,
                    timeout=4 * HOP_TIMEOUT)
                total = time.monotonic() - started
                assert done.returncode == 0, done.stdout + done.stderr

    firing = drill.receiver_record(log, "ApiHighErrorRatio", "firing")
    alert = firing["alert"]
    # A cause-level ticket since ADR 0062: the SLO burn is what pages.
    assert firing["notification"]["receiver"] == "ticket"
    assert alert["labels"] == {"alertname": "ApiHighErrorRatio", "job": "vigil-api",
                               **expected["labels"]}
    # The live value: the share of 5xx in the (scaled) window when the notification was built.
    summary = re.fullmatch(r"Vigil API answers ([\d.]+)% of requests with a 5xx",
                           alert["annotations"]["summary"])
    assert summary and 5 < float(summary.group(1)) <= 100
    assert alert["annotations"]["description"] == (
        f"Over the last 5 minutes {summary.group(1)}% of requests to vigil-api were answered "
        "with a 5xx status (threshold 5%, for 2 minutes).")
    assert alert["annotations"]["runbook_url"] == expected["annotations"]["runbook_url"]
    resolved = drill.receiver_record(log, "ApiHighErrorRatio", "resolved")
    assert resolved["notification"]["status"] == "resolved"
    assert "drill passed: prometheus_firing" in done.stdout
    print(f"fire drill (time scale {TIME_SCALE}, total {total:.1f}s): "
          + done.stdout.strip().splitlines()[-1])
