"""Every metric a rule or dashboard queries exists: exporters per inventory, API per live scrape."""
import importlib.util
import json
import subprocess
import sys

import pytest
import requests
import rule_files as rf

from tests.servers import run_api

_spec = importlib.util.spec_from_file_location("inventory", rf.DASHBOARDS / "inventory.py")
inventory = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(inventory)

API_PREFIXES = ("flask_http_", "vigil_", "process_")


def used_metrics():
    """{metric: [where]} over alert rules, recording rules and dashboards."""
    used = {}
    for rule in rf.all_rules():
        for metric in rf.metric_names(rule["expr"]):
            name = rule.get("alert") or rule.get("record")
            used.setdefault(metric, []).append(f"{rule['_file']}:{name}")
    for path in sorted(rf.DASHBOARDS.glob("vigil-*.json")):
        board = json.loads(path.read_text())
        # Collapsed rows hold their panels inside the row.
        every = [q for p in board["panels"] for q in [p, *p.get("panels", [])]]
        exprs = [t["expr"] for p in every if p.get("datasource", {}).get("type")
                 == "prometheus" for t in p["targets"]]
        exprs += [a["expr"] for a in board["annotations"]["list"]]
        for expr in exprs:
            expr = expr.replace("$__rate_interval", "5m").replace("$job", "vigil-api")
            for metric in rf.metric_names(expr.replace("$route", ".*").replace("$instance", "x")):
                used.setdefault(metric, []).append(path.name)
    return used


def test_inventory_parser_expands_histograms_and_reads_samples():
    text = ("# HELP a_seconds x\n# TYPE a_seconds histogram\na_seconds_bucket{le=\"1\"} 1\n"
            "# TYPE b_total counter\nb_total 3\nc_gauge{x=\"y\"} 1\n")
    assert inventory.metric_names(text) == {"a_seconds", "a_seconds_bucket", "a_seconds_sum",
                                            "a_seconds_count", "b_total", "c_gauge"}


def test_every_exporter_metric_used_is_in_the_inventory():
    known = set().union(*rf.load_inventory().values()) | rf.recorded_metrics() \
        | rf.BUILTIN_METRICS
    unknown = {m: where for m, where in used_metrics().items()
               if m not in known and not m.startswith(API_PREFIXES)}
    assert not unknown, f"not exported by anything in dashboards/metrics-inventory.yml: {unknown}"


@pytest.mark.postgres
def test_every_api_metric_used_is_served_by_a_live_api(tmp_path, postgres_url):
    """A real gunicorn API on PostgreSQL (so the pool gauge exists), scraped after some traffic."""
    with run_api(tmp_path, workers=2, env={"VIGIL_DATABASE_URL": postgres_url}) as api:
        for path in ("/api/v1/content", "/api/v1/nope", "/health/ready"):
            requests.get(api.url + path, timeout=10)
        requests.post(api.url + "/api/v1/auth/login", timeout=10,
                      json={"email": "nobody@example.com", "password": "wrong password!"})
        scraped = inventory.metric_names(requests.get(api.url + "/metrics", timeout=10).text)
    exporters = set().union(*rf.load_inventory().values())
    wanted = {m: where for m, where in used_metrics().items()
              if m.startswith(API_PREFIXES) and m not in exporters}
    missing = {m: where for m, where in wanted.items() if m not in scraped}
    assert not missing, f"rules/dashboards query metrics the API does not serve: {missing}"
    # Exporters serve process_* too, so name the API's own copies explicitly.
    assert {"vigil_db_pool_connections", "vigil_fault_active", "flask_http_request_total",
            "process_cpu_seconds_total", "process_resident_memory_bytes"} <= scraped


LOCUST_SCRAPE = """
from locust.env import Environment
from prometheus_client import CollectorRegistry, generate_latest
from loadtest.exporter import LocustCollector
env = Environment()
env.create_local_runner()
registry = CollectorRegistry(auto_describe=False)
registry.register(LocustCollector(env, "inventory"))
print(generate_latest(registry).decode())
env.runner.quit()
"""


def test_locust_inventory_matches_what_the_load_test_exporter_serves():
    """Run the real exporter collector over a real Locust runner (in a subprocess: gevent)."""
    done = subprocess.run([sys.executable, "-c", LOCUST_SCRAPE], cwd=rf.ROOT, text=True,
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    served = inventory.metric_names(done.stdout)
    assert rf.load_inventory()["locust"] <= served
    used = {m for m in used_metrics() if m.startswith("locust_")}
    assert used and used <= served
