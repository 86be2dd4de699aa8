"""The one provisioned appliance every appliance-tier module shares (one boot per run), and the
report of the proof's measured step times at the end of the pytest run.

Tests use the `appliance` fixture's public surface only: `ip`, `https`, `http` (a requests
session that trusts the appliance's CA), `run(*argv)` (a command as root on the machine),
`playbook(*args)`, `prom(path, **params)`, `wait_all_targets_up()`, `account()`, `reboot()`.
"""
import json
import os
import time
from pathlib import Path

import pytest
import requests
from appliance_env import (
    CORE_JOBS,
    INVENTORY,
    NOT_EXECUTED,
    PROOF_TIMINGS,
    REPO,
    load_nspawn,
    require_tool,
)


class Appliance:
    """The booted, provisioned machine plus host-side HTTP helpers."""

    def __init__(self, container, site_run):
        self.c = container
        self.site_run = site_run
        self.ip = container.ip
        self.https = f"https://{container.ip}"
        self.ca = str(Path(container.root) / "etc/nginx/tls/vigil.crt")
        self.http = requests.Session()
        self.http.verify = self.ca
        # REQUESTS_CA_BUNDLE in the environment would otherwise override verify.
        self.http.trust_env = False

    def run(self, *argv, check=True, timeout=600, input=None):
        """Run a command as root on the machine; a CompletedProcess with text output."""
        return self.c.run(*argv, check=check, timeout=timeout, input=input)

    def playbook(self, *args, inventory=INVENTORY, timeout=1800):
        return self.c.ansible_playbook("-i", inventory, *args, timeout=timeout)

    def reboot(self):
        self.c.reboot()

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


@pytest.fixture(scope="session")
def appliance(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the appliance proof needs root (systemd-nspawn, veth, iptables)")
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "iptables", "ip", "git"):
        require_tool(tool)
    nspawn = load_nspawn()
    started = time.monotonic()
    snapshot = nspawn.snapshot_repo(tmp_path_factory.mktemp("repo"))
    t = time.monotonic()
    nspawn.rootfs_tarball()
    PROOF_TIMINGS["rootfs (debootstrap or cache)"] = time.monotonic() - t
    container = nspawn.Container.create(f"vigil-{os.getpid() % 100000}", repo=snapshot)
    try:
        t = time.monotonic()
        container.boot()
        PROOF_TIMINGS["boot to running"] = time.monotonic() - t
        t = time.monotonic()
        container.install_ansible()
        PROOF_TIMINGS["install pinned ansible-core"] = time.monotonic() - t
        t = time.monotonic()
        site = container.ansible_playbook("-i", INVENTORY, "playbooks/site.yml")
        PROOF_TIMINGS["site.yml, first run"] = time.monotonic() - t
        yield Appliance(container, site)
    finally:
        container.destroy()
        PROOF_TIMINGS["whole proof"] = time.monotonic() - started
        report = REPO / "reports"
        report.mkdir(exist_ok=True)
        (report / "appliance-proof.json").write_text(json.dumps(PROOF_TIMINGS, indent=2))


def pytest_terminal_summary(terminalreporter):
    if not PROOF_TIMINGS:
        return
    terminalreporter.section("appliance proof")
    for step, seconds in PROOF_TIMINGS.items():
        terminalreporter.write_line(f"{step:<40} {seconds:7.1f} s")
    for line in NOT_EXECUTED:
        terminalreporter.write_line(line)
