"""Dashboards are code: built with grafana-foundation-sdk, current, at the schema version Grafana
12.2 writes, every panel described and on a datasource variable, real metrics, 5xx-only errors,
threshold lines, one unit per panel, $instance everywhere, and links that lead somewhere."""
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import rule_files as rf
import yaml

BUILDER = rf.DASHBOARDS / "build_dashboards.py"
# Grafana's own npm packages, pinned by its package-lock.json, and the script that asks them.
GRAFANA_PACKAGES = rf.DASHBOARDS / "grafana-packages"
PROMTOOL = shutil.which("promtool")
EXPECTED_UIDS = {"vigil-api-overview.json": "vigil-api-overview", "vigil-host.json": "vigil-host",
                 "vigil-postgresql.json": "vigil-postgresql",
                 "vigil-monitoring.json": "vigil-monitoring"}
# Grafana variables replaced by representative values so the expression can be parsed.
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "${__interval}": "1m",
                "$job": "vigil-api", "$route": ".*", "$instance": "vigil", "$datname": "vigil"}
API_PREFIXES = ("flask_http_", "vigil_", "process_")
# Prometheus jobs whose series are not per machine: their panels need no $instance.
GLOBAL_SERIES = ("ALERTS", "alertmanager_", "job:slo_", "locust_", "up", "scrape_duration")

sys.path.insert(0, str(rf.DASHBOARDS))
import vigil_dashboards  # noqa: E402 (dashboards/ is not a package)


def dashboards():
    return {p.name: json.loads(p.read_text()) for p in sorted(rf.DASHBOARDS.glob("vigil-*.json"))}


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
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", var["query"])
                out.append((name, f"${var['name']}", inner.group(1)))
    return [(n, w, substitute(e)) for n, w, e in out]


def grafana_grammar(*args, stdin=""):
    """Run grafana_grammar.mjs: Grafana's own npm packages, pinned by the lockfile."""
    node = shutil.which("node") or pytest.fail("node missing: .ci/run installs it (nodejs)")
    if not (GRAFANA_PACKAGES / "node_modules" / "@grafana" / "lezer-logql").exists():
        pytest.fail("Grafana's npm packages are missing: run "
                    "`npm ci --prefix dashboards/grafana-packages` (make setup does)")
    done = subprocess.run([node, str(GRAFANA_PACKAGES / "grafana_grammar.mjs"), *args],
                          input=stdin, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


# ---- built with the SDK, current, at Grafana 12.2's schema version --------------------------

def test_committed_json_is_what_the_builder_makes(tmp_path):
    subprocess.run([sys.executable, str(BUILDER), "--out-dir", str(tmp_path)], check=True,
                   capture_output=True, timeout=120)
    for name in EXPECTED_UIDS:
        assert (tmp_path / name).read_text() == (rf.DASHBOARDS / name).read_text(), \
            f"dashboards/{name} is stale: run `make dashboards` and commit"


def test_the_sdk_is_the_grafana_12_build_pinned_in_pyproject():
    """The bare-number builds are generated for Grafana 12; epoch-prefixed ones (N!11.6.0) are
    for older Grafanas and would win an unpinned install."""
    pinned = re.search(r'"grafana-foundation-sdk==([^"]+)"',
                       (rf.ROOT / "pyproject.toml").read_text()).group(1)
    installed = importlib.metadata.version("grafana-foundation-sdk")
    assert installed == pinned and re.fullmatch(r"\d+", pinned), (installed, pinned)
    metadata = importlib.metadata.metadata("grafana-foundation-sdk").get_payload()
    assert "generated for Grafana next" in metadata


def test_schema_version_is_the_one_grafana_12_2_writes():
    """@grafana/schema is published with each Grafana release; its version is pinned to the
    Grafana the appliance installs, and its defaultDashboard carries the schema version Grafana
    writes."""
    grafana = yaml.safe_load((rf.ROOT / "appliance/roles/grafana/defaults/main.yml").read_text())
    package = json.loads((GRAFANA_PACKAGES / "package.json").read_text())
    assert package["dependencies"]["@grafana/schema"] == grafana["grafana_version"]
    lock = json.loads((GRAFANA_PACKAGES / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@grafana/schema"]["version"] == grafana["grafana_version"]
    written = int(grafana_grammar("schema-version"))
    assert vigil_dashboards.GRAFANA_SCHEMA_VERSION == written
    assert {b["schemaVersion"] for b in dashboards().values()} == {written}


def test_what_schema_migration_42_would_change_is_already_so():
    """The SDK emits 41; Grafana's migration to 42 makes every field hidden from the graph also
    hidden from the tooltip. Declaring 42 skips that migration, so it must have nothing to do."""
    for name, board in dashboards().items():
        for panel in panels(board):
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                for prop in override["properties"]:
                    if prop["id"] == "custom.hideFrom" and prop["value"].get("viz"):
                        assert prop["value"].get("tooltip"), (name, panel["title"])


def test_json_is_valid_and_uids_are_fixed_and_unique():
    boards = dashboards()
    assert {name: b["uid"] for name, b in boards.items()} == EXPECTED_UIDS
    assert all(b.get("id") is None for b in boards.values()), "ids are per Grafana instance"


@pytest.mark.parametrize("name", EXPECTED_UIDS)
def test_every_panel_has_a_description_and_a_datasource_variable(name):
    board = dashboards()[name]
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)) and all(ids)
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert len(panel.get("description", "")) > 20, f"{panel['title']}: no description"
        if panel["type"] in ("text", "alertlist"):
            assert "targets" not in panel
            continue
        assert panel["datasource"]["uid"] in {"${datasource}", "${longterm}", "${loki}"}, \
            panel["title"]
    names = {v["name"]: v for v in board["templating"]["list"]}
    assert names["datasource"]["type"] == "datasource"
    assert names["datasource"]["query"] == "prometheus"
    assert names["longterm"]["current"]["value"] == "prometheus-longterm"


# ---- queries are real ----------------------------------------------------------------------

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


@pytest.mark.parametrize("name", ["vigil-api-overview.json", "vigil-host.json",
                                  "vigil-postgresql.json"])
def test_every_machine_series_follows_the_instance_variable(name):
    board = dashboards()[name]
    variable = next(v for v in board["templating"]["list"] if v["name"] == "instance")
    assert variable["multi"] and variable["includeAll"]
    for where, expr in [(p["title"], t["expr"]) for p in panels(board)
                        if p.get("datasource", {}).get("type") == "prometheus"
                        for t in p["targets"]]:
        for metric, labels in rf.selectors(substitute(expr.replace("$instance", "INSTANCE"))):
            if metric.startswith(GLOBAL_SERIES) or metric.startswith("vigil_db_query") \
                    and name == "vigil-postgresql.json":
                continue
            assert labels.get("instance") == ("Re", "INSTANCE"), f"{where}: {metric}"


# ---- what the review asked for ---------------------------------------------------------------

def _panel(name, title):
    return next(p for p in panels(dashboards()[name]) if p["title"] == title)


def _lines(panel):
    """Threshold values a graph draws as lines."""
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] in ("dashed", "line", "line+area")
    return [s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None]


