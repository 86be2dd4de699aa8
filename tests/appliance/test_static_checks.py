"""Static gates on the appliance: ansible-lint (production profile), syntax, vagrant validate."""
import os
import subprocess

import pytest
import yaml
from appliance_env import REPO, require_tool, venv_bin

pytestmark = pytest.mark.slow
# Each inventory directory, and its hosts.yml alone: what VIGIL_LOGS=0 hands ansible-playbook.
INVENTORIES = sorted(p.name for p in (REPO / "appliance" / "inventories").iterdir() if p.is_dir())
INVENTORIES += [f"{name}/hosts.yml" for name in INVENTORIES]
LOGS_GROUPS = ("loki", "alloy", "grafana")
PLAYBOOKS = sorted(p.name for p in (REPO / "playbooks").glob("*.yml"))


def _run(argv, env=None, timeout=600):
    """From the repository root with no Ansible settings in the environment, as a user runs it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**base, **(env or {})})


def test_ansible_lint_from_the_repository_root():
    """`ansible-lint` with no arguments, as an Ansible user runs it: .ansible-lint keeps it to the
    Ansible content (not the Prometheus/Grafana YAML) at the production profile."""
    cp = _run([venv_bin("ansible-lint"), "--nocolor"])
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
    for group in ("lb", "api", "db", "monitoring", "loadgen"):
        assert group in groups, f"{inventory}: no group {group}"
    # The logs stack: in every whole inventory, in none of the VIGIL_LOGS=0 ones.
    for group in LOGS_GROUPS:
        assert (group in groups) == (not inventory.endswith("hosts.yml")), (inventory, group)
    # Every play of site.yml targets a group the inventory defines (or all).
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    for play in site:
        assert play["hosts"] == "all" or play["hosts"] in groups or (
            play["hosts"] in LOGS_GROUPS and inventory.endswith("hosts.yml")), play["name"]


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


def test_vagrantfile_installs_the_tested_ansible_core_without_a_version_check():
    vagrantfile = (REPO / "Vagrantfile").read_text()
    pin = (REPO / "appliance" / "requirements.txt").read_text().strip()
    assert pin.startswith("ansible-core==2.19.")
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"ansible-core>=2.19,<2.20"' in pyproject
    import ansible.release

    assert pin == f"ansible-core=={ansible.release.__version__}", "pin the version the tests use"
    # Vagrant compares ansible.version with "ansible [core X.Y.Z]" and never matches (issue 10):
    # the bootstrap script installs the pin instead.
    assert "ansible.version" not in vagrantfile.replace("`ansible.version`", "")
    assert "bootstrap-ansible.sh" in vagrantfile and 'type: "ansible_local"' in vagrantfile


def test_ansible_playbook_runs_from_the_root_without_settings():
    """No ANSIBLE_CONFIG, no -i, no roles path: ansible.cfg at the root supplies them."""
    cp = _run([venv_bin("ansible-playbook"), "playbooks/site.yml", "--list-tasks"])
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "common : Install base packages" in cp.stdout
