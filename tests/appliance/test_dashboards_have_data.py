"""Every panel has data: after a steady Locust run against the provisioned appliance (from this
host, through nginx), every PromQL query of every dashboard panel, annotation and variable runs
against the appliance's Prometheus with the variables filled the way Grafana fills them, and
must return at least one finite sample. A panel a reviewer would see as "No data" fails.

Exceptions are explicit: panels documented as empty when all is well
(vigil_dashboards.EMPTY_WHEN_HEALTHY), and queries of services the container cannot run (Loki,
Alloy and Grafana come from Grafana's APT repository) or data it cannot collect (the kernel's
NTP state: node_exporter's timex collector fails inside the container). Both are listed in the
run's summary as not executed. LogQL is not run here (no Loki); tests/monitoring parses it with
Grafana's own grammar.
"""
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from appliance_env import NOT_EXECUTED, PROOF_TIMINGS, REPO

sys.path.insert(0, str(REPO / "dashboards"))
from vigil_dashboards import EMPTY_WHEN_HEALTHY  # noqa: E402 (dashboards/ is not a package)

pytestmark = [pytest.mark.appliance, pytest.mark.slow]

DASHBOARDS = sorted((REPO / "dashboards").glob("vigil-*.json"))
NOT_INSTALLED_JOBS = {"loki", "alloy", "grafana"}
STEP = 15  # the appliance's scrape and evaluation interval
# What Grafana puts for its built-in variables: $__rate_interval is max(4 x scrape interval,
# interval + scrape interval), 60 s at 15 s scrapes; the datasource variables name the
# provisioned datasources.
BUILTINS = {"$__rate_interval": "1m", "${datasource}": "prometheus",
            "${longterm}": "prometheus-longterm", "${loki}": "loki"}
LOAD_SECONDS = int(os.environ.get("VIGIL_DASHBOARD_LOAD_SECONDS", "60"))


def panels(board):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def prometheus_queries(board):
    """(where, expr, instant, long_term) for every Prometheus query a dashboard runs."""
    for panel in panels(board):
        source = panel.get("datasource", {})
        if source.get("type") == "prometheus":
            for target in panel["targets"]:
                yield (panel["title"], target["expr"], bool(target.get("instant")),
                       source["uid"] == "${longterm}")
    for annotation in board["annotations"]["list"]:
        yield f"annotation {annotation['name']}", annotation["expr"], False, False


def query(appliance, path, long_term=False, **params):
    """The main Prometheus from this host; the long-term one (port 9091, not opened to the host
    by the firewall) from the machine itself."""
    if not long_term:
        return appliance.prom(path, **params)["result"]
    argv = ["curl", "-sfG", f"http://{appliance.ip}:9091{path}"]
    for name, value in params.items():
        argv += ["--data-urlencode", f"{name}={value}"]
    return json.loads(appliance.run(*argv).stdout)["data"]["result"]


def regex_escape(value):
    """A label value as Grafana's Prometheus data source puts it in a regex matcher."""
    return re.sub(r"([\\^$*+?.()|{}\[\]])", r"\\\\\1", value)


def substitute(expr, values):
    for name, value in BUILTINS.items():
        expr = expr.replace(name, value)
    # Longest names first, so $instance does not eat the start of $instances.
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", values[name]).replace(f"${name}", values[name])
    return expr


def fill_variables(board, appliance, start, end):
    """Each variable as Grafana fills it with "All" selected: the alternation of every value
    `label_values(...)` offers over the time range (constants: their value)."""
    values = {}
    for var in board["templating"]["list"]:
        if var["type"] == "constant":
            values[var["name"]] = var["query"]
        elif var["type"] == "query":
            selector, label = re.fullmatch(r"label_values\((.*),\s*(\w+)\)",
                                           var["query"]).groups()
            series = appliance.prom("/api/v1/series", **{"match[]": substitute(selector, values)},
                                    start=start, end=end)
            offered = sorted({s[label] for s in series if s.get(label)})
            assert offered, f"{board['uid']}: variable ${var['name']} offers no value"
            values[var["name"]] = "(" + "|".join(regex_escape(v) for v in offered) + ")"
    return values


