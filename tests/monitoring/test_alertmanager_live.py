"""A real Alertmanager with the rendered config: inhibition, routing and human messages."""
import importlib.util
from datetime import UTC, datetime, timedelta

import pytest
import requests
from rule_files import ALERTS
from stack_processes import (
    ALERTMANAGER,
    notifications,
    run_alertmanager,
    run_receiver,
    wait_for,
)

pytestmark = [
    pytest.mark.stack,
    pytest.mark.skipif(ALERTMANAGER is None,
                       reason="Alertmanager missing: apt-get install prometheus-alertmanager"),
]

_spec = importlib.util.spec_from_file_location("am_render", ALERTS / "alertmanager" / "render.py")
am_render = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(am_render)


def _alert(name, severity, service, **labels):
    now = datetime.now(UTC)
    return {
        "labels": {"alertname": name, "severity": severity, "service": service, **labels},
        "annotations": {
            "summary": f"{name} summary", "description": f"{name} is bad: 42% of requests",
            "runbook_url": f"/runbooks/node.md#{name.lower()}",
            "dashboard": "/d/vigil-api-overview/vigil-api-service-overview",
        },
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("am-live")
    with run_receiver(tmp) as (receiver, log):
        config = am_render.render(tmp / "config", {
            "alertmanager_local_receiver_url": f"{receiver}/alerts",
            "alertmanager_pagerduty_routing_key": "dummy-routing-key",
            "alertmanager_pagerduty_url": f"{receiver}/pagerduty",
            "alertmanager_slack_api_url": f"{receiver}/slack",
            "alertmanager_heartbeat_url": f"{receiver}/heartbeat",
            "alertmanager_group_wait": "1s", "alertmanager_page_group_wait": "1s",
            "alertmanager_group_interval": "1s", "alertmanager_heartbeat_interval": "1s",
            "alertmanager_runbook_base_url": "http://vigil.test/docs/runbooks/",
            "alertmanager_grafana_url": "http://vigil.test:3000",
        })
        with run_alertmanager(tmp, config) as url:
            alerts = [
                _alert("ApiTargetDown", "ticket", "vigil-api", instance="127.0.0.1:8000"),
                _alert("ApiHighErrorRatio", "ticket", "vigil-api"),
                _alert("ApiAllNodesDown", "page", "vigil-api", job="vigil-api"),
                _alert("ApiAvailabilityBudgetBurn", "page", "vigil-api", long_window="1h"),
                _alert("ApiAvailabilityBudgetBurn", "ticket", "vigil-api", long_window="1d"),
                _alert("NodeHighCpu", "ticket", "host", instance="vigil:9100"),
                _alert("Watchdog", "info", "monitoring"),
            ]
            response = requests.post(f"{url}/api/v2/alerts", json=alerts, timeout=5)
            assert response.status_code == 200, response.text
            yield url, log


def _state(url):
    alerts = requests.get(f"{url}/api/v2/alerts", timeout=5).json()
    return {(a["labels"]["alertname"], a["labels"]["severity"]): a["status"] for a in alerts}


def test_api_down_mutes_the_api_own_alerts_but_never_the_symptom_page(stack):
    """One incident, one page (ADR 0062): the cause ticket mutes what follows from it; the
    availability page users feel is never muted by a cause."""
    url, _ = stack
    state = wait_for(lambda: len(_state(url)) == 7 and _state(url), 10, what="7 alerts")
    assert state[("ApiHighErrorRatio", "ticket")]["state"] == "suppressed"
    assert state[("ApiHighErrorRatio", "ticket")]["inhibitedBy"]
    assert state[("ApiAvailabilityBudgetBurn", "page")]["state"] == "active"
    assert state[("ApiTargetDown", "ticket")]["state"] == "active"


def test_the_availability_page_mutes_the_all_nodes_down_page(stack):
    """Under traffic the SLO page comes first; ApiAllNodesDown, the page for an outage without
    traffic (ADR 0070), then stays muted: one incident, one page. The per-node tickets are not."""
    url, _ = stack
    state = wait_for(lambda: len(_state(url)) == 7 and _state(url), 10, what="7 alerts")
    assert state[("ApiAllNodesDown", "page")]["state"] == "suppressed"
    assert state[("ApiAllNodesDown", "page")]["inhibitedBy"]
    assert state[("ApiTargetDown", "ticket")]["state"] == "active"


def test_a_page_mutes_its_ticket_twin_only(stack):
    url, _ = stack
    state = wait_for(lambda: len(_state(url)) == 7 and _state(url), 10, what="7 alerts")
    assert state[("ApiAvailabilityBudgetBurn", "ticket")]["inhibitedBy"]
    # A ticket with no page twin (another alertname, another service) is not muted.
    assert state[("NodeHighCpu", "ticket")]["state"] == "active"


def _delivered(log):
    out = {}
    for record in notifications(log):
        payload = record["payload"]
        names = {a["labels"]["alertname"] for a in payload.get("alerts", [])}
        out.setdefault(record["path"], []).append((names, payload))
    return out


def test_only_unmuted_alerts_are_delivered_to_the_local_receiver(stack):
    _, log = stack
    wait_for(lambda: {"ApiTargetDown", "ApiAvailabilityBudgetBurn", "NodeHighCpu", "Watchdog"}
             <= set().union(*[n for n, _ in _delivered(log).get("/alerts", [])]),
             20, what="unmuted alerts at the local receiver")
    delivered = set().union(*[n for n, _ in _delivered(log)["/alerts"]])
    assert "ApiHighErrorRatio" not in delivered
    assert "ApiAvailabilityBudgetBurn" in delivered


def test_pages_reach_pagerduty_tickets_slack_and_watchdog_the_heartbeat(stack):
    _, log = stack
    wait_for(lambda: {"/pagerduty", "/slack", "/heartbeat"} <= set(_delivered(log)), 20,
             what="pagerduty, slack and heartbeat deliveries")
    pagerduty = [p for _, p in _delivered(log)["/pagerduty"]]
    assert any(p["payload"]["summary"].startswith(
        "[FIRING:1] page: ApiAvailabilityBudgetBurn on vigil-api") for p in pagerduty)
    assert all(p["routing_key"] == "dummy-routing-key" for p in pagerduty)


def test_slack_message_says_what_where_how_bad_and_links_runbook_and_dashboard(stack):
    _, log = stack
    def node_message():
        # Several tickets reach Slack (ApiTargetDown is one too): pick NodeHighCpu's.
        for _, body in _delivered(log).get("/slack", []):
            for attachment in body["attachments"]:
                if "NodeHighCpu" in attachment["title"]:
                    return attachment
        return None

    wait_for(node_message, 20, what="NodeHighCpu's slack delivery")
    message = node_message()
    assert message["title"] == "[FIRING:1] ticket: NodeHighCpu on host"
    text = message["text"]
    assert "What: NodeHighCpu summary" in text
    assert "Where: service host, instance vigil:9100" in text
    assert "How bad: ticket. NodeHighCpu is bad: 42% of requests" in text
    assert "Runbook: http://vigil.test/docs/runbooks/node.md#nodehighcpu" in text
    assert "Dashboard: http://vigil.test:3000/d/vigil-api-overview/" in text
