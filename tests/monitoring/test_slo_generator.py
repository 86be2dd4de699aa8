"""The SLO spec is the one source: generated rules and tests must be current and follow it."""
import shutil
import subprocess
import sys

import pytest
import yaml
from rule_files import ALERTS, ROOT

GENERATOR = ALERTS / "slo_rules.py"
PROMTOOL = shutil.which("promtool")


def _generate(tmp_path, spec=ALERTS / "slo.yml"):
    return subprocess.run([sys.executable, str(GENERATOR), "--spec", str(spec),
                           "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_generated_rules_and_tests_are_current(tmp_path):
    done = _generate(tmp_path)
    assert done.returncode == 0, done.stderr
    for sub in ("rules", "tests"):
        fresh = (tmp_path / sub / "slo.yml").read_text()
        committed = (ALERTS / sub / "slo.yml").read_text()
        assert fresh == committed, f"alerts/{sub}/slo.yml is stale: run `make slo` and commit"


def test_recording_rules_are_named_level_metric_operations():
    rules = yaml.safe_load((ALERTS / "rules" / "slo.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                level, metric, operations = rule["record"].split(":")
                assert level == "job" and metric and operations


def test_every_burn_rate_window_pair_is_generated_for_each_slo():
    rules = yaml.safe_load((ALERTS / "rules" / "slo.yml").read_text())
    got = {(r["alert"], r["labels"]["long_window"], r["labels"]["short_window"],
            r["labels"]["severity"])
           for g in rules["groups"] for r in g["rules"] if "alert" in r}
    expected = {(name, long, short, sev)
                for name in ("ApiAvailabilityBudgetBurn", "ApiLatencyBudgetBurn")
                for long, short, sev in (("1h", "5m", "page"), ("6h", "30m", "page"),
                                         ("1d", "2h", "ticket"), ("3d", "6h", "ticket"))}
    assert got == expected


@pytest.mark.slow
@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")
def test_changing_an_objective_changes_rules_and_tests_together(tmp_path):
    """Tighten availability to 99.99%: thresholds and expectations move, and still agree."""
    spec = yaml.safe_load((ALERTS / "slo.yml").read_text())
    spec["slos"][0]["objective"] = 0.9999
    path = tmp_path / "slo.yml"
    path.write_text(yaml.safe_dump(spec))
    assert _generate(tmp_path, path).returncode == 0
    rules = (tmp_path / "rules" / "slo.yml").read_text()
    assert "/ 0.0001 > 14.4" in rules and "/ 0.001 >" not in rules
    assert "vector(0.9999)" in rules
    done = subprocess.run([PROMTOOL, "test", "rules", "slo.yml"], cwd=tmp_path / "tests",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize("mutate, message", [
    (lambda s: s["slos"][0].update(objective=1.5), "between 0 and 1"),
    (lambda s: s["slos"][0].update(errors="rate(x[5m])"), "{window}"),
    (lambda s: s["burn_rates"][0].update(long="1 hour"), "bad duration"),
    (lambda s: s["burn_rates"][0].update(severity="urgent"), "page or ticket"),
    (lambda s: s.pop("period"), "period"),
])
def test_bad_spec_is_refused_with_a_clear_message(tmp_path, mutate, message):
    spec = yaml.safe_load((ALERTS / "slo.yml").read_text())
    mutate(spec)
    path = tmp_path / "slo.yml"
    path.write_text(yaml.safe_dump(spec))
    done = _generate(tmp_path, path)
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "rules").exists(), "nothing is written from a bad spec"
