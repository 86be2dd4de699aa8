"""Loki, Alloy and Loki-ruler files, checked for structure (neither Loki nor Alloy installs here).

Grafana, Loki and Alloy cannot be installed on the build machines (their APT repository is
unreachable), so these tests do NOT run them: they parse the files and check the settings and
the references that matter. The appliance tests exercise the real services.
"""
import re
import subprocess
from pathlib import Path

import pytest
import rule_files as rf
import yaml

LOKI = yaml.safe_load((rf.DASHBOARDS / "loki" / "loki.yml").read_text())
ALLOY = (rf.DASHBOARDS / "alloy" / "config.alloy").read_text()
ALLOWED_LABELS = {"service", "level", "env", "job", "host"}


def test_loki_is_single_node_with_14_day_retention_by_the_compactor():
    assert LOKI["auth_enabled"] is False
    assert LOKI["common"]["replication_factor"] == 1
    assert LOKI["common"]["ring"]["kvstore"]["store"] == "inmemory"
    assert LOKI["limits_config"]["retention_period"] == "336h"
    compactor = LOKI["compactor"]
    assert compactor["retention_enabled"] is True and compactor["delete_request_store"]
    schema = LOKI["schema_config"]["configs"][-1]
    assert (schema["store"], schema["schema"]) == ("tsdb", "v13")


def test_loki_ruler_reads_the_rule_files_and_notifies_the_local_alertmanager():
    ruler = LOKI["ruler"]
    assert ruler["storage"]["type"] == "local"
    assert ruler["alertmanager_url"] == "http://127.0.0.1:9093"


def _alloy_code():
    """The config without comments and string contents (so braces in strings do not count)."""
    # One pass, so "//" inside a URL string is not a comment and a quote in a comment no string.
    return re.sub(r'"(?:\\.|[^"\\])*"|//[^\n]*',
                  lambda m: '""' if m.group(0).startswith('"') else "", ALLOY)


def test_alloy_config_is_balanced():
    code = _alloy_code()
    for open_, close in ("{}", "[]", "()"):
        depth = 0
        for ch in code:
            depth += (ch == open_) - (ch == close)
            assert depth >= 0, f"unbalanced {open_}{close}"
        assert depth == 0, f"unbalanced {open_}{close}"


def _components():
    return set(re.findall(r'^([a-z_]+(?:\.[a-z_]+)+)\s+"([\w-]+)"\s*\{', ALLOY, flags=re.M))


def test_alloy_references_point_at_declared_components():
    declared = {f"{kind}.{label}" for kind, label in _components()}
    refs = re.findall(r"\b((?:loki|local)\.[a-z_.]+?\.[\w-]+)\.(?:receiver|rules|targets)\b",
                      _alloy_code())
    assert refs and all(ref in declared for ref in refs), (refs, declared)


def test_alloy_tails_journald_and_the_api_json_logs_into_local_loki():
    kinds = {kind for kind, _ in _components()}
    assert {"loki.source.journal", "loki.source.file", "loki.write"} <= kinds
    port = LOKI["server"]["http_listen_port"]
    assert f'url = "http://127.0.0.1:{port}/loki/api/v1/push"' in ALLOY
    assert ALLOY.count("stage.json") >= 2, "the API's JSON lines are parsed on both paths"


def test_alloy_keeps_labels_to_the_fixed_set():
    set_labels = set(re.findall(r'target_label\s*=\s*"(\w+)"', ALLOY))
    for block in re.findall(r"(?:stage\.labels|external_labels|labels)\s*=?\s*\{([^}]*)\}", ALLOY):
        set_labels |= set(re.findall(r"(\w+)\s*=", block)) - {"values"}
    for targets in re.findall(r"path_targets = \[\{(.*)\}\]", ALLOY):
        set_labels |= set(re.findall(r'"?(\w+)"?\s*=\s*"[^"]*",?\s*(?=[\w"]|\})', targets))
    # Fields stage.pack folds into the JSON line leave the stream labels in the same stage.
    packed = {label for block in re.findall(r"stage\.pack\s*\{\s*labels\s*=\s*\[([^\]]*)\]", ALLOY)
              for label in re.findall(r'"(\w+)"', block)}
    assert set_labels - {"__path__"} - packed <= ALLOWED_LABELS, set_labels
    keeps = re.findall(r"stage\.label_keep\s*\{\s*values\s*=\s*\[([^\]]*)\]", ALLOY)
    assert len(keeps) == ALLOY.count("loki.process ")
    for keep in keeps:
        assert set(re.findall(r'"(\w+)"', keep)) == ALLOWED_LABELS


def logql_problems(expr):
    """Cheap LogQL sanity: one stream selector of allowed labels, balanced, known stages."""
    problems = []
    selector = re.search(r"\{([^}]*)\}", expr)
    if not selector:
        return ["no stream selector"]
    for name in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector.group(1)):
        if name not in ALLOWED_LABELS:
            problems.append(f"stream label {name} is not one Alloy sets")
    for open_, close in ("{}", "()", "[]"):
        if expr.count(open_) != expr.count(close):
            problems.append(f"unbalanced {open_}{close}")
    for stage in re.findall(r"\|\s*([a-z_]+)", expr):
        if stage not in {"json", "logfmt", "line_format", "label_format", "unwrap", "drop",
                         "keep", "pattern", "regexp", "decolorize"} \
                and not re.match(r"^[a-z_]+$", stage):
            problems.append(f"unknown stage {stage}")
    return problems


