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

    def members(group):
        """A group's hosts, its children's included (as Ansible's `groups` lists them)."""
        body = data.get(group, {})
        found = list(body.get("hosts", []))
        for child in body.get("children", []):
            found += [h for h in members(child) if h not in found]
        return found

    groups = {"all": sorted(data["_meta"]["hostvars"])}
    for group in data:
        if group not in ("_meta", "all"):
            groups[group] = members(group)
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
def cluster_inventory():
    return _inventory("cluster")


def test_prometheus_targets_come_from_the_inventory(cluster_inventory, tmp_path):
    groups, hostvars = cluster_inventory
    rendered = yaml.safe_load(_render("prometheus", "prometheus.yml.j2", groups, hostvars,
                                      playbook_dir=str(REPO / "playbooks")))
    jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
            for j in rendered["scrape_configs"]}
    every_host = [f"192.168.56.{i}" for i in range(21, 28)]  # lb1 app1 app2 db1 db2 mon1 load1
    assert sorted(jobs["node"]) == [f"{a}:9100" for a in every_host]
    assert sorted(jobs["alloy"]) == [f"{a}:12345" for a in every_host]
    assert jobs["vigil-api"] == ["192.168.56.22:8000", "192.168.56.23:8000"]
    assert jobs["postgres"] == ["192.168.56.24:9187", "192.168.56.25:9187"]
    assert jobs["nginx"] == ["192.168.56.21:9113"] and jobs["nginx-log"] == ["192.168.56.21:3903"]
    # Probes go through the load balancer; the instance label is the inventory name.
    assert jobs["edge-probe"] == ["https://192.168.56.21/health/ready",
                                  "https://192.168.56.21/api/v1/content?limit=1"]
    labels = {sc["labels"]["instance"] for j in rendered["scrape_configs"]
              if j["job_name"] == "vigil-api" for sc in j["static_configs"]}
    assert labels == {"app1", "app2"}
    grafana = next(j for j in rendered["scrape_configs"] if j["job_name"] == "grafana")
    assert grafana["scheme"] == "https"
    assert grafana["tls_config"] == {"ca_file": "/etc/grafana/tls/grafana.crt"}
    assert rendered["global"]["scrape_interval"] == "15s"
    assert rendered["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [
        "192.168.56.26:9093"]

    # A host added to a group adds its targets; an empty group adds no job.
    groups = {**groups, "api": groups["api"] + ["app3"], "grafana": [],
              "all": groups["all"] + ["app3"]}
    hostvars = {**hostvars, "app3": {"vigil_private_ip": "192.168.56.28"}}
    rendered = yaml.safe_load(_render("prometheus", "prometheus.yml.j2", groups, hostvars,
                                      playbook_dir=str(REPO / "playbooks")))
    jobs = {j["job_name"]: [t for sc in j["static_configs"] for t in sc["targets"]]
            for j in rendered["scrape_configs"]}
    assert jobs["vigil-api"] == ["192.168.56.22:8000", "192.168.56.23:8000", "192.168.56.28:8000"]
    assert "192.168.56.28:9100" in jobs["node"] and "grafana" not in jobs

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install prometheus (.ci/apt-packages)")
    rendered["rule_files"] = []  # the rules are checked on their own by the monitoring tests
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(rendered))
    cp = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def _ruleset(inventory, host):
    groups, hostvars = _inventory(inventory)
    operators = hostvars[host].get("common_firewall_operator_networks", [])
    return _render("common", "nftables.conf.j2", groups, hostvars, inventory_hostname=host,
                   common_firewall_operator_networks=operators)


def _admitted(ruleset):
    """{port: sources} of the input chain: 'any', or the set of addresses a port is open to."""
    open_to = {}
    for line in ruleset.split("chain input")[1].split("}\n\n")[0].splitlines():
        match = re.match(r"^\s*(?:ip saddr \{ ([^}]*) \} )?tcp dport \{ ([^}]*) \} accept$", line)
        if match:
            sources = set(match[1].split(", ")) if match[1] else "any"
            for port in match[2].split(", "):
                open_to[int(port)] = sources
    return open_to


CLUSTER_HOSTS = ["lb1", "app1", "app2", "db1", "db2", "mon1", "load1"]


