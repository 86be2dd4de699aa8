"""The grafana_repository and loki roles against a stand-in for Grafana's APT repository.

apt.grafana.com is out of reach here, so the appliance serves a signed APT repository of its own
on its loopback (gpg + apt-ftparchive, a dummy `loki` package) and the real roles run against it
with only the repository's URLs and key fingerprint overridden: a first `apt update` that fails is
retried by the next run, only the pinned key is trusted although the key file holds another, a
held package moves when its pin moves, and Loki's account and data directory are made.
Everything is removed afterwards, so the rest of the proof sees the appliance as provisioned.
"""
import json
import textwrap

import pytest
from appliance_env import FULL_INVENTORY
from appliance_env import ok as _ok

pytestmark = [pytest.mark.appliance, pytest.mark.slow]
PORT = 8765
REPO_DIR = "/srv/vigil-fake-grafana"
GNUPG = "/root/.vigil-fake-grafana-gnupg"

SETUP = textwrap.dedent(f"""\
    set -eu
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends gpg gpg-agent apt-utils >/dev/null
    rm -rf {REPO_DIR} {GNUPG}; mkdir -p {REPO_DIR} {GNUPG}; chmod 700 {GNUPG}
    for who in pinned other; do
      gpg --batch --homedir {GNUPG} --pinentry-mode loopback --passphrase '' \\
        --quick-gen-key "vigil-$who@example.invalid" rsa3072 sign never 2>/dev/null
    done
    fpr() {{ gpg --homedir {GNUPG} --with-colons --list-keys "$1" \
             | awk -F: '/^fpr/ {{print $10; exit}}'; }}
    echo "$(fpr vigil-pinned@example.invalid) $(fpr vigil-other@example.invalid)"
    """)

# publish VERSION SIGNER: a dummy loki VERSION in the pool, lists rebuilt, Release signed by SIGNER.
PUBLISH = textwrap.dedent(f"""\
    set -eu
    version=$1 signer=$2
    pkg=$(mktemp -d); mkdir -p "$pkg/DEBIAN"
    printf 'Package: loki\\nVersion: %s\\nArchitecture: all\\n' "$version" > "$pkg/DEBIAN/control"
    printf 'Maintainer: Vigil tests <t@example.invalid>\\nDescription: stand-in\\n' \\
      >> "$pkg/DEBIAN/control"
    # Like Loki's package: a unit in /etc/systemd/system running as the user `loki`.
    mkdir -p "$pkg/etc/systemd/system"
    printf '[Service]\\nUser=loki\\nExecStart=/bin/sleep infinity\\n' \\
      > "$pkg/etc/systemd/system/loki.service"
    mkdir -p {REPO_DIR}/pool {REPO_DIR}/dists/stable/main/binary-amd64
    dpkg-deb --build --root-owner-group "$pkg" {REPO_DIR}/pool/loki_${{version}}_all.deb >/dev/null
    rm -rf "$pkg"
    cd {REPO_DIR}
    apt-ftparchive packages pool > dists/stable/main/binary-amd64/Packages
    gzip -kf dists/stable/main/binary-amd64/Packages
    apt-ftparchive -o APT::FTPArchive::Release::Suite=stable \\
      -o APT::FTPArchive::Release::Components=main \\
      -o APT::FTPArchive::Release::Architectures=amd64 release dists/stable > /tmp/Release
    mv /tmp/Release dists/stable/Release
    rm -f dists/stable/InRelease
    gpg --batch --homedir {GNUPG} --pinentry-mode loopback --passphrase '' --yes -u "$signer" \\
      --clearsign \\
      -o dists/stable/InRelease dists/stable/Release
    """)


@pytest.fixture(scope="module")
def fake_repo(appliance):
    out = appliance.run("bash", "-c", SETUP, timeout=300).stdout.split()
    pinned, other = out[-2], out[-1]
    # The key file holds both keys, as Grafana's holds its predecessors.
    appliance.run("bash", "-c", f"gpg --homedir {GNUPG} --armor --export > {REPO_DIR}/gpg.key")
    appliance.run("systemd-run", "--unit=vigil-fake-grafana", "--property=Type=exec",
                  "python3", "-m", "http.server", str(PORT), "--bind", "127.0.0.1",
                  "--directory", REPO_DIR)
    try:
        yield {"pinned": pinned, "other": other}
    finally:
        appliance.run("bash", "-c", f"""
            systemctl stop vigil-fake-grafana || true
            gpgconf --homedir {GNUPG} --kill gpg-agent || true
            systemctl stop loki || true
            apt-mark unhold loki >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get purge -y -q loki >/dev/null 2>&1 || true
            rm -rf {REPO_DIR} {GNUPG} /etc/apt/sources.list.d/grafana.sources \
              /etc/apt/keyrings/grafana.gpg /etc/apt/keyrings/grafana-download.asc \
              /var/lib/apt/lists/127.0.0.1_* /var/lib/loki
            systemctl daemon-reload
            userdel loki 2>/dev/null || true; groupdel loki 2>/dev/null || true
            """, check=False)


