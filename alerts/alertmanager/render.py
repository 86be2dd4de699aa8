"""Render Alertmanager's config and notification templates outside Ansible (tests, drills, CI).

Usage: python alerts/alertmanager/render.py OUT_DIR [--vars FILE.yml] [-e NAME=VALUE ...]
Writes OUT_DIR/alertmanager.yml and OUT_DIR/templates/*.tmpl. Variables are the same
``alertmanager_*`` ones the appliance's inventory sets; unknown names are refused so a typo
cannot silently fall back to a default. ``alertmanager_templates_dir`` defaults to
OUT_DIR/templates so the rendered file is self-contained for ``amtool check-config``.
"""
import argparse
import sys
from pathlib import Path

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
VARIABLES = {
    "alertmanager_local_receiver_url", "alertmanager_pagerduty_routing_key",
    "alertmanager_pagerduty_url", "alertmanager_slack_api_url", "alertmanager_slack_channel",
    "alertmanager_email_to", "alertmanager_email_from", "alertmanager_smtp_smarthost",
    "alertmanager_smtp_auth_username", "alertmanager_smtp_auth_password",
    "alertmanager_smtp_require_tls", "alertmanager_heartbeat_url",
    "alertmanager_heartbeat_interval", "alertmanager_group_wait",
    "alertmanager_page_group_wait", "alertmanager_page_group_interval",
    "alertmanager_group_interval",
    "alertmanager_repeat_interval", "alertmanager_resolve_timeout",
    "alertmanager_templates_dir", "alertmanager_web_external_url",
    "alertmanager_runbook_base_url", "alertmanager_grafana_url",
}


def render(out_dir, variables=None):
    """Render into ``out_dir``; return the path of alertmanager.yml."""
    variables = dict(variables or {})
    unknown = set(variables) - VARIABLES
    if unknown:
        raise ValueError(f"unknown variable(s): {', '.join(sorted(unknown))}")
    out_dir = Path(out_dir)
    (out_dir / "templates").mkdir(parents=True, exist_ok=True)
    variables.setdefault("alertmanager_templates_dir", str(out_dir / "templates"))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    for template in sorted((HERE / "templates").glob("*.tmpl.j2")):
        target = out_dir / "templates" / template.name.removesuffix(".j2")
        target.write_text(env.get_template(f"templates/{template.name}").render(variables))
    config = out_dir / "alertmanager.yml"
    config.write_text(env.get_template("alertmanager.yml.j2").render(variables))
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--vars", help="YAML file of alertmanager_* variables")
    parser.add_argument("-e", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    variables = yaml.safe_load(Path(args.vars).read_text()) if args.vars else {}
    for item in args.e:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-e wants NAME=VALUE, got {item!r}")
        variables[name] = value
    try:
        print(render(args.out_dir, variables))
    except (ValueError, jinja2.TemplateError) as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
