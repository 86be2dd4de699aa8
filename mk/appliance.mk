# The appliance: Vagrant (VirtualBox, libvirt, or lxc on a Linux host without a hypervisor),
# the lxc box builder, Ansible lint and checks. ansible.cfg and .ansible-lint sit at the root.
VIGIL_LOGS ?= 1
export VIGIL_LOGS

CHECK_TARGETS += check-appliance
LINT_TARGETS += lint-appliance

.PHONY: appliance appliance-down appliance-shell lxc-box lint-appliance check-appliance

lxc-box: ## build and register the Debian 13 box for vagrant's lxc provider (root; cached)
	python3 appliance/vagrant/lxc_box.py

appliance: lxc-box ## vagrant up --provider=lxc (root; VIGIL_LOGS=0 leaves out Grafana, Loki, Alloy)
	vagrant up --provider=lxc

appliance-down: ## vagrant destroy -f: the machines, the project's bridge and LXC's NAT go
	vagrant destroy -f

appliance-shell: ## vagrant ssh (a shell on the appliance)
	vagrant ssh

lint-appliance: setup ## ansible-lint (production profile, .ansible-lint) and ruff on the tooling
	$(BIN)/ansible-lint --nocolor
	$(BIN)/ruff check appliance

check-appliance: setup ## syntax-check every playbook per inventory, vagrant validate per topology
	@set -e; for inv in appliance/inventories/*/ appliance/inventories/*/hosts.yml; do \
	  for pb in playbooks/*.yml; do \
	  $(BIN)/ansible-playbook -i $$inv $$pb --syntax-check >/dev/null; done; \
	  echo "syntax ok: $$inv"; done
	@set -e; for t in single cluster; do \
	  VIGIL_TOPOLOGY=$$t vagrant validate --ignore-provider >/dev/null; \
	  if vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt; then \
	    VIGIL_TOPOLOGY=$$t VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate >/dev/null; fi; \
	  if vagrant plugin list 2>/dev/null | grep -q vagrant-lxc; then \
	    VIGIL_TOPOLOGY=$$t VAGRANT_DEFAULT_PROVIDER=lxc vagrant validate >/dev/null; fi; \
	  echo "vagrant validate ok: $$t"; done
