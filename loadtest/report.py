"""The run's HTML report (``report.html``): the verdict first, then what explains it.

Locust's own ``locust.html`` has no place for a verdict, so Vigil writes this page beside it
from the same figures as ``thresholds.json``: every threshold with its measured value and
PASS/FAIL, back-pressure apart from failures, how the accounts were prepared, per-route
figures, and the stress steps or spike windows.
"""

from __future__ import annotations

import datetime
import os
from html import escape
from pathlib import Path

from .thresholds import Result, fmt

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.PASS { color: #176f2c; font-weight: bold; }
.FAIL { color: #b00020; font-weight: bold; }
h1 .PASS, h1 .FAIL { font-size: inherit; }
"""


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if isinstance(value, tuple):  # (text, css class)
                cells.append(f'<td class="{value[1]}">{escape(str(value[0]))}</td>')
            else:
                css = ' class="num"' if i in numeric else ""
                cells.append(f"<td{css}>{escape('' if value is None else str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def verdict_table(results: list[Result]) -> str:
    """The verdict as an HTML table: result, selector, threshold, measured value, note."""
    rows = [
        [
            ("PASS" if r.passed else "FAIL", "PASS" if r.passed else "FAIL"),
            r.selector,
            r.expression,
            fmt(r.measured),
            r.note,
        ]
        for r in results
    ]
    return _table(["result", "selector", "threshold", "measured", "note"], rows, {3})


def _shape_section(shape: dict) -> str:
    if "steps" in shape:
        rows = [
            [
                s["step"],
                s["users"],
                ("held" if s["passed"] else "broke", "PASS" if s["passed"] else "FAIL"),
                s["requests"],
                s["rps"],
                s["p95_ms"],
                s["error_ratio"],
                s.get("backpressure", 0),
            ]
            for s in shape["steps"]
        ]
        return (
            f"<h2>Stress steps</h2><p>Held {shape['held_users']} users"
            + (f"; broke at {shape['broke_at_users']}" if shape.get("broke_at_users") else "")
            + ". Each step is judged on its second half.</p>"
            + _table(
                [
                    "step",
                    "users",
                    "verdict",
                    "requests",
                    "req/s",
                    "p95 ms",
                    "error ratio",
                    "back-pressure",
                ],
                rows,
                {0, 1, 3, 4, 5, 6, 7},
            )
        )
    if "windows" in shape:
        names = ["baseline", "spike", "after"] + [
            f"after drop, to {w['end_s']} s" for w in shape.get("after_drop", [])
        ]
        windows = list(shape["windows"].values()) + shape.get("after_drop", [])
        rows = [
            [
                name,
                w["start_s"],
                w["end_s"],
                w["users"],
                w["requests"],
                w["rps"],
                w["p95_ms"],
                w["error_ratio"],
                w.get("backpressure", 0),
            ]
            for name, w in zip(names, windows, strict=True)
        ]
        recovery = shape.get("recovery_s")
        return (
            "<h2>Spike windows</h2><p>Recovery: "
            + ("never met the recovered thresholds" if recovery is None else f"{recovery:.1f} s")
            + "</p>"
            + _table(
                [
                    "window",
                    "from s",
                    "to s",
                    "users",
                    "requests",
                    "req/s",
                    "p95 ms",
                    "error ratio",
                    "back-pressure",
                ],
                rows,
                set(range(1, 9)),
            )
        )
    return ""


def write_html(path: Path, report: dict, results: list[Result], locust_html: str | None) -> None:
    """Write ``report.html`` from the report dict that ``thresholds.json`` also holds."""
    passed = all(r.passed for r in results)
    verdict = "PASS" if passed else "FAIL"
    totals = report["totals"]
    when = datetime.datetime.fromtimestamp(report["started"], datetime.UTC)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Vigil {escape(report['scenario'])}: {verdict}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Vigil load test <code>{escape(report['scenario'])}</code>: "
        f"<span class='{verdict}'>{verdict}</span></h1>",
        f"<p>Target {escape(str(report['host']))}, started {when:%Y-%m-%d %H:%M:%S} UTC, "
        f"{report['ended'] - report['started']:.0f} s, "
        f"{report['workers'] or 'no'} worker processes. "
        f"{totals['requests']} requests ({totals['rps']} req/s), {totals['failures']} failed, "
        f"{totals['backpressure']} back-pressure answers waited out and retried.</p>",
        f"<p>{escape(report['accounts']['summary'])}</p>",
        "<h2>Verdict</h2>",
        verdict_table(results),
    ]
    backpressure = report["backpressure"]
    parts.append("<h2>Back-pressure</h2>")
    if backpressure:
        parts.append(
            "<p>Answers 429/503 with Retry-After: the user waited as told and retried. They are "
            "not requests in the figures above; the ones beyond the back-off budget (gave up) "
            "are also counted as failures.</p>"
        )
        parts.append(
            _table(
                ["method", "route", "status", "answers", "waited s", "gave up"],
                [
                    [r["method"], r["name"], r["status"], r["answers"], r["waited_s"], r["gave_up"]]
                    for r in backpressure
                ],
                {2, 3, 4, 5},
            )
        )
    else:
        parts.append("<p>None: no answer asked the users to back off.</p>")
    parts.append("<h2>Routes</h2>")
    parts.append(
        _table(
            [
                "method",
                "route",
                "requests",
                "failures",
                "req/s",
                "avg ms",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "max ms",
            ],
            [
                [
                    r["method"],
                    r["name"],
                    r["requests"],
                    r["failures"],
                    r["rps"],
                    r["avg_ms"],
                    r["p50_ms"],
                    r["p95_ms"],
                    r["p99_ms"],
                    r["max_ms"],
                ]
                for r in report["routes"]
            ],
            set(range(2, 10)),
        )
    )
    parts.append(_shape_section(report["shape"]))
    if locust_html:
        link = os.path.relpath(locust_html, path.parent)
        parts.append(
            f"<p>Charts and Locust's own tables: <a href='{escape(link)}'>{escape(link)}</a>.</p>"
        )
    parts.append("</body></html>\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
