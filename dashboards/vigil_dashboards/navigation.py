"""Links to the next place to look: logs for the same interval and instances, runbooks, and the
other Vigil dashboards, with the time range and the instance selection carried along.

Log links open Grafana's Explore on Loki. Alloy labels every line with `host`, the machine's
hostname, which is the inventory name Prometheus uses as `instance` (the Vagrantfile sets the
hostname to the machine name), so `host=~"(${instance:pipe})"` selects the same machines.
"""
import json
from urllib.parse import quote

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

UIDS = {"api": "vigil-api-overview", "host": "vigil-host", "postgresql": "vigil-postgresql",
        "monitoring": "vigil-monitoring"}
TITLES = {"api": "API service overview", "host": "Host", "postgresql": "PostgreSQL",
          "monitoring": "Monitoring stack"}
# Where the appliance's nginx serves the runbooks (alerts/runbooks/, rendered; /runbooks/FILE.md
# answers with FILE.html): the single VM's private address from the Vagrantfile, which the host
# reaches with every provider (VirtualBox's host-only network, libvirt, lxc's bridge). For the
# cluster the API host is app1 (192.168.56.22): change it here and run `make dashboards`.
RUNBOOKS = "https://192.168.56.10/runbooks"
# Grafana's Alerting pages for the provisioned Alertmanager data source (its name).
SILENCES = "/alerting/silences?alertmanager=Alertmanager"
HOSTS = "(${instance:pipe})"


def explore_url(expr):
    """Grafana 12's Explore URL for a LogQL query over the dashboard's current time range."""
    panes = {"vigil": {
        "datasource": "${loki}",
        "queries": [{"refId": "A", "expr": expr, "queryType": "range", "editorMode": "code",
                     "datasource": {"type": "loki", "uid": "${loki}"}}],
        "range": {"from": "${__from}", "to": "${__to}"},
    }}
    # ${...} stays readable: Grafana replaces the variables before the browser follows the link.
    return "/explore?schemaVersion=1&orgId=1&panes=" + quote(json.dumps(panes), safe="${}:,")


def logs_link(title, expr):
    return dash.DashboardLink(title).type(model.DashboardLinkType.LINK).url(
        explore_url(expr)).icon("doc").target_blank(True)


def runbook_link(page, anchor="", title=None):
    url = f"{RUNBOOKS}/{page}" + (f"#{anchor}" if anchor else "")
    return dash.DashboardLink(title or f"Runbook: {page}").type(
        model.DashboardLinkType.LINK).url(url).icon("info").target_blank(True)


def dashboard_url(board, keep_instances=False):
    """A dashboard's URL with the current time range, and the selected instances if asked
    (`queryparam` gives one var-instance= per selected value)."""
    url = f"/d/{UIDS[board]}?${{__url_time_range}}"
    return url + ("&${instance:queryparam}" if keep_instances else "")


def _related_url(board):
    """Every dashboard keeps the time range; the host dashboard also keeps the instances (every
    machine is a host, but an API node is not a database server)."""
    return dashboard_url(board, keep_instances=board == "host")


def dashboard_link(board):
    """Another Vigil dashboard, keeping the time range (and the hosts, for the host dashboard)."""
    return (dash.DashboardLink(TITLES[board]).type(model.DashboardLinkType.LINK)
            .url(_related_url(board)).icon("dashboard"))


def silences_link():
    return dash.DashboardLink("Silences in Alertmanager").type(model.DashboardLinkType.LINK).url(
        SILENCES).icon("bell").target_blank(True)


def top_links(*, logs=None, runbook=None, related=()):
    """The links across the top of a dashboard: every Vigil dashboard, then where to look next."""
    links = [dash.DashboardLink("Vigil dashboards").type(model.DashboardLinkType.DASHBOARDS)
             .tags(["vigil"]).as_dropdown(True).keep_time(True).include_vars(False)]
    if logs:
        links.append(logs_link(*logs))
    if runbook:
        links.append(runbook_link(runbook))
    links += [dashboard_link(board) for board in related]
    return links


def next_steps(*, logs, runbooks, related):
    """Markdown for the first row's "where to look next" panel."""
    lines = [f"- [{title}]({explore_url(expr)})" for title, expr in logs]
    lines += [f"- [Runbook: {title}]({RUNBOOKS}/{page})" for title, page in runbooks]
    lines += [f"- [{TITLES[board]} dashboard]({_related_url(board)})" for board in related]
    return "\n".join(lines) + "\n"
