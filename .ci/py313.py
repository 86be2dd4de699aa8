#!/usr/bin/env python3
"""Run the test tiers on Python 3.13, Debian 13's Python (the appliance's), as root.

Debian 12 has no Python 3.13 package and python.org's builds are out of reach here, so the
tests run in a Debian 13 root filesystem of their own (debootstrap minbase, then PostgreSQL,
nginx, git and make from Debian 13) under
systemd-nspawn: no boot, one command in a container that shares the host's network, with
this checkout bind-mounted at the same path. The root filesystem (in VIGIL_PY313_CACHE,
/var/cache/vigil-appliance by default) and the virtualenv (.venv-py313, every package pinned
by constraints.txt) are built on the first run and reused while their inputs are unchanged.
Each run gets its own /tmp.

    python3 .ci/py313.py [pytest arguments]         (make test-py313)
    python3 .ci/py313.py --prepare                  build the two, run no test

`make test` runs ``--prepare`` while the suite runs on the host's Python, so the 3.13 tier
starts on a warm cache (docs/adr/0019). Test paths or ids among the pytest arguments
replace the tier list; options alone (``-k``, ``-x``) apply to every tier.

The tiers that run are those whose code runs on the appliance's Python 3.13 (docs/adr/0019):
the API and its telemetry, the load tests (Locust runs there too), the alert receiver the
alertmanager role installs, and the pins. The monitoring tier checks rule, routing and
dashboard files with Prometheus' tools, node and Python 3.11's build scripts, and the appliance
tier runs on the appliance itself: neither is run twice. Standard library only.
"""
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VIGIL_PY313_CACHE", "/var/cache/vigil-appliance"))
VENV = REPO / ".venv-py313"
SUITE = "trixie"
MIRROR = os.environ.get("VIGIL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: debootstrap's part: Python with venv, and the CA bundle pip and apt need.
BASE = "python3,python3-venv,ca-certificates"
#: Debian 13 packages the tiers need: PostgreSQL's server binaries (a private cluster without
#: VIGIL_TEST_POSTGRES_URL, and tests/api/test_test_cluster.py always), nginx for the load
#: tests behind the nginx role's site, git for the build-info test, make for `make load`'s.
PACKAGES = ("postgresql", "nginx", "git", "make")
#: What runs on the appliance's Python 3.13: the API and its telemetry, Locust, the alert
#: log receiver (alertmanager role), and the pins every install uses.
TIERS = ("tests/test_constraints.py", "tests/test_ci.py", "tests/api", "tests/telemetry",
         "tests/loadtest", "tests/monitoring/test_alert_log_receiver.py")
#: Settings passed into the container when the host has them.
PASSED_ENV = ("VIGIL_TEST_POSTGRES_URL", "CI")
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")


def log(message):
    print(f"[py313] {message}", file=sys.stderr, flush=True)


def digest(*parts):
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else str(part).encode())
    return h.hexdigest()[:16]


def nspawn(root, *argv, binds=(), env=None, check=True):
    """Run ``argv`` in a container on ``root`` (an init as PID 1 reaps orphans)."""
    # --keep-unit and --register=no: the host need not run systemd (FACTS.md).
    command = ["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--as-pid2",
               "-D", str(root),
               f"--machine=vigil-py313-{os.getpid()}", "--tmpfs=/tmp:mode=1777"]
    command += [f"--bind={b}" for b in binds]
    for name, value in (env or {}).items():
        command.append(f"--setenv={name}={value}")
    return subprocess.run([*command, *argv], check=check)


def extra_certificates():
    """The host's own CA certificates (a TLS-intercepting egress proxy on some hosts)."""
    return sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []


def recipe_digest():
    """A hash of everything that goes into the root filesystem; a new one means a new one."""
    certs = [crt.name.encode() + crt.read_bytes() for crt in extra_certificates()]
    return digest(SUITE, MIRROR, BASE, *PACKAGES, *certs)


