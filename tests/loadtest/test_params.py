"""Scenario parameters: durations, environment names and think times read as documented."""

import pytest

from loadtest.params import ShapeParams, env_name, parse_duration, shape_params, think_time


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90),
        ("90s", 90),
        ("5m", 300),
        ("1h", 3600),
        ("1h30m", 5400),
        ("2.5m", 150),
        (45, 45),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5d", "-3", "m"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_environment_names():
    assert env_name("--load-users") == "VIGIL_LOAD_USERS"
    assert env_name("--spike-multiplier") == "VIGIL_LOAD_SPIKE_MULTIPLIER"
    assert env_name("--stress-step-duration") == "VIGIL_LOAD_STRESS_STEP_DURATION"


def test_shape_params_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("VIGIL_LOAD_USERS", "7")
    monkeypatch.setenv("VIGIL_LOAD_DURATION", "2m")
    params = shape_params(None)
    assert (params.users, params.duration, params.ramp) == (7, 120.0, None)
    assert params.merged({"users": 1, "ramp": 5.0}) == ShapeParams(
        users=7, duration=120.0, ramp=5.0
    )


def test_bad_shape_params_name_the_flag_and_variable(monkeypatch):
    monkeypatch.setenv("VIGIL_LOAD_USERS", "many")
    with pytest.raises(ValueError, match="--load-users / VIGIL_LOAD_USERS"):
        shape_params(None)


def test_think_time():
    assert think_time("0.5:2") == (0.5, 2.0)
    assert think_time("0") == (0.0, 0.0)
    for bad in ("x", "2:1", "-1:1"):
        with pytest.raises(ValueError, match="think-time"):
            think_time(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--load-users", "many"], "--load-users / VIGIL_LOAD_USERS: invalid literal"),
        (["--load-duration", "soon"], "--load-duration / VIGIL_LOAD_DURATION: not a duration"),
        (["--load-users", "0"], "users must be greater than 0"),
        (["--think-time", "2:1"], "need 0 <= MIN <= MAX"),
        (["--time-margin", "later"], "--time-margin / VIGIL_LOAD_TIME_MARGIN: not a duration"),
        (["--thresholds", "/nonexistent.yml"], "cannot read threshold file /nonexistent.yml"),
        (["--backoff-retries", "x"], "--backoff-retries / VIGIL_LOAD_BACKOFF_RETRIES: not a whole"),
        (["--backoff-retries", "-1"], "VIGIL_LOAD_BACKOFF_RETRIES cannot be negative"),
        (["--backoff-max-wait", "soon"], "--backoff-max-wait / VIGIL_LOAD_BACKOFF_MAX_WAIT: not a"),
        (["--accounts-rate", "0"], "--accounts-rate / VIGIL_LOAD_ACCOUNTS_RATE: expected"),
        (["--accounts-rate", "nan"], "--accounts-rate / VIGIL_LOAD_ACCOUNTS_RATE: expected"),
        (["--accounts-file", "/nonexistent.csv"], "VIGIL_LOAD_ACCOUNTS_FILE: /nonexistent.csv"),
        (["--accounts", "maybe"], "invalid choice: 'maybe'"),
    ],
)
def test_locust_refuses_bad_parameters_before_starting(run_locust, args, message):
    done = run_locust("--headless", "--host", "http://127.0.0.1:9", *args, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Shape test updating" not in done.stderr


def test_the_scenario_must_be_one_of_five(run_locust):
    done = run_locust("--headless", "--host", "http://127.0.0.1:9", "--scenario", "chaos")
    assert done.returncode != 0
    assert "unknown scenario 'chaos'" in done.stderr
