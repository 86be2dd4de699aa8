#!/usr/bin/env python3
"""Run the test tiers on Python 3.13, Debian 13's Python (the appliance's), as root.

Debian 12 has no Python 3.13 package and python.org's builds are out of reach here, so the
tests run in a Debian 13 root filesystem (the appliance's cached debootstrap tarball,
appliance/container/nspawn.py) under systemd-nspawn: no boot, one command in a container
that shares the host's network, with this checkout bind-mounted at the same path. The root
filesystem (plus PostgreSQL, Prometheus and Alertmanager from Debian 13) and the virtualenv
(.venv-py313, every package pinned by constraints.txt) are built once and reused while
their inputs are unchanged. Each run gets its own /tmp.

    python3 .ci/py313.py [pytest arguments]         (make test-py313)

Every tier but the appliance one runs (that one needs no second Python: Ansible already
runs on the appliance's own 3.13). Standard library only.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("VIGIL_APPLIANCE_CACHE", "/var/cache/vigil-appliance"))
ROOTFS = CACHE / "py313-root"
VENV = REPO / ".venv-py313"
#: Debian 13 packages the tiers need (PostgreSQL for a private cluster when no
#: VIGIL_TEST_POSTGRES_URL is given; promtool, amtool and the servers for monitoring).
PACKAGES = ("postgresql", "prometheus", "prometheus-alertmanager", "git", "make")
TIERS = ("tests/test_constraints.py", "tests/api", "tests/telemetry", "tests/monitoring",
         "tests/loadtest")
#: Settings passed into the container when the host has them.
PASSED_ENV = ("VIGIL_TEST_POSTGRES_URL", "CI")


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
               f"--machine=vigil-py313-{os.getpid()}", "--tmpfs=/tmp"]
    command += [f"--bind={b}" for b in binds]
    for name, value in (env or {}).items():
        command.append(f"--setenv={name}={value}")
    return subprocess.run([*command, *argv], check=check)


def rootfs_tarball():
    sys.path.insert(0, str(REPO / "appliance" / "container"))
    import nspawn as appliance_nspawn

    return appliance_nspawn.rootfs_tarball()


def ensure_rootfs():
    """The Debian 13 root filesystem with the packages the tiers need (built once)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".py313.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        tarball = rootfs_tarball()
        want = digest(tarball.stat().st_mtime_ns, *PACKAGES)
        stamp = ROOTFS / ".vigil-py313"
        if stamp.exists() and stamp.read_text() == want:
            return
        log(f"building {ROOTFS} (Debian 13 plus {', '.join(PACKAGES)}; first run only)")
        build = Path(f"{ROOTFS}.build")
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        subprocess.run(["tar", "-C", str(build), "-xf", str(tarball)], check=True)
        shutil.copy("/etc/resolv.conf", build / "etc/resolv.conf")
        # A TLS-intercepting egress proxy on some hosts: trust what the host trusts (pip too).
        extra = Path("/usr/local/share/ca-certificates")
        for crt in extra.glob("*.crt") if extra.is_dir() else ():
            shutil.copy(crt, build / "usr/local/share/ca-certificates" / crt.name)
        (build / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
        install = ("update-ca-certificates >/dev/null && apt-get update -q >/dev/null && "
                   "DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
                   f"--no-install-recommends {' '.join(PACKAGES)} >/dev/null && apt-get clean")
        nspawn(build, "sh", "-c", install)
        (build / ".vigil-py313").write_text(want)
        shutil.rmtree(ROOTFS, ignore_errors=True)
        build.rename(ROOTFS)


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


def ensure_venv():
    """.venv-py313 with the project and every pinned dependency (rebuilt when they change)."""
    want = digest((REPO / "pyproject.toml").read_bytes(), (REPO / "constraints.txt").read_bytes())
    stamp = VENV / ".installed"
    if stamp.exists() and stamp.read_text() == want:
        return
    log(f"installing {VENV.name} (pinned by constraints.txt)")
    script = (f"python3 -m venv --clear {VENV} && "
              f"{VENV}/bin/pip install --quiet --upgrade pip && "
              f"{VENV}/bin/pip install --quiet -e '{REPO}[dev,load]' && "
              f"echo {want} > {stamp}")
    nspawn(ROOTFS, "sh", "-c", script, binds=binds(),
           env={"PIP_CONSTRAINT": f"{REPO}/constraints.txt",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1"})


def main(pytest_args):
    if os.geteuid() != 0:
        sys.exit("the Python 3.13 tier needs root (systemd-nspawn)")
    ensure_rootfs()
    ensure_venv()
    env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    command = [f"{VENV}/bin/python", "-m", "pytest", "-p", "no:cacheprovider",
               f"--color={'yes' if sys.stdout.isatty() else 'no'}",
               "-m", "not appliance", *TIERS, *pytest_args]
    log("running " + " ".join(command[3:]))
    done = nspawn(ROOTFS, "sh", "-c", f'cd "{REPO}" && exec "$@"', "sh", *command,
                  binds=binds(), env=env, check=False)
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
