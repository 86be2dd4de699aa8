"""No module, test, benchmark or ADR reaches into another library's private attributes.

The patterns are the internals issue 12 found in use: prometheus_client's multiprocess value
and file structures, its collector's directory attribute and its metrics' private values;
peewee's pool bookkeeping; flask-smorest's and webargs' private methods; werkzeug's environ
key for the request object. docs/adr/0015 says which documented extension points replaced
them. This test file itself is the only place they may be named.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("api", "tests", "docs/adr", "bench", "gunicorn.conf.py")
SUFFIXES = (".py", ".md", ".yml", ".yaml", ".j2", ".toml", ".cfg")

PRIVATE = {
    "prometheus_client's value class switch": r"\bValueClass\b",
    "prometheus_client's mmap value": r"\bMmapedValue\b",
    "prometheus_client's mmap file internals": r"[.`]_(?:file|positions|m|key|used|capacity)\b",
    "prometheus_client's mmap helpers": r"\b_(?:INITIAL_MMAP_SIZE|pack_\w+|unpack_\w+)\b",
    "prometheus_client's collector directory": r"[.`]_path\b",
    "prometheus_client's metric values": r"[.`]_(?:value|sum|buckets|upper_bounds|metrics)\b",
    "peewee's pool bookkeeping": r"[.`]_(?:in_use|connections|max_connections)\b",
    "flask-smorest's private methods": r"\b_register_(?:error_handlers|responses)\b",
    "webargs' private methods": r"\b_(?:raw_load_json|handle_invalid_json_error)\b",
    "werkzeug's request environ key": r"werkzeug\.request\b",
}
_PATTERN = re.compile("|".join(f"(?P<p{i}>{p})" for i, p in enumerate(PRIVATE.values())))
_NAMES = list(PRIVATE)


def findings(text):
    """[(line number, what, line)] of every private-attribute use in ``text``."""
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in _PATTERN.finditer(line):
            group = next(name for name, value in match.groupdict().items() if value)
            out.append((number, _NAMES[int(group[1:])], line.strip()))
    return out


def _files():
    for entry in SCANNED:
        path = ROOT / entry
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for file in candidates:
            if (file.is_file() and file.suffix in SUFFIXES and file != Path(__file__)
                    and "__pycache__" not in file.parts):
                yield file


def test_the_tree_uses_no_private_attribute_of_a_library():
    found = [f"{file.relative_to(ROOT)}:{n}: {what}: {line}"
             for file in _files() for n, what, line in findings(file.read_text())]
    assert not found, "private attributes in use:\n" + "\n".join(found)


def test_the_scan_covers_the_tree():
    scanned = {file.relative_to(ROOT).parts[0] for file in _files()}
    assert scanned == {"api", "tests", "docs", "bench", "gunicorn.conf.py"}
    assert len(list(_files())) > 50


@pytest.mark.parametrize("line,what", [
    ('return {"in_use": len(db._in_use), "idle": len(db._connections)}',
     "peewee's pool bookkeeping"),
    ("values.ValueClass = values.MultiProcessValue()", "prometheus_client's value class switch"),
    ("mmaped = value._file; position = mmaped._positions[value._key]",
     "prometheus_client's mmap file internals"),
    ("with archive_lock(self._path, shared=True):", "prometheus_client's collector directory"),
    ("bounds = tuple(histogram._upper_bounds)", "prometheus_client's metric values"),
    ("    def _register_error_handlers(self):", "flask-smorest's private methods"),
    ("        return super()._raw_load_json(req)", "webargs' private methods"),
    ('flask_request = environ.get("werkzeug.request")', "werkzeug's request environ key"),
])
def test_the_scan_finds_each_pattern(line, what):
    assert what in {w for _, w, _ in findings(line)}


@pytest.mark.parametrize("line", [
    "self.handed_out = weakref.WeakSet()",
    "MultiProcessCollector.merge(readable, accumulate=True)",
    "value = super()._deserialize(value, attr, data, **kwargs)",  # marshmallow's documented hook
    "events.auth_event.send(current_app._get_current_object())",  # documented by Flask
])
def test_documented_names_are_not_flagged(line):
    assert findings(line) == []
