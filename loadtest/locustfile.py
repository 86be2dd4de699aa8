"""Entry point for ``locust -f loadtest/locustfile.py``: the personas, the chosen scenario's
shape, the host and time guards, the metrics endpoint and the threshold verdict.

The scenario is chosen when Locust imports this file (``--scenario X`` or
``VIGIL_LOAD_SCENARIO``), because Locust runs the first shape class it finds in it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import gevent
from locust import events
from locust.runners import STATE_CLEANUP, STATE_STOPPED, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a bare checkout works too

from loadtest import exporter, thresholds  # noqa: E402
from loadtest.params import SCENARIOS, add_arguments, parse_duration, think_time  # noqa: E402
from loadtest.personas import Reader, Session, Writer  # noqa: E402,F401  (Locust finds them here)
from loadtest.safety import UnsafeHost, check_host  # noqa: E402
from loadtest.shapes import shape_class  # noqa: E402
from loadtest.timeline import Timeline  # noqa: E402

log = logging.getLogger("vigil.loadtest")


def _chosen_scenario() -> str:
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--scenario", default=os.environ.get("VIGIL_LOAD_SCENARIO", "smoke"))
    scenario = early.parse_known_args()[0].scenario
    if scenario not in SCENARIOS:
        sys.exit(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    return scenario


ScenarioShape = shape_class(_chosen_scenario())
_state: dict = {}


def _refuse(message: str) -> None:
    log.error("%s", message)
    sys.exit(2)


@events.init_command_line_parser.add_listener
def _options(parser, **_kw) -> None:
    add_arguments(parser)


@events.init.add_listener
def _prepare(environment, runner, **_kw) -> None:
    """Check the host, the thresholds and the parameters before a single request leaves."""
    options = environment.parsed_options
    if isinstance(runner, WorkerRunner) or options is None:
        return
    shape = environment.shape_class
    if shape is None or options.scenario != shape.scenario:
        _refuse(
            f"--scenario {options.scenario} does not match the loaded shape "
            f"({ScenarioShape.scenario}):"
            " give the scenario on the command line or in VIGIL_LOAD_SCENARIO"
        )
    try:
        check_host(environment.host, options.allowed_hosts or "")
        shape.thresholds = thresholds.load(options.thresholds, shape.scenario)
        shape.stages()
        think_time(options.think_time)
        if options.time_margin:
            try:
                parse_duration(options.time_margin)
            except ValueError as exc:
                raise ValueError(f"--time-margin / VIGIL_LOAD_TIME_MARGIN: {exc}") from None
    except (UnsafeHost, thresholds.ThresholdError, ValueError) as exc:
        _refuse(str(exc))
    if options.prometheus_port:
        _state["exporter"] = exporter.serve(
            environment, shape.scenario, options.prometheus_bind, options.prometheus_port
        )
    log.info(
        "Scenario %s against %s: stages %s",
        shape.scenario,
        environment.host,
        [(s.until, s.users, s.spawn_rate) for s in shape.stages()],
    )


def _sample(environment) -> None:
    shape, runner = environment.shape_class, environment.runner
    while runner.state not in (STATE_STOPPED, STATE_CLEANUP):
        shape.timeline.sample(shape.get_run_time(), runner.user_count, environment.stats.total)
        gevent.sleep(1.0)


def _hard_stop(environment, bound: float) -> None:
    log.error("Run exceeded its hard time bound of %.0f s: stopping it", bound)
    _state["overran"] = bound
    environment.runner.quit()


@events.test_start.add_listener
def _started(environment, **_kw) -> None:
    if isinstance(environment.runner, WorkerRunner):
        return
    shape = environment.shape_class
    for name in ("guard", "sampler"):  # a new run from the web UI starts afresh
        if name in _state:
            _state.pop(name).kill(block=False)
    shape.restart()
    _state.pop("overran", None)
    _state["started"] = time.time()
    # Read now: by the time Locust quits, the master has already let its workers go.
    _state["workers"] = len(getattr(environment.runner, "clients", {}) or {})
    if shape.wants_timeline:
        shape.timeline = Timeline()
        _state["sampler"] = gevent.spawn(_sample, environment)
    # Every run ends by itself: the shape's end, plus a margin for stopping users.
    planned = shape.planned_duration()
    margin = environment.parsed_options.time_margin
    margin = parse_duration(margin) if margin else max(30.0, planned * 0.1)
    bound = planned + margin + (environment.stop_timeout or 0)
    _state["guard"] = gevent.spawn_later(bound, _hard_stop, environment, bound)


@events.test_stop.add_listener
def _stopped(environment, **_kw) -> None:
    shape = environment.shape_class
    if shape is not None and shape.timeline is not None and "sampler" in _state:
        _state.pop("sampler").kill(block=False)
        shape.timeline.sample(shape.get_run_time(), 0, environment.stats.total)


def _route_rows(stats) -> list[dict]:
    rows = []
    for entry in sorted(stats.entries.values(), key=lambda e: (e.name, e.method)):
        rows.append(
            {
                "method": entry.method,
                "name": entry.name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "rps": round(entry.total_rps, 2),
                "avg_ms": round(entry.avg_response_time, 2),
                "p50_ms": entry.get_response_time_percentile(0.5),
                "p95_ms": entry.get_response_time_percentile(0.95),
                "p99_ms": entry.get_response_time_percentile(0.99),
                "max_ms": entry.max_response_time,
            }
        )
    return rows


@events.quitting.add_listener
def _verdict(environment, **_kw) -> None:
    """Judge every threshold, print the table, write the JSON and set the exit code."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or "started" not in _state:
        return
    if "guard" in _state:
        _state.pop("guard").kill(block=False)
    if "exporter" in _state:
        _state.pop("exporter").stop(timeout=1)
    shape, options, stats = environment.shape_class, environment.parsed_options, environment.stats
    results = thresholds.judge_requests(shape.thresholds, stats)
    results += thresholds.judge_run(shape.thresholds, *shape.run_figures())
    if "overran" in _state:
        results.append(
            thresholds.Result(
                "run",
                f"ends within {_state['overran']:.0f} s",
                time.time() - _state["started"],
                False,
                "hard bound hit",
            )
        )
    if runner.exceptions:
        results.append(
            thresholds.Result(
                "run",
                "exceptions in user code == 0",
                float(len(runner.exceptions)),
                False,
                "see the exceptions in Locust's report",
            )
        )
    print(thresholds.table(shape.scenario, results), flush=True)
    report_dir = Path(options.report_dir or Path("reports") / shape.scenario)
    thresholds.write_json(
        report_dir / "thresholds.json",
        {
            "scenario": shape.scenario,
            "host": environment.host,
            "started": _state["started"],
            "ended": time.time(),
            "workers": _state["workers"],
            "totals": {
                "requests": stats.total.num_requests,
                "failures": stats.total.num_failures,
                "rps": round(stats.total.total_rps, 2),
            },
            "routes": _route_rows(stats),
            "shape": shape.report(),
        },
        results,
    )
    log.info("Threshold report written to %s", report_dir / "thresholds.json")
    if environment.process_exit_code not in (None, 0):
        return  # a guard already decided (e.g. a refused host)
    environment.process_exit_code = 0 if all(r.passed for r in results) else 1
