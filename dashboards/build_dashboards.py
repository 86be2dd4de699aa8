"""Build Vigil's Grafana dashboards (dashboards/*.json) from the compact definitions below.

Usage: python dashboards/build_dashboards.py [--out-dir dashboards]
The JSON files are committed (Grafana provisions them as files); a test rebuilds them into a
temporary directory and fails when they differ. Every panel gets a description, every query a
datasource variable, every dashboard a fixed uid.
"""
import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROM = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "${loki}"}
RATE = "$__rate_interval"
API = 'job="$job"'
OVERVIEW_UID = "vigil-api-overview"


def ts(title, description, *targets, unit="short", links=None, stack=False):
    """A time-series panel. ``targets`` are (expr, legend) pairs."""
    panel = {"type": "timeseries", "title": title, "description": description, "datasource": PROM,
             "targets": [{"refId": chr(65 + i), "expr": e, "legendFormat": legend}
                         for i, (e, legend) in enumerate(targets)],
             "fieldConfig": {"defaults": {"unit": unit, "custom": {
                 "stacking": {"mode": "normal" if stack else "none"}}}, "overrides": []},
             "options": {"legend": {"displayMode": "table", "placement": "bottom",
                                    "calcs": ["lastNotNull", "max"]},
                         "tooltip": {"mode": "multi"}}}
    if links:
        panel["fieldConfig"]["defaults"]["links"] = links
    return panel


def stat(title, description, expr, unit="short", legend="", thresholds=None, width=6):
    steps = thresholds or [{"color": "green", "value": None}]
    return {"type": "stat", "title": title, "description": description, "datasource": PROM,
            "targets": [{"refId": "A", "expr": expr, "legendFormat": legend, "instant": True}],
            "fieldConfig": {"defaults": {"unit": unit, "thresholds": {"mode": "absolute",
                                                                      "steps": steps}},
                            "overrides": []},
            "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"},
            "_width": width}


def table(title, description, expr, width=12):
    return {"type": "table", "title": title, "description": description, "datasource": PROM,
            "targets": [{"refId": "A", "expr": expr, "format": "table", "instant": True}],
            "fieldConfig": {"defaults": {}, "overrides": []},
            "transformations": [{"id": "organize", "options": {
                "excludeByName": {"Time": True, "__name__": True}}}],
            "_width": width}


def logs(title, description, expr):
    return {"type": "logs", "title": title, "description": description, "datasource": LOKI,
            "targets": [{"refId": "A", "expr": expr, "queryType": "range"}],
            "options": {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending",
                        "enableLogDetails": True, "prettifyLogMessage": True},
            "_width": 24, "_height": 10}


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def red(threshold_value, color="red"):
    return [{"color": "green", "value": None}, {"color": color, "value": threshold_value}]


def slo_panels():
    out = [row("SLO: 99.9% of requests without a 5xx, 99% under 300 ms, over 30 days")]
    for slo, what in (("availability", "answered without a 5xx"),
                      ("latency", "answered in under 300 ms")):
        out.append(stat(
            f"{slo.capitalize()} SLI (30 days)",
            f"Share of requests {what} over the SLO period, from the recording rule "
            f"job:slo_{slo}_errors:ratio_rate30d (alerts/slo.yml). Compare with the objective.",
            f'1 - job:slo_{slo}_errors:ratio_rate30d{{{API}}}', unit="percentunit"))
        out.append(stat(
            f"{slo.capitalize()} error budget left",
            f"Fraction of the 30-day {slo} error budget not yet spent. Below zero the SLO is "
            f"broken for the period; feature work should yield to reliability work.",
            f"job:slo_{slo}_error_budget_remaining:ratio{{{API}}}", unit="percentunit",
            thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0},
                        {"color": "green", "value": 0.25}]))
    for slo in ("availability", "latency"):
        budget = f"(1 - job:slo_{slo}_objective:ratio{{{API}}})"
        out.append(ts(
            f"{slo.capitalize()} burn rate",
            f"How many times faster than sustainable the {slo} error budget burns, per window. "
            f"1 spends the budget exactly over 30 days; the alerts page at 14.4 (1h) and 6 "
            f"(6h) and open a ticket at 3 (1d) and 1 (3d), each confirmed by a short window.",
            *[(f"job:slo_{slo}_errors:ratio_rate{w}{{{API}}} / on (job) {budget}", w)
              for w in ("5m", "1h", "6h", "1d", "3d")]))
    return out


