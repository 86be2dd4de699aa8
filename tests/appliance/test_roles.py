"""Role structure: defaults and argument specs in step, prefixed and commented variables."""
import re

import pytest
import yaml
from appliance_env import ROLES

ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if p.is_dir())
EXPECTED_ROLES = {
    "common", "postgresql", "api", "nginx", "prometheus", "alertmanager", "node_exporter",
    "postgres_exporter", "loki", "alloy", "grafana", "grafana_repository", "backup", "locust",
    # the front door's telemetry and the long-term SLO history (issue 11)
    "nginx_exporter", "mtail", "blackbox_exporter", "prometheus_longterm",
}
YAML_TYPES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}


def _defaults(role):
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text()) or {}


def _specs(role):
    doc = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return doc["argument_specs"]["main"]["options"]


def test_every_component_has_a_role():
    assert set(ROLE_NAMES) == EXPECTED_ROLES


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_layout(role):
    for rel in ("tasks/main.yml", "tasks/preflight.yml", "tasks/install.yml",
                "tasks/configure.yml", "defaults/main.yml", "meta/main.yml",
                "meta/argument_specs.yml", "handlers/main.yml"):
        assert (ROLES / role / rel).is_file(), f"{role}: missing {rel}"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_argument_specs_match_defaults(role):
    defaults, specs = _defaults(role), _specs(role)
    assert set(specs) == set(defaults), (
        f"{role}: only in defaults {sorted(set(defaults) - set(specs))}, "
        f"only in argument_specs {sorted(set(specs) - set(defaults))}")
    for name, value in defaults.items():
        assert specs[name]["type"] == YAML_TYPES[type(value)], f"{role}.{name}: type"
        assert specs[name]["default"] == value, f"{role}.{name}: default differs"
        assert specs[name].get("description"), f"{role}.{name}: no description"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_are_prefixed_and_commented(role):
    lines = (ROLES / role / "defaults" / "main.yml").read_text().splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^([a-z_][a-z0-9_]*):", line)
        if not match:
            continue
        name = match.group(1)
        assert name.startswith(role + "_"), f"{role}: {name} is not prefixed with the role name"
        # A comment right above, or above the group of variables it starts.
        j = i - 1
        while j >= 0 and re.match(r"^[a-z_][a-z0-9_]*:", lines[j]):
            j -= 1
        assert j >= 0 and lines[j].startswith("#"), f"{role}: {name} has no comment"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_handlers_are_named_restart_or_reload(role):
    handlers = yaml.safe_load((ROLES / role / "handlers" / "main.yml").read_text())
    for handler in handlers:
        assert re.match(r"^(Restart|Reload|Apply) \S+$", handler["name"]), handler["name"]


def _tasks(role):
    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        yield from yaml.safe_load(path.read_text()) or []


@pytest.mark.parametrize(("role", "dest", "validator"), [
    ("prometheus", "/etc/prometheus/prometheus.yml", "promtool check config %s"),
    ("prometheus", "/etc/prometheus/rules/", "promtool check rules %s"),
    ("alertmanager", "/etc/prometheus/alertmanager.yml", "amtool check-config %s"),
    ("nginx", "/etc/nginx/conf.d/vigil.conf", "nginx -t"),
    ("common", "/etc/nftables.conf", "nft -c -f %s"),
    ("common", "/etc/ssh/sshd_config.d/00-vigil-hardening.conf", "sshd -t -f %s"),
    ("loki", "/etc/loki/config.yml", "loki -verify-config"),
    ("alloy", "/etc/alloy/config.alloy", "alloy fmt %s"),
])
def test_configs_are_written_with_validate(role, dest, validator):
    for task in _tasks(role):
        module = task.get("ansible.builtin.template") or task.get("ansible.builtin.copy")
        if module and str(module.get("dest", "")).startswith(dest):
            assert validator in module.get("validate", ""), task["name"]
            return
    pytest.fail(f"{role}: no task writes {dest}")


@pytest.mark.parametrize("role", ["prometheus", "alertmanager"])
def test_config_changes_reload_not_restart(role):
    """Rules and config only notify Reload; flags (which need a restart) are a separate file."""
    for task in _tasks(role):
        module = task.get("ansible.builtin.template") or task.get("ansible.builtin.copy") or {}
        dest = str(module.get("dest", ""))
        if dest.startswith(("/etc/prometheus/rules", "/etc/prometheus/prometheus.yml",
                            "/etc/prometheus/alertmanager.yml")):
            assert task["notify"] == f"Reload {role}", task["name"]


def test_no_plain_secret_in_inventories():
    """Receiver secrets only ever point at vault variables."""
    inventories = ROLES.parent / "inventories"
    for path in inventories.rglob("*.yml"):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if re.search(r"(password|api_url|routing_key|secret)", name):
                assert "vault_" in str(value), f"{path}: {name} is not from the vault"


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_readme_documents_every_variable(role):
    readme = (ROLES / role / "README.md").read_text()
    documented = set(re.findall(r"^### .*$", readme, re.M))
    headings = " ".join(documented)
    for name in _defaults(role):
        assert f"`{name}`" in headings, f"{role}/README.md: no section for {name}"


def test_the_firewall_starts_and_reloads_one_host_at_a_time():
    """The cluster's controller (mon1) is also a managed host: if it starts filtering while
    another host's task is in flight, that task's reply arrives as an untracked packet, is
    dropped, and `vagrant up` hangs (a race: one cluster run of two hung on it)."""
    tasks = yaml.safe_load((ROLES / "common" / "tasks" / "configure.yml").read_text())
    handlers = yaml.safe_load((ROLES / "common" / "handlers" / "main.yml").read_text())
    for name, where in (("Enable the firewall", tasks), ("Reload nftables", handlers)):
        task = next(t for t in where if t.get("name") == name)
        assert task.get("throttle") == 1, f"{name}: throttle {task.get('throttle')}"


def test_a_new_grafana_admin_password_file_is_applied_to_the_running_grafana():
    """Grafana reads admin_password at its first start only, so rotating it by deleting the
    file (a new one is generated) must reach the running Grafana through its own CLI. Grafana
    cannot be installed here (apt.grafana.com is out of reach): this checks the wiring only;
    the command itself never ran on these machines."""
    tasks = yaml.safe_load((ROLES / "grafana" / "tasks" / "configure.yml").read_text())
    handlers = yaml.safe_load((ROLES / "grafana" / "handlers" / "main.yml").read_text())
    generate = next(t for t in tasks if t.get("name") == "Generate the admin password once")
    dest = generate["ansible.builtin.copy"]["dest"]
    assert generate["ansible.builtin.copy"]["force"] is False
    handler = next(h for h in handlers if h.get("name") == generate["notify"])
    command = " ".join(str(v) for v in next(iter(
        v for k, v in handler.items() if k.startswith("ansible.builtin.")))["cmd"].split())
    assert "admin reset-admin-password --password-from-stdin" in command, command
    assert command.endswith(f"< {dest}"), command
