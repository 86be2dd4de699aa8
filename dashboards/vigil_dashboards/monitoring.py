"""The monitoring stack: is the monitoring itself healthy? Targets, the heartbeat, rule
evaluation, Prometheus' storage, Alertmanager's notifications and silences, and the log
pipeline (Loki and Alloy)."""
from . import navigation as nav
from .board import assemble, query_variable
from .panels import (
    GREEN,
    ORANGE,
    RATE,
    RED,
    alert_list,
    markdown,
    promql,
    row,
    stat,
    table,
    timeseries,
    value_text,
)

UID = nav.UIDS["monitoring"]
PROM = 'job="prometheus", instance=~"$instance"'
AM = 'job="alertmanager"'
MONITORING_LOGS = ('{service=~"prometheus|prometheus-alertmanager|loki|alloy|grafana-server", '
                   'host=~"' + nav.HOSTS + '"}')


def _healthy_row():
    return row(
        "Is the monitoring healthy? (now)",
        stat("Targets down", "Scrape targets whose last scrape failed, over every job. "
             "PrometheusTargetDown tickets after 5 minutes.",
             promql("count(up == 0) or vector(0)"), steps=((GREEN, None), (RED, 1)),
             links=(nav.runbook_link("prometheus.md", "prometheustargetdown",
                                     "Runbook: target down"),), width=3),
        stat("Heartbeat (Watchdog)", "The always-firing Watchdog alert, proof that rules are "
             "evaluated and alerts reach Alertmanager. Its absence is the alarm.",
             promql('count(ALERTS{alertname="Watchdog", alertstate="firing"}) or vector(0)'),
             steps=((RED, None), (GREEN, 1)),
             mappings=(value_text(1, "FIRING (good)", GREEN), value_text(0, "SILENT", RED)),
             links=(nav.runbook_link("watchdog.md"),), width=3),
        stat("Rule evaluation failures (1 h)", "Failed rule evaluations in the last hour; any "
             "means alerts of that group are blind.",
             promql(f"sum(increase(prometheus_rule_evaluation_failures_total{{{PROM}}}[1h]))"),
             steps=((GREEN, None), (RED, 1)),
             links=(nav.runbook_link("prometheus.md", "prometheusruleevaluationfailures",
                                     "Runbook: rule failures"),), width=3),
        stat("Notifications failed (1 h)", "Notifications Alertmanager could not deliver in "
             "the last hour, all integrations.",
             promql(f"sum(increase(alertmanager_notifications_failed_total{{{AM}}}[1h]))"),
             steps=((GREEN, None), (RED, 1)),
             links=(nav.runbook_link("alertmanager.md"),), width=3),
        stat("Alerts to Alertmanager lost (1 h)", "Alerts Prometheus failed to send or dropped "
             "in the last hour.",
             promql(f"sum(increase(prometheus_notifications_errors_total{{{PROM}}}[1h])) + "
                    f"sum(increase(prometheus_notifications_dropped_total{{{PROM}}}[1h]))"),
             steps=((GREEN, None), (RED, 1)), width=3),
        stat("Config reloads", "Whether the last configuration reload of Prometheus and of "
             "Alertmanager succeeded (the lowest of the two). A failed reload keeps the old "
             "rules or routes running.",
             promql(f"min(prometheus_config_last_reload_successful{{{PROM}}}) * "
                    f"min(alertmanager_config_last_reload_successful{{{AM}}})"),
             steps=((RED, None), (GREEN, 1)),
             mappings=(value_text(1, "OK", GREEN), value_text(0, "FAILED", RED)), width=3),
        stat("Active silences", "Silences in force in Alertmanager: alerts that fire but "
             "notify nobody. Follow the link to read or expire them.",
             promql(f'sum(alertmanager_silences{{{AM}, state="active"}})'),
             steps=((GREEN, None), (ORANGE, 1)), links=(nav.silences_link(),), width=3),
        stat("Log lines lost (1 h)", "Log lines Loki discarded or Alloy dropped after "
             "retries in the last hour.",
             promql('(sum(increase(loki_discarded_samples_total{job="loki"}[1h])) or '
                    'vector(0)) + (sum(increase(loki_write_dropped_entries_total{job="alloy"}'
                    '[1h])) or vector(0))'),
             steps=((GREEN, None), (RED, 1)), links=(nav.runbook_link("logs.md"),), width=3),
    )


def _alerts_row():
    return row(
        "Alerts and silences",
        alert_list("Alerts (Prometheus and Loki rules)", "Firing and pending alerts of every "
                   "rule source: Prometheus' rules and Loki's log-based rules. The Watchdog is "
                   "always here.", width=12,
                   links=(nav.silences_link(), nav.runbook_link("README.md", title="Runbooks"))),
        timeseries("Alerts in Alertmanager", "Alerts Alertmanager holds, active (notifying) "
                   "or suppressed (silenced or inhibited).",
                   promql(f"sum by (state) (alertmanager_alerts{{{AM}}})", "{{state}}"),
                   unit="short", width=6, links=(nav.silences_link(),)),
        timeseries("Silences", "Silences by state: active, pending (start in the future) and "
                   "expired (kept for a while for the record).",
                   promql(f"sum by (state) (alertmanager_silences{{{AM}}})", "{{state}}"),
                   unit="short", width=6, links=(nav.silences_link(),)),
    )


def _targets_row():
    return row(
        "Targets",
        table("Scrape targets", "Every target Prometheus scrapes and whether the last scrape "
              "worked (1) or failed (0).", promql("max by (job, instance) (up)", instant=True,
                                                 table=True), width=12),
        timeseries("Scrape duration", "How long each job's slowest scrape takes; the dashed "
                   "line is the 10 s scrape timeout.",
                   promql("max by (job) (scrape_duration_seconds)", "{{job}}"), unit="s",
                   steps=((RED, 10),), width=12),
    )