def test_burn_rate_panels_draw_the_paging_thresholds():
    for slo in ("Availability", "Latency"):
        assert sorted(_lines(_panel("vigil-api-overview.json", f"{slo} burn rate"))) == [6, 14.4]


def test_latency_panels_draw_the_300_ms_objective():
    for title in ("Latency p50 / p95 / p99", "p99 latency by route",
                  "Latency at nginx p50 / p95 / p99"):
        assert _lines(_panel("vigil-api-overview.json", title)) == [0.3]
    stat = _panel("vigil-api-overview.json", "API p99 latency")
    assert [s["value"] for s in stat["fieldConfig"]["defaults"]["thresholds"]["steps"]] == [None,
                                                                                           0.3]


def test_no_panel_puts_durations_and_rates_on_one_axis():
    """A quantile is a duration; a rate of a counter is a frequency: never both in a panel, and
    no override gives one series its own unit."""
    for name, board in dashboards().items():
        for panel in panels(board):
            exprs = [t.get("expr", "") for t in panel.get("targets", [])]
            quantiles = [e.startswith("histogram_quantile(") for e in exprs]
            assert all(quantiles) or not any(quantiles), (name, panel["title"])
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                assert all(p["id"] != "unit" for p in override["properties"]), panel["title"]


def test_latency_heatmap_reads_the_histogram_buckets():
    panel = _panel("vigil-api-overview.json", "Latency heatmap")
    assert panel["type"] == "heatmap" and panel["options"]["calculate"] is False
    [target] = panel["targets"]
    assert target["format"] == "heatmap" and target["legendFormat"] == "{{le}}"
    assert "flask_http_request_duration_seconds_bucket" in target["expr"]


def test_deploys_are_marked_at_the_api_start_with_the_version():
    board = dashboards()["vigil-api-overview.json"]
    deploy = next(a for a in board["annotations"]["list"] if a["name"].startswith("API starts"))
    assert deploy["useValueForTime"] is True and deploy["expr"].endswith("* 1000")
    assert {"process_start_time_seconds", "vigil_build_info"} <= rf.metric_names(
        substitute(deploy["expr"]))
    assert "{{version}}" in deploy["textFormat"] and deploy["enable"] is True