@pytest.mark.parametrize("rule", rf.loki_rules(), ids=lambda r: r["alert"])
def test_loki_rules_are_sane_logql_metric_queries(rule):
    assert not logql_problems(rule["expr"])
    assert re.search(r"count_over_time\(.*\[\d+[smh]\]\)", rule["expr"])
    assert re.search(r">\s*\d+\s*$", rule["expr"]), "an alert needs a threshold"


def test_at_least_two_log_based_alerts():
    assert len(rf.loki_rules()) >= 2


def test_the_dashboard_log_query_is_sane():
    import json
    board = json.loads((rf.DASHBOARDS / "vigil-api-overview.json").read_text())
    exprs = [t["expr"] for p in board["panels"] if p["type"] == "logs" for t in p["targets"]]
    assert exprs and all(not logql_problems(e) for e in exprs)


@pytest.mark.parametrize("bad", ['{app="x"} |= "y"', '{service="x" | json', "rate(x[5m])"])
def test_logql_check_catches_mistakes(bad):
    assert logql_problems(bad)


# ---- PostgreSQL's own log file ------------------------------------------------------------------

def _block(kind, label):
    """The body of one Alloy component block (no nested braces in strings assumed)."""
    start = ALLOY.index(f'{kind} "{label}" {{')
    depth, i = 0, ALLOY.index("{", start)
    for j in range(i, len(ALLOY)):
        depth += (ALLOY[j] == "{") - (ALLOY[j] == "}")
        if depth == 0:
            return ALLOY[i + 1:j]
    raise AssertionError(f"{kind} {label} is not closed")


def _alloy_string(block, attribute):
    """An Alloy string attribute, unescaped the way Alloy reads it."""
    raw = re.search(rf'{attribute}\s*=\s*"((?:\\.|[^"\\])*)"', block).group(1)
    return raw.encode().decode("unicode_escape")


def test_alloy_tails_postgresqls_log_files_as_service_postgresql():
    match = _block("local.file_match", "postgresql")
    assert '"__path__" = "/var/log/postgresql/postgresql-*.log"' in match
    assert 'service = "postgresql"' in match
    process = _block("loki.process", "postgresql")
    assert "loki.write.local.receiver" in process and "stage.label_keep" in process


@pytest.mark.postgres
def test_alloy_reads_time_and_level_from_real_postgresql_log_lines(tmp_path):
    """A real PostgreSQL with Debian's log_line_prefix writes a session error and background
    lines; the block's firstline and regex (RE2 syntax that Python's re reads the same) must
    find each entry's start, its timestamp and its level."""
    from tests.conftest import PostgresCluster

    debian = Path("/etc/postgresql-common/createcluster.conf").read_text()
    prefix = re.search(r"^log_line_prefix\s*=\s*'(.*)'", debian, re.M)
    cluster = PostgresCluster()
    try:
        with Path(cluster.data, "postgresql.conf").open("a") as conf:
            conf.write(f"log_line_prefix = '{prefix.group(1).replace('%%', '%')}'\n")
        cluster.start()
        subprocess.run([*cluster.as_user, f"{cluster.bin}/psql", cluster.url, "-Xc",
                        "SELECT * FROM no_such_table"], capture_output=True, timeout=60)
        cluster.stop()
        lines = Path(cluster.dir, "log").read_text().splitlines()
    finally:
        cluster.destroy()
    process = _block("loki.process", "postgresql")
    firstline = re.compile(_alloy_string(process, "firstline"))
    regex = re.compile(_alloy_string(process, "expression"))
    entries = [line for line in lines if firstline.search(line)]
    assert entries and len(entries) >= len(lines) // 2, lines
    found = [regex.match(line) for line in entries]
    assert all(found), [e for e, m in zip(entries, found, strict=True) if not m]
    levels = {m.group("level") for m in found}
    assert {"LOG", "ERROR", "STATEMENT"} <= levels, levels
    error = next(m for m in found if m.group("level") == "ERROR")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3} \w+",
                        error.group("timestamp"))


def test_alloy_ships_nginx_access_and_error_logs_as_json():
    """The front door's logs: JSON access lines (with the API's request_id), error lines parsed
    and packed into JSON, from the files the nginx role writes."""
    nginx_role = (rf.ROOT / "appliance" / "roles" / "nginx" / "defaults" / "main.yml").read_text()
    for path in re.findall(r"^nginx_(?:access|error)_log: (\S+)$", nginx_role, flags=re.M):
        assert f'"__path__" = "{path}"' in ALLOY, path
    block = ALLOY[ALLOY.index('loki.process "nginx"'):]
    assert 'selector = "{stream=\\"access\\"}"' in block and "stage.json" in block
    assert "stage.regex" in block and "stage.pack" in block
    site = (rf.ROOT / "appliance" / "roles" / "nginx" / "templates" / "vigil.conf.j2").read_text()
    assert '"request_id":"$vigil_request_id"' in site
    assert "proxy_set_header X-Request-ID $vigil_request_id;" in site