def _publish(appliance, version, signer):
    appliance.run("bash", "-c", PUBLISH, "publish", version, signer, timeout=120)


def _roles(appliance, fake_repo, version, fingerprint=None):
    """site.yml's install steps of the Grafana-repository roles, pointed at the stand-in
    repository; only loki's pin is asked for (alloy and grafana are not in the stand-in)."""
    pins = json.dumps({"grafana_repository_packages": [f"loki={version}"]})
    return appliance.playbook(
        "playbooks/site.yml", "--limit", "vigil", "--tags", "grafana_repository,loki_install",
        "-e", f"grafana_repository_url=http://127.0.0.1:{PORT}",
        "-e", f"grafana_repository_key_url=http://127.0.0.1:{PORT}/gpg.key",
        "-e", f"grafana_repository_key_fingerprint={fingerprint or fake_repo['pinned']}",
        "-e", f"loki_version={version}", "-e", pins, inventory=FULL_INVENTORY, timeout=900)


def test_a_failed_first_update_is_retried_by_the_next_run(appliance, fake_repo):
    # The key is there but the repository is not published yet: apt update fails.
    first = _roles(appliance, fake_repo, "1.0.0")
    assert first.returncode != 0, _ok(first)
    assert "TASK [grafana_repository : Refresh the package lists" in first.stdout
    _publish(appliance, "1.0.0", fake_repo["pinned"])
    # Nothing changed in the source or the key, yet the missing index makes the run update.
    second = _roles(appliance, fake_repo, "1.0.0")
    assert second.returncode == 0, _ok(second)
    assert appliance.run("dpkg-query", "-W", "-f=${Version}", "loki").stdout == "1.0.0"


def test_loki_gets_its_own_group_and_data_directory(appliance, fake_repo):
    assert appliance.run("id", "-gn", "loki").stdout.strip() == "loki"
    stat = appliance.run("stat", "-c", "%U:%G %a", "/var/lib/loki").stdout.strip()
    assert stat == "loki:loki 750"


def test_only_the_pinned_key_is_trusted(appliance, fake_repo):
    keyring = appliance.run("gpg", "--show-keys", "--with-colons",
                            "/etc/apt/keyrings/grafana.gpg").stdout
    assert fake_repo["pinned"] in keyring and fake_repo["other"] not in keyring
    # The other key is in the downloaded file, but lists it signs are refused.
    _publish(appliance, "1.0.0", fake_repo["other"])
    cp = appliance.run("apt-get", "update", check=False)
    # trixie's apt verifies with sqv: "Missing key <fingerprint>, which is needed to verify".
    refused = f"Missing key {fake_repo['other']}"
    assert refused in cp.stdout + cp.stderr and "not updated" in cp.stderr, _ok(cp)
    _publish(appliance, "1.0.0", fake_repo["pinned"])
    # A key file without the pinned fingerprint fails the run, naming it.
    missing = "0" * 40
    cp = _roles(appliance, fake_repo, "1.0.0", fingerprint=missing)
    assert cp.returncode != 0 and f"holds no key {missing}" in cp.stdout + cp.stderr, _ok(cp)


def test_a_held_package_moves_to_a_new_pin(appliance, fake_repo):
    assert "loki" in appliance.run("apt-mark", "showhold").stdout
    _publish(appliance, "1.0.1", fake_repo["pinned"])
    cp = _roles(appliance, fake_repo, "1.0.1")
    assert cp.returncode == 0, _ok(cp)
    assert appliance.run("dpkg-query", "-W", "-f=${Version}", "loki").stdout == "1.0.1"
    assert "loki" in appliance.run("apt-mark", "showhold").stdout
    again = _roles(appliance, fake_repo, "1.0.1")
    assert again.returncode == 0 and "changed=0" in again.stdout, _ok(again)