def _prometheus_row():
    return row(
        "Prometheus",
        timeseries("Rule group duration", "Time the last evaluation of each rule group took; "
                   "the dashed line is the 15 s evaluation interval (past it, iterations are "
                   "missed).",
                   promql(f"max by (rule_group) (prometheus_rule_group_last_duration_seconds"
                          f"{{{PROM}}})", "{{rule_group}}"), unit="s", steps=((RED, 15),),
                   width=8),
        timeseries("Rule failures and missed iterations", "Failed rule evaluations and missed "
                   "group iterations per second.",
                   promql(f"sum(rate(prometheus_rule_evaluation_failures_total{{{PROM}}}"
                          f"[{RATE}]))", "evaluation failures"),
                   promql(f"sum(rate(prometheus_rule_group_iterations_missed_total{{{PROM}}}"
                          f"[{RATE}]))", "missed iterations"), unit="ops", width=8),
        timeseries("Notification queue", "Alerts waiting to be sent to Alertmanager, and the "
                   "queue's capacity.",
                   promql(f"max(prometheus_notifications_queue_length{{{PROM}}})", "queued"),
                   promql(f"max(prometheus_notifications_queue_capacity{{{PROM}}})",
                          "capacity"), unit="short", width=8),
        timeseries("Head series", "Active series in Prometheus' head block; its memory grows "
                   "with them.", promql(f"max(prometheus_tsdb_head_series{{{PROM}}})", "series"),
                   unit="short", width=8),
        timeseries("Samples ingested", "Samples appended to the head per second.",
                   promql(f"sum(rate(prometheus_tsdb_head_samples_appended_total{{{PROM}}}"
                          f"[{RATE}]))", "samples/s"), unit="short", width=8),
        timeseries("Storage on disk", "Bytes of persisted blocks and of the write-ahead log.",
                   promql(f"max(prometheus_tsdb_storage_blocks_bytes{{{PROM}}})", "blocks"),
                   promql(f"max(prometheus_tsdb_wal_storage_size_bytes{{{PROM}}})", "WAL"),
                   unit="bytes", width=8),
        timeseries("TSDB trouble", "Failed compactions, WAL corruptions and failed reloads of "
                   "blocks, per second; all 0 when healthy.",
                   *[promql(f"sum(rate(prometheus_tsdb_{m}_total{{{PROM}}}[{RATE}]))", label)
                     for m, label in (("compactions_failed", "compactions failed"),
                                      ("wal_corruptions", "WAL corruptions"),
                                      ("reloads_failures", "block reloads failed"))],
                   unit="ops", width=24, height=6),
    )


def _alertmanager_row():
    return row(
        "Alertmanager",
        timeseries("Notifications by integration", "Notifications sent per second by "
                   "integration (webhook, pagerduty, slack, email).",
                   promql(f"sum by (integration) (rate(alertmanager_notifications_total"
                          f"{{{AM}}}[{RATE}]))", "{{integration}}"), unit="ops"),
        timeseries("Failed notifications by integration", "Notifications that failed per "
                   "second, by integration; 0 when healthy.",
                   promql(f"sum by (integration) (rate(alertmanager_notifications_failed_total"
                          f"{{{AM}}}[{RATE}]))", "{{integration}}"), unit="ops"),
    )


def _logs_row():
    return row(
        "Log pipeline: Loki and Alloy",
        timeseries("Log lines received and lost", "Lines Loki received, and the lines it "
                   "discarded (by reason) and Alloy dropped after retries, per second.",
                   promql(f'sum(rate(loki_distributor_lines_received_total{{job="loki"}}'
                          f"[{RATE}]))", "received"),
                   promql(f'sum by (reason) (rate(loki_discarded_samples_total{{job="loki"}}'
                          f"[{RATE}]))", "discarded {{reason}}"),
                   promql(f'sum(rate(loki_write_dropped_entries_total{{job="alloy"}}'
                          f"[{RATE}]))", "dropped by Alloy"), unit="ops", width=8),
        timeseries("Loki request errors", "Loki requests answered with a 5xx, per route.",
                   promql(f'sum by (route) (rate(loki_request_duration_seconds_count{{job="loki",'
                          f' status_code=~"5.."}}[{RATE}]))', "{{route}}"), unit="reqps",
                   width=8),
        timeseries("Alloy entries sent", "Log entries Alloy delivered to Loki per second.",
                   promql(f'sum(rate(loki_write_sent_entries_total{{job="alloy"}}[{RATE}]))',
                          "sent"), unit="ops", width=8),
        markdown("Where to look next", "The monitoring services' own logs, their runbooks, "
                 "and the other dashboards.",
                 nav.next_steps(logs=[("Monitoring services' logs", MONITORING_LOGS)],
                                runbooks=[("Prometheus", "prometheus.md"),
                                          ("Alertmanager", "alertmanager.md"),
                                          ("Logs", "logs.md"), ("Watchdog", "watchdog.md")],
                                related=("api", "host", "postgresql")), width=24, height=4),
    )


def build():
    variables = [query_variable("instance", 'label_values(up{job="prometheus"}, instance)',
                                label="Prometheus")]
    return assemble(
        UID, "Vigil monitoring stack", "Is the monitoring itself healthy? Who watches the "
        "watchers: targets, heartbeat, rules, storage, notifications, silences and logs.",
        [_healthy_row(), _alerts_row(), _targets_row(), _prometheus_row(), _alertmanager_row(),
         _logs_row()],
        variables=variables,
        links=nav.top_links(logs=("Monitoring services' logs", MONITORING_LOGS),
                            runbook="README.md", related=("api", "host", "postgresql")),
    )
