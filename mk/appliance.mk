# The appliance: boot and provision a local Debian 13 container, lint and check the Ansible.
APPLIANCE_NAME ?= vigil
ANSIBLE_ENV := ANSIBLE_CONFIG=$(CURDIR)/appliance/ansible.cfg
APPLIANCE_ROLES := $(notdir $(wildcard appliance/roles/*))

CHECK_TARGETS += check-appliance
LINT_TARGETS += lint-appliance

.PHONY: appliance appliance-down appliance-shell lint-appliance check-appliance

appliance: ## boot + provision a local appliance container (root, systemd-nspawn, debootstrap)
	python3 appliance/container/nspawn.py up --name $(APPLIANCE_NAME)

appliance-down: ## stop and delete the local appliance container
	python3 appliance/container/nspawn.py down --name $(APPLIANCE_NAME)

appliance-shell: ## a root shell inside the local appliance container
	python3 appliance/container/nspawn.py exec --name $(APPLIANCE_NAME) -- bash

lint-appliance: setup ## ansible-lint (production profile) over roles and playbooks, ruff on the tooling
	$(ANSIBLE_ENV) $(BIN)/ansible-lint --offline --profile production appliance/roles playbooks
	$(BIN)/ruff check appliance

check-appliance: setup ## syntax-check every playbook per inventory, vagrant validate per topology
	@set -e; for inv in appliance/inventories/*/; do for pb in playbooks/*.yml; do \
	  $(ANSIBLE_ENV) $(BIN)/ansible-playbook -i $$inv $$pb --syntax-check >/dev/null; done; \
	  echo "syntax ok: $$inv"; done
	@set -e; for t in single cluster; do \
	  VIGIL_TOPOLOGY=$$t vagrant validate --ignore-provider >/dev/null; \
	  if vagrant plugin list 2>/dev/null | grep -q vagrant-libvirt; then \
	    VIGIL_TOPOLOGY=$$t VAGRANT_DEFAULT_PROVIDER=libvirt vagrant validate >/dev/null; fi; \
	  echo "vagrant validate ok: $$t"; done
