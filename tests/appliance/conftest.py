"""The one appliance every appliance-tier module shares: a fresh checkout brought up with
`vagrant up --provider=lxc`, as a reviewer on a Linux host without a hypervisor would, and
destroyed at the end (tests/appliance/test_vagrant.py checks that nothing is left behind).

Tests use the `appliance` fixture's public surface only: `ip`, `https`, `http` (a requests
session that trusts the appliance's CA), `run(*argv)` (a command as root on the machine),
`playbook(*args)` (ansible-playbook on the machine, as ansible_local runs it), `prom(path,
**params)`, `wait_all_targets_up()`, `account()`, `reboot()` (`vagrant halt` + `vagrant up`),
`vagrant(*args)` (in the checkout) and `site_run` (the first `vagrant up`'s output).
"""
import json
import os
import shlex
import subprocess
import time
from pathlib import Path

import pytest
import requests
from appliance_env import (
    CLUSTER_CONTROLLER,
    CLUSTER_ENV,
    CLUSTER_FIGURES,
    CLUSTER_HOSTS,
    CLUSTER_INVENTORY,
    CORE_JOBS,
    INVENTORY,
    MACHINE,
    MACHINE_IP,
    NOT_EXECUTED,
    PROOF_TIMINGS,
    REPO,
    checkout,
    host_state,
    require_tool,
    vagrant,
)


class Appliance:
    """The machine Vagrant brought up, reached over SSH and HTTPS from the host."""

    def __init__(self, project, site_run, workdir):
        self.project = project
        self.site_run = site_run
        self.log = workdir / "vagrant.log"
        self.ip = MACHINE_IP
        self.https = f"https://{MACHINE_IP}"
        self._ssh_config = workdir / "ssh_config"
        self._control = workdir / "ssh-%C"
        self._refresh_ssh_config()
        self.ca = workdir / "vigil-ca.crt"
        self.ca.write_text(self.run("cat", "/etc/nginx/tls/vigil.crt").stdout)
        self.http = requests.Session()
        self.http.verify = str(self.ca)
        # REQUESTS_CA_BUNDLE in the environment would otherwise override verify.
        self.http.trust_env = False

    def containers(self):
        """{machine: LXC container name} of this checkout's machine."""
        ids = (self.project / ".vagrant" / "machines").glob("*/lxc/id")
        return {p.parent.parent.name: p.read_text().strip() for p in ids}

    def _refresh_ssh_config(self):
        cp = self.vagrant("ssh-config", MACHINE)
        assert cp.returncode == 0, cp.stderr
        self._ssh_config.write_text(cp.stdout)

    def _ssh(self, remote, timeout, input=None, check=True):
        # One multiplexed connection: `vagrant ssh -c` costs seconds of Ruby start-up per call.
        argv = ["ssh", "-F", str(self._ssh_config), "-o", "LogLevel=ERROR",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}",
                "-o", "ControlPersist=300", MACHINE, remote]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
        if check and cp.returncode:
            raise RuntimeError(f"on {MACHINE}: {remote} exited {cp.returncode}\n"
                               f"--- stdout\n{cp.stdout[-6000:]}\n--- stderr\n{cp.stderr[-4000:]}")
        return cp

    def vagrant(self, *args, env=None, timeout=3600):
        return vagrant(self.project, *args, env=env, timeout=timeout, log=self.log)

    def run(self, *argv, check=True, timeout=600, input=None):
        """Run a command as root on the machine; a CompletedProcess with text output."""
        return self._ssh("sudo -n " + shlex.join(argv), timeout, input=input, check=check)

    def playbook(self, *args, inventory=INVENTORY, timeout=1800):
        """ansible-playbook on the machine from /vagrant, as the vagrant user (ansible_local)."""
        cmd = shlex.join(["ansible-playbook", "-i", inventory, *args])
        return self._ssh(f"cd /vagrant && ANSIBLE_FORCE_COLOR=0 {cmd}", timeout, check=False)

    def reboot(self):
        """`vagrant halt` then `vagrant up`: every service must come back by itself."""
        for args in (("halt", MACHINE), ("up", MACHINE, "--provider=lxc")):
            cp = self.vagrant(*args)
            assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-3000:]
        self._refresh_ssh_config()

    def prom(self, path, **params):
        r = requests.get(f"http://{self.ip}:9090{path}", params=params, timeout=10)
        r.raise_for_status()
        return r.json()["data"]

    def wait_all_targets_up(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            targets = self.prom("/api/v1/targets", state="active")["activeTargets"]
            health = {t["labels"]["job"]: t["health"] for t in targets}
            if set(health) >= CORE_JOBS and set(health.values()) == {"up"}:
                return targets
            if time.monotonic() > deadline:
                states = [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets]
                pytest.fail(f"targets not all up after {timeout} s: {states}")
            time.sleep(3)

    def account(self):
        """A new account on the appliance; returns the Authorization header of a fresh login."""
        email = f"proof-{time.time_ns()}@example.org"
        password = "correct horse battery staple"
        r = self.http.post(f"{self.https}/api/v1/auth/register",
                           json={"email": email, "password": password}, timeout=30)
        assert r.status_code == 201, r.text
        r = self.http.post(f"{self.https}/api/v1/auth/login",
                           json={"email": email, "password": password}, timeout=30)
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}