def build_rootfs(build):
    """debootstrap Debian 13 into ``build``, trust the host's CAs, add PACKAGES."""
    shutil.rmtree(build, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={BASE}", SUITE, str(build),
                    MIRROR], check=True, stdout=subprocess.DEVNULL, timeout=1800)
    shutil.copy("/etc/resolv.conf", build / "etc/resolv.conf")
    for crt in extra_certificates():
        shutil.copy(crt, build / "usr/local/share/ca-certificates" / crt.name)
    (build / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    install = ("update-ca-certificates >/dev/null && apt-get update -q >/dev/null && "
               "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
               f"--no-install-recommends {' '.join(PACKAGES)} >/dev/null && apt-get clean")
    nspawn(build, "sh", "-c", install)


@contextlib.contextmanager
def rootfs():
    """The Debian 13 root filesystem of the current recipe, built on first use, held (a
    shared lock) while the caller uses it. Each recipe has its own directory, so a checkout
    with another recipe never removes one in use; unused ones are removed after a build."""
    CACHE.mkdir(parents=True, exist_ok=True)
    want = recipe_digest()
    root = CACHE / f"py313-{want}"
    with open(CACHE / "py313.build.lock", "w") as build_lock:
        fcntl.flock(build_lock, fcntl.LOCK_EX)  # one build at a time
        in_use = open(CACHE / f"py313-{want}.lock", "w")
        fcntl.flock(in_use, fcntl.LOCK_SH)
        if not (root / ".vigil-py313").exists():
            log(f"building {root}: debootstrap {SUITE}, then {', '.join(PACKAGES)} "
                "(first run only, about two minutes)")
            started = time.monotonic()
            build = Path(f"{root}.build")
            build_rootfs(build)
            (build / ".vigil-py313").write_text(want)
            shutil.rmtree(root, ignore_errors=True)
            build.rename(root)
            log(f"root filesystem ready in {time.monotonic() - started:.0f} s")
            remove_unused_roots(keep=root)
    try:
        yield root
    finally:
        in_use.close()


def remove_unused_roots(keep):
    """Delete root filesystems of other recipes that no run holds (earlier package lists)."""
    for lock_path in CACHE.glob("py313-*.lock"):
        root = lock_path.with_suffix("")
        if root == keep:
            continue
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # another run is using it
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(f"{root}.build", ignore_errors=True)
            # systemd-nspawn's own image lock files, next to the directory
            for leftover in (lock_path, CACHE / f".#{root.name}.lck",
                             CACHE / f".#{root.name}.build.lck"):
                leftover.unlink(missing_ok=True)


def binds():
    """The checkout at its own path, and its git directory when it lives elsewhere (a
    worktree), so `git rev-parse` works inside as outside."""
    out = [f"{REPO}:{REPO}"]
    common = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--git-common-dir"],
                            capture_output=True, text=True, check=False).stdout.strip()
    if common:
        common = (REPO / common).resolve()
        if not common.is_relative_to(REPO):
            out.append(f"{common}:{common}")
    return out


def ensure_venv(root):
    """.venv-py313 with the project and every pinned dependency (rebuilt when they or the
    root filesystem change)."""
    want = digest(root.name, (REPO / "pyproject.toml").read_bytes(),
                  (REPO / "constraints.txt").read_bytes())
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text().strip() == want:
        return
    log(f"installing {VENV.name} (pinned by constraints.txt)")
    started = time.monotonic()
    script = (f"python3 -m venv --clear {VENV} && "
              f"{VENV}/bin/pip install --quiet --upgrade pip && "
              f"{VENV}/bin/pip install --quiet -e '{REPO}[dev,load]' && "
              f"echo {want} > {stamp}")
    nspawn(root, "sh", "-c", script, binds=binds(),
           env={"PIP_CONSTRAINT": f"{REPO}/constraints.txt",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    log(f"{VENV.name} ready in {time.monotonic() - started:.0f} s")


def selection(pytest_args):
    """TIERS, unless the arguments name tests of their own (a path, or a test id)."""
    named = any(not arg.startswith("-") and (REPO / arg.split("::")[0]).exists()
                for arg in pytest_args)
    return [] if named else list(TIERS)


def main(pytest_args):
    prepare_only = pytest_args == ["--prepare"]
    if os.geteuid() != 0:
        sys.exit("the Python 3.13 tier needs root (systemd-nspawn)")
    missing = [tool for tool in ("debootstrap", "systemd-nspawn") if not shutil.which(tool)]
    if missing:
        sys.exit(f"the Python 3.13 tier needs {' and '.join(missing)}: sudo make setup-system "
                 "(.ci/apt-packages)")
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    command = [f"{VENV}/bin/python", "-m", "pytest", "-p", "no:cacheprovider",
               f"--color={'yes' if sys.stdout.isatty() else 'no'}",
               "-m", "not appliance", *selection(pytest_args), *pytest_args]
    with rootfs() as root:
        ensure_venv(root)
        if prepare_only:
            log(f"{root.name} and {VENV.name} ready")
            return 0
        log("running " + " ".join(command[3:]))
        started = time.monotonic()
        done = nspawn(root, "sh", "-c", f'cd "{REPO}" && exec "$@"', "sh", *command,
                      binds=binds(), env=env, check=False)
        log(f"tests took {time.monotonic() - started:.0f} s")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
