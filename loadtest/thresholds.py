"""k6-style thresholds: read them from YAML, judge a run's statistics, print and save the verdict.

A scenario maps selectors to lists of expressions such as ``p(95) < 300`` (milliseconds),
``error_ratio < 0.01`` or ``rps > 5``. Selectors: ``all`` (every request), ``METHOD /route``
(one Locust stats row, named by route template), ``step`` (stress: what each step must meet),
``recovered`` (spike: what a window after the spike must meet to count as recovered) and
``run`` (run-level figures: ``held_users``, ``recovery_s``).

Back-pressure answers (429/503 with Retry-After, waited out and retried) are not requests in
Locust's statistics; ``backpressure`` counts them and ``backpressure_ratio`` is their share of
all answers (back-pressure / (requests + back-pressure)), for every selector but ``run``.
"""

from __future__ import annotations

import json
import math
import operator
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

DEFAULT_FILE = Path(__file__).with_name("thresholds.yml")
REQUEST_METRICS = (
    "avg",
    "med",
    "min",
    "max",
    "error_ratio",
    "rps",
    "requests",
    "failures",
    "backpressure",
    "backpressure_ratio",
)
RUN_METRICS = ("held_users", "recovery_s")
WINDOW_SELECTORS = ("step", "recovered")
_EXPR = re.compile(
    r"^\s*(?P<metric>p\((?P<pct>\d+(?:\.\d+)?)\)|[a-z_0-9]+)\s*"
    r"(?P<op><=|>=|<|>|==)\s*(?P<value>-?\d+(?:\.\d+)?)\s*$"
)
_SELECTOR = re.compile(r"^(?P<method>GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (?P<name>/\S*)$")
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}


class ThresholdError(ValueError):
    """The threshold file is malformed; the message says where."""


@dataclass(frozen=True)
class Threshold:
    selector: str
    expression: str
    metric: str  # "p" for percentiles
    op: str
    value: float
    pct: float | None = None

    def measure(self, stats, backpressure: int = 0) -> float | None:
        """Read this threshold's metric from a StatsEntry-like object and the back-pressure
        answers counted beside it (None: nothing measured)."""
        requests = stats.num_requests if stats is not None else 0
        if self.metric == "backpressure":
            return float(backpressure)
        if self.metric == "backpressure_ratio":
            answers = requests + backpressure
            return backpressure / answers if answers else None
        if requests == 0:
            return 0.0 if self.metric in ("requests", "failures") else None
        return {
            "p": lambda: float(stats.get_response_time_percentile(self.pct / 100)),
            "avg": lambda: float(stats.avg_response_time),
            "med": lambda: float(stats.median_response_time),
            "min": lambda: float(stats.min_response_time),
            "max": lambda: float(stats.max_response_time),
            "error_ratio": lambda: stats.num_failures / stats.num_requests,
            "rps": lambda: float(stats.total_rps),
            "requests": lambda: float(stats.num_requests),
            "failures": lambda: float(stats.num_failures),
        }[self.metric]()

    def holds(self, measured: float | None) -> bool:
        return (
            measured is not None
            and not math.isnan(measured)
            and _OPS[self.op](measured, self.value)
        )


@dataclass
class Result:
    selector: str
    expression: str
    measured: float | None
    passed: bool
    note: str = ""


def parse_expression(selector: str, text: str, where: str) -> Threshold:
    match = _EXPR.match(str(text))
    if not match:
        raise ThresholdError(
            f"{where}: cannot read {text!r}; write e.g. 'p(95) < 300', "
            "'error_ratio < 0.01', 'rps > 5'"
        )
    metric = "p" if match["pct"] else match["metric"]
    allowed = RUN_METRICS if selector == "run" else ("p", *REQUEST_METRICS)
    if metric not in allowed:
        names = ", ".join("p(N)" if m == "p" else m for m in allowed)
        raise ThresholdError(
            f"{where}: unknown metric {match['metric']!r} for {selector!r}; use one of {names}"
        )
    pct = float(match["pct"]) if match["pct"] else None
    if pct is not None and not 0 < pct < 100:
        raise ThresholdError(f"{where}: percentile must be between 0 and 100, got {pct}")
    return Threshold(
        selector, " ".join(str(text).split()), metric, match["op"], float(match["value"]), pct
    )


