"""Build and register the Debian 13 box `vagrant up --provider=lxc` boots (`sudo make lxc-box`).

No box registry is reachable from the machines this project is built on, and nobody publishes a
trixie box for vagrant-lxc, so the box is made here from debootstrap: systemd as PID 1, sshd,
sudo, the `vagrant` user with Vagrant's insecure key (Vagrant swaps it for a generated one at the
first `vagrant up`), systemd-networkd with DHCP on eth0, python3 with venv and apt bindings for
ansible_local, and the host's extra CA certificates plus a pip setting that trusts them (a
TLS-intercepting egress proxy sits in front of PyPI on some build hosts).

The box is rebuilt only when what goes into it changes: this file, the Vagrant public key and the
host's extra certificates are hashed, and the hash is kept next to the cached .box file and in
the registered box's own metadata. Standard library only; runs as root (debootstrap, chroot).

    python3 appliance/vagrant/lxc_box.py [--force] [--name vigil/trixie-lxc]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

BOX_NAME = "vigil/trixie-lxc"
SUITE = "trixie"
MIRROR = os.environ.get("VIGIL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
CACHE_DIR = Path(os.environ.get("VIGIL_BOX_CACHE", "/var/cache/vigil-appliance/lxc-box"))
# What a Vagrant base box needs (sshd, sudo) and what ansible_local needs on the guest (python3
# with venv for the pinned ansible-core, python3-apt for the apt module, CA certificates for
# PyPI); systemd-resolved so the DNS server that DHCP hands out is used.
PACKAGES = [
    "systemd", "systemd-sysv", "systemd-resolved", "dbus", "iproute2", "openssh-server", "sudo",
    "python3", "python3-venv", "python3-apt", "ca-certificates", "procps", "less",
    # `hostname -f` answers from the kernel hostname LXC sets, so Vagrant sees the name is right
    # and does not restart systemd-networkd under its own SSH session (a hang, seen once).
    "libnss-myhostname",
]
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
# LXC settings shipped in the box; vagrant-lxc appends the network and the /vagrant bind mount.
LXC_CONFIG = "lxc.include = /usr/share/lxc/config/common.conf\nlxc.arch = amd64\n"
ETH0_NETWORK = "[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\n"
# Every container from the box gets its own host keys, made before sshd first starts.
HOST_KEYS_UNIT = """[Unit]
Description=Generate this machine's SSH host keys (the box ships none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