def pytest_collection_modifyitems(items):
    """"A fresh appliance is quiet" is judged on the fresh machine, before any other module's
    load (the dashboards' steady Locust run) or fault can leave an SLO alert pending."""
    first = [i for i in items if i.name.startswith("test_a_fresh_healthy_appliance")]
    if first:
        rest = [i for i in items if i not in first]
        uses = [n for n, i in enumerate(rest) if "appliance" in getattr(i, "fixturenames", ())]
        at = uses[0] if uses else 0
        items[:] = rest[:at] + first + rest[at:]


@pytest.fixture(scope="session")
def host_before():
    """The host as it was before this run's `vagrant up` (compared after `vagrant destroy`)."""
    return host_state()


@pytest.fixture(scope="session")
def appliance(tmp_path_factory, host_before):
    reuse = os.environ.get("VIGIL_TEST_APPLIANCE_PROJECT")
    if reuse:
        # A developer's shortcut, never CI's: a checkout whose `vagrant up --provider=lxc` is
        # already done; nothing is brought up or destroyed (skip test_vagrant.py with it).
        workdir = tmp_path_factory.mktemp("vagrant")
        yield Appliance(Path(reuse), None, workdir)
        return
    if os.geteuid() != 0:
        pytest.fail("the appliance proof needs root (vagrant-lxc makes containers and a bridge)")
    for tool in ("vagrant", "lxc-start", "debootstrap", "git", "ssh", "iptables-save"):
        require_tool(tool)
    workdir = tmp_path_factory.mktemp("vagrant")
    project = checkout(workdir / "vigil")
    started = time.monotonic()
    t = time.monotonic()
    cp = subprocess.run(["make", "--no-print-directory", "lxc-box"], cwd=project,
                        capture_output=True, text=True, timeout=1800)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    PROOF_TIMINGS["lxc box (build, or cached)"] = time.monotonic() - t
    t = time.monotonic()
    up = vagrant(project, "up", "--provider=lxc", log=workdir / "vagrant.log", timeout=2400)
    PROOF_TIMINGS["vagrant up (boot + provision)"] = time.monotonic() - t
    try:
        assert up.returncode == 0, up.stdout[-10000:] + up.stderr[-4000:]
        yield Appliance(project, up, workdir)
    finally:
        # Normally test_vagrant.py destroys it and checks the host; this is for failed runs.
        if any((project / ".vagrant" / "machines").glob("*/lxc/id")):
            vagrant(project, "destroy", "-f", log=workdir / "vagrant.log")
        PROOF_TIMINGS["whole proof"] = time.monotonic() - started
        report = REPO / "reports"
        report.mkdir(exist_ok=True)
        (report / "appliance-proof.json").write_text(json.dumps(PROOF_TIMINGS, indent=2))


