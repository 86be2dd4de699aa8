"""Role templates rendered for real inventories and checked by the tools that read them."""
import json
import os
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml
from appliance_env import REPO, ROLES, venv_bin


def _inventory(name):
    cp = subprocess.run([venv_bin("ansible-inventory"), "-i",
                         str(REPO / "appliance" / "inventories" / name), "--list"],
                        capture_output=True, text=True, check=True,
                        env={"PATH": "/usr/bin:/bin"}, cwd=REPO)
    data = json.loads(cp.stdout)
    groups = {"all": sorted(data["_meta"]["hostvars"])}
    for group, body in data.items():
        if group not in ("_meta", "all"):
            groups[group] = body.get("hosts", [])
    return groups, data["_meta"]["hostvars"]


def _render(role, template, groups, hostvars, **extra):
    # The template module's settings: trim_blocks on, lstrip_blocks off.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps
    env.filters["dirname"] = os.path.dirname
    variables = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    context = {"groups": groups, "hostvars": hostvars, "ansible_managed": "test",
               "vigil_env": "test", **variables, **extra}
    # Defaults may themselves be templates (addresses from the inventory).
    for name, value in variables.items():
        if isinstance(value, str) and "{{" in value:
            context[name] = env.from_string(value).render(context)
    return env.from_string((ROLES / role / "templates" / template).read_text()).render(context)


@pytest.fixture(scope="module")
def cluster():
    return _inventory("cluster")


def test_prometheus_targets_come_from_the_inventory(cluster, tmp_path):
    groups, hostvars = cluster
    rendered = yaml.safe_load(_render("prometheus", "prometheus.yml.j2", groups, hostvars,
                                      playbook_dir=str(REPO / "playbooks")))
    jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
            for j in rendered["scrape_configs"]}
    assert sorted(jobs["node"]) == ["192.168.56.21:9100", "192.168.56.22:9100",
                                    "192.168.56.23:9100", "192.168.56.24:9100"]
    assert jobs["vigil-api"] == ["192.168.56.22:8000"]
    assert jobs["postgres"] == ["192.168.56.21:9187"]
    assert sorted(jobs["alloy"]) == [f"192.168.56.2{i}:12345" for i in (1, 2, 3)]
    assert rendered["global"]["scrape_interval"] == "15s"
    assert rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "192.168.56.23:9093"]

    # A host added to a group adds its targets; an empty group adds no job.
    groups = {**groups, "app": groups["app"] + ["app2"], "grafana": [],
              "all": groups["all"] + ["app2"]}
    hostvars = {**hostvars, "app2": {"vigil_private_ip": "192.168.56.26"}}
    rendered = yaml.safe_load(_render("prometheus", "prometheus.yml.j2", groups, hostvars,
                                      playbook_dir=str(REPO / "playbooks")))
    jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
            for j in rendered["scrape_configs"]}
    assert jobs["vigil-api"] == ["192.168.56.22:8000", "192.168.56.26:8000"]
    assert "192.168.56.26:9100" in jobs["node"] and "grafana" not in jobs

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus (.ci/apt-packages)")
    rendered["rule_files"] = []  # the rules are checked on their own by the monitoring tests
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(rendered))
    cp = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr


@pytest.mark.parametrize("trusted", [[], ["192.168.56.0/24"]])
def test_nftables_ruleset_is_valid_and_default_drop(trusted, tmp_path):
    variables = {"common_firewall_trusted_networks": trusted}
    text = _render("common", "nftables.conf.j2", {}, {}, **variables)
    assert "policy drop;" in text.split("chain input")[1].split("}")[0]
    assert "tcp dport { 22, 80, 443 } accept" in text
    assert "tcp dport { 3000, 9090, 9093 } accept" in text
    nft = shutil.which("nft") or pytest.fail("nft missing: apt-get install nftables")
    path = tmp_path / "nftables.conf"
    path.write_text(text)
    # -c parses and checks against the kernel without applying anything.
    cp = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr


@pytest.mark.parametrize(("inventory", "host", "expected"), [
    ("cluster", "db1", ["192.168.56.21/32", "192.168.56.22/32", "192.168.56.24/32",
                        "192.168.56.23/32"]),
    ("vagrant", "vigil", None),  # one machine: nothing to trust but itself (loopback)
])
def test_the_firewall_trusts_the_inventorys_hosts_not_the_vagrant_host(inventory, host, expected):
    """The private network also holds the hypervisor host (with lxc, the machine running
    Vagrant, 192.168.56.1): only the inventory's own hosts are trusted."""
    cp = subprocess.run([venv_bin("ansible"), host, "-i", f"appliance/inventories/{inventory}",
                         "-m", "ansible.builtin.debug",
                         "-a", "var=common_firewall_trusted_networks"],
                        capture_output=True, text=True, cwd=REPO, check=True)
    value = json.loads(cp.stdout[cp.stdout.index("{"):])["common_firewall_trusted_networks"]
    if expected is None:
        assert "is undefined" in value  # the role's default, []
    else:
        assert value == expected


@pytest.mark.parametrize(("inventory", "from_inventory"), [
    ("cluster", ["192.168.56.24"]),  # load1, the cluster's loadgen host
    ("vagrant", []),  # no loadgen host on the single VM
])
def test_nginx_auth_limit_allowlist_comes_from_the_inventory(inventory, from_inventory,
                                                             tmp_path):
    from tests.nginx_front import (
        check_config,
        for_loopback,
        local_files,
        render_site,
        self_signed_certificate,
    )

    groups, hostvars = _inventory(inventory)
    cert, key = self_signed_certificate(tmp_path)
    local = {**local_files(tmp_path), "nginx_tls_certificate": str(cert),
             "nginx_tls_certificate_key": str(key)}
    site = render_site(groups, hostvars, **local,
                       nginx_auth_limit_exempt_addresses=["192.168.56.1", "10.9.8.0/24"])
    geo = site.split("geo $vigil_auth_limit_exempt {")[1].split("}")[0]
    assert re.findall(r"^\s+(\S+) 1;$", geo, re.M) == [
        *from_inventory, "192.168.56.1", "10.9.8.0/24"]
    assert "default 0;" in geo
    # Only the auth zone's key changed: exempt clients get the empty key, others their address.
    assert re.search(r"^limit_req_zone \$vigil_auth_limit_key zone=vigil_auth:10m rate=\S+;$",
                     site, re.M)
    assert re.search(r'map \$vigil_auth_limit_exempt \$vigil_auth_limit_key \{\s+1 "";\s+'
                     r'default \$binary_remote_addr;\s+\}', site)
    cp = check_config(for_loopback(site, 80, 443), tmp_path / "check")
    assert cp.returncode == 0, cp.stderr

    # A host name where an address belongs is refused by nginx -t (the role's validate step).
    bad = render_site(groups, hostvars, **local,
                      nginx_auth_limit_exempt_addresses=["load-host.example"])
    cp = check_config(for_loopback(bad, 80, 443), tmp_path / "bad")
    assert cp.returncode != 0 and "load-host.example" in cp.stderr
