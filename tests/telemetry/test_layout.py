"""The layout issue 12 asked for, read from the source: no import cycle, the domain never
imports telemetry, settings read only in api/config.py, models only in api/models.py, no
Flask method replaced at run time."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "api"
#: Modules that may read the process environment: the settings, and the metrics directory
#: gunicorn.conf.py prepares before prometheus_client is imported (it sets the variable).
READS_ENVIRONMENT = {"api.config", "api.telemetry.metrics_directory"}
#: The app factory wires telemetry in; nothing else of the domain may import it.
MAY_IMPORT_TELEMETRY = {"api"}


def _module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources():
    return {_module_name(p): ast.parse(p.read_text(), str(p))
            for p in API.rglob("*.py") if "migrations" not in p.parts}


def _imports(module, tree):
    """Every api.* module ``module`` imports, at any depth (function-level imports too)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("api")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("api"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _graph():
    sources = _sources()
    return {name: {m for m in _imports(name, tree) if m in sources and m != name}
            for name, tree in sources.items()}


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_cycle_among_api_modules():
    # Packages import their modules' names too, so a package's __init__ is left out as a
    # target: importing api.telemetry.context runs api/telemetry/__init__.py, which imports
    # nothing at module level.
    graph = _graph()
    graph = {name: {m for m in deps if m not in ("api", "api.telemetry")}
             for name, deps in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_domain_never_imports_telemetry():
    offenders = {name for name, deps in _graph().items()
                 if not name.startswith("api.telemetry") and name not in MAY_IMPORT_TELEMETRY
                 and any(d.startswith("api.telemetry") for d in deps)}
    assert not offenders


def test_settings_are_read_only_in_config():
    readers = set()
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
                readers.add(name)
    assert readers <= READS_ENVIRONMENT, readers - READS_ENVIRONMENT


def test_models_live_only_in_models():
    defining = set()
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and b.id in ("Model", "BaseModel")
                    for b in node.bases):
                defining.add(name)
    assert defining == {"api.models"}


def test_no_flask_method_is_replaced_at_run_time():
    """``app.<method> = ...`` (monkeypatching); wrapping ``app.wsgi_app`` in a middleware is
    Flask's documented way to add one."""
    patched = []
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                            and target.value.id == "app" and target.attr != "wsgi_app"):
                        patched.append(f"{name}: app.{target.attr}")
    assert not patched