def overview():
    error_links = [{
        "title": "5xx log lines of ${__field.labels.route} in this time range",
        "url": f"/d/{OVERVIEW_UID}/vigil-api-service-overview?${{__url_time_range}}"
               "&var-route=${__field.labels.route}&viewPanel=logs-errors",
    }]
    panels = [
        row("Now"),
        stat("Requests per second", "All API requests answered per second (health, metrics and "
             "docs endpoints excluded by the exporter).",
             f"sum(rate(flask_http_request_total{{{API}}}[{RATE}]))", unit="reqps"),
        stat("5xx ratio", "Share of requests answered with a 5xx status over the last rate "
             "window. 4xx are client mistakes and are not errors.",
             f'sum(rate(flask_http_request_total{{{API}, status=~"5.."}}[{RATE}])) / '
             f"sum(rate(flask_http_request_total{{{API}}}[{RATE}]))", unit="percentunit",
             thresholds=red(0.01)),
        stat("Fault switches on", "Fault switches currently on (vigil_fault_active), by kind. "
             "Anything but 0 means a fire drill is running and its alerts are expected.",
             f"max by (kind) (vigil_fault_active{{{API}}})", legend="{{kind}}",
             thresholds=red(1, "orange")),
        stat("Active sessions", "Live, unrevoked refresh sessions, read from the database at "
             "scrape time.", f"max(vigil_active_sessions{{{API}}})"),
        table("Firing alerts", "Alerts firing in Prometheus right now (all services), with "
              "severity. Routing and silences live in Alertmanager.",
              'sum by (alertname, severity, service) (ALERTS{alertstate="firing"})'),
        table("Build", "Version and git revision of the API every instance runs.",
              f"max by (instance, version, revision) (vigil_build_info{{{API}}})"),
        *slo_panels(),
        row("Traffic, errors, latency"),
        # prometheus-flask-exporter puts the route only on its histogram: its _count is the
        # per-route request counter.
        ts("Traffic by route", "Requests per second by route template and method.",
           (f"sum by (route, method) (rate(flask_http_request_duration_seconds_count{{{API}, "
            f"route=~\"$route\"}}[{RATE}]))", "{{method}} {{route}}"), unit="reqps", stack=True),
        ts("5xx errors by route", "Requests per second answered with a 5xx, by route and "
           "status. Click a series for its log lines: the link keeps the time range, so zoom "
           "onto the spike first.",
           (f'sum by (route, status) (rate(flask_http_request_duration_seconds_count{{{API}, '
            f'status=~"5..", route=~"$route"}}[{RATE}]))', "{{status}} {{route}}"),
           unit="reqps", links=error_links),
        ts("Latency p50 / p95 / p99 by route", "Request duration quantiles by route, from the "
           "histogram (buckets 25 ms to 5 s). The latency objective is 99% under 300 ms.",
           *[(f"histogram_quantile({q}, sum by (le, route) (rate("
              f"flask_http_request_duration_seconds_bucket{{{API}, route=~\"$route\"}}"
              f"[{RATE}])))", f"p{int(q * 100)} {{{{route}}}}") for q in (0.5, 0.95, 0.99)],
           unit="s"),
        ts("Unhandled exceptions", "Exceptions no error handler took (each became a 500), by "
           "method; refusals such as a bad token's 401 are not exceptions. Which route: the "
           "5xx panel above, or the log lines with exc_info.",
           (f"sum by (method) (rate(flask_http_request_exceptions_total{{{API}}}"
            f"[{RATE}]))", "{{method}}"), unit="reqps"),
        row("Saturation"),
        ts("CPU by process", "CPU seconds per second of the gunicorn master and each worker; "
           "a worker near 1.0 is saturated.",
           (f"sum by (role, pid) (rate(vigil_process_cpu_seconds_total{{{API}}}[{RATE}]))",
            "{{role}} {{pid}}"),
           (f"sum(rate(process_cpu_seconds_total{{{API}}}[{RATE}]))", "all processes")),
        ts("Memory by process", "Resident memory of the gunicorn master and each worker.",
           (f"sum by (role, pid) (vigil_process_resident_memory_bytes{{{API}}})",
            "{{role}} {{pid}}"),
           (f"sum(process_resident_memory_bytes{{{API}}})", "all processes"), unit="bytes"),
        ts("Database pool", "Pooled PostgreSQL connections in use, idle and the maximum, "
           "summed over workers. In use near max means requests queue for a connection.",
           (f"sum by (state) (vigil_db_pool_connections{{{API}}})", "{{state}}")),
        ts("Database query latency and errors", "p95 duration of SQL statements and failed "
           "database operations per second.",
           (f"histogram_quantile(0.95, sum by (le) (rate(vigil_db_query_duration_seconds_bucket"
            f"{{{API}}}[{RATE}])))", "p95 query"),
           (f"sum(rate(vigil_db_errors_total{{{API}}}[{RATE}]))", "errors/s")),
        row("Security and fire drills"),
        ts("Auth events", "Authentication events per second: login success and failure, "
           "lockouts, refreshes, refresh-token reuse (possible theft) and logouts.",
           (f"sum by (event) (rate(vigil_auth_events_total{{{API}}}[{RATE}]))", "{{event}}"),
           unit="ops"),
        ts("Faults injected", "Requests the fault switches failed or slowed, per second, by "
           "kind.", (f"sum by (kind) (rate(vigil_faults_injected_total{{{API}}}[{RATE}]))",
                     "{{kind}}"), unit="ops"),
        row("Load test (job locust, only while a Locust run is scraped)"),
        ts("Load test users and throughput", "Simulated users and the requests per second "
           "Locust sends (all routes), from the load-test exporter; empty when no load test "
           "runs.", ('sum(locust_users{job="locust"})', "users"),
           ('sum(locust_requests_current_rps{job="locust", name="Aggregated"})', "requests/s"),
           ('sum(locust_requests_current_fail_per_sec{job="locust", name="Aggregated"})',
            "failures/s")),
        ts("Load test response time", "Response-time quantiles Locust measures on the client "
           "side (last ~10 s); compare with the server-side latency panel above.",
           ('max by (quantile) (locust_response_time_seconds{job="locust", '
            'name="Aggregated"})', "p{{quantile}}"), unit="s"),
        row("Logs"),
        {**logs("API error log lines", "The API's JSON log lines at level error or for a 5xx "
                "response, from Loki. Expand a line for request_id and trace_id.",
                '{service="vigil-api"} | json | level=~"error|critical" '
                'or status >= 500 | route=~"$route"'), "_id": "logs-errors"},
    ]
    variables = [_route_var()]
    return dashboard(OVERVIEW_UID, "Vigil API service overview", panels, variables,
                     "Traffic, errors, latency, saturation, SLOs and logs of the Vigil API.",
                     api_job=True)


