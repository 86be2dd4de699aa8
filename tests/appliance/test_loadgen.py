"""The loadgen group and locust role: the Prometheus job from the inventory, and the rendered
worker unit and master wrapper running a real distributed Locust run on loopback."""
import configparser
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests
import yaml
from appliance_env import REPO, ROLES
from test_templates import _inventory, _render


def _scrape_jobs(inventory):
    groups, hostvars = _inventory(inventory)
    rendered = yaml.safe_load(_render("prometheus", "prometheus.yml.j2", groups, hostvars,
                                      playbook_dir=str(REPO / "playbooks")))
    jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
            for j in rendered["scrape_configs"]}
    return rendered, jobs


def test_cluster_scrapes_the_locust_master_on_load1(tmp_path):
    rendered, jobs = _scrape_jobs("cluster")
    assert jobs["locust"] == ["192.168.56.27:9646"]
    assert "192.168.56.27:9100" in jobs["node"]  # load1 is a host like the others
    promtool = shutil.which("promtool") or pytest.fail("promtool missing (.ci/apt-packages)")
    rendered["rule_files"] = []
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(rendered))
    cp = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.mark.parametrize("inventory", ["vagrant", "vagrant/hosts.yml"])
def test_an_empty_loadgen_group_adds_no_locust_job(inventory):
    groups, _ = _inventory(inventory)
    assert groups.get("loadgen", []) == []  # ansible-inventory lists no empty group
    _, jobs = _scrape_jobs(inventory)
    assert "locust" not in jobs and "vigil-api" in jobs


def test_the_locust_scrape_port_is_the_roles_metrics_port():
    prometheus = yaml.safe_load((ROLES / "prometheus" / "defaults" / "main.yml").read_text())
    locust = yaml.safe_load((ROLES / "locust" / "defaults" / "main.yml").read_text())
    [job] = [j for j in prometheus["prometheus_scrape_jobs"] if j["job"] == "locust"]
    assert job == {"job": "locust", "group": "loadgen", "port": locust["locust_prometheus_port"]}


def _cluster_render(template, **extra):
    groups, hostvars = _inventory("cluster")
    return _render("locust", template, groups, hostvars, playbook_dir=str(REPO / "playbooks"),
                   vigil_private_ip=hostvars["load1"]["vigil_private_ip"], **extra)


def _unit(text):
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(text)
    return parser


def test_worker_unit_points_at_the_master_on_load1_and_is_not_started_by_default():
    unit = _unit(_cluster_render("vigil-locust-worker@.service.j2"))
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[:3] == ["/opt/vigil-load/venv/bin/locust", "-f",
                        "/opt/vigil-load/src/loadtest/locustfile.py"]
    assert argv[3:] == ["--worker", "--master-host=192.168.56.27", "--master-port=5557"]
    assert unit["Service"]["User"] == "vigil-load"
    defaults = yaml.safe_load((ROLES / "locust" / "defaults" / "main.yml").read_text())
    assert defaults["locust_workers"] == 0
    tasks = yaml.safe_load((ROLES / "locust" / "tasks" / "configure.yml").read_text())
    [start] = [t for t in tasks if "ansible.builtin.systemd_service" in t]
    assert start["loop"] == "{{ range(1, locust_workers + 1) | list }}"  # none when 0


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.stack
def test_rendered_master_wrapper_and_worker_unit_run_a_distributed_load_run(tmp_path):
    """The wrapper and the unit's ExecStart, rendered with the install paths pointed at this
    checkout, run a smoke scenario against the real API: one worker joins, the master serves
    its metrics (what Prometheus scrapes as job locust) and decides the verdict."""
    from tests.servers import run_api

    install = tmp_path / "opt"
    (install / "venv").mkdir(parents=True)
    (install / "venv" / "bin").symlink_to(os.path.dirname(sys.executable))
    (install / "src").symlink_to(REPO)
    state = tmp_path / "state"
    state.mkdir()
    master_port, prom_port = _free_port(), _free_port()
    # load1 on loopback: the master address and bind address come from the role's defaults.
    groups, hostvars = {"loadgen": ["load1"]}, {"load1": {"vigil_private_ip": "127.0.0.1"}}
    settings = {"locust_install_dir": str(install), "locust_state_dir": str(state),
                "locust_user": "root", "locust_master_port": master_port,
                "locust_prometheus_port": prom_port, "vigil_private_ip": "127.0.0.1",
                "playbook_dir": str(REPO / "playbooks")}
    wrapper = tmp_path / "vigil-load-master"
    wrapper.write_text(_render("locust", "vigil-load-master.j2", groups, hostvars, **settings))
    wrapper.chmod(0o755)
    unit = _unit(_render("locust", "vigil-locust-worker@.service.j2", groups, hostvars,
                         **settings))
    worker_argv = shlex.split(unit["Service"]["ExecStart"])
    assert "--master-host=127.0.0.1" in worker_argv
    thresholds = tmp_path / "thresholds.yml"
    thresholds.write_text("smoke:\n  all: ['requests > 3']\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIL_LOAD_", "LOCUST_"))}
    env.update(PYTHONUNBUFFERED="1", VIGIL_ARGON2_TIME_COST="1", VIGIL_ARGON2_MEMORY_KIB="8",
               VIGIL_ARGON2_PARALLELISM="1")

    with run_api(tmp_path / "api", workers=2, env=dict(env)) as api:
        master = subprocess.Popen(
            [str(wrapper), "--scenario", "smoke", "--expect-workers", "1",
             "--expect-workers-max-wait", "60", "--host", api.url, "--load-duration", "8s",
             "--think-time", "0.1:0.3", "--thresholds", str(thresholds)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        worker = subprocess.Popen(worker_argv, cwd=state, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        try:
            workers_seen = None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and master.poll() is None:
                try:
                    body = requests.get(f"http://127.0.0.1:{prom_port}/metrics", timeout=2).text
                    if (_metric(body, "locust_users") or 0) > 0:
                        workers_seen = _metric(body, "locust_workers")
                        break
                except requests.RequestException:
                    pass
                time.sleep(0.5)
            master_out, _ = master.communicate(timeout=120)
            worker_out, _ = worker.communicate(timeout=30)
        finally:
            for process in (master, worker):
                if process.poll() is None:
                    process.kill()
                process.communicate(timeout=10)  # reaps it and closes its pipe
    assert workers_seen == 1, master_out
    assert master.returncode == 0, master_out
    assert worker.returncode == 0, worker_out
    [report] = list((state / "reports").iterdir())
    assert report.name.startswith("smoke-")
    assert (report / "thresholds.json").is_file() and (report / "locust.html").is_file()