@pytest.mark.parametrize(("inventory", "host"), [("vagrant", "vigil")]
                         + [("cluster", h) for h in CLUSTER_HOSTS])
def test_nftables_ruleset_is_valid_and_default_drop(inventory, host, tmp_path):
    text = _ruleset(inventory, host)
    assert "policy drop;" in text.split("chain input")[1].split("}")[0]
    assert _admitted(text)[22] == "any"
    nft = shutil.which("nft") or pytest.fail("nft missing: apt-get install nftables")
    path = tmp_path / "nftables.conf"
    path.write_text(text)
    # -c parses and checks against the kernel without applying anything.
    cp = subprocess.run([nft, "-c", "-f", str(path)], capture_output=True, text=True)
    assert cp.returncode == 0, cp.stderr


API, DB = {"192.168.56.22", "192.168.56.23"}, {"192.168.56.24", "192.168.56.25"}
LB, MON = {"192.168.56.21"}, {"192.168.56.26"}
OPERATOR = {"192.168.56.1/32", "10.0.2.2/32"}


@pytest.mark.parametrize(("host", "expected"), [
    # 443 only on the load balancer; its exporters only to the monitoring host.
    ("lb1", {22: "any", 80: "any", 443: "any", 9100: MON, 9113: MON, 3903: MON, 12345: MON}),
    # gunicorn to the load balancer (and Prometheus); nothing public.
    ("app1", {22: "any", 8000: LB | MON, 9100: MON, 12345: MON}),
    # PostgreSQL only to the API nodes and the other database host (replication).
    ("db1", {22: "any", 5432: API | DB, 9100: MON, 9187: MON, 12345: MON}),
    # The UIs to the operator's networks; the alert page to nginx; Loki to every Alloy.
    ("mon1", {22: "any", 9090: MON | OPERATOR, 9091: MON | OPERATOR, 9093: MON | OPERATOR,
              9095: LB, 9115: MON, 9100: MON, 3000: MON | OPERATOR, 12345: MON,
              3100: LB | API | DB | MON | {"192.168.56.27"}}),
    ("load1", {22: "any", 5557: {"192.168.56.27"}, 9646: MON, 9100: MON, 12345: MON}),
])
def test_each_cluster_host_admits_only_what_the_inventory_says(host, expected):
    """The private network also holds the hypervisor host (with lxc, the machine running
    Vagrant, 192.168.56.1): it reaches the UIs, as an operator, and nothing else."""
    assert _admitted(_ruleset("cluster", host)) == expected


def test_the_single_vm_opens_its_uis_to_the_operator_only():
    admitted = _admitted(_ruleset("vagrant", "vigil"))
    for port in (9090, 9091, 9093):
        assert admitted[port] == {"192.168.56.10"} | OPERATOR, port
    assert admitted[443] == admitted[80] == "any"
    # With no operator network in the inventory, nobody but the inventory's hosts.
    groups, hostvars = _inventory("vagrant")
    closed = _admitted(_render("common", "nftables.conf.j2", groups, hostvars,
                               inventory_hostname="vigil", common_firewall_operator_networks=[]))
    assert closed[9090] == closed[9093] == {"192.168.56.10"}


def _listen_port(value):
    return int(str(value).rsplit(":", 1)[1])