def finite_samples(result):
    points = [v for series in result for _, v in series.get("values", [series.get("value")])]
    return [float(v) for v in points if v is not None and math.isfinite(float(v))]


def not_here(expr, jobs_scraped, timex_works):
    """Why a query cannot return data in this container, or None."""
    jobs = set(re.findall(r'job="([\w-]+)"', expr))
    if jobs and jobs <= NOT_INSTALLED_JOBS:
        assert not jobs & jobs_scraped, f"{jobs} is scraped after all: run this query"
        return f"job {'/'.join(sorted(jobs))} is not installed in the container"
    if "node_timex_" in expr and not timex_works:
        return "node_exporter's timex collector fails inside the container"
    return None


@pytest.fixture(scope="module")
def steady_load(appliance, tmp_path_factory):
    """A steady Locust `load` run from this host against the appliance's HTTPS front door."""
    appliance.wait_all_targets_up()
    _backup_once(appliance)
    report = tmp_path_factory.mktemp("locust")
    locust = Path(sys.executable).parent / "locust"
    start = time.time()
    t = time.monotonic()
    done = subprocess.run(
        [str(locust), "-f", "loadtest/locustfile.py", "--scenario", "load", "--headless",
         "--host", appliance.https, "--allowed-hosts", appliance.ip, "--load-users", "6",
         "--load-ramp", "5s", "--load-duration", f"{LOAD_SECONDS}s", "--think-time", "0.2:1",
         "--report-dir", str(report), "--only-summary"],
        cwd=REPO, capture_output=True, text=True, timeout=LOAD_SECONDS + 120)
    PROOF_TIMINGS["dashboards: steady Locust run"] = time.monotonic() - t
    # Its thresholds may fail on a busy build machine; the run itself must have sent traffic.
    assert "Aggregated" in done.stdout + done.stderr, done.stderr[-3000:]
    # Two more evaluations, so recording rules and rate windows cover the end of the run; and
    # the long-term Prometheus federates once a minute, then records the 30-day ratios.
    time.sleep(2 * STEP)
    _wait_for_the_long_term_prometheus(appliance)
    return {"start": start - 5 * 60, "end": time.time()}


def _wait_for_the_long_term_prometheus(appliance, timeout=240):
    """Until the run's requests reach the 30-day ratios (a minute to federate, a minute to
    evaluate); after that the test judges whatever is there."""
    deadline = time.monotonic() + timeout
    wanted = ("job:slo_availability_errors:ratio_rate30d", "job:slo_latency_errors:ratio_rate30d")
    while time.monotonic() < deadline:
        if all(query(appliance, "/api/v1/query", True, query=name) for name in wanted):
            return
        time.sleep(STEP)


def _backup_once(appliance):
    """The host dashboard shows the nightly backup's result: if provisioning made none, run the
    job the way its timer does, and wait for the scrape."""
    metric = "vigil_backup_last_success_timestamp_seconds"
    if appliance.prom("/api/v1/query", query=metric)["result"]:
        return
    appliance.run("systemctl", "start", "vigil-backup.service", timeout=300)
    deadline = time.monotonic() + 90
    while not appliance.prom("/api/v1/query", query=metric)["result"]:
        assert time.monotonic() < deadline, "the backup's metric never reached Prometheus"
        time.sleep(5)


@pytest.fixture(scope="module")
def scrape_facts(appliance, steady_load):
    targets = appliance.prom("/api/v1/targets", state="active")["activeTargets"]
    timex = appliance.prom("/api/v1/query",
                           query='node_scrape_collector_success{collector="timex"}')["result"]
    return {"jobs": {t["labels"]["job"] for t in targets},
            "timex": bool(timex) and all(float(r["value"][1]) == 1 for r in timex)}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.stem)
