"""Read Vigil's monitoring files for tests: rules, promtool tests, runbooks, PromQL metric names."""
from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "alerts"
RULES_DIR = ALERTS / "rules"
TESTS_DIR = ALERTS / "tests"
# The long-term Prometheus's recording rules (the 30-day budget), generated from alerts/slo.yml.
LONGTERM_RULES_DIR = ALERTS / "longterm" / "rules"
RUNBOOKS_DIR = ALERTS / "runbooks"
LOKI_RULES_DIR = ALERTS / "loki"
DASHBOARDS = ROOT / "dashboards"
INVENTORY = DASHBOARDS / "metrics-inventory.yml"

SEVERITIES = {"page", "ticket", "info"}
REQUIRED_ANNOTATIONS = {"summary", "description", "runbook_url"}
CAMEL_CASE = re.compile(r"^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)+$|^Watchdog$")
# Series Prometheus makes up itself rather than scraping.
BUILTIN_METRICS = {"ALERTS", "ALERTS_FOR_STATE", "up", "scrape_duration_seconds",
                   "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
                   "scrape_series_added"}


def rule_files():
    return sorted(RULES_DIR.glob("*.yml"))


def test_files():
    return sorted(TESTS_DIR.glob("*.yml"))


def rules_in(path):
    """Every rule of one rule file, each with the group name added under ``_group``."""
    doc = yaml.safe_load(Path(path).read_text())
    out = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            out.append({**rule, "_group": group["name"], "_file": Path(path).name})
    return out


def all_rules():
    return [rule for path in rule_files() for rule in rules_in(path)]


def alerting_rules():
    return [rule for rule in all_rules() if "alert" in rule]


def loki_rules():
    return [rule for path in sorted(LOKI_RULES_DIR.glob("*.yml")) for rule in rules_in(path)]


def recorded_metrics():
    """Every series a recording rule makes, on the main or the long-term Prometheus."""
    longterm = [r for p in sorted(LONGTERM_RULES_DIR.glob("*.yml")) for r in rules_in(p)]
    return {rule["record"] for rule in all_rules() + longterm if "record" in rule}


def promtool_cases():
    """(test file name, test dict, alert_rule_test entry) for every alert assertion."""
    out = []
    for path in test_files():
        doc = yaml.safe_load(path.read_text())
        for test in doc.get("tests", []):
            for case in test.get("alert_rule_test", []):
                out.append((path.name, test, case))
    return out


def anchor(heading):
    """GitHub's anchor for a Markdown heading: lower case, spaces to dashes, no punctuation."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def runbook_anchors():
    """{"/runbooks/api.md": {"apitargetdown", ...}} for every runbook's ``##`` sections."""
    found = {}
    for path in sorted(RUNBOOKS_DIR.glob("*.md")):
        headings = re.findall(r"^##\s+(.+)$", path.read_text(), flags=re.M)
        found[f"/runbooks/{path.name}"] = {anchor(h) for h in headings}
    return found


def runbook_section(url):
    """The text of the runbook section ``url`` points at, or None when it does not exist."""
    page, _, frag = url.partition("#")
    path = RUNBOOKS_DIR / Path(page).name
    if not page.startswith("/runbooks/") or not path.exists():
        return None
    sections = re.split(r"^(?=##\s)", path.read_text(), flags=re.M)
    for section in sections:
        first = section.splitlines()[0] if section else ""
        if first.startswith("## ") and anchor(first[3:]) == frag:
            return section
    return None


def _children(node):
    for attr in ("expr", "lhs", "rhs", "param", "vector_selector", "vs"):
        child = getattr(node, attr, None)
        if child is not None and not isinstance(child, (str, int, float)):
            yield child
    yield from getattr(node, "args", None) or []


def metric_names(expr):
    """Names of every metric a PromQL expression selects (parsed, not pattern-matched)."""
    names = set()
    stack = [promql_parser.parse(expr)]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "VectorSelector":
            if node.name:
                names.add(node.name)
            else:
                for matcher in node.matchers.matchers:
                    if matcher.name == "__name__":
                        names.add(matcher.value)
        stack.extend(_children(node))
    return names


def load_inventory():
    """{exporter: set(metric names)} from dashboards/metrics-inventory.yml."""
    doc = yaml.safe_load(INVENTORY.read_text())
    return {name: set(entry["metrics"]) for name, entry in doc["exporters"].items()}


def selectors(expr):
    """(metric name, {label: (op, value)}) for every vector selector of a PromQL expression."""
    out = []
    stack = [promql_parser.parse(expr)]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "VectorSelector":
            labels = {m.name: (str(m.op).rsplit(".", 1)[-1], m.value)
                      for m in node.matchers.matchers}
            out.append((node.name or labels.get("__name__", ("", ""))[1], labels))
        stack.extend(_children(node))
    return out