def test_firewall_ports_are_the_roles_ports():
    """common_firewall_services names each role's port: they stay in step."""
    defaults = {role: yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
                for role in ("common", "api", "postgresql", "node_exporter", "postgres_exporter",
                             "nginx_exporter", "mtail", "prometheus", "prometheus_longterm",
                             "alertmanager", "blackbox_exporter", "grafana", "loki", "alloy",
                             "locust")}
    ports = {
        8000: defaults["api"]["api_port"],
        5432: defaults["postgresql"]["postgresql_port"],
        9100: _listen_port(defaults["node_exporter"]["node_exporter_listen_address"]),
        9187: _listen_port(defaults["postgres_exporter"]["postgres_exporter_listen_address"]),
        9113: _listen_port(defaults["nginx_exporter"]["nginx_exporter_listen_address"]),
        3903: defaults["mtail"]["mtail_port"],
        9090: _listen_port(defaults["prometheus"]["prometheus_web_listen_address"]),
        9091: _listen_port(defaults["prometheus_longterm"][
            "prometheus_longterm_web_listen_address"]),
        9093: _listen_port(defaults["alertmanager"]["alertmanager_web_listen_address"]),
        9095: defaults["alertmanager"]["alertmanager_alert_log_port"],
        9115: _listen_port(defaults["blackbox_exporter"]["blackbox_exporter_listen_address"]),
        3000: defaults["grafana"]["grafana_http_port"],
        3100: defaults["loki"]["loki_http_port"],
        12345: _listen_port(defaults["alloy"]["alloy_listen_address"]),
        5557: defaults["locust"]["locust_master_port"],
        9646: defaults["locust"]["locust_prometheus_port"],
    }
    assert {port: port for port in ports} == ports
    services = defaults["common"]["common_firewall_services"]
    assert sorted(p for s in services for p in s["ports"]) == sorted([80, 443, *ports])
    # Every scrape target is admitted from the monitoring hosts on the hosts of its group.
    for job in defaults["prometheus"]["prometheus_scrape_jobs"]:
        assert any(job["port"] in s["ports"] and s["group"] in (job["group"], "all")
                   and "monitoring" in s["from"] for s in services), job


@pytest.mark.parametrize(("inventory", "from_inventory"), [
    ("cluster", ["192.168.56.27"]),  # load1, the cluster's loadgen host
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


# ---- Exposure (issue 14), both topologies ---------------------------------------------------
@pytest.mark.parametrize("inventory,host", [("vagrant", "vigil"), ("cluster", "mon1")])
def test_no_prometheus_exposes_its_lifecycle_api(inventory, host):
    """--web.enable-lifecycle lets anyone reaching the port stop Prometheus (POST /-/quit);
    both Prometheus servers reload on SIGHUP instead."""
    groups, hostvars = _inventory(inventory)
    context = {"inventory_hostname": host, "playbook_dir": str(REPO / "playbooks"),
               **hostvars[host]}
    main = _render("prometheus", "prometheus.default.j2", groups, hostvars, **context)
    longterm = _render("prometheus_longterm", "prometheus-longterm.service.j2", groups, hostvars,
                       **context)
    assert "--web.listen-address=" in main and "--web.listen-address=" in longterm
    for text in (main, longterm):
        assert "enable-lifecycle" not in text.replace("No --web.enable-lifecycle", "")


def test_grafana_serves_https_with_a_generated_secret_key():
    groups, hostvars = _inventory("vagrant")
    ini = _render("grafana", "grafana.ini.j2", groups, hostvars, inventory_hostname="vigil",
                  playbook_dir=str(REPO / "playbooks"), **hostvars["vigil"])
    settings = dict(re.findall(r"^(\w+) = (.*)$", ini, re.M))
    assert settings["protocol"] == "https"
    assert settings["secret_key"] == "$__file{/etc/grafana/secret_key}"
    assert settings["cookie_secure"] == "true"
    tasks = yaml.safe_load((ROLES / "grafana" / "tasks" / "configure.yml").read_text())
    [key] = [t for t in tasks if t["name"] == "Generate the secret key once"]
    assert key["ansible.builtin.copy"]["force"] is False  # generated once, never replaced
    assert key["ansible.builtin.copy"]["mode"] == "0600"


def test_the_sshd_drop_in_sorts_before_cloud_inits():
    """sshd keeps the first value it reads, in file-name order: 50-cloud-init.conf (cloud
    images, PasswordAuthentication yes) must come after Vigil's hardening."""
    tasks = yaml.safe_load((ROLES / "common" / "tasks" / "configure.yml").read_text())
    drop_ins = [t["ansible.builtin.template"]["dest"] for t in tasks
                if "sshd_config.d" in str(t.get("ansible.builtin.template", {}).get("dest"))]
    assert drop_ins and all(os.path.basename(d) < "50-cloud-init.conf" for d in drop_ins)


def test_the_vagrant_inventories_trust_single_addresses_not_the_bridge():
    """The hypervisor host sits on 192.168.56.0/24 too: the inventories name the operator's
    address and VirtualBox's NAT address, never the whole network."""
    for name in ("vagrant", "cluster"):
        _, hostvars = _inventory(name)
        for host, variables in hostvars.items():
            networks = variables.get("common_firewall_operator_networks", [])
            assert networks and all(n.endswith("/32") for n in networks), (name, host, networks)
