"""Each shape's stages (users and spawn rate over time), driven on a fake clock without load.

The shapes import Locust, which monkey-patches the interpreter with gevent; they are probed in
a subprocess so the pytest process stays untouched.
"""

import json
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import json, sys, time
    from loadtest.params import ShapeParams
    from loadtest.shapes import shape_class
    spec = json.loads(sys.argv[1])
    cls = shape_class(spec["scenario"])
    kwargs = {}
    if "fail_step" in spec:
        kwargs["judge"] = lambda index, start, end: index + 1 != spec["fail_step"]
    shape = cls(ShapeParams(**spec.get("params", {})), **kwargs)
    try:
        ticks = [[t, shape.tick_at(t)] for t in spec["times"]]
    except ValueError as exc:
        print(json.dumps({"error": str(exc)})); sys.exit()
    shape.start_time = time.perf_counter() - spec.get("clock", 0)  # tick() reads the real clock
    shape.holding = spec.get("holding", False)
    out = {"ticks": ticks, "tick_now": shape.tick(), "planned": shape.planned_duration(),
           "stages": [[s.until, s.users, s.spawn_rate, s.label] for s in shape.stages()]}
    if spec["scenario"] == "stress":
        out.update(held=shape.held_users, broke=shape.broke_at)
    print(json.dumps(out))
""")


def probe(scenario, times, **spec):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps({"scenario": scenario, "times": times, **spec})],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def ticks(result):
    return {t: (tuple(tick) if tick else None) for t, tick in result["ticks"]}


def test_smoke_defaults_a_few_users_for_a_minute():
    result = probe("smoke", [0, 30, 59.9, 60, 61], clock=10)
    assert ticks(result) == {0: (3, 3.0), 30: (3, 3.0), 59.9: (3, 3.0), 60: None, 61: None}
    assert result["tick_now"] == [3, 3.0]


def test_smoke_takes_its_parameters():
    result = probe("smoke", [0, 9.9, 10], params={"users": 5, "duration": 10})
    assert ticks(result) == {0: (5, 5.0), 9.9: (5, 5.0), 10: None}


def test_load_ramps_holds_and_ramps_down():
    result = probe("load", [0, 59, 60, 200, 359, 360, 419, 420], clock=400)
    rate = 20 / 60
    assert ticks(result) == {
        0: (20, rate),
        59: (20, rate),
        60: (20, rate),
        200: (20, rate),
        359: (20, rate),
        360: (0, rate),
        419: (0, rate),
        420: None,
    }
    assert [s[3] for s in result["stages"]] == ["ramp-up", "hold", "ramp-down"]
    assert result["planned"] == 420 and result["tick_now"] == [0, rate]


def test_load_without_ramp_starts_at_once_and_ends_after_the_hold():
    result = probe("load", [0, 29, 30], params={"users": 8, "ramp": 0, "duration": 30})
    assert ticks(result) == {0: (8, 8.0), 29: (8, 8.0), 30: None}


def test_soak_holds_for_an_hour_by_default():
    result = probe("soak", [0, 120, 3719, 3720, 3839, 3840])
    rate = 20 / 120
    assert ticks(result) == {
        0: (20, rate),
        120: (20, rate),
        3719: (20, rate),
        3720: (0, rate),
        3839: (0, rate),
        3840: None,
    }


def test_spike_jumps_and_drops_back():
    result = probe("spike", [0, 29, 30, 59, 60, 119, 120])
    assert ticks(result) == {
        0: (10, 10.0),
        29: (10, 10.0),
        30: (50, 50.0),
        59: (50, 50.0),
        60: (10, 50.0),
        119: (10, 50.0),
        120: None,
    }
    custom = probe(
        "spike",
        [0, 5, 8, 20],
        params={"users": 4, "ramp": 5, "multiplier": 3, "spike_duration": 3, "recovery": 12},
    )
    assert ticks(custom) == {0: (4, 4.0), 5: (12, 12.0), 8: (4, 12.0), 20: None}


def test_stress_steps_up_until_the_last_step():
    result = probe(
        "stress",
        [0, 59, 60, 119, 120, 599, 600],
        params={"step_users": 10, "step_duration": 60, "max_steps": 10},
        fail_step=0,
    )
    rate = 10 / 15  # each step's new users spread over its first quarter
    assert ticks(result) == {
        0: (10, rate),
        59: (10, rate),
        60: (20, rate),
        119: (20, rate),
        120: (30, rate),
        599: (100, rate),
        600: None,
    }
    assert (result["held"], result["broke"]) == (100, None)


def test_stress_stops_at_the_first_step_that_breaks():
    result = probe(
        "stress",
        [0, 5, 10, 15, 20, 25],
        params={"step_users": 4, "step_duration": 5, "max_steps": 8},
        fail_step=3,
    )
    assert ticks(result) == {0: (4, 3.2), 5: (8, 3.2), 10: (12, 3.2), 15: None, 20: None, 25: None}
    assert (result["held"], result["broke"]) == (8, 12)


def test_stress_can_break_on_the_first_step():
    result = probe(
        "stress", [0, 5], params={"step_users": 4, "step_duration": 5, "max_steps": 3}, fail_step=1
    )
    assert ticks(result) == {0: (4, 3.2), 5: None}
    assert (result["held"], result["broke"]) == (0, 4)


@pytest.mark.parametrize(
    "scenario, params, message",
    [
        ("smoke", {"users": 0}, "users must be greater than 0"),
        ("load", {"duration": 0}, "duration must be greater than 0"),
        ("spike", {"multiplier": 1}, "multiplier must be greater than 1"),
        ("stress", {"max_steps": 0}, "max steps must be greater than 0"),
    ],
)
def test_impossible_parameters_are_refused(scenario, params, message):
    assert message in probe(scenario, [0], params=params)["error"]


@pytest.mark.parametrize(
    "scenario, first",
    [("smoke", [3, 3.0]), ("stress", [10, 10 / 15]), ("spike", [10, 10.0])],
)
def test_a_holding_shape_stays_on_its_first_stage_whatever_the_clock(scenario, first):
    """While accounts are prepared the clock runs on, but the shape neither ends, moves on,
    nor judges a stress step."""
    result = probe(
        scenario,
        [],
        clock=10_000,
        holding=True,
        **({"fail_step": 1} if scenario == "stress" else {}),
    )
    assert result["tick_now"] == pytest.approx(first)
    if scenario == "stress":
        assert (result["held"], result["broke"]) == (0, None)
