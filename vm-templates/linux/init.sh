#!/bin/sh
# /init of the Linux reference guest (busybox sh, PID 1).  Built into the
# initramfs by harness/guest/linux_ref.py; see vm-templates/linux/README.md.
#
# Knobs, from /proc/cmdline:
#   harness.sensor=vulnerable|hardened   which harness_sensor.ko to insmod (default vulnerable)
#   harness.safemode=1                   do not load the sensor
#   harness.net=1                        eth0 10.0.2.15/24 via 10.0.2.2, dropbear on port 22
#   harness.halt=1                       power off once the boot is complete (benchmarks)
#   harness.hang=1                       stop silently after HARNESS-BOOT-START (a hung boot,
#                                        for testing hang detection)
#   harness.recovery_timeout=N           seconds the recovery script may run (default 120)
#   harness.snapshot=1                   a snapshot machine (harness/fastpath, docs/fastpath.md):
#                                        before the data disk is mounted, wait while it is the
#                                        snapshot's placeholder (snapshot_point in lib.sh)
#
# Safe mode with a recovery medium (an ext4 image with recover.sh, made by
# harness/guest/recovery.py) as the second virtio disk, /dev/vdb: after the data disk
# is mounted, recover.sh runs (as a Windows RunOnce task would), then the boot goes on.
#
# Markers (one whole line each, through the kernel log, so they are never cut
# by or reordered with the kernel's own console lines; the console prefixes
# them with the kernel timestamp "[    2.345678] "):
#   HARNESS-BOOT-START mode=normal|safe sensor=<build>
#   HARNESS-SNAPSHOT-POINT disk=/dev/vda        (harness.snapshot=1: waiting; the host saves here)
#   HARNESS-SNAPSHOT-RESUMED disk=/dev/vda stale=0|1   (the file's disk replaced the placeholder)
#   HARNESS-SENSOR-SKIPPED reason=safe-mode
#   HARNESS-RECOVERY-START path=safe-mode       (safe mode with a recovery medium only)
#   recovery: <line>                            each line recover.sh prints
#   HARNESS-RECOVERY-DONE path=safe-mode rc=<exit code of recover.sh; 143|137 killed by the time bound>
#   HARNESS-RECOVERY-ERROR path=safe-mode reason=no-recovery-medium|medium-mount-failed|no-recovery-script
#                                               (the script did not run; the boot goes on)
#   HARNESS-BOOT-COMPLETE mode=... sensor=...  (after the sensor's HARNESS-SENSOR-LOADED)
#   HARNESS-BOOT-ERROR reason=no-data-disk|mount-failed|unknown-sensor|no-sensor-module|sensor-load-failed
#   HARNESS-SSH-READY addr=10.0.2.15 port=22
#   HARNESS-SSH-ERROR reason=no-eth0|ip-config-failed|no-authorized-keys|dropbear-failed
#   HARNESS-AGENT-STARTED port=/dev/vportNpM pid=N   (normal boots: the QEMU guest agent runs)
#   HARNESS-AGENT-SKIPPED reason=...             (no org.qemu.guest_agent.0 channel: plain QEMU)
#   HARNESS-AGENT-ERROR reason=...
#   HARNESS-HALT
# This script never exits: PID 1 exiting panics the kernel.

. /etc/harness/lib.sh  # environment, disk names, mount_basics, say, wait_for, load_modules, run_recovery

SENSOR_DIR=/lib/harness/sensor
HOST_KEY=/etc/dropbear/dropbear_ed25519_host_key
GUEST_ADDR=10.0.2.15/24
GATEWAY=10.0.2.2

mount_basics
mkdir -p /dev/pts
mount -t devpts -o gid=5,mode=0620 devpts /dev/pts

