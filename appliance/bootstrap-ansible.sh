#!/bin/sh
# Install the pinned ansible-core into /opt/ansible on the appliance itself (Debian 13 refuses
# system-wide pip installs, PEP 668), so the Vagrantfile's ansible_local and the container proof
# run the very same Ansible. Idempotent: does nothing when the pinned version is there.
set -eu
REQ="$(dirname "$0")/requirements.txt"
WANT="$(sed -n 's/^ansible-core==//p' "$REQ")"
if [ -x /opt/ansible/bin/ansible-playbook ] && \
   /opt/ansible/bin/ansible --version 2>/dev/null | head -n1 | grep -q "core $WANT\]"; then
  exit 0
fi
if ! python3 -c 'import ensurepip, apt' 2>/dev/null; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    python3-venv python3-apt ca-certificates
fi
python3 -m venv /opt/ansible
/opt/ansible/bin/pip install --quiet --disable-pip-version-check -r "$REQ"
for tool in ansible ansible-playbook ansible-galaxy ansible-config ansible-inventory; do
  ln -sf "/opt/ansible/bin/$tool" "/usr/local/bin/$tool"
done
ansible --version | head -n1
