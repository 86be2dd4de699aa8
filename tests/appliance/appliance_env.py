"""Paths and helpers shared by the appliance tests: the repo, the roles, tools, Vagrant runs."""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "appliance" / "roles"
# Filled by the proof, printed by conftest.py at the end and saved in reports/.
PROOF_TIMINGS = {}
NOT_EXECUTED = []
# What CI's `vagrant up` runs: the single VM without Grafana's APT repository (VIGIL_LOGS=0).
VAGRANT_ENV = {"VIGIL_TOPOLOGY": "single", "VIGIL_LOGS": "0"}
# The inventory the Vagrantfile hands ansible_local with VIGIL_LOGS=0, and the whole one.
INVENTORY = "appliance/inventories/vagrant/hosts.yml"
FULL_INVENTORY = "appliance/inventories/vagrant"
MACHINE = "vigil"
MACHINE_IP = "192.168.56.10"
# The cluster CI brings up (VIGIL_TOPOLOGY=cluster): every host of the Vagrantfile's cluster but
# the load generator load1, which VIGIL_TEST_CLUSTER_LOADGEN=1 adds (CI's time: ADR 0071).
CLUSTER_LOADGEN = os.environ.get("VIGIL_TEST_CLUSTER_LOADGEN", "0") == "1"
CLUSTER_ENV = {"VIGIL_TOPOLOGY": "cluster", "VIGIL_LOGS": "0",
               "VIGIL_LOADGEN": "1" if CLUSTER_LOADGEN else "0"}
CLUSTER_HOSTS = {"lb1": "192.168.56.21", "app1": "192.168.56.22", "app2": "192.168.56.23",
                 "db1": "192.168.56.24", "db2": "192.168.56.25", "mon1": "192.168.56.26",
                 **({"load1": "192.168.56.27"} if CLUSTER_LOADGEN else {})}
CLUSTER_CONTROLLER = "mon1"
# The inventory the Vagrantfile hands ansible_local for CLUSTER_ENV.
CLUSTER_INVENTORY = (["-i", "appliance/inventories/cluster/hosts.yml"]
                     + (["-i", "appliance/inventories/cluster/loadgen.yml"] if CLUSTER_LOADGEN
                        else []))
# Filled by the cluster proof (tests/appliance/test_cluster.py), printed at the end and saved.
CLUSTER_FIGURES = {}
# Where appliance/vagrant/host.rb notes that a Vigil run started lxc-net (host-wide: whichever
# checkout destroys the last machine on LXC's bridge stops it).
LXC_NET_MARKER = "/run/vigil-started-lxc-net"
# Prometheus jobs every provisioned appliance scrapes.
CORE_JOBS = {"vigil-api", "node", "postgres", "prometheus", "alertmanager",
             "nginx", "nginx-log", "edge-probe", "prometheus-longterm"}


def venv_bin(name):
    """A tool from the project's virtualenv (the pinned ansible-core and ansible-lint)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {path.parent}: run `make setup`")
    return str(path)


def require_tool(name):
    """Fail (not skip) when a tool the appliance tier needs is missing: CI installs them."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: `make setup-system` installs it (.ci/apt-packages)")
    return path


