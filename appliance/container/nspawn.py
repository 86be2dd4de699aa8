"""Boot a Debian 13 systemd-nspawn container that stands in for the Vagrant VM, and tear it down.

Used by the appliance proof test (tests/appliance/) and by `make appliance` / `make appliance-down`.
Standard library only, so it runs with any python3 on a Linux host that has systemd-nspawn,
debootstrap, iproute2 and iptables, as root. The host need not run systemd: the container is
entered with nsenter, never with machinectl.

CLI:  python3 appliance/container/nspawn.py up [--name vigil] [--no-provision]
      python3 appliance/container/nspawn.py down [--name vigil]
      python3 appliance/container/nspawn.py exec [--name vigil] -- CMD...
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("VIGIL_APPLIANCE_CACHE", "/var/cache/vigil-appliance"))
STATE_DIR = Path("/run/vigil-appliance")
MACHINES_DIR = Path(os.environ.get("VIGIL_APPLIANCE_MACHINES", "/var/lib/vigil-appliance"))
SUITE = "trixie"
MIRROR = os.environ.get("VIGIL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# What Vagrant's debian/trixie64 box has and ansible_local needs: systemd as PID 1, python3 with
# venv (ansible-core is pip-installed into a venv, like appliance/bootstrap-ansible.sh does),
# python3-apt for the apt module, CA certificates for PyPI.
INCLUDE = "systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,ca-certificates,iproute2"
# The /30 networks handed to containers: host end .1, container end .2.
POOL = ipaddress.ip_network(os.environ.get("VIGIL_APPLIANCE_POOL", "10.213.0.0/22"))
# nspawn processes started by this Python process, kept referenced until reaped.
_PROCS: dict[int, subprocess.Popen] = {}
ANSIBLE_CORE_VERSION = (REPO / "appliance" / "requirements.txt").read_text().split("==")[1].strip()


def log(msg: str) -> None:
    print(f"[appliance {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*argv: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=check, timeout=timeout, text=True, **kw)


def rootfs_tarball() -> Path:
    """Return the cached debootstrap tarball, building it the first time (about a minute)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tarball = CACHE_DIR / f"{SUITE}-rootfs.tar"
    with open(CACHE_DIR / ".lock", "w") as lock:
        # Several test runs may start at once: only one of them builds the cache.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if tarball.exists():
            return tarball
        build = CACHE_DIR / f"build-{os.getpid()}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            log(f"debootstrap {SUITE} (first run only; cached in {tarball})")
            t0 = time.monotonic()
            sh("debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(build),
               MIRROR, stdout=subprocess.DEVNULL, timeout=1200)
            # apt's package cache is dropped to keep the tarball small; lists are re-fetched.
            shutil.rmtree(build / "var/cache/apt/archives", ignore_errors=True)
            (build / "var/cache/apt/archives/partial").mkdir(parents=True)
            sh("tar", "-C", str(build), "--numeric-owner", "-cf", f"{tarball}.tmp", ".")
            os.replace(f"{tarball}.tmp", tarball)
            log(f"rootfs cached in {time.monotonic() - t0:.0f} s")
        finally:
            shutil.rmtree(build, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{tarball}.tmp")
    return tarball


def _used_networks() -> set[ipaddress.IPv4Network]:
    out = sh("ip", "-4", "-o", "addr", "show", capture_output=True).stdout
    nets = set()
    for line in out.splitlines():
        addr = line.split()[3]
        nets.add(ipaddress.ip_interface(addr).network)
    return nets


def _free_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for state in STATE_DIR.glob("*.json"):
        with contextlib.suppress(Exception):
            used.add(ipaddress.ip_network(json.loads(state.read_text())["subnet"]))
    for net in POOL.subnets(new_prefix=30):
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /30 left in {POOL}")


@dataclass
class Container:
    """One booted container: its name, root directory, private /30 and nspawn process."""

    name: str
    root: str
    subnet: str
    repo: str
    nspawn_pid: int = 0
    ip_forward_was: str = ""

    @property
    def veth(self) -> str:
        # The host end is named by nspawn: "ve-" + the machine name, cut to 15 characters.
        return ("ve-" + self.name)[:15]

    @property
    def host_ip(self) -> str:
        return str(list(ipaddress.ip_network(self.subnet).hosts())[0])

    @property
    def ip(self) -> str:
        return str(list(ipaddress.ip_network(self.subnet).hosts())[1])

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    def create(cls, name: str, repo: Path = REPO) -> Container:
        """Unpack a fresh root filesystem and prepare it to boot on a private network."""
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        tarball = rootfs_tarball()
        root = MACHINES_DIR / name
        if root.exists():
            raise RuntimeError(f"{root} exists: run `nspawn.py down --name {name}` first")
        root.mkdir(parents=True)
        with open(STATE_DIR / ".lock", "w") as lock:
            # Two runs starting together must not pick the same /30.
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = _free_subnet()
            c = cls(name=name, root=str(root), subnet=str(subnet), repo=str(repo))
            c.save()
        with tarfile.open(tarball) as tf:
            tf.extractall(root, filter="fully_trusted")
        c._configure_rootfs()
        return c

    def _configure_rootfs(self) -> None:
        root = Path(self.root)
        (root / "etc/hostname").write_text(f"{self.name}\n")
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")
        net = root / "etc/systemd/network"
        net.mkdir(parents=True, exist_ok=True)
        # Sorts before the shipped 80-container-host0.network, which would otherwise win.
        (net / "10-vigil-host0.network").write_text(
            "[Match]\nName=host0\n\n[Network]\n"
            f"Address={self.ip}/30\nGateway={self.host_ip}\nLinkLocalAddressing=no\n"
        )
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "systemd-networkd.service"
        if not link.exists():
            link.symlink_to("/usr/lib/systemd/system/systemd-networkd.service")
        # The host's resolver is reached through the NAT, like a VM's DHCP-provided one.
        resolv = root / "etc/resolv.conf"
        resolv.unlink(missing_ok=True)
        shutil.copy("/etc/resolv.conf", resolv)
        # A TLS-intercepting egress proxy on some hosts: trust what the host trusts.
        extra = Path("/usr/local/share/ca-certificates")
        if extra.is_dir() and any(extra.glob("*.crt")):
            dest = root / "usr/local/share/ca-certificates"
            dest.mkdir(parents=True, exist_ok=True)
            for crt in extra.glob("*.crt"):
                shutil.copy(crt, dest / crt.name)
            sh("chroot", str(root), "update-ca-certificates", stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL)
            (root / "etc/pip.conf").write_text(
                "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"
            )

    def boot(self, timeout: float = 180) -> None:
        """Start systemd-nspawn, wire the veth and NAT, wait for `is-system-running`."""
        logpath = STATE_DIR / f"{self.name}.log"
        with open(logpath, "ab") as logf:
            proc = subprocess.Popen(
                ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet", "-D", self.root,
                 "-M", self.name, "--network-veth", f"--bind-ro={self.repo}:/vagrant", "-b"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
            )
        _PROCS[proc.pid] = proc
        self.nspawn_pid = proc.pid
        self.save()
        self._host_network_up(deadline=time.monotonic() + 30)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = logpath.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"systemd-nspawn exited {proc.returncode}:\n{tail}")
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                state = self.run("systemctl", "is-system-running", check=False,
                                 timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    log(f"{self.name} booted ({state}) at {self.ip}")
                    return
            time.sleep(1)
        tail = logpath.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{self.name} did not boot in {timeout} s (state {state!r}):\n{tail}")

    def _host_network_up(self, deadline: float) -> None:
        while not Path(f"/sys/class/net/{self.veth}").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.veth} did not appear")
            time.sleep(0.2)
        sh("ip", "addr", "replace", f"{self.host_ip}/30", "dev", self.veth)
        sh("ip", "link", "set", self.veth, "up")
        fwd = Path("/proc/sys/net/ipv4/ip_forward")
        if not self.ip_forward_was:
            self.ip_forward_was = fwd.read_text().strip()
            self.save()
        fwd.write_text("1\n")
        for rule in self._iptables_rules():
            if sh("iptables", "-C", *rule, check=False, stderr=subprocess.DEVNULL).returncode:
                sh("iptables", "-A", *rule)

    def _iptables_rules(self) -> list[list[str]]:
        tag = ["-m", "comment", "--comment", f"vigil-appliance {self.name}"]
        return [
            ["POSTROUTING", "-t", "nat", "-s", self.subnet, "!", "-o", self.veth,
             "-j", "MASQUERADE", *tag],
            ["FORWARD", "-i", self.veth, "-j", "ACCEPT", *tag],
            ["FORWARD", "-o", self.veth, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
             "-j", "ACCEPT", *tag],
        ]

    def pid(self) -> int:
        """PID of the container's systemd (the nspawn process's child)."""
        kids = Path(f"/proc/{self.nspawn_pid}/task/{self.nspawn_pid}/children")
        if not kids.exists():
            raise RuntimeError("systemd-nspawn is not running")
        for child in kids.read_text().split():
            if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                return int(child)
        raise RuntimeError("container systemd not started yet")

    def run(self, *argv: str, check: bool = True, timeout: float = 600, env: dict | None = None,
            input: str | None = None, capture: bool = True) -> subprocess.CompletedProcess:
        """Run a command inside the container (all namespaces of its PID 1); capture=False
        streams its output to ours (for people watching `make appliance`)."""
        envargs = [f"{k}={v}" for k, v in (env or {}).items()]
        full = ["nsenter", "-t", str(self.pid()), "-a", "env", "-i",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME=/root", "LANG=C.UTF-8", *envargs, *argv]
        cp = subprocess.run(full, capture_output=capture, text=True, timeout=timeout, input=input)
        if check and cp.returncode and capture:
            raise RuntimeError(
                f"in {self.name}: {' '.join(argv)} exited {cp.returncode}\n"
                f"--- stdout\n{cp.stdout[-6000:]}\n--- stderr\n{cp.stderr[-4000:]}"
            )
        return cp

    def poweroff(self, timeout: float = 90) -> None:
        """Stop the container the way a reboot does: systemd shuts every service down."""
        if not self.nspawn_pid or not Path(f"/proc/{self.nspawn_pid}").exists():
            return
        # SIGRTMIN+4 to PID 1 asks systemd for an orderly poweroff.
        with contextlib.suppress(RuntimeError, ProcessLookupError):
            os.kill(self.pid(), signal.SIGRTMIN + 4)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(self.nspawn_pid):
            time.sleep(0.5)
        if _alive(self.nspawn_pid):
            log("orderly poweroff timed out; killing nspawn")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.nspawn_pid, signal.SIGKILL)
            while _alive(self.nspawn_pid) and time.monotonic() < deadline + 15:
                time.sleep(0.2)

    def reboot(self) -> None:
        self.poweroff()
        self.boot()

    def destroy(self) -> None:
        """Kill the container, undo host networking, delete its root filesystem."""
        with contextlib.suppress(Exception):
            self.poweroff(timeout=30)
        if self.nspawn_pid and _alive(self.nspawn_pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.nspawn_pid, signal.SIGKILL)
        for rule in self._iptables_rules():
            while sh("iptables", "-D", *rule, check=False,
                     stderr=subprocess.DEVNULL).returncode == 0:
                pass
        if Path(f"/sys/class/net/{self.veth}").exists():
            sh("ip", "link", "del", self.veth, check=False)
        others = [p for p in STATE_DIR.glob("*.json") if p.stem != self.name]
        if self.ip_forward_was == "0" and not others:
            Path("/proc/sys/net/ipv4/ip_forward").write_text("0\n")
        # Bind mounts die with the container's mount namespace; nothing to unmount here.
        shutil.rmtree(self.root, ignore_errors=True)
        (STATE_DIR / f"{self.name}.json").unlink(missing_ok=True)
        (STATE_DIR / f"{self.name}.log").unlink(missing_ok=True)
        log(f"{self.name} destroyed")

    # ---- state for the CLI ---------------------------------------------------------------
    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / f"{self.name}.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, name: str) -> Container:
        return cls(**json.loads((STATE_DIR / f"{name}.json").read_text()))

    # ---- provisioning the way Vagrant's ansible_local does ---------------------------------
    def install_ansible(self) -> None:
        """Run the same bootstrap script the Vagrantfile runs before ansible_local."""
        self.run("sh", "/vagrant/appliance/bootstrap-ansible.sh", timeout=900)

    def ansible_playbook(self, *args: str, timeout: float = 1800,
                         capture: bool = True) -> subprocess.CompletedProcess:
        """ansible-playbook inside the container, local connection, from the synced /vagrant."""
        return self.run(
            "sh", "-c", 'cd /vagrant && exec ansible-playbook "$@"', "ansible-playbook", *args,
            check=False, timeout=timeout, capture=capture,
            env={"ANSIBLE_CONFIG": "/vagrant/ansible.cfg",
                 "ANSIBLE_FORCE_COLOR": "0", "PYTHONUNBUFFERED": "1"},
        )


