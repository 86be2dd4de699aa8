"""Static gates on the appliance: ansible-lint (production profile), syntax, vagrant validate."""
import os
import subprocess

import pytest
from appliance_env import ANSIBLE_ENV, REPO, require_tool, venv_bin

pytestmark = pytest.mark.slow
INVENTORIES = sorted(p.name for p in (REPO / "appliance" / "inventories").iterdir() if p.is_dir())
PLAYBOOKS = sorted(p.name for p in (REPO / "playbooks").glob("*.yml"))


def _run(argv, env=None, timeout=600):
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ANSIBLE_ENV, **(env or {})})


def test_ansible_lint_production_profile():
    cp = _run([venv_bin("ansible-lint"), "--offline", "--profile", "production", "--nocolor",
               "appliance/roles", "playbooks"])
    assert cp.returncode == 0, cp.stdout[-6000:] + cp.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in cp.stdout + cp.stderr


@pytest.mark.parametrize("inventory", INVENTORIES)
@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_syntax(inventory, playbook):
    cp = _run([venv_bin("ansible-playbook"), "-i", f"appliance/inventories/{inventory}",
               f"playbooks/{playbook}", "--syntax-check"])
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_inventory_defines_every_play_group(inventory):
    """Every play's group exists in every inventory (empty is fine), so no play is skipped
    by a typo in a group name."""
    cp = _run([venv_bin("ansible-inventory"), "-i", f"appliance/inventories/{inventory}",
               "--list"])
    assert cp.returncode == 0, cp.stderr
    import json

    groups = set(json.loads(cp.stdout)["all"]["children"]) | set(json.loads(cp.stdout))
    for group in ("db", "app", "prometheus", "alertmanager", "loki", "alloy", "grafana",
                  "loadgen"):
        assert group in groups, f"{inventory}: no group {group}"


@pytest.mark.parametrize("topology", ["single", "cluster"])
def test_vagrant_validate(topology):
    vagrant = require_tool("vagrant")
    # Without a provider installed Vagrant can only check the provider-independent parts...
    cp = _run([vagrant, "validate", "--ignore-provider"], env={"VIGIL_TOPOLOGY": topology},
              timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # ...and Debian's vagrant-libvirt plugin lets it check the libvirt blocks too.
    plugins = _run([vagrant, "plugin", "list"], timeout=120).stdout
    assert "vagrant-libvirt" in plugins, "apt-get install vagrant-libvirt (.ci/apt-packages)"
    cp = _run([vagrant, "validate"], timeout=180,
              env={"VIGIL_TOPOLOGY": topology, "VAGRANT_DEFAULT_PROVIDER": "libvirt"})
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_vagrantfile_rejects_an_unknown_topology():
    cp = _run([require_tool("vagrant"), "validate", "--ignore-provider"],
              env={"VIGIL_TOPOLOGY": "bogus"}, timeout=180)
    assert cp.returncode != 0
    assert "VIGIL_TOPOLOGY must be one of single, cluster" in cp.stdout + cp.stderr


def test_vagrantfile_pins_the_tested_ansible_core_and_forwards_on_loopback():
    vagrantfile = (REPO / "Vagrantfile").read_text()
    pin = (REPO / "appliance" / "requirements.txt").read_text().strip()
    assert pin.startswith("ansible-core==2.19.")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"ansible-core>=2.19,<2.20"' in pyproject
    import ansible.release

    assert pin == f"ansible-core=={ansible.release.__version__}", "pin the version the tests use"
    assert "ansible.version = ANSIBLE_CORE" in vagrantfile
    assert 'type: "ansible_local"' in vagrantfile
    assert 'host_ip: "127.0.0.1"' in vagrantfile and "debian/trixie64" in vagrantfile