class Cluster:
    """The machines `VIGIL_TOPOLOGY=cluster vagrant up` brought up, reached over SSH as Vagrant
    reaches them, and the load balancer over HTTPS."""

    def __init__(self, project, site_run, workdir):
        self.project = project
        self.site_run = site_run
        self.log = workdir / "vagrant.log"
        self.hosts = dict(CLUSTER_HOSTS)
        self.lb = f"https://{CLUSTER_HOSTS['lb1']}"
        self.prometheus = f"http://{CLUSTER_HOSTS['mon1']}:9090"
        self._ssh_config = workdir / "ssh_config"
        self._control = workdir / "ssh-%C"
        cp = self.vagrant("ssh-config")
        assert cp.returncode == 0, cp.stderr
        self._ssh_config.write_text(cp.stdout)
        self.ca = workdir / "vigil-ca.crt"
        self.ca.write_text(self.run("lb1", "cat", "/etc/nginx/tls/vigil.crt").stdout)
        self.http = requests.Session()
        self.http.verify = str(self.ca)
        self.http.trust_env = False

    def vagrant(self, *args, env=None, timeout=3600):
        return vagrant(self.project, *args, env={**CLUSTER_ENV, **(env or {})},
                       timeout=timeout, log=self.log)

    def ssh(self, host, remote, timeout=600, check=True, input=None):
        argv = ["ssh", "-F", str(self._ssh_config), "-o", "LogLevel=ERROR",
                "-o", "ControlMaster=auto", "-o", f"ControlPath={self._control}",
                "-o", "ControlPersist=300", host, remote]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
        if check and cp.returncode:
            raise RuntimeError(f"on {host}: {remote} exited {cp.returncode}\n"
                               f"--- stdout\n{cp.stdout[-6000:]}\n--- stderr\n{cp.stderr[-4000:]}")
        return cp

    def run(self, host, *argv, check=True, timeout=600, input=None):
        """A command as root on one host; a CompletedProcess with text output."""
        return self.ssh(host, "sudo -n " + shlex.join(argv), timeout, check=check, input=input)

    def playbook(self, *args, timeout=1800):
        """ansible-playbook on the controller from /vagrant, with the inventory the
        Vagrantfile gives ansible_local."""
        cmd = shlex.join(["ansible-playbook", *CLUSTER_INVENTORY, *args])
        return self.ssh(CLUSTER_CONTROLLER, f"cd /vagrant && ANSIBLE_FORCE_COLOR=0 {cmd}",
                        timeout, check=False)

    def prom(self, path, **params):
        r = requests.get(f"{self.prometheus}{path}", params=params, timeout=10)
        r.raise_for_status()
        return r.json()["data"]

    def account(self):
        """A new account registered through the load balancer: (email, password)."""
        email = f"cluster-{time.time_ns()}@example.org"
        password = "correct horse battery staple"
        r = self.http.post(f"{self.lb}/api/v1/auth/register",
                           json={"email": email, "password": password}, timeout=30)
        assert r.status_code == 201, r.text
        return email, password

    def containers(self):
        """{machine: LXC container name} of this checkout's machines."""
        ids = (self.project / ".vagrant" / "machines").glob("*/lxc/id")
        return {p.parent.parent.name: p.read_text().strip() for p in ids}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, host_before):
    """One `VIGIL_TOPOLOGY=cluster vagrant up --provider=lxc` of a fresh checkout for every
    cluster test, destroyed at the end whatever happened (test_cluster.py's last test destroys
    it and checks the host; this is for failed runs)."""
    reuse = os.environ.get("VIGIL_TEST_CLUSTER_PROJECT")
    if reuse:
        # A developer's shortcut, never CI's: a checkout whose cluster `vagrant up` is done;
        # nothing is brought up or destroyed (deselect the first and the last test with it).
        yield Cluster(Path(reuse), None, tmp_path_factory.mktemp("cluster"))
        return
    if os.geteuid() != 0:
        pytest.fail("the cluster proof needs root (vagrant-lxc makes containers and a bridge)")
    for tool in ("vagrant", "lxc-start", "lxc-info", "debootstrap", "git", "ssh"):
        require_tool(tool)
    workdir = tmp_path_factory.mktemp("cluster")
    project = checkout(workdir / "vigil")
    started = time.monotonic()
    cp = subprocess.run(["make", "--no-print-directory", "lxc-box"], cwd=project,
                        capture_output=True, text=True, timeout=1800)
    assert cp.returncode == 0, cp.stdout[-3000:] + cp.stderr[-3000:]
    t = time.monotonic()
    up = vagrant(project, "up", "--provider=lxc", env=CLUSTER_ENV,
                 log=workdir / "vagrant.log", timeout=3600)
    CLUSTER_FIGURES["vagrant up (boot + provision), s"] = round(time.monotonic() - t)
    try:
        assert up.returncode == 0, up.stdout[-10000:] + up.stderr[-4000:]
        yield Cluster(project, up, workdir)
    finally:
        if any((project / ".vagrant" / "machines").glob("*/lxc/id")):
            # The provider named: machines a failed `up` never created have no id to tell it.
            vagrant(project, "destroy", "-f", log=workdir / "vagrant.log",
                    env={**CLUSTER_ENV, "VAGRANT_DEFAULT_PROVIDER": "lxc"})
        CLUSTER_FIGURES["whole cluster proof, s"] = round(time.monotonic() - started)
        report = REPO / "reports"
        report.mkdir(exist_ok=True)
        (report / "cluster-proof.json").write_text(json.dumps(CLUSTER_FIGURES, indent=2))


def pytest_terminal_summary(terminalreporter):
    if CLUSTER_FIGURES:
        terminalreporter.section("cluster proof")
        for name, value in CLUSTER_FIGURES.items():
            terminalreporter.write_line(f"{name:<48} {value}")
    if not PROOF_TIMINGS:
        return
    terminalreporter.section("appliance proof")
    for step, seconds in PROOF_TIMINGS.items():
        terminalreporter.write_line(f"{step:<40} {seconds:7.1f} s")
    for line in NOT_EXECUTED:
        terminalreporter.write_line(line)