def _route_var():
    return {"type": "query", "name": "route", "label": "route", "datasource": PROM,
            "query": {"query": "label_values(flask_http_request_duration_seconds_count"
                               f"{{{API}}}, route)", "refId": "route"},
            "definition": f"label_values(flask_http_request_duration_seconds_count{{{API}}}, "
                          "route)",
            "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
            "current": {"selected": True, "text": "All", "value": "$__all"}}


def host():
    node = 'job="node", instance="$instance"'
    panels = [
        row("CPU"),
        ts("CPU utilisation", "Share of CPU time not idle, by mode (USE: utilisation).",
           (f"sum by (mode) (rate(node_cpu_seconds_total{{{node}, mode!=\"idle\"}}[{RATE}])) "
            f"/ scalar(count(node_cpu_seconds_total{{{node}, mode=\"idle\"}}))", "{{mode}}"),
           unit="percentunit", stack=True),
        ts("CPU saturation", "Load average per core (USE: saturation); above 1 processes wait "
           "for a CPU.", (f"node_load1{{{node}}} / scalar(count(node_cpu_seconds_total"
                          f"{{{node}, mode=\"idle\"}}))", "load1 per core"),
           (f"node_load5{{{node}}} / scalar(count(node_cpu_seconds_total"
            f"{{{node}, mode=\"idle\"}}))", "load5 per core")),
        row("Memory"),
        ts("Memory utilisation", "Share of memory not available to new processes (USE: "
           "utilisation).", (f"1 - node_memory_MemAvailable_bytes{{{node}}} / "
                             f"node_memory_MemTotal_bytes{{{node}}}", "used"),
           unit="percentunit"),
        ts("Memory saturation", "Major page faults and swap activity per second (USE: "
           "saturation): the kernel reading pages back from disk.",
           (f"rate(node_vmstat_pgmajfault{{{node}}}[{RATE}])", "major faults"),
           (f"rate(node_vmstat_pswpin{{{node}}}[{RATE}]) + "
            f"rate(node_vmstat_pswpout{{{node}}}[{RATE}])", "swap pages")),
        row("Disk"),
        ts("Filesystem used", "Share of each real filesystem in use; NodeDiskFillingUp "
           "extrapolates this.", (f'1 - node_filesystem_avail_bytes{{{node}, '
                                  f'fstype!~"tmpfs|ramfs|squashfs|overlay"}} / '
                                  f'node_filesystem_size_bytes{{{node}, '
                                  f'fstype!~"tmpfs|ramfs|squashfs|overlay"}}', "{{mountpoint}}"),
           unit="percentunit"),
        ts("Disk I/O utilisation", "Share of time each device was busy (USE: utilisation).",
           (f"rate(node_disk_io_time_seconds_total{{{node}}}[{RATE}])", "{{device}}"),
           unit="percentunit"),
        ts("Disk I/O saturation", "Average I/O queue length per device (USE: saturation).",
           (f"rate(node_disk_io_time_weighted_seconds_total{{{node}}}[{RATE}])", "{{device}}")),
        ts("Disk errors", "Filesystems that are read-only, a sign of I/O errors (USE: errors).",
           (f"node_filesystem_readonly{{{node}, fstype!~\"tmpfs|ramfs|squashfs|overlay\"}}",
            "{{mountpoint}}")),
        row("Network"),
        ts("Network throughput", "Bytes received and sent per second per interface.",
           (f'rate(node_network_receive_bytes_total{{{node}, device!="lo"}}[{RATE}])',
            "{{device}} in"),
           (f'rate(node_network_transmit_bytes_total{{{node}, device!="lo"}}[{RATE}])',
            "{{device}} out"), unit="Bps"),
        ts("Network errors and drops", "Receive/transmit errors and drops per second (USE: "
           "errors and saturation).",
           (f"rate(node_network_receive_errs_total{{{node}}}[{RATE}]) + "
            f"rate(node_network_transmit_errs_total{{{node}}}[{RATE}])", "{{device}} errors"),
           (f"rate(node_network_receive_drop_total{{{node}}}[{RATE}]) + "
            f"rate(node_network_transmit_drop_total{{{node}}}[{RATE}])", "{{device}} drops")),
        row("Backups"),
        stat("Last good backup", "Age of the last successful database backup (textfile "
             "collector); BackupTooOld fires over 26 hours.",
             f"time() - max(vigil_backup_last_success_timestamp_seconds{{{node}}})", unit="s",
             thresholds=red(93600)),
        stat("Last backup size", "Size of the last successful backup.",
             f"max(vigil_backup_last_size_bytes{{{node}}})", unit="bytes"),
    ]
    variables = [{"type": "query", "name": "instance", "label": "instance", "datasource": PROM,
                  "query": {"query": 'label_values(node_uname_info{job="node"}, instance)',
                            "refId": "instance"},
                  "definition": 'label_values(node_uname_info{job="node"}, instance)',
                  "refresh": 2}]
    return dashboard("vigil-host", "Vigil host", panels, variables,
                     "USE method (utilisation, saturation, errors) for the appliance's host.")


