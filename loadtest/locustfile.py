"""Entry point for ``locust -f loadtest/locustfile.py``: the personas, the chosen scenario's
shape, the host and time guards, the accounts prepared before the measured phase, the metrics
endpoint, the back-pressure counts, and the verdict (console, ``thresholds.json``,
``report.html``).

The scenario is chosen when Locust imports this file (``--scenario X`` or
``VIGIL_LOAD_SCENARIO``), because Locust runs the first shape class it finds in it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import gevent
from locust import events
from locust.runners import STATE_CLEANUP, STATE_STOPPED, WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # a bare checkout works too

from loadtest import accounts, exporter, report, thresholds  # noqa: E402
from loadtest.backpressure import TALLY  # noqa: E402
from loadtest.params import (  # noqa: E402
    SCENARIOS,
    accounts_rate,
    add_arguments,
    backoff_policy,
    parse_duration,
    think_time,
)
from loadtest.personas import Reader, Session, Writer  # noqa: E402,F401  (Locust finds them here)
from loadtest.safety import UnsafeHost, check_host  # noqa: E402
from loadtest.shapes import shape_class  # noqa: E402
from loadtest.timeline import Timeline  # noqa: E402

log = logging.getLogger("vigil.loadtest")
#: One line every PROGRESS_SECONDS on the console while a run is on (the rest goes to the log).
progress = logging.getLogger("vigil.loadtest.progress")
PROGRESS_SECONDS = 10.0
ACCOUNTS_MESSAGE = "vigil_accounts"


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


def _quiet_console(options) -> None:
    """With ``--logfile``, Locust sends every log line to the file only: keep warnings, errors
    and the progress lines on the console, so a run shows what matters and its verdict."""
    if not getattr(options, "logfile", None):
        return  # Locust's console handler already prints everything
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in ("", "locust"):  # the root logger and Locust's own (which does not propagate)
        logging.getLogger(name).addHandler(warnings)
    lines = logging.StreamHandler(sys.stdout)
    lines.setFormatter(logging.Formatter("%(message)s"))
    progress.addHandler(lines)


def _accounts_from_master(environment, msg, **_kw) -> None:
    accounts.POOL.fill(msg.data)
    log.info("Received %d prepared accounts from the master", len(msg.data))


@events.init.add_listener
def _prepare(environment, runner, **_kw) -> None:
    """Check the host, the thresholds and the parameters before a single request leaves."""
    options = environment.parsed_options
    if isinstance(runner, WorkerRunner):
        runner.register_message(ACCOUNTS_MESSAGE, _accounts_from_master)
        return
    if options is None:
        return
    _quiet_console(options)
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
        backoff_policy(options)
        accounts_rate(options)
        if options.accounts_file:
            _state["accounts_file"] = accounts.read_file(options.accounts_file)
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


@events.report_to_master.add_listener
def _send_backpressure(client_id, data, **_kw) -> None:
    data["vigil_backpressure"] = TALLY.drain()


@events.worker_report.add_listener
def _merge_backpressure(client_id, data, **_kw) -> None:
    TALLY.merge(data.get("vigil_backpressure"))


def _prepare_accounts(environment) -> accounts.Preparation:
    """Fill the account pool before the measured phase (``--accounts``), hand each worker its
    share, and say what it took."""
    options, shape, runner = environment.parsed_options, environment.shape_class, environment.runner
    if options.accounts == "register":
        return accounts.Preparation("register")
    try:  # the host may have been typed into the web UI since the start
        check_host(environment.host, options.allowed_hosts or "")
    except UnsafeHost as exc:
        log.error("%s", exc)
        environment.process_exit_code = 2
        return accounts.Preparation("prepared", errors=[str(exc)])
    peak = max(stage.users for stage in shape.stages())
    if "accounts_file" in _state:
        pool = _state["accounts_file"]
        done = accounts.Preparation("prepared", len(pool), len(pool), source=options.accounts_file)
    elif _state.get("prepared_on") == environment.host and len(_state["prepared"]) >= peak:
        pool, done = _state["prepared"], _state["preparation"]  # a later run in the web UI
    else:
        rate = accounts_rate(options)
        progress.info(
            "Preparing %d accounts at %g/s before the measured phase (--accounts prepared)",
            peak,
            rate,
        )
        pool, done = accounts.prepare(environment.host, peak, rate, backoff_policy(options))
        _state["prepared"], _state["preparation"] = pool, done
        _state["prepared_on"] = environment.host
    accounts.POOL.fill(pool)
    workers = list(getattr(runner, "clients", {}) or {})
    for index, client_id in enumerate(workers):  # disjoint shares, as far as they go
        share = pool[index :: len(workers)] or pool
        runner.send_message(
            ACCOUNTS_MESSAGE, [[a.email, a.password] for a in share], client_id=client_id
        )
    progress.info("%s", done.summary())
    for error in done.errors[:5]:
        log.warning("Account not prepared: %s", error)
    return done


def _sample(environment) -> None:
    shape, runner = environment.shape_class, environment.runner
    while runner.state not in (STATE_STOPPED, STATE_CLEANUP):
        shape.timeline.sample(
            shape.get_run_time(), runner.user_count, environment.stats.total, TALLY.answers
        )
        gevent.sleep(1.0)


def _report_progress(environment) -> None:
    """One console line per PROGRESS_SECONDS instead of Locust's table every 2 s."""
    shape, runner, total = environment.shape_class, environment.runner, environment.stats.total
    while True:
        gevent.sleep(PROGRESS_SECONDS)
        failed = total.num_failures / total.num_requests if total.num_requests else 0.0
        try:
            p95 = total.get_current_response_time_percentile(0.95) or 0
        except ValueError:  # no response-time cache on this runner: the whole run's
            p95 = total.get_response_time_percentile(0.95) if total.num_requests else 0
        progress.info(
            "%5.0f s  %3d users  %6.1f req/s  %6d requests  %5.2f %% failed  "
            "%4d back-pressure  p95 %5.0f ms (recent)",
            shape.get_run_time(),
            runner.user_count,
            total.current_rps,
            total.num_requests,
            100 * failed,
            TALLY.answers,
            p95,
        )


