"""Prometheus endpoint for the running scenario (scrape job ``locust``): rates, failures,
percentiles and users, read from Locust's own statistics at scrape time."""

from __future__ import annotations

import logging

from gevent.pywsgi import WSGIServer
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)
QUANTILES = (0.5, 0.95, 0.99)


class LocustCollector:
    """Turns the runner's RequestStats into metric families on every scrape."""

    def __init__(self, environment, scenario: str):
        self.environment = environment
        self.scenario = scenario

    def collect(self):
        runner = self.environment.runner
        stats = self.environment.stats
        info = GaugeMetricFamily(
            "locust_scenario_info",
            "The scenario this Locust runs (always 1).",
            labels=["scenario", "host", "state"],
        )
        info.add_metric(
            [self.scenario, self.environment.host or "", runner.state if runner else ""], 1
        )
        yield info
        users = GaugeMetricFamily("locust_users", "Simulated users running now.")
        users.add_metric([], runner.user_count if runner else 0)
        yield users
        workers = GaugeMetricFamily(
            "locust_workers", "Workers connected to this master (0 when local)."
        )
        workers.add_metric([], len(getattr(runner, "clients", {}) or {}))
        yield workers

        requests = CounterMetricFamily(
            "locust_requests", "Requests sent, by method and route.", labels=["method", "name"]
        )
        failures = CounterMetricFamily(
            "locust_requests_failed", "Requests counted as failed.", labels=["method", "name"]
        )
        rps = GaugeMetricFamily(
            "locust_requests_current_rps",
            "Requests per second, last ~10 s.",
            labels=["method", "name"],
        )
        fails = GaugeMetricFamily(
            "locust_requests_current_fail_per_sec",
            "Failures per second, last ~10 s.",
            labels=["method", "name"],
        )
        latency = GaugeMetricFamily(
            "locust_response_time_seconds",
            "Response-time quantiles over the last ~10 s (whole run if unknown).",
            labels=["method", "name", "quantile"],
        )
        rows = [((e.method, e.name), e) for e in stats.entries.values()]
        rows.append((("ALL", "Aggregated"), stats.total))
        for labels, entry in rows:
            labels = list(labels)
            requests.add_metric(labels, entry.num_requests)
            failures.add_metric(labels, entry.num_failures)
            rps.add_metric(labels, entry.current_rps or 0.0)
            fails.add_metric(labels, entry.current_fail_per_sec or 0.0)
            for q in QUANTILES:
                try:
                    ms = entry.get_current_response_time_percentile(q)
                except ValueError:  # no response-time cache on this runner
                    ms = None
                if ms is None:
                    ms = entry.get_response_time_percentile(q) if entry.num_requests else 0
                latency.add_metric([*labels, str(q)], (ms or 0) / 1000.0)
        yield from (requests, failures, rps, fails, latency)


def serve(environment, scenario: str, bind: str, port: int) -> WSGIServer:
    """Start the endpoint in the background; the caller stops it when Locust quits."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LocustCollector(environment, scenario))
    server = WSGIServer((bind, port), make_wsgi_app(registry), log=None)
    server.start()
    log.info(
        "Prometheus metrics for scenario %s on http://%s:%d/metrics",
        scenario,
        bind,
        server.server_port,
    )
    return server
