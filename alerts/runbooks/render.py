#!/usr/bin/env python3
"""Render the runbooks (*.md) to HTML pages whose section anchors are the alerts' runbook_url.

Usage: render.py SOURCE_DIR OUTPUT_DIR
Each FILE.md becomes FILE.html; README.md also becomes index.html. A `## AlertName` heading
gets the id `alertname`, the fragment of `/runbooks/FILE.md#alertname` (nginx serves FILE.html
for FILE.md). Needs Python-Markdown (Debian: python3-markdown). Prints `changed: FILE` for
each page it rewrote, so Ansible can report changes honestly; exits 2 on bad input.
"""
import html
import re
import sys
from pathlib import Path

import markdown

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Vigil runbooks</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 50rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; }}
code, pre {{ background: #f3f3f3; }}
pre {{ padding: .5rem; overflow-x: auto; }}
h2 {{ border-top: 1px solid #ddd; padding-top: 1rem; }}
</style>
</head>
<body>
<p><a href="index.html">Runbooks</a> · <a href="/alerts/">Alerts</a></p>
{body}
</body>
</html>
"""


def anchor(text, separator="-"):
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", separator)


def render_page(text):
    """One runbook's Markdown as a whole HTML page."""
    body = markdown.markdown(text, extensions=["toc", "fenced_code", "tables"],
                             extension_configs={"toc": {"slugify": anchor}})
    first = re.search(r"^#\s+(.+)$", text, flags=re.M)
    title = html.escape(first.group(1).strip() if first else "Runbook")
    # Links between runbooks point at the .md files, which nginx serves as .html.
    return PAGE.format(title=title, body=body)


def render(source, output):
    """Render every *.md of ``source`` into ``output``; return the pages rewritten."""
    source, output = Path(source), Path(output)
    pages = sorted(source.glob("*.md"))
    if not pages:
        raise ValueError(f"no *.md runbooks in {source}")
    output.mkdir(parents=True, exist_ok=True)
    changed = []
    for page in pages:
        text = render_page(page.read_text(encoding="utf-8"))
        names = [page.stem + ".html"] + (["index.html"] if page.name == "README.md" else [])
        for name in names:
            target = output / name
            if not target.exists() or target.read_text(encoding="utf-8") != text:
                target.write_text(text, encoding="utf-8")
                changed.append(name)
    return changed


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(__doc__.split("\n\n")[1].splitlines()[0], file=sys.stderr)
        return 2
    try:
        for name in render(*args):
            print(f"changed: {name}")
    except (OSError, ValueError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
