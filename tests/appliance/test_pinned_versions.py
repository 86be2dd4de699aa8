"""The appliance's API virtualenv holds exactly the versions of the repo's constraints.txt."""
import json

import pytest
import yaml
from appliance_env import REPO
from packaging.utils import canonicalize_name

from tests.test_constraints import pinned

pytestmark = pytest.mark.appliance

#: Comes with Debian's python3-venv when the virtualenv is made; never imported by the API.
NOT_PINNED = {"pip", "vigil"}


def test_the_api_virtualenv_holds_exactly_the_pinned_versions(appliance):
    defaults = yaml.safe_load((REPO / "appliance/roles/api/defaults/main.yml").read_text())
    venv = f"{defaults['api_install_dir']}/venv"
    done = appliance.run(f"{venv}/bin/python", "-m", "pip", "list", "--format=json",
                         "--disable-pip-version-check")
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(done.stdout)}
    pins = pinned()
    # The runtime set, not an empty or half-made virtualenv.
    assert {"flask", "gunicorn", "prometheus-client", "prometheus-flask-exporter",
            "python-json-logger", "peewee", "psycopg2-binary"} <= set(installed)
    unpinned = sorted(set(installed) - set(pins) - NOT_PINNED)
    assert not unpinned, f"installed on the appliance but not pinned: {unpinned}"
    wrong = {name: (version, pins[name]) for name, version in installed.items()
             if name in pins and name not in NOT_PINNED and pins[name] != version}
    assert not wrong, f"appliance version differs from constraints.txt: {wrong}"
    # And the service runs that interpreter: the unit starts gunicorn from this virtualenv.
    unit = appliance.run("systemctl", "cat", "vigil-api").stdout
    assert f"{venv}/bin/gunicorn" in unit