def postgresql():
    pg = 'job="postgres"'
    panels = [
        row("Availability and connections"),
        stat("PostgreSQL up", "1 when postgres_exporter can connect to PostgreSQL.",
             f"min(pg_up{{{pg}}})", thresholds=[{"color": "red", "value": None},
                                                {"color": "green", "value": 1}]),
        stat("Connections used", "Connections in use as a share of max_connections; "
             "PostgresTooManyConnections fires over 80%.",
             f"sum(pg_stat_activity_count{{{pg}}}) / max(pg_settings_max_connections{{{pg}}})",
             unit="percentunit", thresholds=red(0.8)),
        ts("Connections by state", "Backends by database and state (active, idle, idle in "
           "transaction...).", (f"sum by (datname, state) (pg_stat_activity_count{{{pg}}})",
                                "{{datname}} {{state}}"), stack=True),
        row("Throughput"),
        ts("Transactions", "Commits and rollbacks per second by database.",
           (f"sum by (datname) (rate(pg_stat_database_xact_commit{{{pg}}}[{RATE}]))",
            "{{datname}} commit"),
           (f"sum by (datname) (rate(pg_stat_database_xact_rollback{{{pg}}}[{RATE}]))",
            "{{datname}} rollback"), unit="ops"),
        ts("Rows", "Rows fetched, inserted, updated and deleted per second.",
           *[(f"sum(rate(pg_stat_database_tup_{k}{{{pg}}}[{RATE}]))", k)
             for k in ("fetched", "inserted", "updated", "deleted")], unit="ops"),
        ts("Cache hit ratio", "Share of block reads served from shared buffers; below 0.99 the "
           "working set no longer fits in memory.",
           (f"sum by (datname) (rate(pg_stat_database_blks_hit{{{pg}}}[{RATE}])) / "
            f"(sum by (datname) (rate(pg_stat_database_blks_hit{{{pg}}}[{RATE}])) + "
            f"sum by (datname) (rate(pg_stat_database_blks_read{{{pg}}}[{RATE}])))",
            "{{datname}}"), unit="percentunit"),
        row("Trouble"),
        ts("Deadlocks and conflicts", "Deadlocks and recovery conflicts per second.",
           (f"sum by (datname) (rate(pg_stat_database_deadlocks{{{pg}}}[{RATE}]))",
            "{{datname}} deadlocks"),
           (f"sum by (datname) (rate(pg_stat_database_conflicts{{{pg}}}[{RATE}]))",
            "{{datname}} conflicts")),
        ts("Locks", "Locks held, by lock mode; a climbing exclusive count means waiting "
           "writers.", (f"sum by (mode) (pg_locks_count{{{pg}}})",
                                             "{{mode}}")),
        ts("Temporary files", "Bytes written to temporary files per second (sorts and hashes "
           "that did not fit in work_mem).",
           (f"sum by (datname) (rate(pg_stat_database_temp_bytes{{{pg}}}[{RATE}]))",
            "{{datname}}"), unit="Bps"),
        ts("Database size", "On-disk size of each database.",
           (f"pg_database_size_bytes{{{pg}}}", "{{datname}}"), unit="bytes"),
    ]
    return dashboard("vigil-postgresql", "Vigil PostgreSQL", panels, [],
                     "PostgreSQL health from postgres_exporter.")


