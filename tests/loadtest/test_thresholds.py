"""Threshold files: every shipped scenario parses, bad files say where, windows are judged."""

import json
from collections import Counter

import pytest

from loadtest import thresholds
from loadtest.params import SCENARIOS
from loadtest.timeline import Window


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_has_thresholds(scenario):
    loaded = thresholds.load(None, scenario)
    assert any(t.selector == "all" for t in loaded)


def test_stress_and_spike_judge_their_run():
    assert {t.metric for t in thresholds.load(None, "stress") if t.selector == "run"} == {
        "held_users"
    }
    assert {t.metric for t in thresholds.load(None, "spike") if t.selector == "run"} == {
        "recovery_s"
    }


def test_expressions_are_read_like_k6():
    t = thresholds.parse_expression("all", "p(99.9)<=250", "here")
    assert (t.metric, t.pct, t.op, t.value, t.expression) == (
        "p",
        99.9,
        "<=",
        250.0,
        "p(99.9)<=250",
    )


@pytest.mark.parametrize(
    "body, message",
    [
        ("smoke: {all: ['p(95) < 1']}\n", "no thresholds for scenario 'load'"),
        ("load: [1, 2]\n", "expected a mapping of selector"),
        ("load: {all: []}\n", "load.all: expected a non-empty list"),
        ("load: {everything: ['rps > 1']}\n", "load.everything: selector must be"),
        ("load: {'GET content': ['rps > 1']}\n", "selector must be"),
        ("load: {all: ['p95 < 3']}\n", "unknown metric 'p95'"),
        ("load: {all: ['p(100) < 3']}\n", "percentile must be between 0 and 100"),
        ("load: {all: ['latency is low']}\n", "cannot read 'latency is low'"),
        ("load: {all: ['held_users > 3']}\n", "unknown metric 'held_users' for 'all'"),
        ("load: {run: ['p(95) < 3']}\n", "unknown metric"),
        ("load: {run: ['backpressure_ratio < 0.1']}\n", "unknown metric 'backpressure_ratio'"),
        ("load: {all: ['rps > 1'\n", "not valid YAML"),
        ("- just a list\n", "expected a mapping of scenario"),
    ],
)
def test_bad_files_get_a_clear_error(tmp_path, body, message):
    path = tmp_path / "t.yml"
    path.write_text(body)
    with pytest.raises(
        thresholds.ThresholdError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        thresholds.load(path, "load")


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(thresholds.ThresholdError, match="cannot read threshold file"):
        thresholds.load(tmp_path / "absent.yml", "load")


def _window(requests, failures, times):
    return Window(
        0, 10, requests, failures, Counter(times), sum(k * v for k, v in times.items()), 5
    )


def test_windows_are_judged_and_the_table_names_failures(tmp_path):
    path = tmp_path / "t.yml"
    path.write_text(
        "stress:\n  step: ['p(95) < 100', 'error_ratio < 0.1', 'rps > 5']\n"
        "  run: ['held_users >= 10']\n"
    )
    loaded = thresholds.load(path, "stress")
    window = _window(100, 20, {10: 90, 200: 10})  # p95 = 200 ms, 20 % errors, 10 rps
    results = thresholds.judge_window(loaded, "step", window)
    assert [(r.expression, r.measured, r.passed) for r in results] == [
        ("p(95) < 100", 200.0, False),
        ("error_ratio < 0.1", 0.2, False),
        ("rps > 5", 10.0, True),
    ]
    results += thresholds.judge_run(loaded, {"held_users": 20.0}, {})
    text = thresholds.table("stress", results)
    assert "THRESHOLD FAILED: step p(95) < 100 (measured 200.0)" in text
    assert "THRESHOLD FAILED: step error_ratio < 0.1" in text
    assert "rps > 5" in text and "2 passed, 2 failed" in text

    thresholds.write_json(tmp_path / "out" / "t.json", {"scenario": "stress"}, results)
    saved = json.loads((tmp_path / "out" / "t.json").read_text())
    assert saved["passed"] is False and len(saved["thresholds"]) == 4


def test_nothing_measured_is_a_failure_not_a_pass(tmp_path):
    loaded = [thresholds.parse_expression("step", "p(95) < 100", "x")]
    [result] = thresholds.judge_window(loaded, "step", _window(0, 0, {}))
    assert result.passed is False and result.note == "no requests in the window"
    [missing] = thresholds.judge_run(
        [thresholds.parse_expression("run", "recovery_s < 30", "x")],
        {"recovery_s": None},
        {"recovery_s": "never recovered"},
    )
    assert missing.passed is False


def test_back_pressure_is_judged_apart_from_failures():
    from types import SimpleNamespace

    from loadtest.backpressure import Tally

    login = SimpleNamespace(num_requests=90, num_failures=0)
    stats = SimpleNamespace(
        total=SimpleNamespace(num_requests=190, num_failures=0),
        entries={("/api/v1/auth/login", "POST"): login},
    )
    tally = Tally()
    for _ in range(10):
        tally.add("POST", "/api/v1/auth/login", 429, 1.0)
    loaded = [
        thresholds.parse_expression("all", "error_ratio == 0", "x"),
        thresholds.parse_expression("all", "backpressure_ratio < 0.1", "x"),
        thresholds.parse_expression("POST /api/v1/auth/login", "backpressure_ratio < 0.1", "x"),
        thresholds.parse_expression("POST /api/v1/auth/login", "backpressure <= 10", "x"),
        thresholds.parse_expression("GET /api/v1/content", "backpressure_ratio < 0.1", "x"),
    ]
    results = thresholds.judge_requests(loaded, stats, tally)
    assert [(r.measured, r.passed) for r in results] == [
        (0.0, True),  # waited-out 429s are not failures
        (0.05, True),  # 10 of 200 answers
        (0.1, False),  # 10 of 100 answers on the login route
        (10.0, True),
        (None, False),  # a route never asked: nothing measured
    ]
    window = _window(90, 0, {10: 90})
    window.num_backpressure = 30
    [result] = thresholds.judge_window(
        [thresholds.parse_expression("step", "backpressure_ratio < 0.05", "x")], "step", window
    )
    assert (result.measured, result.passed) == (0.25, False)