def load(path: str | Path | None, scenario: str) -> list[Threshold]:
    """Every threshold of ``scenario`` in the file, validated."""
    path = Path(path) if path else DEFAULT_FILE
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ThresholdError(f"cannot read threshold file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ThresholdError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ThresholdError(f"{path}: expected a mapping of scenario -> selectors")
    if scenario not in document:
        raise ThresholdError(
            f"{path}: no thresholds for scenario {scenario!r} "
            f"(has: {', '.join(map(str, document))})"
        )
    selectors = document[scenario] or {}
    if not isinstance(selectors, dict):
        raise ThresholdError(f"{path}: {scenario}: expected a mapping of selector -> expressions")
    thresholds = []
    for selector, expressions in selectors.items():
        where = f"{path}: {scenario}.{selector}"
        if selector not in ("all", "run", *WINDOW_SELECTORS) and not _SELECTOR.match(str(selector)):
            raise ThresholdError(
                f"{where}: selector must be all, run, step, recovered or 'METHOD /route/template'"
            )
        if not isinstance(expressions, list) or not expressions:
            raise ThresholdError(f"{where}: expected a non-empty list of expressions")
        thresholds += [parse_expression(str(selector), e, where) for e in expressions]
    return thresholds


def judge_requests(thresholds: list[Threshold], stats, tally=None) -> list[Result]:
    """Judge ``all`` and per-route thresholds against a Locust RequestStats and the run's
    back-pressure tally."""
    results = []
    for t in thresholds:
        if t.selector in ("run", *WINDOW_SELECTORS):
            continue
        if t.selector == "all":
            entry = stats.total
            backpressure = tally.answers if tally else 0
        else:
            method, name = t.selector.split(" ", 1)
            entry = stats.entries.get((name, method))
            backpressure = tally.for_route(method, name) if tally else 0
        measured = t.measure(entry, backpressure)
        note = "no requests on this route" if measured is None else ""
        results.append(Result(t.selector, t.expression, measured, t.holds(measured), note))
    return results


def judge_window(thresholds: list[Threshold], selector: str, window) -> list[Result]:
    """Judge the ``step`` or ``recovered`` thresholds against a timeline Window."""
    results = []
    for t in thresholds:
        if t.selector == selector:
            measured = t.measure(window, window.num_backpressure)
            results.append(
                Result(
                    selector,
                    t.expression,
                    measured,
                    t.holds(measured),
                    "no requests in the window" if measured is None else "",
                )
            )
    return results


def judge_run(thresholds: list[Threshold], figures: dict, notes: dict) -> list[Result]:
    """Judge ``run`` thresholds against run-level figures (missing figure: failed)."""
    return [
        Result(
            "run",
            t.expression,
            figures.get(t.metric),
            t.holds(figures.get(t.metric)),
            notes.get(t.metric, ""),
        )
        for t in thresholds
        if t.selector == "run"
    ]


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if abs(value) < 1 and value != 0 else f"{value:.1f}"


def table(scenario: str, results: list[Result]) -> str:
    """The human verdict: one line per threshold."""
    width = max([len(r.selector) for r in results] + [8])
    lines = [
        f"Thresholds for scenario {scenario!r}",
        f"  {'result':6}  {'selector':{width}}  {'threshold':24}  measured",
    ]
    for r in results:
        lines.append(
            f"  {'PASS' if r.passed else 'FAIL':6}  {r.selector:{width}}  "
            f"{r.expression:24}  {fmt(r.measured)}{'  (' + r.note + ')' if r.note else ''}"
        )
    failed = [r for r in results if not r.passed]
    lines.append(
        f"Thresholds: {len(results) - len(failed)} passed, {len(failed)} failed"
        + (
            "".join(
                f"\nTHRESHOLD FAILED: {r.selector} {r.expression} (measured {fmt(r.measured)})"
                for r in failed
            )
        )
    )
    return "\n".join(lines)


def write_json(path: Path, report: dict, results: list[Result]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        **report,
        "passed": all(r.passed for r in results),
        "thresholds": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(body, indent=2, default=str) + "\n", encoding="utf-8")