def monitoring():
    panels = [
        row("Targets"),
        table("Scrape targets", "Every target Prometheus scrapes and whether the last scrape "
              "worked (1) or failed (0).", "max by (job, instance) (up)", width=12),
        ts("Scrape duration", "How long each scrape takes; near the scrape interval means "
           "timeouts are next.", ("max by (job) (scrape_duration_seconds)", "{{job}}"),
           unit="s"),
        row("Prometheus"),
        ts("Rule evaluation failures", "Failed rule evaluations per second by group; any "
           "means alerts in that group are blind.",
           (f'sum by (rule_group) (rate(prometheus_rule_evaluation_failures_total'
            f'{{job="prometheus"}}[{RATE}]))', "{{rule_group}}"), unit="ops"),
        ts("Rule group duration", "Time the last evaluation of each rule group took.",
           ('max by (rule_group) (prometheus_rule_group_last_duration_seconds'
            '{job="prometheus"})', "{{rule_group}}"), unit="s"),
        ts("Head series", "Active series in Prometheus' head block (memory grows with it).",
           ('prometheus_tsdb_head_series{job="prometheus"}', "series")),
        ts("Notifications to Alertmanager", "Alerts Prometheus failed to send or dropped.",
           (f'sum(rate(prometheus_notifications_errors_total{{job="prometheus"}}[{RATE}]))',
            "errors"),
           (f'sum(rate(prometheus_notifications_dropped_total{{job="prometheus"}}[{RATE}]))',
            "dropped"), unit="ops"),
        row("Alertmanager"),
        ts("Alerts in Alertmanager", "Alerts Alertmanager holds, active or suppressed.",
           ('sum by (state) (alertmanager_alerts{job="alertmanager"})', "{{state}}")),
        ts("Notifications by integration", "Notifications sent and failed per second by "
           "integration (webhook, pagerduty, slack, email).",
           (f'sum by (integration) (rate(alertmanager_notifications_total'
            f'{{job="alertmanager"}}[{RATE}]))', "{{integration}} sent"),
           (f'sum by (integration) (rate(alertmanager_notifications_failed_total'
            f'{{job="alertmanager"}}[{RATE}]))', "{{integration}} failed"), unit="ops"),
        row("Logs: Loki and Alloy"),
        ts("Log lines in and lost", "Lines Loki received, lines it discarded (by reason) and "
           "lines Alloy dropped after retries, per second.",
           (f'sum(rate(loki_distributor_lines_received_total{{job="loki"}}[{RATE}]))',
            "received"),
           (f'sum by (reason) (rate(loki_discarded_samples_total{{job="loki"}}[{RATE}]))',
            "discarded {{reason}}"),
           (f'sum(rate(loki_write_dropped_entries_total{{job="alloy"}}[{RATE}]))',
            "dropped by Alloy"), unit="ops"),
        ts("Loki request errors", "Loki requests answered with a 5xx, per route.",
           (f'sum by (route) (rate(loki_request_duration_seconds_count{{job="loki", '
            f'status_code=~"5.."}}[{RATE}]))', "{{route}}"), unit="reqps"),
        ts("Alloy sent entries", "Log entries Alloy delivered to Loki per second.",
           (f'sum(rate(loki_write_sent_entries_total{{job="alloy"}}[{RATE}]))', "sent"),
           unit="ops"),
    ]
    return dashboard("vigil-monitoring", "Vigil monitoring stack", panels, [],
                     "Health of Prometheus, Alertmanager, Loki and Alloy: who watches the "
                     "watchers.")


