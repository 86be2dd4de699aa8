"""Vigil's Grafana dashboards, built with Grafana's grafana-foundation-sdk (ADR 0023, 0025).

One module per dashboard, each answering one question in its first row:
api (is the service healthy?), host (is the host saturated?), postgresql (is the database the
problem?), monitoring (is the monitoring itself healthy?).
"""
from . import api, host, monitoring, postgresql
from .board import GRAFANA_SCHEMA_VERSION, render

# File name under dashboards/ -> the function that builds it.
DASHBOARDS = {
    "vigil-api-overview.json": api.build,
    "vigil-host.json": host.build,
    "vigil-postgresql.json": postgresql.build,
    "vigil-monitoring.json": monitoring.build,
}

# Panels (and annotations) that show nothing when all is well, and why. The appliance test
# (tests/appliance/test_dashboards_have_data.py) requires data from every other query.
EMPTY_WHEN_HEALTHY = {
    ("vigil-api-overview.json", "Load test users and throughput"):
        "only while a distributed Locust run is scraped as job locust (the loadgen host)",
    ("vigil-api-overview.json", "Load test response time"):
        "only while a distributed Locust run is scraped as job locust (the loadgen host)",
    ("vigil-api-overview.json", "annotation Fault switches"):
        "no fire-drill fault switch is on when all is well",
    ("vigil-postgresql.json", "WAL not yet replayed, per standby"):
        "a single server has no standby, so pg_stat_replication is empty",
}

__all__ = ["DASHBOARDS", "EMPTY_WHEN_HEALTHY", "GRAFANA_SCHEMA_VERSION", "render"]
