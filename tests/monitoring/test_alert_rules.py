"""Alert rules are code: promtool validates and unit-tests them; every alert meets the standard."""
import re
import shutil
import subprocess

import pytest
import rule_files as rf

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: apt-get install prometheus (.ci/apt-packages)")

ALERTS = rf.alerting_rules()
ALERT_IDS = [f"{r['alert']}:{r['labels'].get('long_window', '')}{r['_file']}" for r in ALERTS]


@needs_promtool
def test_promtool_check_rules_accepts_every_rule_file():
    done = subprocess.run([PROMTOOL, "check", "rules", *map(str, rf.rule_files())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", rf.test_files(), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file):
    done = subprocess.run([PROMTOOL, "test", "rules", test_file.name], cwd=rf.TESTS_DIR,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def test_there_is_one_test_file_per_rule_file():
    assert [p.name for p in rf.rule_files()] == [p.name for p in rf.test_files()]


def test_issue_alerts_all_exist():
    """The symptom and cause alerts the issue asks for are all defined (and stay defined)."""
    names = {r["alert"] for r in ALERTS}
    assert names >= {
        "ApiTargetDown", "ApiReadinessFailing", "ApiHighErrorRatio", "ApiHighLatency",
        "ApiDatabaseUnreachable", "ApiDatabasePoolExhausted", "ApiRefreshTokenReuseSpike",
        "ApiLoginFailureSpike", "NodeHighCpu", "NodeMemoryLow", "NodeDiskFillingUp",
        "PostgresDown", "BackupTooOld", "PrometheusRuleEvaluationFailures",
        "PrometheusTargetDown", "AlertmanagerNotificationsFailing", "LokiIngestionErrors",
        "AlloyLogsDropped", "Watchdog", "ApiAvailabilityBudgetBurn", "ApiLatencyBudgetBurn",
    }


@pytest.mark.parametrize("rule", ALERTS + rf.loki_rules(), ids=lambda r: r["alert"])
def test_alert_follows_the_naming_and_annotation_standard(rule):
    assert rf.CAMEL_CASE.match(rule["alert"]), "alert names are CamelCase ComponentSymptom"
    assert rule["labels"]["severity"] in rf.SEVERITIES
    service_in_by = "by (service" in rule["expr"]  # Loki rules take service from the stream
    assert rule["labels"].get("service") or service_in_by, "every alert says which service"
    assert rf.REQUIRED_ANNOTATIONS <= set(rule["annotations"])
    assert "{{" in rule["annotations"]["description"] or rule["alert"] == "Watchdog", \
        "the description must carry live values ($value or $labels)"


@pytest.mark.parametrize("rule", ALERTS + rf.loki_rules(), ids=lambda r: r["alert"])
def test_alert_links_a_runbook_section_that_explains_meaning_confirmation_and_fix(rule):
    section = rf.runbook_section(rule["annotations"]["runbook_url"])
    assert section is not None, f"no runbook section for {rule['annotations']['runbook_url']}"
    for part in ("Means", "Confirm", "Fix"):
        assert f"**{part}" in section or f"{part.lower()}" in section.lower(), \
            f"runbook section of {rule['alert']} lacks '{part}'"


@pytest.mark.parametrize("rule", ALERTS, ids=ALERT_IDS)
def test_every_alert_has_a_firing_case_with_exact_labels_and_annotations(rule):
    """promtool compares the full label and annotation sets, so a firing case is an exact check."""
    static = {k: str(v) for k, v in rule["labels"].items()}
    firing = [
        alert for _, _, case in rf.promtool_cases() if case["alertname"] == rule["alert"]
        for alert in case.get("exp_alerts") or []
        if static.items() <= {k: str(v) for k, v in alert["exp_labels"].items()}.items()
    ]
    assert firing, f"no promtool case expects {rule['alert']} {static} to fire"
    assert all(set(a["exp_annotations"]) == set(rule["annotations"]) for a in firing)


@pytest.mark.parametrize("rule", [r for r in ALERTS if r["alert"] != "Watchdog"],
                         ids=[i for i, r in zip(ALERT_IDS, ALERTS, strict=True)
                              if r["alert"] != "Watchdog"])
def test_every_alert_has_quiet_cases_before_for_and_under_threshold(rule):
    """A quiet case (exp_alerts empty, or other twins only) precedes the first firing one."""
    static = {k: str(v) for k, v in rule["labels"].items()}

    def fires(case):
        return any(static.items() <= {k: str(v) for k, v in a["exp_labels"].items()}.items()
                   for a in case.get("exp_alerts") or [])

    cases = [(test, case) for _, test, case in rf.promtool_cases()
             if case["alertname"] == rule["alert"]]
    quiet = [c for _, c in cases if not fires(c)]
    assert len(quiet) >= 2 or (len(quiet) >= 1 and "for" not in rule), \
        f"{rule['alert']} needs a quiet case before `for` elapses and one just under threshold"
    if "for" in rule:
        # Before `for`: the same test holds a quiet case earlier than a firing one.
        assert any(
            not fires(q) and fires(f) and _minutes(q["eval_time"]) < _minutes(f["eval_time"])
            for test, _ in cases
            for q in test["alert_rule_test"] if q["alertname"] == rule["alert"]
            for f in test["alert_rule_test"] if f["alertname"] == rule["alert"]
        ), f"{rule['alert']}: no test shows it quiet before `for` elapses, then firing"


def test_watchdog_fires_without_any_input():
    rule = next(r for r in ALERTS if r["alert"] == "Watchdog")
    assert rule["expr"].strip() == "vector(1)" and "for" not in rule


def _minutes(duration):
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    total, number = 0.0, ""
    for ch in str(duration):
        if ch.isdigit() or ch == ".":
            number += ch
        else:
            total += float(number) * units[ch]
            number = ""
    return total


def test_runbooks_have_no_orphan_sections():
    """Every runbook section belongs to an alert, so the runbooks cannot rot silently."""
    linked = {r["annotations"]["runbook_url"] for r in ALERTS + rf.loki_rules()}
    # The local receiver raises one alert itself: the dead man's switch.
    receiver = (rf.ALERTS / "alertmanager" / "alert_log_receiver.py").read_text()
    linked |= set(re.findall(r'"runbook_url": "([^"]+)"', receiver))
    # Sections that are policy, not an alert.
    linked |= {"/runbooks/slo.md#error-budget-policy"}
    for page, anchors in rf.runbook_anchors().items():
        for anchor in anchors:
            assert f"{page}#{anchor}" in linked, f"{page}#{anchor} is not linked by any alert"