def dashboard(uid, title, panels, variables, description, api_job=False):
    """Lay the panels out on Grafana's 24-column grid and wrap them in a dashboard."""
    laid, x, y, row_height, next_id, named = [], 0, 0, 0, 1, {}
    for panel in panels:
        panel = dict(panel)
        width = panel.pop("_width", 12)
        height = panel.pop("_height", 4 if panel["type"] == "stat" else 8)
        panel_id = panel.pop("_id", None)
        if panel["type"] == "row":
            y, x, row_height = y + row_height, 0, 0
            width, height = 24, 1
        elif x + width > 24:
            y, x, row_height = y + row_height, 0, 0
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        panel["id"] = next_id
        if panel_id:
            named[panel_id] = next_id
        next_id += 1
        laid.append(panel)
        if panel["type"] == "row":
            y += 1
        else:
            x += width
            row_height = max(row_height, height)
            if x >= 24:
                y, x, row_height = y + row_height, 0, 0
    templating = [
        {"type": "datasource", "name": "datasource", "label": "Prometheus",
         "query": "prometheus", "current": {"text": "Prometheus", "value": "prometheus"}},
        {"type": "datasource", "name": "loki", "label": "Loki", "query": "loki",
         "current": {"text": "Loki", "value": "loki"}},
    ]
    if api_job:
        templating.append({"type": "custom", "name": "job", "label": "job",
                           "query": "vigil-api", "current": {"text": "vigil-api",
                                                             "value": "vigil-api"}})
    templating.extend(variables)
    # Data links name their target panel by key; Grafana's viewPanel wants its numeric id.
    text = json.dumps(laid)
    for key, number in named.items():
        text = text.replace(f"viewPanel={key}", f"viewPanel={number}")
    laid = json.loads(text)
    return {
        "uid": uid, "title": title, "description": description, "tags": ["vigil"],
        "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True,
        "graphTooltip": 1, "refresh": "30s", "time": {"from": "now-6h", "to": "now"},
        "links": [{"type": "dashboards", "tags": ["vigil"], "asDropdown": True,
                   "title": "Vigil dashboards", "includeVars": False, "keepTime": True}],
        "annotations": {"list": [{
            "name": "Fault switches", "datasource": PROM, "enable": True,
            "iconColor": "orange", "expr": "max by (kind) (vigil_fault_active) == 1",
            "titleFormat": "fault switch {{kind}} on", "step": "30s"}]},
        "templating": {"list": templating},
        "panels": laid,
    }


DASHBOARDS = {"vigil-api-overview.json": overview, "vigil-host.json": host,
              "vigil-postgresql.json": postgresql, "vigil-monitoring.json": monitoring}


def build(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in DASHBOARDS.items():
        path = out_dir / name
        path.write_text(json.dumps(make(), indent=2, sort_keys=False) + "\n")
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=HERE)
    args = parser.parse_args(argv)
    for path in build(args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
