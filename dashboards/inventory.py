"""Refresh dashboards/metrics-inventory.yml from live scrapes of the appliance's exporters.

Usage: python dashboards/inventory.py NAME=URL [NAME=URL ...]
e.g.   python dashboards/inventory.py node=http://127.0.0.1:9100/metrics

Each named exporter's metric list is replaced by what the URL serves now (histogram and summary
series expanded to _bucket/_sum/_count); exporters not named keep their lists. The API is not
in the inventory: tests read its metrics from a live scrape of the real gunicorn API instead.
"""
import re
import sys
import urllib.request
from pathlib import Path

import yaml

INVENTORY = Path(__file__).resolve().parent / "metrics-inventory.yml"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{|\s)")
_TYPE = re.compile(r"^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)")


def metric_names(exposition):
    """Every series name a Prometheus text exposition contains or implies."""
    names = set()
    for line in exposition.splitlines():
        typed = _TYPE.match(line)
        if typed:
            name, kind = typed.groups()
            names.add(name)
            if kind == "histogram":
                names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
            elif kind == "summary":
                names.update({f"{name}_sum", f"{name}_count"})
            continue
        sample = _SAMPLE.match(line)
        if sample and not line.startswith("#"):
            names.add(sample.group(1))
    return names


def scrape(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (operator's URL)
        return response.read().decode("utf-8", errors="replace")


def main(argv):
    if not argv or any("=" not in arg for arg in argv):
        print(__doc__, file=sys.stderr)
        return 2
    text = INVENTORY.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    doc = yaml.safe_load(text)
    for arg in argv:
        name, url = arg.split("=", 1)
        entry = doc["exporters"].setdefault(name, {})
        entry["metrics"] = sorted(metric_names(scrape(url)))
        print(f"{name}: {len(entry['metrics'])} metrics from {url}")
    INVENTORY.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