@pytest.mark.parametrize("name", ["vigil-api-overview.json", "vigil-monitoring.json"])
def test_alert_list_covers_every_rule_source_and_silences(name):
    board = dashboards()[name]
    [alerts] = [p for p in panels(board) if p["type"] == "alertlist"]
    options = alerts["options"]
    assert options["datasource"] == "" and options["stateFilter"]["firing"] \
        and options["stateFilter"]["pending"] and options["showInstances"]
    assert any("/alerting/silences" in link["url"] for link in alerts["links"])
    silences = [e for p in panels(board) for t in p.get("targets", [])
                for e in [t.get("expr", "")] if "alertmanager_silences" in e]
    assert silences, "the number of silences is on the dashboard"
    sources = yaml.safe_load((rf.DASHBOARDS / "provisioning/datasources/vigil.yml").read_text())
    manage = {d["uid"]: d["jsonData"].get("manageAlerts") for d in sources["datasources"]}
    assert manage["prometheus"] is True and manage["loki"] is True, \
        "Grafana lists a data source's rules (Loki's too) only with manageAlerts"


def _metrics_of(name):
    return {m for n, _, e in promql_queries() if n == name for m in rf.metric_names(e)}


def test_host_dashboard_has_disk_latency_inodes_psi_oom_and_time_sync():
    metrics = _metrics_of("vigil-host.json")
    assert {"node_disk_read_time_seconds_total", "node_disk_write_time_seconds_total",
            "node_filesystem_files_free", "node_pressure_cpu_waiting_seconds_total",
            "node_pressure_memory_waiting_seconds_total", "node_pressure_io_waiting_seconds_total",
            "node_vmstat_oom_kill", "node_timex_sync_status", "node_timex_offset_seconds"} \
        <= metrics


def test_postgresql_dashboard_has_variables_and_the_missing_views():
    board = dashboards()["vigil-postgresql.json"]
    assert {"instance", "datname"} <= {v["name"] for v in board["templating"]["list"]}
    assert {"pg_stat_activity_max_tx_duration", "pg_stat_user_tables_n_dead_tup",
            "pg_stat_user_tables_autovacuum_count", "pg_stat_checkpointer_num_timed_total",
            "pg_stat_checkpointer_num_requested_total", "pg_replication_lag_seconds",
            "pg_replication_is_replica", "pg_stat_replication_pg_wal_lsn_diff"} \
        <= _metrics_of("vigil-postgresql.json")


def test_overview_shows_everything_the_issue_lists():
    titles = " | ".join(p["title"].lower()
                        for p in panels(dashboards()["vigil-api-overview.json"]))
    for needle in ("requests per second by route", "5xx", "p50 / p95 / p99", "heatmap", "cpu",
                   "memory", "database pool", "auth events", "sli, 30 days",
                   "error budget left", "burn rate", "alerts (prometheus and loki rules)",
                   "active silences", "fault", "log lines"):
        assert needle in titles, needle


# ---- the first row answers the question and shows where to look next -------------------------

QUESTIONS = {"vigil-api-overview.json": "Is the API healthy?",
             "vigil-host.json": "Is the host saturated?",
             "vigil-postgresql.json": "Is the database the problem?",
             "vigil-monitoring.json": "Is the monitoring healthy?"}


def _first_row(board):
    rows = [i for i, p in enumerate(board["panels"]) if p["type"] == "row"]
    assert rows[0] == 0, "the dashboard starts with a row"
    return board["panels"][0], board["panels"][1:rows[1]]


def _urls(panel_or_board):
    """Every link URL of a panel (panel links, data links, markdown) or of a dashboard."""
    urls = [link["url"] for link in panel_or_board.get("links", []) if link.get("url")]
    urls += [link["url"] for link in panel_or_board.get("fieldConfig", {}).get("defaults", {})
             .get("links", [])]
    urls += re.findall(r"\]\(([^)]+)\)", panel_or_board.get("options", {}).get("content", ""))
    return urls


@pytest.mark.parametrize("name", EXPECTED_UIDS)
def test_first_row_answers_its_question_and_links_onwards(name):
    board = dashboards()[name]
    heading, first = _first_row(board)
    assert heading["title"].startswith(QUESTIONS[name])
    assert len(first) >= 4 and all(p["type"] in ("stat", "text") for p in first)
    urls = [u for p in first for u in _urls(p)] + _urls(board)
    assert any(u.startswith("/explore?") for u in urls), "logs for the same interval"
    assert any("/runbooks/" in u for u in urls), "a runbook"
    assert any(u.startswith("/d/") for u in urls), "a related dashboard"


