"""Dashboards are code: current valid JSON, fixed uids, described panels, real metrics, 5xx."""
import json
import re
import shutil
import subprocess
import sys

import pytest
import rule_files as rf
import yaml

BUILDER = rf.DASHBOARDS / "build_dashboards.py"
PROMTOOL = shutil.which("promtool")
EXPECTED_UIDS = {"vigil-api-overview.json": "vigil-api-overview", "vigil-host.json": "vigil-host",
                 "vigil-postgresql.json": "vigil-postgresql",
                 "vigil-monitoring.json": "vigil-monitoring"}
# Grafana variables replaced by representative values so the expression can be parsed.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "${__interval}": "1m",
                "$job": "vigil-api", "$route": ".*", "$instance": "vigil:9100"}
API_PREFIXES = ("flask_http_", "vigil_", "process_")


def dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted(rf.DASHBOARDS.glob("*.json"))}


def panels(board):
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def substitute(expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    return expr


def promql_queries():
    """(dashboard, where, PromQL) for every Prometheus query: panels, annotations, variables."""
    out = []
    for name, board in dashboards().items():
        for panel in panels(board):
            if panel.get("datasource", {}).get("type") == "prometheus":
                out += [(name, panel["title"], t["expr"]) for t in panel["targets"]]
        for annotation in board["annotations"]["list"]:
            out.append((name, annotation["name"], annotation["expr"]))
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"]["query"])
                out.append((name, f"${var['name']}", inner.group(1)))
    return [(n, w, substitute(e)) for n, w, e in out]


def test_committed_json_is_what_the_builder_makes(tmp_path):
    subprocess.run([sys.executable, str(BUILDER), "--out-dir", str(tmp_path)], check=True,
                   capture_output=True, timeout=60)
    for name in EXPECTED_UIDS:
        assert (tmp_path / name).read_text() == (rf.DASHBOARDS / name).read_text(), \
            f"dashboards/{name} is stale: run `make dashboards` and commit"


def test_json_is_valid_and_uids_are_fixed_and_unique():
    boards = dashboards()
    assert {name: b["uid"] for name, b in boards.items()} == EXPECTED_UIDS
    assert all(b.get("id") is None for b in boards.values()), "ids are per Grafana instance"


@pytest.mark.parametrize("name", EXPECTED_UIDS)
def test_every_panel_has_a_description_and_a_datasource_variable(name):
    board = dashboards()[name]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert len(panel.get("description", "")) > 20, f"{panel['title']}: no description"
        assert panel["datasource"]["uid"] in {"${datasource}", "${loki}"}, panel["title"]
    names = {v["name"]: v for v in board["templating"]["list"]}
    assert names["datasource"]["type"] == "datasource"
    assert names["datasource"]["query"] == "prometheus"


@pytest.mark.skipif(PROMTOOL is None, reason="promtool missing: apt-get install prometheus")
def test_every_promql_expression_parses_with_promtool(tmp_path):
    queries = promql_queries()
    rules = [{"record": f"dashboard:check_{i}:expr", "expr": expr}
             for i, (_, _, expr) in enumerate(queries)]
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


def test_every_metric_a_panel_queries_is_exported_by_something():
    """Exporter metrics must be in the inventory; API metrics are checked by a live scrape."""
    known = set().union(*rf.load_inventory().values()) | rf.recorded_metrics() \
        | rf.BUILTIN_METRICS
    for name, where, expr in promql_queries():
        for metric in rf.metric_names(expr):
            assert metric in known or metric.startswith(API_PREFIXES), \
                f"{name} / {where}: {metric} is in no exporter inventory"


def test_no_panel_counts_2xx_3xx_or_4xx_as_errors():
    for name, where, expr in promql_queries():
        for metric, labels in rf.selectors(expr):
            if "status" in labels:
                assert labels["status"] == ("Re", "5.."), f"{name} / {where}: {labels['status']}"
            if metric == "flask_http_request_total" and re.search("error|5xx", where, re.I):
                assert any(lbl.get("status") == ("Re", "5..") for _, lbl in rf.selectors(expr))


def test_overview_shows_everything_the_issue_lists():
    titles = " | ".join(p["title"].lower() for p in panels(dashboards()["vigil-api-overview.json"]))
    for needle in ("traffic", "5xx", "p50 / p95 / p99 by route", "cpu", "memory",
                   "database pool", "active sessions", "auth events", "sli (30 days)",
                   "error budget left", "burn rate", "firing alerts", "fault switches",
                   "log lines"):
        assert needle in titles, needle


def test_error_spikes_link_to_their_log_lines():
    board = dashboards()["vigil-api-overview.json"]
    logs = [p for p in panels(board) if p["type"] == "logs"]
    assert logs and logs[0]["datasource"] == {"type": "loki", "uid": "${loki}"}
    spike = next(p for p in panels(board) if p["title"] == "5xx errors by route")
    links = spike["fieldConfig"]["defaults"]["links"]
    assert any(f"viewPanel={logs[0]['id']}" in link["url"] and "var-route=" in link["url"]
               and "__url_time_range" in link["url"] for link in links)


def test_provisioning_points_grafana_at_the_dashboards_and_fixed_datasource_uids():
    sources = yaml.safe_load((rf.DASHBOARDS / "provisioning/datasources/vigil.yml").read_text())
    assert {d["uid"]: d["type"] for d in sources["datasources"]} == {
        "prometheus": "prometheus", "prometheus-longterm": "prometheus", "loki": "loki",
        "alertmanager": "alertmanager"}
    providers = yaml.safe_load((rf.DASHBOARDS / "provisioning/dashboards/vigil.yml").read_text())
    provider = providers["providers"][0]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False