def _alive(pid: int) -> bool:
    if pid in _PROCS:
        if _PROCS[pid].poll() is None:
            return True
        del _PROCS[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie of ours counts as gone.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    return True


def snapshot_repo(dest: Path, repo: Path = REPO) -> Path:
    """Copy the tracked and new (not ignored) files of the work tree: a stable source for a run."""
    files = sh("git", "-C", str(repo), "ls-files", "-z", "--cached", "--others",
               "--exclude-standard", capture_output=True).stdout.split("\0")
    for rel in filter(None, files):
        src = repo / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def summary(c: Container) -> str:
    return (
        f"Vigil appliance container '{c.name}' is up at {c.ip} (host end {c.host_ip}).\n"
        f"  API (nginx, TLS):  https://{c.ip}/api/v1/docs   health https://{c.ip}/health/ready\n"
        f"  Prometheus:        http://{c.ip}:9090\n"
        f"  Alertmanager:      http://{c.ip}:9093\n"
        f"  Grafana/Loki/Alloy: not installed in the container (Grafana's APT repo; see README)\n"
        f"  Shell:             python3 appliance/container/nspawn.py exec --name {c.name} -- bash\n"
        f"  Stop and delete:   make appliance-down APPLIANCE_NAME={c.name}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="boot a fresh container and provision it with site.yml")
    up.add_argument("--name", default="vigil")
    up.add_argument("--no-provision", action="store_true")
    down = sub.add_parser("down", help="stop and delete the container")
    down.add_argument("--name", default="vigil")
    ex = sub.add_parser("exec", help="run a command inside the container")
    ex.add_argument("--name", default="vigil")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("must run as root (systemd-nspawn, ip, iptables)")

    if args.cmd == "down":
        if not (STATE_DIR / f"{args.name}.json").exists():
            log(f"no container named {args.name}")
            return 0
        Container.load(args.name).destroy()
        return 0
    if args.cmd == "exec":
        cmd = [a for a in args.command if a != "--"] or ["bash"]
        c = Container.load(args.name)
        return subprocess.call(["nsenter", "-t", str(c.pid()), "-a", *cmd])

    c = Container.create(args.name)
    try:
        c.boot()
        if not args.no_provision:
            c.install_ansible()
            cp = c.ansible_playbook("-i", "appliance/inventories/container", "playbooks/site.yml",
                                    capture=False)
            if cp.returncode:
                raise RuntimeError("site.yml failed (container left running for inspection; "
                                   "`make appliance-down` removes it)")
    except BaseException:
        if c.nspawn_pid == 0 or not _alive(c.nspawn_pid):
            c.destroy()
        raise
    print(summary(c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
