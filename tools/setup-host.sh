#!/usr/bin/env bash
# Install what this project needs on a Debian 12 host, idempotently, saying
# what it does.  Run by `make setup` (and so by `make test`); safe to rerun.
#
#   tools/setup-host.sh            Debian packages + the Python package
#   SETUP_SKIP_APT=1 tools/...     only the Python package
set -euo pipefail
cd "$(dirname "$0")/.."

# What each package is for:
#   build-essential pkg-config      host build of the sensor (chf-check), the kernel module
#   clang libclang-rt-14-dev        libFuzzer for the fuzz targets
#   linux-image-amd64               the reference guest's kernel (booted by the VM harness)
#   linux-headers-amd64             headers of that exact kernel, for the sensor module
#   kmod                            modinfo, for checking the built module
#   mingw-w64                       cross compiler for the Windows minifilter (.sys)
#   osslsigncode openssl            test-signing the .sys
#   libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils   the VMs
#   libvirt-dev                     building libvirt-python from PyPI
#   busybox-static dropbear-bin cpio xz-utils e2fsprogs   the reference guest's
#                                   initramfs, its SSH server and its data disk
#   libxml2-utils                   xmllint, which virt-xml-validate runs
#   ovmf swtpm swtpm-tools          UEFI firmware and TPM 2.0 for the Windows domains
#   openssh-server openssh-client   the loopback qemu+ssh:// host of the many-hosts test
#   openssh-sftp-server qemu-guest-agent
#                                   SFTP and the guest agent inside the reference guest
#   libguestfs-tools ntfs-3g        offline content placement into NTFS overlays
#   wimtools libhivex-bin xorriso   WinPE recovery media, offline BCD (safe mode) edits
#   dosfstools mtools               FAT images (the Windows stand-in golden image of the tests)
#   chromium fonts-dejavu-core      headless Chromium for the report page tests, and a text font
#                                   (--no-install-recommends installs no font with Chromium)
PACKAGES=(
  build-essential pkg-config
  clang libclang-rt-14-dev
  linux-image-amd64 linux-headers-amd64 kmod
  mingw-w64
  osslsigncode openssl
  libvirt-daemon-system libvirt-clients libvirt-dev qemu-system-x86 qemu-utils
  busybox-static dropbear-bin cpio xz-utils e2fsprogs
  libxml2-utils
  ovmf swtpm swtpm-tools
  openssh-server openssh-client openssh-sftp-server qemu-guest-agent
  libguestfs-tools ntfs-3g
  wimtools libhivex-bin xorriso dosfstools mtools
  chromium fonts-dejavu-core
)

say() { printf 'setup: %s\n' "$*"; }

if [ "${SETUP_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
      say "missing Debian packages: ${missing[*]}"
      say "run as root, or: sudo apt-get install --no-install-recommends ${missing[*]}"
      exit 1
    fi
    say "installing Debian packages: ${missing[*]} (a few minutes on a fresh machine)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    say "Debian packages present (${#PACKAGES[@]} checked)"
  fi
fi

# swtpm's local CA (the Windows 11 domains' TPM): libvirt runs swtpm_localca as user tss,
# and files a run as root left behind (root-owned lock, serial) make it fail.
if [ -d /var/lib/swtpm-localca ] && id tss >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  chown -R tss:root /var/lib/swtpm-localca
fi

# The Python package, editable, into the active Python (a venv if one is active),
# reinstalled when pyproject.toml changed or `harness` resolves to another checkout.
PY=${PYTHON:-python3}
stamp=".setup-python.stamp"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || ! "$PY" -c "import harness, yaml, jinja2, pefile, libvirt, paramiko, filelock, pycdlib, xdist, os, sys; sys.exit(not harness.__file__.startswith(os.getcwd() + '/'))" 2>/dev/null; then
  say "installing the harness Python package with $("$PY" --version 2>&1) ($PY -m pip install -e '.[test]')"
  "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]'
  touch "$stamp"
else
  say "Python package installed ($(command -v harness || echo "$PY -m harness.cli"))"
fi

# libvirt's daemons (no systemd on these machines): start them when not running.
if [ "${SETUP_SKIP_DAEMONS:-0}" != 1 ]; then
  tools/libvirtd.sh start
fi