def _hard_stop(environment, bound: float) -> None:
    log.error("Run exceeded its hard time bound of %.0f s: stopping it", bound)
    _state["overran"] = bound
    environment.runner.quit()


@events.test_start.add_listener
def _started(environment, **_kw) -> None:
    TALLY.clear()
    if isinstance(environment.runner, WorkerRunner):
        return
    shape = environment.shape_class
    for name in ("guard", "sampler", "progress"):  # a new run from the web UI starts afresh
        if name in _state:
            _state.pop(name).kill(block=False)
    shape.holding = True
    try:
        _state["accounts"] = _prepare_accounts(environment)
    finally:
        shape.holding = False
    if not accounts.POOL and environment.parsed_options.accounts != "register":
        log.error("No account could be prepared: stopping before the measured phase")
        environment.process_exit_code = 2
        gevent.spawn(environment.runner.quit)
    # The measured phase starts now: the shape's clock and Locust's figures leave out the
    # preparation (which sent no request through Locust's client).
    shape.reset_time()
    environment.stats.clear_all()
    shape.restart()
    _state.pop("overran", None)
    _state["started"] = time.time()
    # Read now: by the time Locust quits, the master has already let its workers go.
    _state["workers"] = len(getattr(environment.runner, "clients", {}) or {})
    if shape.wants_timeline:
        shape.timeline = Timeline()
        _state["sampler"] = gevent.spawn(_sample, environment)
    _state["progress"] = gevent.spawn(_report_progress, environment)
    # Every run ends by itself: the shape's end, plus a margin for stopping users.
    planned = shape.planned_duration()
    margin = environment.parsed_options.time_margin
    margin = parse_duration(margin) if margin else max(30.0, planned * 0.1)
    bound = planned + margin + (environment.stop_timeout or 0)
    _state["guard"] = gevent.spawn_later(bound, _hard_stop, environment, bound)


@events.test_stop.add_listener
def _stopped(environment, **_kw) -> None:
    shape = environment.shape_class
    if "progress" in _state:
        _state.pop("progress").kill(block=False)
    if shape is not None and shape.timeline is not None and "sampler" in _state:
        _state.pop("sampler").kill(block=False)
        shape.timeline.sample(shape.get_run_time(), 0, environment.stats.total, TALLY.answers)


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
    """Judge every threshold, write the JSON and HTML reports and set the exit code; the table
    is printed when Locust has printed its own summary (``_print_verdict``)."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner) or "started" not in _state:
        return
    for name in ("guard", "progress"):
        if name in _state:
            _state.pop(name).kill(block=False)
    if "exporter" in _state:
        _state.pop("exporter").stop(timeout=1)
    shape, options, stats = environment.shape_class, environment.parsed_options, environment.stats
    results = thresholds.judge_requests(shape.thresholds, stats, TALLY)
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
    preparation = _state.get("accounts") or accounts.Preparation(options.accounts)
    if preparation.mode == "prepared" and not preparation.created:
        results.append(
            thresholds.Result(
                "run", "accounts prepared > 0", 0.0, False, "; ".join(preparation.errors[:1])
            )
        )
    report_dir = Path(options.report_dir or Path("reports") / shape.scenario)
    body = {
        "scenario": shape.scenario,
        "host": environment.host,
        "started": _state["started"],
        "ended": time.time(),
        "workers": _state["workers"],
        "totals": {
            "requests": stats.total.num_requests,
            "failures": stats.total.num_failures,
            "rps": round(stats.total.total_rps, 2),
            "backpressure": TALLY.answers,
        },
        "accounts": {**asdict(preparation), "summary": preparation.summary()},
        "backpressure": TALLY.rows(),
        "routes": _route_rows(stats),
        "shape": shape.report(),
    }
    thresholds.write_json(report_dir / "thresholds.json", body, results)
    report.write_html(report_dir / "report.html", body, results, options.html_file)
    log.info("Reports written to %s", report_dir)
    _state["verdict"] = "\n".join(
        [
            thresholds.table(shape.scenario, results),
            _backpressure_lines(TALLY.rows()),
            f"Report: {report_dir / 'report.html'}"
            + (f" (log: {options.logfile})" if getattr(options, "logfile", None) else ""),
        ]
    )
    if environment.process_exit_code not in (None, 0):
        return  # a guard already decided (e.g. a refused host)
    environment.process_exit_code = 0 if all(r.passed for r in results) else 1


def _backpressure_lines(rows: list[dict]) -> str:
    if not rows:
        return "Back-pressure: none"
    lines = ["Back-pressure (429/503 with Retry-After, waited out and retried, not failures):"]
    for r in rows:
        lines.append(
            f"  {r['status']}  {r['method']} {r['name']}: {r['answers']} answers, "
            f"waited {r['waited_s']:.1f} s"
            + (f", gave up on {r['gave_up']} (counted as failures)" if r["gave_up"] else "")
        )
    return "\n".join(lines)


@events.quit.add_listener
def _print_verdict(**_kw) -> None:
    """The verdict is the last thing on the console, below Locust's summary."""
    if "verdict" in _state:
        print(_state.pop("verdict"), flush=True)
