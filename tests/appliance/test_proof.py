"""The proof: the machine `vagrant up --provider=lxc` brought up from a fresh checkout
(conftest.py), checked from the host over the project's private bridge as a reviewer reaches it."""
import json
import re
import threading
import time

import pytest
import requests
from appliance_env import CORE_JOBS, FULL_INVENTORY, NOT_EXECUTED, PROOF_TIMINGS
from appliance_env import ok as _ok
from appliance_env import recap as _recap

pytestmark = [pytest.mark.appliance, pytest.mark.slow]
NOT_HERE = ("loki", "alloy", "grafana")


def test_vagrant_up_provisions_the_machine(appliance):
    run = appliance.site_run
    assert run.returncode == 0, _ok(run)
    assert _recap(run.stdout)["vigil"]["failed"] == 0
    # State plainly what this proof does not execute: Grafana's APT repo is unreachable here.
    for play in ("Loki", "Alloy log shipper", "Grafana"):
        assert f"PLAY [{play}]" in run.stdout, play
    assert run.stdout.count("skipping: no hosts matched") >= len(NOT_HERE)
    NOT_EXECUTED.append("NOT EXECUTED on the appliance: roles loki, alloy, grafana (VIGIL_LOGS=0: "
                        "Grafana's APT repository is unreachable here); they pass ansible-lint and "
                        "a check-mode run (test_observability_roles_check_mode).")


def test_verify_playbook_passes(appliance):
    t = time.monotonic()
    cp = appliance.playbook("playbooks/verify.yml")
    PROOF_TIMINGS["verify.yml"] = time.monotonic() - t
    assert cp.returncode == 0, _ok(cp)


def test_secrets_are_generated_private_and_nowhere_in_the_repo(appliance):
    files = ["/etc/vigil/api.env", "/etc/vigil/secrets/api_jwt_secret_key",
             "/etc/vigil/secrets/postgresql_vigil_password",
             "/etc/vigil/secrets/postgresql_postgres_exporter_password"]
    modes = appliance.run("stat", "-c", "%a %U", *files).stdout.split("\n")
    assert modes[:len(files)] == ["600 root"] * len(files)
    key = appliance.run("cat", "/etc/vigil/secrets/api_jwt_secret_key").stdout
    assert len(key) == 64
    repo_text = "".join(p.read_text(errors="ignore") for p in appliance.project.rglob("*")
                        if p.is_file())
    assert key not in repo_text


def test_api_serves_the_contract_through_nginx(appliance):
    http, base = appliance.http, appliance.https
    r = http.get(f"{base}/health/ready", timeout=10)
    assert r.status_code == 200 and r.headers.get("X-Request-ID")
    for header in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options"):
        assert header in r.headers, header
    auth = appliance.account()
    r = http.post(f"{base}/api/v1/content", headers=auth,
                  json={"title": "through nginx", "body": "hi", "is_published": True}, timeout=10)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] and r.headers["ETag"]
    item = r.json()
    r = http.get(f"{base}/api/v1/content/{item['id']}", headers=auth, timeout=10)
    assert r.status_code == 200 and r.json()["title"] == "through nginx"
    assert http.get(f"{base}/api/v1/content", timeout=10).status_code == 401
    assert http.get(f"{base}/api/v1/openapi.json", timeout=10).json()["openapi"].startswith("3")


