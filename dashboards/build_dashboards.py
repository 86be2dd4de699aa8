"""Write Vigil's Grafana dashboards (dashboards/*.json) from their definitions in vigil_dashboards/.

Usage: python dashboards/build_dashboards.py [--out-dir dashboards]
The JSON files are committed (Grafana provisions them as files); a test rebuilds them into a
temporary directory and fails when they differ (`make dashboards` rewrites them).
"""
import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from vigil_dashboards import DASHBOARDS, render  # noqa: E402 (after the path it lives on)


def build(out_dir):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in DASHBOARDS.items():
        path = out_dir / name
        path.write_text(render(make()))
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=HERE)
    args = parser.parse_args(argv)
    for path in build(args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
