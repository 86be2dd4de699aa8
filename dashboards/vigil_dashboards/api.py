"""The API service overview: is the service healthy? Then alerts and silences, the 30-day SLOs
with their burn-rate thresholds, the front door (nginx and probes), the API's own traffic, errors,
latency and saturation, and the error log lines."""
from pathlib import Path

import yaml

from . import navigation as nav
from .board import PrometheusAnnotation, assemble, constant, query_variable
from .panels import (
    GREEN,
    LONGTERM,
    ORANGE,
    RATE,
    RED,
    alert_list,
    heatmap,
    logs,
    markdown,
    promql,
    row,
    stat,
    table,
    timeseries,
    value_text,
)

UID = nav.UIDS["api"]
API = 'job="$job", instance=~"$instance"'
BUCKETS = f"flask_http_request_duration_seconds_bucket{{{API}}}"
# The SLO spec is the one in alerts/slo.yml (the alerts are generated from it too): objectives,
# the latency threshold, and the burn rates drawn as lines (the 1-hour page, the 6-hour ticket).
SLO = yaml.safe_load((Path(__file__).resolve().parents[2] / "alerts" / "slo.yml").read_text())
_OBJECTIVES = {slo["name"]: slo for slo in SLO["slos"]}
AVAILABILITY = _OBJECTIVES["availability"]["objective"]
LATENCY = _OBJECTIVES["latency"]["objective"]
OBJECTIVE_SECONDS = _OBJECTIVES["latency"]["threshold_seconds"]
_BURN = {rate["long"]: rate for rate in SLO["burn_rates"]}
PAGE_FAST, PAGE_SLOW = _BURN["1h"]["factor"], _BURN["6h"]["factor"]
# A 5xx ratio's lines: the budget's sustainable pace (1x) and the pace that pages (14.4x).
ERROR_RATIO_LINES = ((ORANGE, 1 - AVAILABILITY), (RED, PAGE_FAST * (1 - AVAILABILITY)))
EDGE = 'job="nginx-log", instance=~"$instance"'
PROBES = 'job="edge-probe", instance=~"$instance"'
API_LOGS = '{service="vigil-api", host=~"' + nav.HOSTS + '"}'
ERROR_LOGS = API_LOGS + ' | json | level=~"error|critical" or status >= 500'


def _rate(selector, by=""):
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({selector}[{RATE}]))"


def _zero_filled(errors, total, by):
    """Errors per `by`, with 0 for every `by` that had traffic but no error: "0 errors", never
    "No data", on a healthy service."""
    return f"{_rate(errors, by)} or ({_rate(total, by)} * 0)"