def _logql_links():
    """(dashboard, LogQL) of every Explore link: panel links, data links, markdown, top links."""
    out = []
    for name, board in dashboards().items():
        for url in [u for p in [board, *panels(board)] for u in _urls(p)]:
            if url.startswith("/explore?"):
                panes = json.loads(unquote(parse_qs(urlparse(url).query)["panes"][0]))
                [pane] = panes.values()
                assert pane["range"] == {"from": "${__from}", "to": "${__to}"}, url
                out += [(name, q["expr"]) for q in pane["queries"]]
    return out


def _logql_panels():
    return [(name, t["expr"]) for name, board in dashboards().items() for p in panels(board)
            if p.get("datasource", {}).get("type") == "loki" for t in p["targets"]]


def _as_loki_sees_it(expr):
    """Grafana's variables filled as Grafana fills them (a link's field value, a pipe list)."""
    return (expr.replace("${instance:pipe}", "vigil|app1").replace("$route", ".*")
            .replace("${__field.labels.route}", "/api/v1/content"))


def test_every_logql_query_parses_with_grafanas_grammar():
    exprs = sorted({_as_loki_sees_it(e) for _, e in _logql_links() + _logql_panels()})
    assert len(exprs) >= 8
    results = json.loads(grafana_grammar("logql", stdin=json.dumps(exprs)))
    assert [r for r in results if r["errors"]] == []


def test_the_logql_check_can_fail():
    broken = ['{service="vigil-api" | json', 'rate({job="x"}[5m]', "level=error"]
    results = json.loads(grafana_grammar("logql", stdin=json.dumps(broken)))
    assert all(r["errors"] for r in results), results


def test_log_queries_select_only_labels_alloy_sets_and_follow_the_instances():
    allowed = {"service", "level", "env", "job", "host"}
    for name, expr in _logql_links() + _logql_panels():
        # The stream selector up to its closing brace (a ${variable} inside it has braces too).
        selector = re.match(r"\{((?:\$\{[^}]*\}|[^}])*)\}", expr).group(1)
        assert set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector)) <= allowed, expr
        assert 'host=~"(${instance:pipe})"' in selector, (name, expr)


def test_links_lead_to_dashboards_and_runbooks_that_exist():
    anchors = rf.runbook_anchors()
    for board in dashboards().values():
        for url in [u for p in [board, *panels(board)] for u in _urls(p)]:
            if url.startswith("/d/"):
                assert url.split("/")[2].split("?")[0] in EXPECTED_UIDS.values(), url
            elif "/runbooks/" in url:
                page, _, frag = url[url.index("/runbooks/"):].partition("#")
                assert page in anchors, url
                assert not frag or frag in anchors[page], url


def test_documented_empty_panels_say_so_in_their_description():
    for (name, title), reason in vigil_dashboards.EMPTY_WHEN_HEALTHY.items():
        if title.startswith("annotation "):
            continue
        description = _panel(name, title)["description"].lower()
        assert "empty" in description or "0 when" in description, (name, title, reason)


def test_provisioning_points_grafana_at_the_dashboards_and_fixed_datasource_uids():
    sources = yaml.safe_load((rf.DASHBOARDS / "provisioning/datasources/vigil.yml").read_text())
    assert {d["uid"]: d["type"] for d in sources["datasources"]} == {
        "prometheus": "prometheus", "prometheus-longterm": "prometheus", "loki": "loki",
        "alertmanager": "alertmanager"}
    assert {d["name"] for d in sources["datasources"] if d["uid"] == "alertmanager"} == {
        "Alertmanager"}, "the silences link names this data source"
    providers = yaml.safe_load((rf.DASHBOARDS / "provisioning/dashboards/vigil.yml").read_text())
    provider = providers["providers"][0]
    assert provider["type"] == "file" and provider["allowUiUpdates"] is False


def test_the_30_day_slo_panels_read_the_long_term_prometheus():
    """The 30-day ratio and budget are recorded only by the long-term Prometheus (90 days)."""
    board = dashboards()["vigil-api-overview.json"]
    for panel in panels(board):
        exprs = " ".join(t.get("expr", "") for t in panel.get("targets", []))
        if "ratio_rate30d" in exprs or "error_budget_remaining" in exprs:
            assert panel["datasource"]["uid"] == "${longterm}", panel["title"]
    longterm = {r["record"] for r in rf.rules_in(rf.LONGTERM_RULES_DIR / "slo.yml")}
    assert {"job:slo_availability_errors:ratio_rate30d",
            "job:slo_availability_error_budget_remaining:ratio"} <= longterm


def test_the_front_door_is_on_the_overview():
    metrics = _metrics_of("vigil-api-overview.json")
    assert {"vigil_edge_http_requests_total", "vigil_edge_http_request_duration_seconds_bucket",
            "probe_success", "probe_duration_seconds", "probe_ssl_earliest_cert_expiry"} <= metrics