def checkout(dest):
    """A fresh checkout of the work tree (tracked and new, not ignored, files): what a reviewer
    clones. In CI the work tree is a clean clone, so this is exactly main."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], check=True, capture_output=True,
                           text=True).stdout.split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def vagrant(project, *args, env=None, timeout=3600, log=None):
    """`vagrant ARGS` in a project directory, as a user types it; output kept whole (and
    appended to `log` when given, for a person reading a failed run)."""
    t0 = time.monotonic()
    cp = subprocess.run(["vagrant", *args], cwd=project, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, **VAGRANT_ENV, **(env or {}),
                                              "VAGRANT_NO_COLOR": "1"})
    if log is not None:
        with open(log, "a") as f:
            f.write(f"\n$ vagrant {' '.join(args)}   # exit {cp.returncode}, "
                    f"{time.monotonic() - t0:.0f} s\n{cp.stdout}{cp.stderr}")
    return cp


def host_state():
    """What a Vagrant run may leave on the host: LXC containers, network links (LXC names its
    host-side veths vethXXXXXX), firewall rules (lxc-net writes nftables tables `lxc` where nft
    works, iptables rules elsewhere)."""
    def out(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout
    links = {line.split()[0].split("@")[0] for line in out("ip", "-br", "link").splitlines()}
    # Only rules a Vagrant run can add: LXC's bridge and NAT, the project's bridge (other
    # programs on a shared host may change the rest meanwhile).
    ours = ("lxcbr0", "vigilbr0", "10.0.3.", "192.168.56.")
    rules = {line for line in out("iptables-save").splitlines() if any(w in line for w in ours)}
    # Without counters: a rule that was there before keeps counting the traffic it sees.
    rules |= {f"nft {line}" for line in out("nft", "list", "ruleset").splitlines()
              if any(w in line for w in ours) or line.startswith("table") and "lxc" in line}
    rules = {re.sub(r"(counter )?packets \d+ bytes \d+ ?|\[\d+:\d+\]", "", rule) for rule in rules}
    return {"containers": set(out("lxc-ls", "-1").split()), "links": links, "firewall": rules,
            "lxc_net_marker": Path(LXC_NET_MARKER).exists()}


def host_links(container):
    """The host-side veth names of a running LXC container (`lxc-info` prints `Link:` lines)."""
    out = subprocess.run(["lxc-info", "-n", container], capture_output=True, text=True).stdout
    return set(re.findall(r"^Link:\s+(\S+)", out, re.M))


def bridge_members(bridge):
    """The interfaces attached to a host bridge (empty when it has none or is gone)."""
    brif = Path("/sys/class/net") / bridge / "brif"
    return {p.name for p in brif.iterdir()} if brif.is_dir() else set()


def destroy_left_nothing(before, own_containers, own_links):
    """What must hold after `vagrant destroy -f` of one checkout's machines, also while another
    checkout's machines still run (make test brings the single VM and the cluster up side by
    side; docs/adr/0071): none of its containers or veths is left; and when no machine is left
    on Vigil's bridge, the bridge is gone, lxc-net is stopped if a Vigil run started it and
    nothing else uses it, and no container, link or firewall rule is on the host that was not
    there before. Returns the machines still on Vigil's bridge (then the shared part is the
    last checkout's to judge), else an empty set."""
    after = host_state()
    assert not own_containers & after["containers"], own_containers & after["containers"]
    assert not own_links & after["links"], own_links & after["links"]
    still = bridge_members("vigilbr0")
    if still:
        return still
    assert "vigilbr0" not in after["links"], "vigilbr0 is left with no machine on it"
    if not bridge_members("lxcbr0"):
        assert not after["lxc_net_marker"], f"{LXC_NET_MARKER} is left: lxc-net was not stopped"
        if before["lxc_net_marker"]:
            assert "lxcbr0" not in after["links"], "lxc-net, started by a Vigil run, still runs"
    assert after["containers"] <= before["containers"], after["containers"] - before["containers"]
    new_links = {link for link in after["links"] - before["links"]
                 if link.startswith(("veth", "vigilbr", "lxcbr"))}
    assert not new_links, new_links
    assert after["firewall"] <= before["firewall"], after["firewall"] - before["firewall"]
    return set()


def recap(stdout):
    """{host: {ok, changed, failed, ...}} from ansible-playbook's PLAY RECAP."""
    found = {}
    for host, stats in re.findall(r"^\s*(\S+)\s+:\s+(ok=.*)$", stdout, re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", stats)}
    return found


def ok(cp):
    """A failed command's exit code and output tails, for assertion messages."""
    return f"exit {cp.returncode}\n{cp.stdout[-8000:]}\n{cp.stderr[-3000:]}"
