"""The Vagrantfile's set-up checks: each usual mistake is one line naming the fix, not a Ruby
trace. No machine is started: every case stops while Vagrant loads the Vagrantfile."""
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest
from appliance_env import checkout, require_tool, vagrant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    require_tool("vagrant")
    return checkout(tmp_path_factory.mktemp("vagrantfile") / "vigil")


def _one_line(cp):
    """The abort message, asserted to be Vigil's single line and nothing else."""
    assert cp.returncode != 0, cp.stdout
    lines = [line for line in (cp.stdout + cp.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vigil: "), lines
    assert ".rb:" not in lines[0]
    return lines[0]


def test_a_missing_box_names_the_builder(project, tmp_path):
    line = _one_line(vagrant(project, "up", "--provider=lxc",
                             env={"VAGRANT_HOME": str(tmp_path / "empty-vagrant-home")}))
    assert "vigil/trixie-lxc is not registered" in line and "sudo make lxc-box" in line


def test_a_missing_provider_plugin_names_the_package(project):
    line = _one_line(vagrant(project, "up", "--provider=lxc", env={"VAGRANT_NO_PLUGINS": "1"}))
    assert "apt-get install --no-install-recommends lxc vagrant-lxc" in line


def test_lxc_without_root_says_how_to_run_it():
    if os.geteuid() != 0:
        pytest.fail("this check switches to an unprivileged user: run the tier as root")
    # pytest's own temporary directories are private to root: use one nobody can enter.
    top = Path(tempfile.mkdtemp(prefix="vigil-nobody-"))
    try:
        top.chmod(0o755)
        readable = checkout(top / "vigil")
        home = top / "home"
        home.mkdir()
        # An ordinary user owns their checkout and home.
        subprocess.run(["chown", "-R", "nobody", str(readable), str(home)], check=True)
        cp = subprocess.run(
            ["runuser", "-u", "nobody", "--", "env", f"HOME={home}",
             f"VAGRANT_HOME={home}/.vagrant.d", "VIGIL_LOGS=0", "vagrant", "up", "--provider=lxc"],
            cwd=readable, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(top)
    assert "sudo vagrant up --provider=lxc" in _one_line(cp)


def test_a_forwarded_port_in_use_is_named(project):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        # Shift Vigil's ports so that the API's forward (8443) lands on the held one.
        cp = vagrant(project, "up", "--provider=libvirt",
                     env={"VIGIL_PORT_OFFSET": str(port - 8443)})
    line = _one_line(cp)
    assert f"port {port} on 127.0.0.1 is in use" in line and "VIGIL_PORT_OFFSET" in line


@pytest.mark.parametrize("env, words", [
    ({"VIGIL_TOPOLOGY": "triple"}, "VIGIL_TOPOLOGY must be one of single, cluster"),
    ({"VIGIL_PORT_OFFSET": "ten"}, "VIGIL_PORT_OFFSET must be a whole number"),
])
def test_bad_settings_are_one_line(project, env, words):
    assert words in _one_line(vagrant(project, "status", env=env))


def test_an_address_taken_by_another_checkouts_container_is_named(project):
    """Two checkouts' `vagrant up` at once would share 192.168.56.10: the second one stops."""
    fake = Path("/var/lib/lxc/vigil-preflight-test")
    fake.mkdir(parents=True)
    try:
        (fake / "config").write_text("lxc.net.1.ipv4.address=192.168.56.10/24\n"
                                     "lxc.mount.entry=/elsewhere/vigil vagrant none bind 0 0\n")
        line = _one_line(vagrant(project, "up", "--provider=lxc"))
    finally:
        shutil.rmtree(fake)
    assert "192.168.56.10 is taken by the LXC container vigil-preflight-test" in line
    assert "/elsewhere/vigil" in line
