"""constraints.txt pins every Python package Vigil installs, at the version installed here.

CI, `make setup` and the appliance's roles install with it as pip's constraints, so the
environment running these tests (Python 3.11 and the 3.13 tier alike) must hold exactly the
pinned versions, and nothing unpinned. tests/appliance/test_pinned_versions.py checks the
appliance's own virtualenv against the same file.
"""
import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: The project itself is installed from the checkout, not from a pin.
NOT_PINNED = {"vigil"}


def pinned(path=ROOT / "constraints.txt"):
    """{canonical name: version} of every ``name==version`` line of a constraints file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = version.strip()
    return pins


def test_every_installed_package_is_pinned_at_its_installed_version():
    pins = pinned()
    installed = {canonicalize_name(d.metadata["Name"]): d.version
                 for d in importlib.metadata.distributions()}
    unpinned = sorted(set(installed) - set(pins) - NOT_PINNED)
    assert not unpinned, (f"installed but not in constraints.txt: {unpinned} (a new dependency: "
                          "make constraints; a virtualenv left from older pins: rebuild it)")
    wrong = {name: (version, pins[name]) for name, version in installed.items()
             if name in pins and pins[name] != version}
    assert not wrong, f"installed version differs from the pin (make setup again): {wrong}"


def test_the_pins_satisfy_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project["optional-dependencies"].values() for r in extra)]
    pins = pinned()
    for text in requirements:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is required but not pinned"
        assert requirement.specifier.contains(pins[name], prereleases=True), (text, pins[name])


def test_libraries_used_beyond_their_documented_api_are_pinned_exactly_in_pyproject():
    """docs/adr/0015: prometheus-client (the multiprocess file format the archive relies on)
    and gunicorn (the sync worker's handle_error) are pinned in pyproject.toml itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    exact = {canonicalize_name(Requirement(r).name): str(Requirement(r).specifier)
             for r in project["dependencies"]}
    pins = pinned()
    for name in ("prometheus-client", "gunicorn"):
        assert exact[name] == f"=={pins[name]}", (name, exact[name])