def _quantiles(buckets):
    """p50, p95 and p99 of a histogram, one query each (one unit: seconds)."""
    return [promql(f"histogram_quantile({q}, {_rate(buckets, 'le')})", f"p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


def _health_row():
    p99 = f"histogram_quantile(0.99, {_rate(BUCKETS, 'le')})"
    logs_here = nav.logs_link("API logs for this time range", API_LOGS)
    runbook = nav.runbook_link("api.md")
    return row(
        "Is the API healthy? (the last rate window, against the SLO objectives)",
        stat("Availability at the front door", "Share of requests and probes answered without "
             "a 5xx at nginx over the last 5 minutes, as the SLO measures it (recording rule "
             "job:slo_availability_errors:ratio_rate5m: edge requests plus synthetic probes). "
             "Red below the 99.9 % objective; 4xx are the client's mistakes and count as good.",
             promql('1 - job:slo_availability_errors:ratio_rate5m{job="$job"}'),
             unit="percentunit", steps=((RED, None), (GREEN, AVAILABILITY)),
             links=(logs_here, runbook), width=3, height=5),
        stat("Under 300 ms at the front door", "Share of non-5xx requests nginx answered in "
             "under 300 ms over the last 5 minutes, as the SLO measures it "
             "(job:slo_latency_errors:ratio_rate5m). Red below the 99 % objective.",
             promql('1 - job:slo_latency_errors:ratio_rate5m{job="$job"}'),
             unit="percentunit", steps=((RED, None), (GREEN, LATENCY)),
             links=(logs_here, runbook), width=3, height=5),
        stat("API p99 latency", "99th percentile of request duration inside the API over all "
             "routes (the rate window, about a minute); red above the 300 ms objective.",
             promql(p99), unit="s", steps=((GREEN, None), (RED, OBJECTIVE_SECONDS)),
             links=(runbook,), width=3, height=5),
        stat("Probes passing", "Share of the synthetic probes through nginx (health and an "
             "authenticated read, every 15 s) that passed over the last rate window; a stopped, "
             "hung or unreachable API fails them even when no user is there to notice.",
             promql(f"avg(avg_over_time(probe_success{{{PROBES}}}[{RATE}]))"),
             unit="percentunit", steps=((RED, None), (ORANGE, 0.9), (GREEN, 1)),
             links=(nav.runbook_link("edge.md", title="Runbook: the front door"),), width=3,
             height=5),
        stat("Ready", "Whether every selected instance passes its readiness checks (database "
             "reachable, schema current, no readiness fault switch): the lowest vigil_ready.",
             promql(f"min(vigil_ready{{{API}}})"), steps=((RED, None), (GREEN, 1)),
             mappings=(value_text(1, "READY", GREEN), value_text(0, "NOT READY", RED)),
             links=(nav.runbook_link("api.md", "apireadinessfailing", "Runbook: readiness"),),
             width=3, height=5),
        stat("Firing API alerts", "Alerts about the API firing in Prometheus now (service="
             "vigil-api). The alert list below has details, Loki's alerts and silences.",
             promql('count(ALERTS{alertstate="firing", service="vigil-api"}) or vector(0)'),
             steps=((GREEN, None), (RED, 1)), width=3, height=5),
        markdown("Where to look next", "Logs for this time range and these instances, the "
                 "runbooks, and the dashboards of what the API depends on.",
                 nav.next_steps(logs=[("API logs", API_LOGS), ("API errors", ERROR_LOGS)],
                                runbooks=[("API alerts", "api.md"), ("SLOs", "slo.md")],
                                related=("postgresql", "host", "monitoring")),
                 width=6, height=5),
    )


def _alerts_row():
    return row(
        "Alerts and silences",
        alert_list("Alerts (Prometheus and Loki rules)", "Firing and pending alerts of every "
                   "rule source Grafana reads: Prometheus' rules and Loki's log-based rules. "
                   "Always shows the Watchdog, the heartbeat that proves the alert path works.",
                   links=(nav.silences_link(), nav.runbook_link("README.md", title="Runbooks"))),
        stat("Active silences", "Silences in force in Alertmanager; a silenced alert still "
             "fires but notifies nobody. Follow the link to read or expire them.",
             promql('sum(alertmanager_silences{job="alertmanager", state="active"})'),
             steps=((GREEN, None), (ORANGE, 1)), links=(nav.silences_link(),), width=4,
             height=8),
        stat("Suppressed alerts", "Alerts Alertmanager holds back right now, silenced or "
             "inhibited by a related alert (a symptom hidden by its cause).",
             promql('sum(alertmanager_alerts{job="alertmanager", state="suppressed"})'),
             steps=((GREEN, None), (ORANGE, 1)), links=(nav.silences_link(),), width=4,
             height=8),
    )


def _slo_row():
    panels = []
    for slo, what, objective in (("availability", "answered without a 5xx", AVAILABILITY),
                                 ("latency", "answered in under 300 ms", LATENCY)):
        panels.append(stat(
            f"{slo.capitalize()} SLI, 30 days", f"Share of requests {what} over the SLO "
            f"period, from the long-term Prometheus (90 days; rule "
            f"job:slo_{slo}_errors:ratio_rate30d, a ratio of sums); red below the "
            f"{objective:.1%} objective.",
            promql(f'1 - job:slo_{slo}_errors:ratio_rate30d{{job="$job"}}'),
            unit="percentunit", steps=((RED, None), (GREEN, objective)), width=6,
            datasource=LONGTERM, no_value="no requests yet"))
        panels.append(stat(
            f"{slo.capitalize()} error budget left", f"Share of the 30-day {slo} error budget "
            "not yet spent, from the long-term Prometheus. At zero the SLO is broken for the "
            "period and the error-budget policy applies (runbooks/slo.md).",
            promql(f'job:slo_{slo}_error_budget_remaining:ratio{{job="$job"}}'),
            unit="percentunit", steps=((RED, None), (ORANGE, 0), (GREEN, 0.25)),
            links=(nav.runbook_link("slo.md"),), width=6, datasource=LONGTERM))
    for slo in ("availability", "latency"):
        budget = f'(1 - job:slo_{slo}_objective:ratio{{job="$job"}})'
        panels.append(timeseries(
            f"{slo.capitalize()} burn rate", f"How many times faster than sustainable the "
            f"{slo} budget burns, per window (1x spends it exactly in 30 days). The dashed "
            f"lines are the thresholds of alerts/slo.yml: {PAGE_FAST}x over 1 h pages and "
            f"{PAGE_SLOW}x over 6 h opens a ticket (50x over 5 m pages too), each confirmed by "
            "its short window.",
            *[promql(f'job:slo_{slo}_errors:ratio_rate{w}{{job="$job"}} / on (job) {budget}',
                     w) for w in ("5m", "1h", "6h", "1d", "3d")],
            unit="suffix:x", steps=((ORANGE, PAGE_SLOW), (RED, PAGE_FAST)),
            links=(nav.runbook_link("slo.md", f"api{slo}budgetburn", "Runbook: budget burn"),)))
    return row(f"SLOs over 30 days at the front door: {AVAILABILITY:.1%} without a 5xx, "
               f"{LATENCY:.0%} under {OBJECTIVE_SECONDS * 1000:.0f} ms", *panels)


def _edge_row():
    codes = f"vigil_edge_http_requests_total{{{EDGE}}}"
    edge_errors = f'vigil_edge_http_requests_total{{{EDGE}, code=~"5.."}}'
    edge_buckets = f'vigil_edge_http_request_duration_seconds_bucket{{{EDGE}, status_class!="5xx"}}'
    return row(
        "The front door: nginx and the synthetic probes (what users get)",
        timeseries("Requests at nginx by status", "Requests nginx answered per second, by "
                   "status code (from its access log, through mtail).",
                   promql(_rate(codes, "code"), "{{code}}"), unit="reqps", stack=True,
                   width=8),
        timeseries("5xx ratio at nginx", "Share of requests nginx answered with a 5xx, its "
                   "own 502/504 included. Dashed lines: 0.1 %, the budget's sustainable pace, "
                   "and the pace that pages (14.4x).",
                   promql(f"({_rate(edge_errors)} or vector(0)) / {_rate(codes)}", "5xx ratio"),
                   unit="percentunit", steps=ERROR_RATIO_LINES, width=8),
        timeseries("Latency at nginx p50 / p95 / p99", "Duration of non-5xx requests as nginx "
                   "measured them (the latency SLI's histogram); the dashed line is 300 ms.",
                   *_quantiles(edge_buckets),
                   unit="s", steps=((RED, OBJECTIVE_SECONDS),), width=8),
        timeseries("Probe results", "1 when a synthetic probe through nginx passed, 0 when it "
                   "failed, per host and probe (https_ready: /health/ready; https_content_read: "
                   "an authenticated list read).",
                   promql(f"max by (instance, module) (probe_success{{{PROBES}}})",
                          "{{instance}} {{module}}"), unit="short", width=8),
        timeseries("Probe duration", "How long each probe took end to end (DNS, TLS, request), "
                   "per host and probe.",
                   promql(f"max by (instance, module) (probe_duration_seconds{{{PROBES}}})",
                          "{{instance}} {{module}}"), unit="s",
                   steps=((RED, OBJECTIVE_SECONDS),), width=8),
        stat("Certificate expires in", "Time until the TLS certificate nginx presents expires, "
             "as the probes see it; EdgeCertificateExpiring opens a ticket under 14 days.",
             promql(f"min(probe_ssl_earliest_cert_expiry{{{PROBES}}}) - time()"), unit="s",
             steps=((RED, None), (ORANGE, 14 * 86400), (GREEN, 30 * 86400)),
             links=(nav.runbook_link("edge.md", "edgecertificateexpiring",
                                     "Runbook: certificate"),), width=8, height=8),
    )


def _traffic_row():
    route = f'{API}, route=~"$route"'
    buckets = f"flask_http_request_duration_seconds_bucket{{{route}}}"
    by_route = f"flask_http_request_total{{{route}}}"
    errors_by_route = f'flask_http_request_total{{{route}, status=~"5.."}}'
    route_logs = ('{service="vigil-api", host=~"' + nav.HOSTS + '"} | json | '
                  'route="${__field.labels.route}" | status >= 500')
    return row(
        "The API itself: traffic, errors, latency",
        timeseries("Requests per second by route", "Requests answered per second, by route "
                   "template and method.",
                   promql(_rate(by_route, "route, method"), "{{method}} {{route}}"),
                   unit="reqps", stack=True),
        timeseries("5xx per second by route", "Requests answered with a 5xx per second, by "
                   "route (0 for routes that had traffic and no error). Click a series for its "
                   "log lines in the same time range.",
                   promql(_zero_filled(errors_by_route, by_route, "route"), "{{route}}"),
                   unit="reqps", data_links=(nav.logs_link("5xx log lines of this route",
                                                           route_logs),)),
        timeseries("5xx ratio", "Share of requests answered with a 5xx. Dashed lines: 0.1 %, "
                   "the budget's sustainable pace, and 1.44 %, the pace that pages (14.4x).",
                   promql(f"({_rate(errors_by_route)} or vector(0)) / {_rate(by_route)}",
                          "5xx ratio"),
                   unit="percentunit", steps=ERROR_RATIO_LINES, width=8),
        timeseries("Latency p50 / p95 / p99", "Request duration quantiles over the selected "
                   "routes, from the histogram (buckets 5 ms to 10 s). The dashed line is the "
                   "300 ms objective.",
                   *_quantiles(buckets),
                   unit="s", steps=((RED, OBJECTIVE_SECONDS),), width=8),
        heatmap("Latency heatmap", "Requests per second in each duration bucket: the whole "
                "distribution, where quantiles hide a second mode. Buckets above 0.3 s are "
                "outside the objective.",
                promql(_rate(buckets, "le"), "{{le}}", heatmap=True), width=8),
        timeseries("p99 latency by route", "99th percentile of request duration per route; "
                   "the dashed line is the 300 ms objective.",
                   promql(f"histogram_quantile(0.99, {_rate(buckets, 'le, route')})",
                          "{{route}}"), unit="s", steps=((RED, OBJECTIVE_SECONDS),)),
        timeseries("Unhandled exceptions by route", "Exceptions that escaped a view per second "
                   "(each became a 500), by route; 0 for routes with traffic and none.",
                   promql(_zero_filled(f"flask_http_request_exceptions_total{{{route}}}",
                                       by_route, "route"), "{{route}}"), unit="reqps"),
    )


def _saturation_row():
    return row(
        "Saturation",
        timeseries("CPU by process", "CPU seconds per second of the gunicorn master and each "
                   "worker; 1 is one core. A worker near 1 is saturated.",
                   promql(f"sum by (role, pid) (rate(vigil_process_cpu_seconds_total{{{API}}}"
                          f"[{RATE}]))", "{{role}} {{pid}}"),
                   unit="short", axis_label="cores", width=8),
        timeseries("Memory by process", "Resident memory of the gunicorn master and each "
                   "worker.", promql(f"sum by (role, pid) (vigil_process_resident_memory_bytes"
                                     f"{{{API}}})", "{{role}} {{pid}}"),
                   unit="bytes", width=8),
        timeseries("Database pool", "Pooled PostgreSQL connections in use and idle, summed over "
                   "workers, and the pool's maximum. In use reaching max means requests queue "
                   "for a connection.",
                   promql(f"sum by (state) (vigil_db_pool_connections{{{API}}})", "{{state}}"),
                   unit="short", width=8),
        timeseries("Database query latency p95", "95th percentile duration of the API's SQL "
                   "statements, as the API sees them (network and pool included).",
                   promql(f"histogram_quantile(0.95, "
                          f"{_rate(f'vigil_db_query_duration_seconds_bucket{{{API}}}', 'le')})",
                          "p95"), unit="s"),
        timeseries("Database errors per second", "SQL statements that raised (connection "
                   "refused, missing table, constraint), per second.",
                   promql(f"{_rate(f'vigil_db_errors_total{{{API}}}')} or vector(0)", "errors"),
                   unit="ops", links=(nav.dashboard_link("postgresql"),)),
    )


def _security_row():
    return row(
        "Security and fire drills",
        timeseries("Auth events", "Authentication events per second: login success and "
                   "failure, lockouts, refreshes, refresh-token reuse (possible theft) and "
                   "logouts.", promql(_rate(f"vigil_auth_events_total{{{API}}}", "event"),
                                      "{{event}}"), unit="ops"),
        timeseries("Faults injected", "Requests the fire-drill fault switches failed or slowed, "
                   "per second, by kind (0 when no drill runs).",
                   promql(f"{_rate(f'vigil_faults_injected_total{{{API}}}', 'kind')} or "
                          f"(max by (kind) (vigil_fault_active{{{API}}}) * 0)", "{{kind}}"),
                   unit="ops"),
    )


def _load_test_row():
    return row(
        "Load test (only while a Locust master is scraped as job locust)",
        timeseries("Load test users and throughput", "Simulated users and the requests per "
                   "second Locust sends, from the load generator's exporter; empty unless a "
                   "distributed load test runs on the loadgen host.",
                   promql('sum(locust_users{job="locust"})', "users"),
                   promql('sum(locust_requests_current_rps{job="locust", name="Aggregated"})',
                          "requests/s"), unit="short"),
        timeseries("Load test response time", "Response-time quantiles Locust measures on the "
                   "client side (last ~10 s); compare with the server-side latency. Empty unless "
                   "a distributed load test runs.",
                   promql('max by (quantile) (locust_response_time_seconds{job="locust", '
                          'name="Aggregated"})', "p{{quantile}}"), unit="s",
                   steps=((RED, OBJECTIVE_SECONDS),)),
        collapsed=True,
    )


def _logs_row():
    return row(
        "Logs",
        logs("API error log lines", "The API's JSON log lines at level error or for a 5xx "
             "response, from Loki, for the selected instances. Expand a line for request_id "
             "and trace_id.", ERROR_LOGS + ' | route=~"$route"',
             links=(nav.logs_link("Open in Explore", ERROR_LOGS),)),
        table("Build", "Version and git revision every selected instance runs.",
              promql(f"max by (instance, version, revision) (vigil_build_info{{{API}}})",
                     instant=True, table=True), width=24, height=5),
    )


def build():
    variables = [
        constant("job", "vigil-api"),
        query_variable("instance", 'label_values(up{job="vigil-api"}, instance)'),
        query_variable("route", 'label_values(flask_http_request_total{job="vigil-api", '
                       'instance=~"$instance"}, route)'),
    ]
    annotations = [
        PrometheusAnnotation(
            "API starts (deploys and restarts)",
            'max by (instance, version, revision) (process_start_time_seconds{job="vigil-api", '
            'instance=~"$instance"} * on (instance) group_left (version, revision) '
            'vigil_build_info{job="vigil-api"}) * 1000',
            title="API started on {{instance}}", text="version {{version}} ({{revision}})",
            colour="blue", tag_keys="instance,version", use_value_for_time=True),
        PrometheusAnnotation(
            "Fault switches", 'max by (kind) (vigil_fault_active{job="vigil-api"}) == 1',
            title="fault switch {{kind}} on", colour="orange", tag_keys="kind", step="30s"),
    ]
    return assemble(
        UID, "Vigil API service overview",
        "Is the API healthy? Traffic, errors, latency, saturation, SLOs, alerts and logs.",
        [_health_row(), _alerts_row(), _slo_row(), _edge_row(), _traffic_row(), _saturation_row(),
         _security_row(), _load_test_row(), _logs_row()],
        variables=variables, annotations=annotations,
        links=nav.top_links(logs=("API logs", API_LOGS), runbook="api.md",
                            related=("postgresql", "host", "monitoring")),
    )