def test_nginx_redirects_limits_and_hides_metrics(appliance):
    http, base = appliance.http, appliance.https
    r = requests.get(f"http://{appliance.ip}/api/v1/content", allow_redirects=False, timeout=10)
    assert r.status_code == 301 and r.headers["Location"].startswith("https://")
    assert http.get(f"{base}/metrics", timeout=10).status_code == 404
    r = http.post(f"{base}/api/v1/content", data=b"x" * (2 * 1024 * 1024), timeout=30,
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert r.headers["Content-Type"].startswith("application/problem+json")
    # A burst on /api/v1/auth/ beyond rate + burst is cut with 429 (problem JSON).
    codes, lock = [], threading.Lock()

    def hit():
        for _ in range(10):
            code = http.post(f"{base}/api/v1/auth/login", json={}, timeout=30).status_code
            with lock:
                codes.append(code)

    threads = [threading.Thread(target=hit) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert 429 in codes and 422 in codes, sorted(set(codes))


def test_firewall_lets_in_only_https_and_the_ui_ports(appliance):
    import socket

    def reachable(port):
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex((appliance.ip, port)) == 0

    assert reachable(443) and reachable(9090) and reachable(9093)
    # gunicorn, node_exporter, postgres_exporter and PostgreSQL are not reachable from outside.
    for port in (8000, 9100, 9187, 5432):
        assert not reachable(port), port


def test_prometheus_scrapes_every_target_and_loads_the_repo_rules(appliance):
    targets = appliance.wait_all_targets_up()
    assert {t["labels"]["job"] for t in targets} == CORE_JOBS
    import yaml

    repo_groups = {g["name"] for f in (appliance.project / "alerts" / "rules").glob("*.yml")
                   for g in yaml.safe_load(f.read_text())["groups"]}
    loaded = appliance.prom("/api/v1/rules")["groups"]
    assert {g["name"] for g in loaded} == repo_groups
    assert all(g["interval"] == 15 for g in loaded)
    cfg = yaml.safe_load(appliance.prom("/api/v1/status/config")["yaml"])
    assert cfg["global"]["scrape_interval"] == "15s"
    assert cfg["global"]["evaluation_interval"] == "15s"
    assert appliance.prom("/api/v1/status/flags")["storage.tsdb.retention.time"] == "15d"


def test_alertmanager_has_the_repo_config_and_prometheus_uses_it(appliance):
    import yaml

    status = requests.get(f"http://{appliance.ip}:9093/api/v2/status", timeout=10).json()
    loaded = yaml.safe_load(status["config"]["original"])
    assert loaded["route"]["receiver"] == "local"
    assert {r["name"] for r in loaded["receivers"]} >= {"local", "page", "ticket", "heartbeat"}
    ams = appliance.prom("/api/v1/alertmanagers")["activeAlertmanagers"]
    assert [a["url"] for a in ams] == [f"http://{appliance.ip}:9093/api/v2/alerts"]
    # End to end on the appliance: the always-firing Watchdog goes Prometheus -> Alertmanager ->
    # the local receiver's JSON-lines file.
    deadline = time.monotonic() + 120
    while True:
        log = appliance.run("cat", "/var/log/vigil-alerts/alerts.jsonl", check=False).stdout
        names = {a["labels"]["alertname"] for line in log.splitlines()
                 for a in json.loads(line)["payload"]["alerts"]}
        if "Watchdog" in names:
            break
        assert time.monotonic() < deadline, f"no Watchdog notification; got {names}"
        time.sleep(5)


def test_node_and_postgres_exporters_are_scraped(appliance):
    appliance.wait_all_targets_up()
    for query in ('up{job="node"}', 'up{job="postgres"}', "pg_up",
                  # the edge probe completes TLS: EdgeCertificateExpiring has its input
                  "probe_ssl_earliest_cert_expiry",
                  'node_textfile_scrape_error{job="node"}'):
        result = appliance.prom("/api/v1/query", query=query)["result"]
        assert result, query
    assert appliance.prom("/api/v1/query", query="pg_up")["result"][0]["value"][1] == "1"


def test_prometheus_config_change_reloads_without_restart(appliance):
    def main_pid():
        return appliance.run("systemctl", "show", "-p", "MainPID", "--value",
                               "prometheus").stdout.strip()

    def evaluation_interval():
        import yaml

        cfg = yaml.safe_load(appliance.prom("/api/v1/status/config")["yaml"])
        return cfg["global"]["evaluation_interval"]

    pid = main_pid()
    for interval, extra in (("30s", ["-e", "prometheus_evaluation_interval=30s"]), ("15s", [])):
        cp = appliance.playbook("playbooks/site.yml", "--tags", "prometheus", *extra)
        assert cp.returncode == 0, _ok(cp)
        assert "RUNNING HANDLER [prometheus : Reload prometheus]" in cp.stdout
        assert "Restart prometheus" not in cp.stdout
        deadline = time.monotonic() + 15  # SIGHUP is asynchronous
        while evaluation_interval() != interval:
            assert time.monotonic() < deadline, f"still {evaluation_interval()}, not {interval}"
            time.sleep(1)
        assert main_pid() == pid, "Prometheus was restarted, not reloaded"


def test_backup_delete_restore_brings_the_data_back(appliance):
    http, base = appliance.http, appliance.https
    auth = appliance.account()
    r = http.post(f"{base}/api/v1/content", headers=auth,
                  json={"title": "precious", "body": "keep me", "is_published": False}, timeout=10)
    assert r.status_code == 201, r.text
    item = r.json()
    # Retention: a dump past the 14-day window goes, one inside it stays.
    old, recent = "/var/backups/vigil/vigil-20000101T000000Z.dump", \
        "/var/backups/vigil/vigil-20000102T000000Z.dump"
    appliance.run("sh", "-c", f"touch -d '20 days ago' {old} && touch -d '2 days ago' {recent}")
    before = time.time()
    t = time.monotonic()
    cp = appliance.playbook("playbooks/backup.yml")
    PROOF_TIMINGS["backup.yml"] = time.monotonic() - t
    assert cp.returncode == 0, _ok(cp)
    dumps = appliance.run("ls", "/var/backups/vigil").stdout.split()
    assert "vigil-20000101T000000Z.dump" not in dumps and "vigil-20000102T000000Z.dump" in dumps
    appliance.run("rm", recent)  # not a real dump: restore.yml must pick the newest real one

    assert http.delete(f"{base}/api/v1/content/{item['id']}", headers=auth,
                       timeout=10).status_code == 204
    assert http.get(f"{base}/api/v1/content/{item['id']}", headers=auth,
                    timeout=10).status_code == 404
    t = time.monotonic()
    cp = appliance.playbook("playbooks/restore.yml")
    PROOF_TIMINGS["restore.yml"] = time.monotonic() - t
    assert cp.returncode == 0, _ok(cp)
    r = http.get(f"{base}/api/v1/content/{item['id']}", headers=auth, timeout=10)
    assert r.status_code == 200, r.text
    assert (r.json()["title"], r.json()["body"]) == ("precious", "keep me")

    # The backup-age alert's input reaches Prometheus through node_exporter's textfile collector.
    deadline = time.monotonic() + 60
    while True:
        res = appliance.prom("/api/v1/query", query="vigil_backup_last_success_timestamp_seconds")
        if res["result"] and float(res["result"][0]["value"][1]) >= before - 5:
            break
        assert time.monotonic() < deadline, f"backup metric not scraped: {res}"
        time.sleep(3)
    size = appliance.prom("/api/v1/query", query="vigil_backup_last_size_bytes")["result"]
    assert size and float(size[0]["value"][1]) > 0


def test_halt_and_up_bring_every_service_back_with_the_data(appliance):
    http, base = appliance.http, appliance.https
    auth = appliance.account()
    r = http.post(f"{base}/api/v1/content", headers=auth,
                  json={"title": "survives reboot", "body": "x"}, timeout=10)
    assert r.status_code == 201, r.text
    item_id = r.json()["id"]
    t = time.monotonic()
    appliance.reboot()
    PROOF_TIMINGS["vagrant halt + vagrant up"] = time.monotonic() - t
    cp = appliance.playbook("playbooks/verify.yml")
    assert cp.returncode == 0, _ok(cp)
    # Same token: the JWT key and the sessions survived; the row is still there.
    r = http.get(f"{base}/api/v1/content/{item_id}", headers=auth, timeout=10)
    assert r.status_code == 200 and r.json()["title"] == "survives reboot"
    appliance.wait_all_targets_up()


# In check mode only the steps that need Grafana's APT repository or an installed package may
# fail (and are ignored, by design, in check mode only); every configuration step must run.
# Steps that fail in check mode here, and why: the package (Grafana's repo is out of reach),
# the services it would bring, and the mode of Grafana's TLS key, which the step before it
# (`openssl req`, a command) makes and check mode does not run.
NEEDS_GRAFANA_REPO = re.compile(
    r"^(TASK|RUNNING HANDLER) \[(grafana_repository : Fetch Grafana's APT signing key"
    r"|(loki|alloy|grafana) : (Install \w+ at the pinned version|Hold \w+ at the pinned version"
    r"|Start \w+|Restart \w+|Reload \w+)"
    r"|grafana : Let only Grafana read its key)\]")


def test_observability_roles_check_mode(appliance):
    """Grafana, Loki and Alloy cannot be installed here; their roles still run in check mode."""
    t = time.monotonic()
    cp = appliance.playbook(
        "playbooks/site.yml", "--check", "--diff", "--tags", ",".join(NOT_HERE),
        inventory=FULL_INVENTORY)
    PROOF_TIMINGS["check mode: loki, alloy, grafana"] = time.monotonic() - t
    assert cp.returncode == 0, _ok(cp)
    task, failed_steps = None, []
    for line in cp.stdout.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.rstrip(" *")
        elif line.startswith("fatal:"):
            failed_steps.append(task)
    unexpected = [step for step in failed_steps if not NEEDS_GRAFANA_REPO.match(step)]
    assert not unexpected, unexpected
    for step in ("loki : Write the Loki config from the repo",
                 "loki : Deploy the repo's Loki rules",
                 "alloy : Write the Alloy config from the repo",
                 "grafana : Write grafana.ini",
                 "grafana : Deploy the repo's datasources with the inventory's URLs",
                 "grafana : Deploy the repo's dashboard providers",
                 "grafana : Deploy the repo's dashboards"):
        assert f"TASK [{step}]" in cp.stdout, step
        assert f"TASK [{step}]" not in failed_steps, step
    NOT_EXECUTED.append("check mode of loki, alloy, grafana: configuration steps ran; these "
                        f"failed as expected without the Grafana repo: {len(failed_steps)} steps")
