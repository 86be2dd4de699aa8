"""CI's wiring: every install goes through constraints.txt, and `make test` runs the tiers
whose code runs on the appliance's Python 3.13 again there, with a runner that needs nothing
but the standard library, debootstrap and systemd-nspawn (it builds its own Debian 13 root
filesystem; no other harness of the repo)."""
import ast
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / ".ci" / "py313.py"


def make_dry_run(*args):
    done = subprocess.run(["make", "--no-print-directory", "-n", "-C", str(ROOT), *args],
                          capture_output=True, text=True, check=True)
    return done.stdout


def test_ci_installs_with_make_setup_and_runs_make_test():
    script = (ROOT / ".ci" / "run").read_text()
    assert "make setup\n" in script and "make test\n" in script


def test_make_setup_installs_every_package_through_the_constraints_file():
    # -B: print the install recipe even when .venv is up to date.
    recipe = make_dry_run("-B", "setup")
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert installs and all(f"PIP_CONSTRAINT={ROOT}/constraints.txt" in line
                            for line in installs), installs


def test_make_test_runs_the_python_313_tier_after_the_host_suite():
    recipe = make_dry_run("lane-host")
    assert recipe.index("-m pytest -m 'not appliance'") < recipe.index("python3 .ci/py313.py")
    assert "python3 .ci/py313.py" in make_dry_run("test-py313")
    assert "python3 .ci/py313.py" not in make_dry_run("lane-host", "TEST_PY313=no")
    assert "python3 .ci/py313.py --prepare" in make_dry_run("py313-prepare")


def _lanes(*args):
    [line] = [line for line in make_dry_run("test", *args).splitlines() if " -j3 " in line]
    return set(re.findall(r"\blane-\w+", line))


def test_make_test_runs_its_three_lanes_side_by_side():
    # docs/adr/0071: the host's tiers, the single VM and the cluster at once, make -k so that
    # one lane's failure does not stop the others; each machine lane can be left out.
    assert _lanes() == {"lane-host", "lane-appliance", "lane-cluster"}
    assert " -k " in make_dry_run("test")
    assert _lanes("TEST_CLUSTER=no") == {"lane-host", "lane-appliance"}
    assert _lanes("TEST_APPLIANCE=no") == {"lane-host"}
    assert "-m 'appliance and not cluster'" in make_dry_run("test-appliance")
    assert "-m cluster" in make_dry_run("test-cluster")


def _collected(marker):
    """Ids of the tests a marker expression selects (parameters cut: some carry random ids)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "-m", marker], cwd=ROOT,
                          capture_output=True, text=True)
    return [line.split("[")[0] for line in done.stdout.splitlines() if "::" in line]


def test_every_test_runs_in_exactly_one_lane():
    host, single = _collected("not appliance"), _collected("appliance and not cluster")
    cluster = _collected("cluster")
    assert host and single and cluster
    assert not (set(host) & set(single) or set(host) & set(cluster) or set(single) & set(cluster))
    assert len(host) + len(single) + len(cluster) == len(_collected("appliance or not appliance"))
    assert all("test_cluster.py" in test for test in cluster), cluster


def test_the_313_runner_runs_the_tests_it_is_given_instead_of_its_tiers():
    runner = _runner()
    assert runner.selection([]) == list(runner.TIERS)
    assert runner.selection(["-x", "-k", "metrics"]) == list(runner.TIERS)
    assert runner.selection(["tests/test_ci.py"]) == []
    one_test = "tests/test_ci.py::test_ci_installs_with_make_setup_and_runs_make_test"
    assert runner.selection(["-x", one_test]) == []


def test_the_313_runner_uses_the_standard_library_only():
    imported = set()
    for node in ast.walk(ast.parse(RUNNER.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported and imported <= sys.stdlib_module_names, imported - sys.stdlib_module_names
    # It builds its own root filesystem: no file of the retired nspawn harness is read.
    assert not re.search(r"(?<![\w-])appliance/|[\"']appliance[\"']", RUNNER.read_text())


def _runner():
    spec = importlib.util.spec_from_file_location("py313", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_313_root_filesystem_is_rebuilt_when_its_recipe_changes(monkeypatch):
    runner = _runner()
    before = runner.recipe_digest()
    assert runner.recipe_digest() == before
    monkeypatch.setattr(runner, "PACKAGES", (*runner.PACKAGES, "wrk"))
    assert runner.recipe_digest() != before


def test_the_313_tier_runs_the_code_the_appliances_python_runs():
    # docs/adr/0019: the API and its telemetry, Locust, the alert receiver the alertmanager
    # role installs, and the pins run on Debian 13's Python; the monitoring tier's files and
    # the appliance tier are not run twice.
    tiers = _runner().TIERS
    assert set(tiers) == {"tests/test_constraints.py", "tests/test_ci.py", "tests/api",
                          "tests/telemetry", "tests/loadtest",
                          "tests/monitoring/test_alert_log_receiver.py"}
    assert all((ROOT / tier).exists() for tier in tiers)
    role = (ROOT / "appliance/roles/alertmanager/tasks/install.yml").read_text()
    assert "alert_log_receiver.py" in role
