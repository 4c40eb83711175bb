# Quick start (README.md):  make setup   then   make test
#
#   make setup      install what is missing (Debian packages, the Python package) and start libvirtd
#   make test       every test: unit, interpreter contract, driver builds, fuzzing, real VMs
#   make test-vms   only the VM tests, on PROFILE (default linux-ref; CONFIG=harness.yaml for yours)
#   make guest      build (or find cached) the Linux reference guest
#   make drivers    host checkers, fuzz targets, Linux modules, Windows .sys (test-signed)
#   make fuzz       a bounded fuzz run of the hardened interpreter (FUZZ_SECONDS=60)
#   make bench      the benchmarks under bench/ (ratios against baselines of the same run)
#   make fixtures   regenerate fixtures/content/ and its table of expected outcomes

PYTHON ?= python3
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 60
PROFILE ?= linux-ref
CONFIG ?=
VM_OPTS = --harness-profile $(PROFILE) $(if $(CONFIG),--harness-config $(CONFIG))

.PHONY: setup test test-vms guest drivers fuzz bench fixtures clean
setup:
	@PYTHON=$(PYTHON) tools/setup-host.sh

test: setup
	$(PYTHON) -m pytest $(VM_OPTS) $(PYTEST_ARGS)

test-vms: setup
	$(PYTHON) -m pytest -m vm $(VM_OPTS) $(PYTEST_ARGS)

guest: setup
	$(PYTHON) -m harness.cli guest build

drivers: setup
	$(MAKE) -C drivers host fuzz linux windows sign

fuzz: setup
	$(MAKE) -C drivers fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

bench: setup
	$(PYTHON) bench/vm_verdict.py
	$(PYTHON) bench/vm_reset.py
	$(PYTHON) bench/recovery.py
	$(PYTHON) bench/throughput.py
	$(PYTHON) bench/rollout.py
	$(PYTHON) bench/campaign.py

fixtures: setup
	$(PYTHON) -m harness.cli content fixtures

clean:
	$(MAKE) -C drivers clean
	rm -rf build
