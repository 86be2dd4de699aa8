"""Paths and helpers shared by the appliance tests: the nspawn tooling module, the roles, tools."""
import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROLES = REPO / "appliance" / "roles"
# Filled by the proof (tests/appliance/test_proof.py), printed by conftest.py at the end.
PROOF_TIMINGS = {}
NOT_EXECUTED = []
ANSIBLE_ENV = {"ANSIBLE_CONFIG": str(REPO / "appliance" / "ansible.cfg")}


def load_nspawn():
    """Import appliance/container/nspawn.py (it lives outside any package)."""
    spec = importlib.util.spec_from_file_location(
        "vigil_nspawn", REPO / "appliance" / "container" / "nspawn.py")
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


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


INVENTORY = "appliance/inventories/container"
# Prometheus jobs every provisioned appliance scrapes.
CORE_JOBS = {"vigil-api", "node", "postgres", "prometheus", "alertmanager",
             "nginx", "nginx-log", "edge-probe", "prometheus-longterm"}


def recap(stdout):
    """{host: {ok, changed, failed, ...}} from ansible-playbook's PLAY RECAP."""
    found = {}
    for host, stats in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", stdout, re.M):
        found[host] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", stats)}
    return found


def ok(cp):
    """A failed command's exit code and output tails, for assertion messages."""
    return f"exit {cp.returncode}\n{cp.stdout[-8000:]}\n{cp.stderr[-3000:]}"