def test_every_panel_query_returns_data(appliance, steady_load, scrape_facts, path):
    board = json.loads(path.read_text())
    start, end = steady_load["start"], steady_load["end"]
    values = fill_variables(board, appliance, start, end)
    empty, excused = [], []
    for where, expr, instant, long_term in prometheus_queries(board):
        promql = substitute(expr, values)
        if instant:
            result = query(appliance, "/api/v1/query", long_term, query=promql, time=end)
        else:
            result = query(appliance, "/api/v1/query_range", long_term, query=promql,
                           start=start, end=end, step=STEP)
        if finite_samples(result):
            continue
        # A documented reason excuses an empty result; it never hides one that has data.
        reason = EMPTY_WHEN_HEALTHY.get((path.name, where)) or not_here(
            expr, scrape_facts["jobs"], scrape_facts["timex"])
        if reason:
            excused.append(f"{path.name} / {where}: {reason}")
        else:
            empty.append(f"{where}: {promql}")
    NOT_EXECUTED.extend(f"EMPTY, AS DOCUMENTED: {line}" for line in sorted(set(excused)))
    assert not empty, f"{path.name}: panels that would show No data:\n" + "\n".join(empty)


def test_the_documented_empty_panels_exist():
    """A stale entry would hide nothing and mislead the reader of the list."""
    titles = {(p.name, panel["title"]) for p in DASHBOARDS
              for panel in panels(json.loads(p.read_text()))}
    titles |= {(p.name, f"annotation {a['name']}") for p in DASHBOARDS
               for a in json.loads(p.read_text())["annotations"]["list"]}
    assert set(EMPTY_WHEN_HEALTHY) <= titles, set(EMPTY_WHEN_HEALTHY) - titles


def test_the_alert_list_has_the_watchdog_to_show(appliance, steady_load):
    """The alert-list panels read Grafana's view of every rule source; Grafana cannot run here,
    so the Prometheus half of their data is checked: the Watchdog is always firing."""
    alerts = appliance.prom("/api/v1/alerts")["alerts"]
    assert any(a["labels"]["alertname"] == "Watchdog" and a["state"] == "firing"
               for a in alerts), alerts


def test_api_start_annotation_marks_the_start_of_gunicorn(appliance, steady_load):
    """The deploy annotation puts a mark at the API master's start time (useValueForTime)."""
    board = json.loads((REPO / "dashboards" / "vigil-api-overview.json").read_text())
    [annotation] = [a for a in board["annotations"]["list"] if a["name"].startswith("API starts")]
    assert annotation["useValueForTime"] is True
    end = steady_load["end"]
    values = fill_variables(board, appliance, steady_load["start"], end)
    result = appliance.prom("/api/v1/query", query=substitute(annotation["expr"], values),
                            time=end)["result"]
    master = appliance.prom("/api/v1/query", query='process_start_time_seconds{job="vigil-api"}',
                            time=end)["result"]
    marks = {round(float(r["value"][1]) / 1000) for r in result}
    assert marks and marks == {round(float(r["value"][1])) for r in master}
    assert all(end - 86400 < mark < end for mark in marks), "a start time, in epoch seconds"
    assert all(r["metric"].get("version") for r in result), "the mark says what was deployed"


def test_no_data_means_no_finite_sample():
    """What a reviewer sees as "No data" (or NaN): no series, or series of NaN only."""
    assert finite_samples([]) == []
    assert finite_samples([{"values": [[1, "NaN"], [2, "NaN"]]}]) == []
    assert finite_samples([{"value": [1, "+Inf"]}]) == []
    assert finite_samples([{"values": [[1, "NaN"], [2, "0"]]}]) == [0.0]


def test_variables_are_filled_the_way_grafana_fills_all():
    values = {"instance": "(" + regex_escape("10.0.0.1:9100") + "|vigil)", "instances": "x"}
    assert substitute('up{instance=~"$instance"}[$__rate_interval]', values) == \
        'up{instance=~"(10\\\\.0\\\\.0\\\\.1:9100|vigil)"}[1m]'