def log(msg: str) -> None:
    print(f"[lxc-box {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def vagrant_public_key() -> Path:
    """Vagrant's insecure public key, from the installed Vagrant (Debian's or HashiCorp's)."""
    gems = ("usr/share/rubygems-integration/all/gems", "opt/vagrant/embedded/gems/gems")
    found = [key for gem_dir in gems
             for key in sorted(Path("/").glob(f"{gem_dir}/vagrant-*/keys/vagrant.pub"))]
    if not found:
        raise SystemExit("Vagrant's keys/vagrant.pub not found: is vagrant installed?")
    return found[-1]


def extra_certificates() -> list[Path]:
    return sorted(EXTRA_CA_DIR.glob("*.crt")) if EXTRA_CA_DIR.is_dir() else []


def inputs_digest() -> str:
    """A hash of everything that goes into the box; a new one means a rebuild."""
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    h.update(MIRROR.encode())
    h.update(vagrant_public_key().read_bytes())
    for crt in extra_certificates():
        h.update(crt.name.encode() + crt.read_bytes())
    return h.hexdigest()[:16]


def chroot(root: Path, *argv: str) -> None:
    subprocess.run(["chroot", str(root), *argv], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL,
                   env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def build_rootfs(root: Path) -> None:
    log(f"debootstrap {SUITE} from {MIRROR} (about a minute)")
    subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}",
                    SUITE, str(root), MIRROR], check=True, stdout=subprocess.DEVNULL)
    # The vagrant user: passwordless sudo and the insecure key Vagrant replaces on first boot.
    chroot(root, "useradd", "--create-home", "--shell", "/bin/bash", "vagrant")
    (root / "etc/sudoers.d/vagrant").write_text("vagrant ALL=(ALL) NOPASSWD:ALL\n")
    os.chmod(root / "etc/sudoers.d/vagrant", 0o440)
    ssh_dir = root / "home/vagrant/.ssh"
    ssh_dir.mkdir(mode=0o700)
    shutil.copy(vagrant_public_key(), ssh_dir / "authorized_keys")
    os.chmod(ssh_dir / "authorized_keys", 0o600)
    chroot(root, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh")
    # Network: DHCP on eth0 (LXC's bridge); eth1, when Vagrant adds one, is configured by LXC.
    (root / "etc/systemd/network/20-eth0.network").write_text(ETH0_NETWORK)
    for unit in ("systemd-networkd.service", "systemd-resolved.service"):
        chroot(root, "systemctl", "enable", unit)
    # Host identity is per container: no machine-id, no SSH host keys in the box.
    (root / "etc/machine-id").write_text("")
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/systemd/system/vigil-ssh-host-keys.service").write_text(HOST_KEYS_UNIT)
    chroot(root, "systemctl", "enable", "vigil-ssh-host-keys.service")
    # Trust what the host trusts (a TLS-intercepting proxy in front of PyPI on some hosts).
    certs = extra_certificates()
    if certs:
        dest = root / "usr/local/share/ca-certificates"
        dest.mkdir(parents=True, exist_ok=True)
        for crt in certs:
            shutil.copy(crt, dest / crt.name)
        chroot(root, "update-ca-certificates")
        (root / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    # The download cache goes; the package lists stay, so apt works before its first update
    # (roles refresh them when they are older than an hour).
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    tar.addfile(info, io.BytesIO(data))


def package_box(root: Path, box: Path, digest: str) -> None:
    """A .box is a tarball of metadata.json, lxc-config and rootfs.tar.gz (paths ./rootfs/...)."""
    work = box.parent / f"{box.name}.parts"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        rootfs = work / "rootfs.tar.gz"
        log("packing the rootfs")
        # vagrant-lxc's template strips two components: ./rootfs/<path>.
        subprocess.run(["tar", "--numeric-owner", "-czf", str(rootfs), "-C", str(root.parent),
                        "--transform", f"s,^{root.name},./rootfs,", root.name], check=True)
        metadata = {"provider": "lxc", "version": "1.0.0", "built-from": digest,
                    "suite": SUITE, "built-at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        with tarfile.open(f"{box}.tmp", "w") as tar:
            _add_bytes(tar, "metadata.json", json.dumps(metadata, indent=2).encode())
            _add_bytes(tar, "lxc-config", LXC_CONFIG.encode())
            tar.add(rootfs, arcname="rootfs.tar.gz")
        os.replace(f"{box}.tmp", box)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{box}.tmp")


def registered_digest(name: str) -> str | None:
    """The digest the registered box was built from, read from its own metadata.json."""
    home = Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d"))
    box_dir = home / "boxes" / name.replace("/", "-VAGRANTSLASH-")
    for meta in box_dir.glob("*/lxc/metadata.json"):
        with contextlib.suppress(ValueError, OSError):
            return json.loads(meta.read_text()).get("built-from")
    return None


def ensure_box(name: str = BOX_NAME, force: bool = False) -> str:
    """Build (if its inputs changed) and register the box; returns the inputs' digest."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    box = CACHE_DIR / f"{SUITE}-{digest}.box"
    with open(CACHE_DIR / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs starting together build it once
        if not force and registered_digest(name) == digest:
            log(f"{name} is registered and current (inputs {digest})")
            return digest
        if force or not box.exists():
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
                root = Path(tmp) / "rootfs"
                build_rootfs(root)
                package_box(root, box, digest)
            log(f"built {box} ({box.stat().st_size >> 20} MiB) in {time.monotonic() - t0:.0f} s")
            for old in CACHE_DIR.glob(f"{SUITE}-*.box"):
                if old != box:
                    old.unlink()
        subprocess.run(["vagrant", "box", "add", "--force", "--name", name, str(box)], check=True,
                       stdout=subprocess.DEVNULL)
        log(f"registered {name} (inputs {digest})")
    return digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default=BOX_NAME, help=f"box name to register (default {BOX_NAME})")
    ap.add_argument("--force", action="store_true", help="rebuild even if nothing changed")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        ap.error("must run as root (debootstrap and chroot): sudo make lxc-box")
    for tool in ("debootstrap", "vagrant", "tar", "chroot"):
        if shutil.which(tool) is None:
            ap.error(f"{tool} not found: `sudo make setup-system` installs it")
    ensure_box(args.name, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
