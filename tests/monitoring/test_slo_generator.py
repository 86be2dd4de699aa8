"""The SLO spec is the one source: generated rules and tests must be current and follow it."""
import re
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


GENERATED = ("rules", "tests", "longterm/rules", "longterm/tests")


def test_generated_rules_and_tests_are_current(tmp_path):
    done = _generate(tmp_path)
    assert done.returncode == 0, done.stderr
    for sub in GENERATED:
        fresh = (tmp_path / sub / "slo.yml").read_text()
        committed = (ALERTS / sub / "slo.yml").read_text()
        assert fresh == committed, f"alerts/{sub}/slo.yml is stale: run `make slo` and commit"


def _rules(sub="rules"):
    doc = yaml.safe_load((ALERTS / sub / "slo.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alerts_share_one_group_with_the_rates_they_read():
    """Rules of a group run in order: an alert reads the rates of the same evaluation."""
    doc = yaml.safe_load((ALERTS / "rules" / "slo.yml").read_text())
    assert len(doc["groups"]) == 1
    kinds = ["alert" in r for r in doc["groups"][0]["rules"]]
    assert kinds == sorted(kinds), "every recording rule comes before the alerts"


def test_ratios_are_errors_over_events_and_missing_without_events():
    """A ratio of sums over one window, with the denominator filtered to > 0: no NaN."""
    for rule in _rules():
        if rule.get("record", "").split(":")[-1].startswith("ratio_rate"):
            assert "avg_over_time" not in rule["expr"]
            assert re.search(r"/ on \(job\)\n\(job:slo_\w+_requests:rate\w+ > 0\)", rule["expr"])


def test_sources_are_added_and_a_missing_source_counts_zero():
    rates = {r["record"]: r["expr"] for r in _rules() if "record" in r}
    errors = rates["job:slo_availability_errors:rate5m"]
    assert "vigil_edge_http_requests_total" in errors and "probe_success" in errors
    assert errors.count("or vector(0))") == 2
    assert 'status_class!="5xx"' in rates["job:slo_latency_errors:rate5m"]


def test_every_burn_rate_alert_has_the_minimum_traffic_guard():
    spec = yaml.safe_load((ALERTS / "slo.yml").read_text())
    for rule in _rules():
        if "alert" in rule:
            window = rule["labels"]["long_window"]
            assert f"job:slo_{rule['labels']['slo']}_requests:rate{window}" in rule["expr"]
            assert f">= {spec['min_events']}" in rule["expr"]


def test_page_tiers_resolve_on_a_one_minute_window():
    for rule in _rules():
        if "alert" in rule and rule["labels"]["severity"] == "page":
            assert rule["labels"]["short_window"] == "1m" and "for" not in rule


def test_the_period_budget_lives_in_the_long_term_rules_only():
    main = {r.get("record") for r in _rules()}
    longterm = {r.get("record") for r in _rules("longterm/rules")}
    for slo in ("availability", "latency"):
        assert f"job:slo_{slo}_errors:ratio_rate30d" in longterm - main
        assert f"job:slo_{slo}_error_budget_remaining:ratio" in longterm - main
        # What the long-term rules read is recorded by the main Prometheus.
        assert {f"job:slo_{slo}_errors:rate5m", f"job:slo_{slo}_requests:rate5m"} <= main


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")
def test_long_term_rules_pass_their_promtool_tests():
    done = subprocess.run([PROMTOOL, "test", "rules", "slo.yml"],
                          cwd=ALERTS / "longterm" / "tests", capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_generated_tests_cover_quiet_spells_low_traffic_and_an_edge_outage():
    doc = yaml.safe_load((ALERTS / "tests" / "slo.yml").read_text())
    names = [t["name"] for t in doc["tests"]]
    for slo in ("availability", "latency"):
        assert f"{slo}: a quiet spell records no ratio and burns nothing" in names
        assert f"{slo}: two errors in sixty requests do not page (minimum traffic)" in names
    outage = next(t for t in doc["tests"] if "only by the probes" in t["name"])
    fired = outage["alert_rule_test"][-1]["exp_alerts"]
    assert [(a["exp_labels"]["severity"], a["exp_labels"]["long_window"]) for a in fired] == [
        ("page", "1h")]


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
                for long, short, sev in (("5m", "1m", "page"), ("1h", "1m", "page"),
                                         ("6h", "30m", "ticket"), ("1d", "2h", "ticket"),
                                         ("3d", "6h", "ticket"))}
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
    (lambda s: s["slos"][0]["requests"].update(metric="rate(x[5m])"), "not a metric name"),
    (lambda s: s["slos"][1].pop("threshold_seconds"), "threshold_seconds"),
    (lambda s: s["burn_rates"][0].update(short="1h"), "shorter than its long window"),
    (lambda s: s.pop("min_events"), "min_events"),
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
