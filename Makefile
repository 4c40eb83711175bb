# Quick start (README.md):  make setup   then   make test
#
#   make setup      install what is missing: Debian packages, the harness Python package
#   make test       the test suite (unit, interpreter contract, driver builds, bounded fuzzing)
#   make drivers    host checkers, fuzz targets, Linux modules, Windows .sys (test-signed)
#   make fuzz       a bounded fuzz run of the hardened interpreter (FUZZ_SECONDS=60)
#   make fixtures   regenerate fixtures/content/ and its table of expected outcomes

PYTHON ?= python3
PYTEST_ARGS ?=
FUZZ_SECONDS ?= 60

.PHONY: setup test drivers fuzz fixtures clean
setup:
	@PYTHON=$(PYTHON) tools/setup-host.sh

test: setup
	$(PYTHON) -m pytest $(PYTEST_ARGS)

drivers: setup
	$(MAKE) -C drivers host fuzz linux windows sign

fuzz: setup
	$(MAKE) -C drivers fuzz-run FUZZ_SECONDS=$(FUZZ_SECONDS)

fixtures: setup
	harness content fixtures

clean:
	$(MAKE) -C drivers clean
