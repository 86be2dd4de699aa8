"""Alerting in real time on the provisioned appliance: a fresh machine is quiet, and the CI subset
of the fire drills (alerts/drills.py; `make drill` runs them all) pages once, in time, and
resolves.

The drills reach the machine only through the `appliance` fixture's public surface: its address
and `run(*argv)` as root.
"""
import ctypes
import ctypes.util
import importlib.util
import json
import shlex
import subprocess
import time

import pytest
from appliance_env import PROOF_TIMINGS, REPO, VAGRANT_ENV

pytestmark = [pytest.mark.appliance, pytest.mark.slow]

_spec = importlib.util.spec_from_file_location("vigil_drills", REPO / "alerts" / "drills.py")
drills = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(drills)


def _machine(appliance):
    def run(*argv, timeout=120):
        return appliance.run(*argv, check=False, timeout=timeout)
    return drills.Machine(appliance.ip, run)


def _host_clock_synchronised():
    """adjtimex(2) on this host: TIME_ERROR (5) means the kernel clock is not synchronised."""
    class Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                    ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                    ("status", ctypes.c_int), ("padding", ctypes.c_long * 24)]

    state = ctypes.CDLL(ctypes.util.find_library("c")).adjtimex(ctypes.byref(Timex()))
    return state != 5


def test_a_fresh_healthy_appliance_has_nothing_pending_or_firing_but_the_watchdog(appliance):
    appliance.wait_all_targets_up()
    machine = _machine(appliance)
    # A rule reads up to its longest window; give the first evaluations after provisioning time
    # to see every target (probes, mtail, the long-term Prometheus) before judging.
    deadline = time.monotonic() + 240
    while True:
        alerts = machine.prom_alerts()
        names = {a["labels"]["alertname"]: a for a in alerts}
        # NodeHighCpu reads the host's CPUs, which the container shares with whatever else runs
        # on this machine: it is only accepted when the CPUs really are over its threshold.
        busy = names.pop("NodeHighCpu", None)
        if busy is not None:
            assert float(busy["value"]) > 0.9, busy
        # The same for the clock: an LXC machine runs on this host's kernel, so its clock is the
        # host's. Accepted only while this host's own kernel says it is unsynchronised.
        clock = names.pop("NodeClockNotSynchronising", None)
        if clock is not None:
            assert not _host_clock_synchronised(), clock
        if set(names) == {"Watchdog"}:
            break
        assert time.monotonic() < deadline, sorted(
            (a["labels"]["alertname"], a["state"]) for a in alerts)
        time.sleep(10)
    assert names["Watchdog"]["state"] == "firing"


def test_probes_and_edge_metrics_feed_the_slo_and_the_long_term_history(appliance):
    appliance.wait_all_targets_up()
    jobs = {t["labels"]["job"] for t in appliance.prom("/api/v1/targets")["activeTargets"]}
    assert {"nginx", "nginx-log", "edge-probe", "prometheus-longterm"} <= jobs
    probes = appliance.prom("/api/v1/query", query="probe_success")["result"]
    assert {p["metric"]["module"]: p["value"][1] for p in probes} == {
        "https_ready": "1", "https_content_read": "1"}
    expiry = appliance.prom("/api/v1/query", query="probe_ssl_earliest_cert_expiry - time()")
    assert float(expiry["result"][0]["value"][1]) > 30 * 86400
    # Real traffic through nginx reaches the edge counters (probes are left out of them).
    for _ in range(5):
        appliance.http.get(f"{appliance.https}/api/v1/content", timeout=10)
    deadline = time.monotonic() + 60
    while not appliance.prom("/api/v1/query",
                             query='vigil_edge_http_requests_total{code="401"}')["result"]:
        assert time.monotonic() < deadline, "edge requests not counted"
        time.sleep(5)
    # The long-term Prometheus federates only recording rules and keeps 90 days.
    cp = appliance.run("curl", "-sf", f"http://{appliance.ip}:9091/api/v1/status/flags")
    assert json.loads(cp.stdout)["data"]["storage.tsdb.retention.time"] == "90d"
    deadline = time.monotonic() + 150
    while True:
        cp = appliance.run("curl", "-sf", f"http://{appliance.ip}:9091/api/v1/query",
                           "--data-urlencode", 'query=count by (__name__) ({__name__=~".+"})')
        names = {r["metric"]["__name__"] for r in json.loads(cp.stdout)["data"]["result"]}
        if "job:slo_availability_error_budget_remaining:ratio" in names:
            break
        assert time.monotonic() < deadline, sorted(names)
        time.sleep(10)
    federated = {n for n in names if not n.startswith(("up", "scrape_"))}
    assert all(n.count(":") == 2 for n in federated), sorted(federated)


def test_the_drill_subset_pages_once_in_time_and_resolves(appliance):
    started = time.monotonic()
    machine = _machine(appliance)
    report = REPO / "reports" / "drill-ci.json"
    doc = drills.run(machine, drills.CI_SUBSET, quiet_minutes=0, report=report)
    PROOF_TIMINGS["drills (CI subset)"] = time.monotonic() - started
    results = {r["scenario"]: r for r in doc["results"]}
    assert set(results) == set(drills.CI_SUBSET)
    for result in results.values():
        assert result["ok"], result
        assert result["paged"] == [result["page"]], result  # one incident, one page
        assert result["page_s"] <= drills.GOALS["page_worst_s"], result
        assert result["resolved_s"] <= drills.GOALS["resolved_s"], result
    # The database outage held until its cause ticket arrived: PostgresDown was notified, and
    # what follows from it (readiness, database errors) was muted.
    assert "PostgresDown" in results["postgres-stopped"]["notified"]
    assert not {"ApiReadinessFailing", "ApiDatabaseUnreachable"} & set(
        results["postgres-stopped"]["notified"])
    print(drills.table(doc["results"]))


def test_make_drill_reaches_the_vagrant_machine_as_root_by_default(appliance, monkeypatch):
    # `make drill` with no arguments, in the checkout that ran `vagrant up`: its address and its
    # command runner are the Vagrant machine's, and an argument with a space survives the
    # runner's quoting (`vagrant ssh -- sudo` passes one string to the remote shell).
    dry = subprocess.run(["make", "-n", "drill"], cwd=appliance.project, capture_output=True,
                         text=True, check=True).stdout
    argv = shlex.split(next(line for line in dry.splitlines() if "alerts/drills.py" in line))
    assert argv[argv.index("--address") + 1] == appliance.ip
    monkeypatch.chdir(appliance.project)
    for key, value in VAGRANT_ENV.items():
        monkeypatch.setenv(key, value)
    run = drills.command_runner(argv[argv.index("--exec") + 1], "--exec-join" in argv)
    cp = run("sh", "-c", 'id -u; echo "$1"', "sh", "two words", timeout=120)
    assert cp.returncode == 0, cp.stderr
    assert [line.strip() for line in cp.stdout.splitlines()][:2] == ["0", "two words"], cp.stdout
