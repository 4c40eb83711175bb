#!/bin/sh
# /acme/init: a test-only init (busybox sh, PID 1, booted with rdinit=/acme/init) that loads
# a vendor driver the way the reference guest loads its sensor: the kernel modules of the
# reference initramfs (/etc/harness/modules), the data disk /dev/vda mounted at /data, its
# content/ directory bind-mounted at the driver's content directory, then insmod with the
# driver's parameters.  Then it powers off (unless the driver crashed the kernel first).
# /acme/driver.conf (written by tests/vendor_driver/boot.py) sets MODULE, PARAMS, CONTENT_DIR.
#
# Lines of its own go straight to /dev/console, so `quiet loglevel=4` does not hide them:
#   ACME-TEST: insmod <module> <params>
#   ACME-TEST: insmod rc=<exit status>
#   ACME-TEST: error <what>

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
set -f

say() { echo "ACME-TEST: $*" > /dev/console; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /acme/driver.conf

finish() {
    sync
    umount "$CONTENT_DIR" /data 2>/dev/null
    poweroff -f
}

if [ ! -f /etc/harness/modules ]; then
    say "error no /etc/harness/modules in the reference initramfs"
    finish
fi
while read -r ko; do
    [ -n "$ko" ] && insmod "$ko" 2>/dev/null
done < /etc/harness/modules

n=0
while [ ! -b /dev/vda ] && [ "$n" -lt 100 ]; do usleep 50000; n=$((n + 1)); done
mkdir -p /data
if ! mount -t ext4 -o rw /dev/vda /data; then
    say "error cannot mount /dev/vda"
    finish
fi
mkdir -p "$CONTENT_DIR"
if ! mount -o bind /data/content "$CONTENT_DIR"; then
    say "error cannot bind /data/content to $CONTENT_DIR"
    finish
fi

say "insmod $MODULE $PARAMS"
# shellcheck disable=SC2086  # PARAMS: one word per module parameter
insmod "$MODULE" $PARAMS
say "insmod rc=$?"
finish
