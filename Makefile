# Development targets of the openstack_ha.recovery collection. Everything runs from .venv (make venv).
#   make venv     .venv with the runtime and test dependencies (re-installed when a requirements file changes)
#   make units    unit tests (pytest tests/unit)
#   make sanity   ansible-test sanity, offline, on a copy of the collection in an ansible_collections tree
#   make lint     ansible-lint
#   make build    the collection tarball in dist/
#   make test     units, sanity and the integration tests against the lab
#   make faults   the fault suite (tests/faults) against the lab; one scenario: make faults SCENARIO=<pytest -k expr>

VENV := .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
SANITY_PYTHON := 3.11
# ansible-test needs the collection at .../ansible_collections/openstack_ha/recovery and refuses a symlink to it
# (it resolves the working directory), so sanity runs on a copy: the collection and its unit tests. The lab, the
# demo, the benchmarks and the lab test suites are development tools outside the collection (build_ignore).
SANITY_DIR := $(or $(TMPDIR),/tmp)/openstack_ha.recovery-sanity/ansible_collections/openstack_ha/recovery
SANITY_SKIP := ^(bench|demo|lab|tests/(integration|lab|bmc|faults|output))/
# ansible-lint and ansible find the collection through a symlink to this checkout (a symlink is enough for them).
COLLECTIONS_PATH := $(or $(TMPDIR),/tmp)/openstack_ha.recovery-collections
# ansible-test downloads this get-pip script from Ansible's CI file host, unreachable here: install a stand-in.
# The version is the pip that ansible-core 2.19's ansible-test bootstraps.
GET_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py

.PHONY: venv units sanity lint build integration test faults

venv: $(STAMP)

$(STAMP): test-requirements.txt requirements.txt eda-requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r test-requirements.txt -r eda-requirements.txt
	touch $@

units: venv system-deps
	$(PY) -m pytest tests/unit -q

$(GET_PIP): tests/sanity/get_pip_offline.py
	mkdir -p $(dir $@)
	cp $< $@

sanity: venv $(GET_PIP)
	rm -rf $(SANITY_DIR) && mkdir -p $(SANITY_DIR)
	git ls-files --cached --others --exclude-standard | grep -Ev '$(SANITY_SKIP)' \
		| tar -cf - --ignore-failed-read -T - 2>/dev/null | tar -xf - -C $(SANITY_DIR)
	cd $(SANITY_DIR) && PATH=$(BIN):$$PATH ansible-test sanity --local --python $(SANITY_PYTHON)

lint: venv
	mkdir -p $(COLLECTIONS_PATH)/ansible_collections/openstack_ha
	ln -sfn $(CURDIR) $(COLLECTIONS_PATH)/ansible_collections/openstack_ha/recovery
	PATH=$(BIN):$$PATH ANSIBLE_COLLECTIONS_PATH=$(COLLECTIONS_PATH) ansible-lint

build: venv
	mkdir -p dist
	$(BIN)/ansible-galaxy collection build --force --output-path dist .

# Three pytest-xdist workers, each with a lab of its own (tests/integration/conftest.py), test files kept whole on one
# worker (their tests share lab state). INTEGRATION_WORKERS=0 runs everything in one process against one lab.
INTEGRATION_WORKERS ?= 3
# The longest test files first, then the others of tests/integration (listed, not the directory: pytest would sort a
# directory's files by name): xdist hands out files in collection order, so the
# long ones start early and the short ones fill the gaps at the end.
INTEGRATION_LONG_FIRST := $(addprefix tests/integration/,test_nova_evacuate.py test_runbook_failover.py \
	test_runbook_restore_drain.py test_molecule.py test_runbook_service_recover.py test_runbook_site_restore.py \
	test_runbook_instance_recover.py test_demo.py test_lab.py)
integration: venv lab-install
	$(PY) -m pytest $(INTEGRATION_LONG_FIRST) $(filter-out $(INTEGRATION_LONG_FIRST),$(sort $(wildcard tests/integration/test_*.py))) \
		tests/lab tests/bmc tests/eda tests/controller \
		-q --durations=30 $(if $(filter-out 0,$(INTEGRATION_WORKERS)),-n $(INTEGRATION_WORKERS) --dist loadfile)

test: units sanity integration

# Faults injected into the lab during a failover; prints a table (scenario, outcome, invariants held, recovery time).
faults: venv lab-install
	$(PY) -m pytest tests/faults -q -rA $(if $(SCENARIO),-k '$(SCENARIO)')

# The lab (lab/labctl installs its own Debian packages and venv on first use; see lab/README.md).
.PHONY: system-deps lab-install lab-up lab-down demo
# Debian packages the tests use outside the lab (ipmitool, amtool, Java for ansible-rulebook, openssl).
system-deps:
	lab/install-debs

lab-install:
	lab/labctl install

lab-up:
	lab/labctl up

lab-down:
	lab/labctl down

# Sets everything up, starts the lab, crashes a host and recovers it, printing each step.
demo: venv lab-install
	$(PY) demo/demo.py

# The recovery benchmark (bench/README.md): the lab's servers back after a host crash, by this collection (playbook
# and rulebook), Masakari (its own venv), a naive serial runbook and Nova's floor. BENCH_ARGS=--quick for a smoke run.
.PHONY: bench
bench: venv lab-install system-deps
	$(PY) bench/recovery.py $(BENCH_ARGS)