sensor=vulnerable
safemode=0
net=0
halt=0
hang=0
snapshot=0
read -r cmdline < /proc/cmdline
for arg in $cmdline; do
    case "$arg" in
        harness.sensor=*)   sensor=${arg#*=} ;;
        harness.safemode=*) safemode=${arg#*=} ;;
        harness.net=*)      net=${arg#*=} ;;
        harness.halt=*)     halt=${arg#*=} ;;
        harness.hang=*)     hang=${arg#*=} ;;
        harness.snapshot=*) snapshot=${arg#*=} ;;
        harness.recovery_timeout=*) RECOVERY_TIMEOUT=${arg#*=} ;;
    esac
done
mode=normal
[ "$safemode" = 1 ] && mode=safe

say "HARNESS-BOOT-START mode=$mode sensor=$sensor"

# A hung boot: nothing more on the console, ever (markers go through the kernel log,
# so console=tty0 does not silence them; this does).
if [ "$hang" = 1 ]; then
    while :; do sleep 3600; done
fi

# Kernel modules, dependencies first.
load_modules
[ "$snapshot" = 1 ] && snapshot_point


# safe_mode_recovery: with a recovery medium as the second virtio disk, run its recover.sh.
# Without one (the usual safe-mode boot), nothing.  The boot goes on in every case.
safe_mode_recovery() {
    # Virtio devices of type 2 (block), in probe order: vda is the data disk, vdb the medium.
    set +f
    blk=$(cat /sys/bus/virtio/devices/*/device 2>/dev/null | grep -c '^0x0002$')
    set -f
    [ "${blk:-0}" -ge 2 ] || return 0
    if ! wait_for -b "$RECOVERY_DISK" 100; then
        say "HARNESS-RECOVERY-ERROR path=safe-mode reason=no-recovery-medium device=$RECOVERY_DISK"
        return 0
    fi
    mkdir -p "$MEDIA"
    if ! out=$(mount -t ext4 -o ro "$RECOVERY_DISK" "$MEDIA" 2>&1); then
        say "harness-init: mount $RECOVERY_DISK: $out"
        say "HARNESS-RECOVERY-ERROR path=safe-mode reason=medium-mount-failed device=$RECOVERY_DISK"
        return 0
    fi
    if [ -f "$MEDIA/recover.sh" ]; then
        run_recovery safe-mode
    else
        say "HARNESS-RECOVERY-ERROR path=safe-mode reason=no-recovery-script device=$RECOVERY_DISK"
    fi
    umount "$MEDIA" 2>/dev/null
    return 0
}

# boot: data disk, sensor.  Prints HARNESS-BOOT-ERROR and returns 1 on failure.
boot() {
    if ! wait_for -b "$DISK" 100; then
        say "HARNESS-BOOT-ERROR reason=no-data-disk device=$DISK"
        return 1
    fi
    if ! out=$(mount -t ext4 -o rw "$DISK" "$DATA" 2>&1); then
        say "harness-init: mount $DISK: $out"
        say "HARNESS-BOOT-ERROR reason=mount-failed device=$DISK"
        return 1
    fi
    vendor_content_dir
    if [ "$safemode" = 1 ]; then
        say "HARNESS-SENSOR-SKIPPED reason=safe-mode"
        safe_mode_recovery
        return 0
    fi
    if [ -f "$VENDOR/driver.ko" ]; then
        load_vendor_driver
        return
    fi
    case "$sensor" in
        vulnerable|hardened) ;;
        *) say "HARNESS-BOOT-ERROR reason=unknown-sensor sensor=$sensor"; return 1 ;;
    esac
    ko=$SENSOR_DIR/$sensor/harness_sensor.ko
    if [ ! -f "$ko" ]; then
        say "HARNESS-BOOT-ERROR reason=no-sensor-module sensor=$sensor"
        return 1
    fi
    # A vulnerable sensor that faults here panics the kernel (oops=panic): no return.
    if ! out=$(insmod "$ko" content_dir="$CONTENT" 2>&1); then
        say "harness-init: insmod $ko: $out"
        say "HARNESS-BOOT-ERROR reason=sensor-load-failed sensor=$sensor"
        return 1
    fi
    return 0
}

# load_vendor_driver: insmod the vendor's module from the data disk with its parameters (words),
# boot-start: right after the disk holding its content is mounted.  Its own console lines say
# whether it is ready; a fault here panics the kernel (oops=panic).
load_vendor_driver() {
    params=
    [ -f "$VENDOR/params" ] && read -r params < "$VENDOR/params"
    say "HARNESS-DRIVER-LOAD content_dir=$CONTENT"
    # shellcheck disable=SC2086  # the parameters are separate words (no globbing: set -f)
    if ! out=$(insmod "$VENDOR/driver.ko" $params 2>&1); then
        say "harness-init: insmod $VENDOR/driver.ko: $out"
        say "HARNESS-BOOT-ERROR reason=driver-load-failed"
        return 1
    fi
    return 0
}

# ssh: static address (QEMU user networking), dropbear with the pinned host key.
start_ssh() {
    ip link set lo up
    if ! wait_for -e /sys/class/net/eth0 100; then
        say "HARNESS-SSH-ERROR reason=no-eth0"
        return 1
    fi
    if ! { ip addr add "$GUEST_ADDR" dev eth0 && ip link set eth0 up &&
           ip route add default via "$GATEWAY"; }; then
        say "HARNESS-SSH-ERROR reason=ip-config-failed"
        return 1
    fi
    if [ ! -f "$DATA/harness/authorized_keys" ]; then
        say "HARNESS-SSH-ERROR reason=no-authorized-keys"
        return 1
    fi
    mkdir -p /root/.ssh
    cp "$DATA/harness/authorized_keys" /root/.ssh/authorized_keys
    chown -R 0:0 /root
    chmod 700 /root /root/.ssh
    chmod 600 /root/.ssh/authorized_keys
    # -F foreground (backgrounded here, so init knows when it listens), -E log to stderr,
    # -s no password logins.
    dropbear -F -E -s -r "$HOST_KEY" -p 22 -P /run/dropbear.pid >> /run/dropbear.log 2>&1 &
    pid=$!
    n=0
    # Listening on port 22 (0x0016), state 0A (LISTEN), IPv4 or IPv6.
    while ! grep -qE '^ *[0-9]+: [0-9A-F]+:0016 [0-9A-F]+:0000 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; do
        if [ "$n" -ge 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            say "harness-init: dropbear: $(tail -n 3 /run/dropbear.log 2>/dev/null | tr '\n' ' ')"
            say "HARNESS-SSH-ERROR reason=dropbear-failed"
            return 1
        fi
        usleep 20000
        n=$((n + 1))
    done
    say "HARNESS-SSH-READY addr=${GUEST_ADDR%/*} port=22"
    return 0
}

if boot; then
    say "HARNESS-BOOT-COMPLETE mode=$mode sensor=$sensor"
    [ "$net" = 1 ] && start_ssh
    # The guest agent runs in normal boots only: as on Windows, where the qemu-ga service
    # does not start in Safe Mode.
    [ "$mode" = normal ] && [ "$halt" != 1 ] && start_agent
fi

if [ "$halt" = 1 ]; then
    say "HARNESS-HALT"
    sync
    [ "$CONTENT" != "$DATA/content" ] && umount "$CONTENT" 2>/dev/null  # a vendor driver's bind mount
    umount "$DATA" 2>/dev/null
    poweroff -f
fi

# A shell on the console (ttyS0), respawned if it exits; init itself never exits.
export PS1='harness-guest:\w# '
while :; do
    setsid cttyhack sh
    sleep 1
done
