# SPDX-License-Identifier: GPL-2.0
#
# Out-of-tree kernel modules of the tests (tests/vendor_driver, tests/crashtest), built
# against the headers of the kernel the reference guest boots.  The including Makefile
# sets SRC_DIR (its own directory), MODULE, SOURCES and the default BUILD_DIR, then
# includes this file:
#
#   make -C <dir> [all|clean|print-kver|print-kdir] [BUILD_DIR=<dir>] [KVER=<release>|KDIR=<dir>]
#
# Kbuild only compiles sources under M=, so the sources are copied to BUILD_DIR first
# and the source tree stays clean.  The guest boots the kernel Debian's
# linux-image-amd64 metapackage depends on (e.g. 6.1.0-57-amd64); its headers are
# /lib/modules/<release>/build (linux-headers-amd64).  KVER or KDIR overrides that.

override BUILD_DIR := $(abspath $(BUILD_DIR))

ifeq ($(origin KDIR),undefined)
  ifeq ($(origin KVER),undefined)
    # "installed linux-image-6.1.0-57-amd64 (= 6.1.192-3)" -> 6.1.0-57-amd64
    KVER := $(shell dpkg-query -W -f='$${db:Status-Status} $${Depends}' linux-image-amd64 2>/dev/null | \
              sed -n 's/^installed .*linux-image-\([^ ,|]*\).*/\1/p')
  endif
  KDIR := $(if $(KVER),/lib/modules/$(KVER)/build)
else
  ifeq ($(origin KVER),undefined)
    KVER := $(shell sed -n 's/^\#define UTS_RELEASE "\(.*\)"/\1/p' '$(KDIR)/include/generated/utsrelease.h' 2>/dev/null)
  endif
endif

FIX := apt-get install linux-image-amd64 linux-headers-amd64 (or make setup at the repository root), or pass KVER=<release> or KDIR=<headers dir>

.PHONY: all clean print-kver print-kdir check-kdir

all: check-kdir $(addprefix $(BUILD_DIR)/,$(SOURCES))
	@$(MAKE) -C '$(KDIR)' M='$(BUILD_DIR)' modules
	@echo '$(MODULE): $(BUILD_DIR)/$(MODULE).ko'

check-kdir:
	@if [ -z '$(KDIR)' ]; then \
	  echo 'error: cannot tell the guest kernel release: linux-image-amd64 is not installed.' >&2; \
	  echo '       $(FIX)' >&2; exit 1; fi
	@if [ ! -f '$(KDIR)/Makefile' ]; then \
	  echo 'error: no kernel headers at $(KDIR).' >&2; \
	  echo '       $(FIX)' >&2; exit 1; fi

print-kver: check-kdir
	@echo '$(KVER)'

print-kdir: check-kdir
	@echo '$(KDIR)'

$(BUILD_DIR)/%: $(SRC_DIR)/%
	@mkdir -p '$(@D)'
	@cp -f '$<' '$@'

clean:
	@rm -rf '$(BUILD_DIR)'
