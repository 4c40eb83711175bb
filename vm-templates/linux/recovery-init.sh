#!/bin/sh
# /init of the reference guest's recovery environment (busybox sh, PID 1): the stand-in for
# WinRE.  A separate initramfs (harness/guest/linux_ref.py, `recovery_initrd`) with no
# sensor module in it, booted on the same kernel and data disk; see
# vm-templates/linux/README.md.
#
# Disks: /dev/vda the data disk (mounted read-write at /data), /dev/vdb the recovery
# medium (an ext4 image made by harness/guest/recovery.py, mounted read-only at /media)
# holding recover.sh and bad-files.txt.
#
# Knobs, from /proc/cmdline:
#   harness.role=recovery                set by ReferenceGuest.recovery_cmdline(); informative
#   harness.recovery_timeout=N           seconds recover.sh may run (default 120)
#
# Markers (whole lines through the kernel log, like init.sh's):
#   HARNESS-BOOT-START mode=recovery
#   HARNESS-RECOVERY-START path=recovery-env
#   recovery: <line>                     each line recover.sh prints (stdout and stderr)
#   HARNESS-RECOVERY-DONE path=recovery-env rc=<exit code of recover.sh; 143|137 killed by the time bound>
#   HARNESS-BOOT-ERROR reason=no-data-disk|mount-failed|data-disk-read-only|no-recovery-medium|
#                             recovery-medium-mount-failed|no-recovery-script
#   HARNESS-RECOVERY-POWEROFF            last line, on every path: the guest powers off
# Nothing else runs: no sensor, no network, no shell.  PID 1 never exits (that would
# panic the kernel); it ends in poweroff -f.

. /etc/harness/lib.sh  # environment, disk names, mount_basics, say, wait_for, load_modules, run_recovery

mount_basics

read -r cmdline < /proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        harness.recovery_timeout=*) RECOVERY_TIMEOUT=${arg#*=} ;;
    esac
done

say "HARNESS-BOOT-START mode=recovery"

# Kernel modules, dependencies first.
load_modules


# recover: data disk read-write, medium read-only, recover.sh.  Prints HARNESS-BOOT-ERROR
# and returns 1 when a part is missing.
recover() {
    if ! wait_for -b "$DISK" 100; then
        say "HARNESS-BOOT-ERROR reason=no-data-disk device=$DISK"
        return 1
    fi
    # -w: never fall back to a read-only mount (busybox mount does on a write-protected disk).
    if ! out=$(mount -w -t ext4 -o rw "$DISK" "$DATA" 2>&1); then
        say "harness-init: mount $DISK: $out"
        say "HARNESS-BOOT-ERROR reason=mount-failed device=$DISK"
        return 1
    fi
    if ! grep -q "^$DISK $DATA ext4 rw[, ]" /proc/mounts; then
        say "harness-init: $(grep " $DATA " /proc/mounts)"
        say "HARNESS-BOOT-ERROR reason=data-disk-read-only device=$DISK"
        return 1
    fi
    vendor_content_dir
    if ! wait_for -b "$RECOVERY_DISK" 100; then
        say "HARNESS-BOOT-ERROR reason=no-recovery-medium device=$RECOVERY_DISK"
        return 1
    fi
    if ! out=$(mount -t ext4 -o ro "$RECOVERY_DISK" "$MEDIA" 2>&1); then
        say "harness-init: mount $RECOVERY_DISK: $out"
        say "HARNESS-BOOT-ERROR reason=recovery-medium-mount-failed device=$RECOVERY_DISK"
        return 1
    fi
    if [ ! -f "$MEDIA/recover.sh" ]; then
        say "HARNESS-BOOT-ERROR reason=no-recovery-script device=$RECOVERY_DISK"
        return 1
    fi
    run_recovery recovery-env
    return 0
}

recover
sync
umount "$MEDIA" 2>/dev/null
[ "$CONTENT" != "$DATA/content" ] && umount "$CONTENT" 2>/dev/null  # a vendor driver's bind mount
if grep -q " $DATA " /proc/mounts; then
    if ! out=$(umount "$DATA" 2>&1); then
        # Something still holds it: at least leave the file system consistent on disk.
        say "harness-init: umount $DATA: $out"
        mount -o remount,ro "$DATA" 2>/dev/null
        sync
    fi
fi
say "HARNESS-RECOVERY-POWEROFF"
poweroff -f
while :; do sleep 3600; done
