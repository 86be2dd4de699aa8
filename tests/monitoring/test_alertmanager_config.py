"""Alertmanager config: valid with and without receivers, routed by severity, no secrets."""
import importlib.util
import shutil
import subprocess

import pytest
import yaml
from rule_files import ALERTS

AMTOOL = shutil.which("amtool")
needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="amtool missing: apt-get install prometheus-alertmanager")
AM_DIR = ALERTS / "alertmanager"

_spec = importlib.util.spec_from_file_location("am_render", AM_DIR / "render.py")
am_render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(am_render)

#: Dummy values only: what an inventory's vault would hold.
ALL_CONFIGURED = {
    "alertmanager_pagerduty_routing_key": "dummy-routing-key-0123456789abcdef",
    "alertmanager_slack_api_url": "https://hooks.slack.example.invalid/services/T0/B0/dummy",
    "alertmanager_slack_channel": "#vigil-oncall",
    "alertmanager_email_to": "oncall@example.invalid",
    "alertmanager_email_from": "vigil@example.invalid",
    "alertmanager_smtp_smarthost": "smtp.example.invalid:587",
    "alertmanager_smtp_auth_username": "vigil",
    "alertmanager_smtp_auth_password": "dummy-password",
    "alertmanager_heartbeat_url": "https://heartbeat.example.invalid/ping/dummy",
}
PROFILES = {"no-receivers": {}, "all-receivers": ALL_CONFIGURED}


@pytest.fixture(params=list(PROFILES), scope="module")
def rendered(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    return am_render.render(out, PROFILES[request.param])


@needs_amtool
def test_amtool_accepts_the_rendered_config(rendered):
    done = subprocess.run([AMTOOL, "check-config", str(rendered)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 templates" in done.stdout  # the notification template parsed too


def test_without_receivers_every_route_still_reaches_the_local_receiver(tmp_path):
    config = yaml.safe_load(am_render.render(tmp_path).read_text())
    for receiver in config["receivers"]:
        assert set(receiver) == {"name", "webhook_configs"}, receiver["name"]
        assert receiver["webhook_configs"][0]["url"] == "http://127.0.0.1:9095/alerts"


def test_with_receivers_page_goes_to_pagerduty_ticket_to_slack_both_to_email(tmp_path):
    config = yaml.safe_load(am_render.render(tmp_path, ALL_CONFIGURED).read_text())
    receivers = {r["name"]: r for r in config["receivers"]}
    assert receivers["page"]["pagerduty_configs"][0]["routing_key"].startswith("dummy")
    assert receivers["ticket"]["slack_configs"][0]["channel"] == "#vigil-oncall"
    for name in ("page", "ticket"):
        assert receivers[name]["email_configs"][0]["to"] == "oncall@example.invalid"
        assert receivers[name]["webhook_configs"], "the local record is kept even then"
    heartbeat_urls = [w["url"] for w in receivers["heartbeat"]["webhook_configs"]]
    assert ALL_CONFIGURED["alertmanager_heartbeat_url"] in heartbeat_urls


def test_grouping_and_short_group_wait_for_pages(tmp_path):
    route = yaml.safe_load(am_render.render(tmp_path).read_text())["route"]
    assert route["group_by"] == ["alertname", "service"]
    page = next(r for r in route["routes"] if r["matchers"] == ['severity="page"'])
    assert page["group_wait"] == "10s" and route["group_wait"] == "30s"
    # A live page group notifies every 15 s (an alert joining it, the resolved notice): ADR 0061.
    assert page["group_interval"] == "15s" and route["group_interval"] == "5m"


def test_every_severity_reaches_every_configured_receiver_that_takes_it(tmp_path):
    """PagerDuty takes pages only (it wakes a person); Slack takes all; email pages and tickets."""
    config = yaml.safe_load(am_render.render(tmp_path, ALL_CONFIGURED).read_text())
    receivers = {r["name"]: set(r) - {"name"} for r in config["receivers"]}
    assert receivers["page"] == {"webhook_configs", "pagerduty_configs", "slack_configs",
                                 "email_configs"}
    assert receivers["ticket"] == {"webhook_configs", "slack_configs", "email_configs"}
    assert receivers["info"] == {"webhook_configs", "slack_configs"}


@needs_amtool
@pytest.mark.parametrize("labels, receiver", [
    (["severity=page", "service=vigil-api", "alertname=ApiHighErrorRatio"], "page"),
    (["severity=ticket", "service=host", "alertname=NodeHighCpu"], "ticket"),
    (["severity=info", "service=vigil-api", "alertname=ApiFaultSwitchActive"], "info"),
    (["severity=info", "service=monitoring", "alertname=Watchdog"], "heartbeat"),
    (["service=unknown", "alertname=SomethingNew"], "local"),
])
def test_amtool_routes_each_severity_to_its_receiver(rendered, labels, receiver):
    done = subprocess.run(
        [AMTOOL, "config", "routes", "test", f"--config.file={rendered}",
         f"--verify.receivers={receiver}", *labels],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_severity_has_a_route(tmp_path):
    import rule_files as rf
    route = yaml.safe_load(am_render.render(tmp_path).read_text())["route"]
    routed = {m for r in route["routes"] for m in r["matchers"]}
    for rule in rf.alerting_rules() + rf.loki_rules():
        assert f'severity="{rule["labels"]["severity"]}"' in routed


def test_unknown_variable_is_refused(tmp_path):
    with pytest.raises(ValueError, match="alertmanager_slack_url"):
        am_render.render(tmp_path, {"alertmanager_slack_url": "x"})


def test_no_secret_is_committed_in_the_alerting_files():
    """Only variables reach the template: no key, webhook or password literal in the repo."""
    for path in AM_DIR.rglob("*"):
        if path.is_file() and path.suffix in {".j2", ".yml", ".yaml", ".tmpl"}:
            text = path.read_text()
            assert "hooks.slack.com/services/" not in text
            assert "routing_key: \"" not in text and "auth_password: \"" not in text
