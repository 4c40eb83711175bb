#!/bin/sh
# /etc/harness/lib.sh: shell functions shared by the reference guest's two inits
# (init.sh and recovery-init.sh), sourced by both.  Built into both initramfs images
# by harness/guest/linux_ref.py.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root
umask 022
set -f  # no globbing of /proc/cmdline words

DISK=/dev/vda
DATA=/data
CONTENT=$DATA/content
VENDOR=$DATA/harness/driver  # a vendor's driver installed on the data disk (harness/driver.py)
RECOVERY_DISK=/dev/vdb
MEDIA=/media
RECOVERY_TIMEOUT=120
AGENT_PORT_NAME=org.qemu.guest_agent.0

# vendor_content_dir: with a vendor's driver on the data disk, the directory it reads is the
# disk's content/, bind-mounted at the driver's own path; CONTENT (what recovery scripts are
# told) follows it.  Without one, nothing.
vendor_content_dir() {
    [ -f "$VENDOR/content_dir" ] || return 0
    read -r dir < "$VENDOR/content_dir"
    if mkdir -p "$dir" && mount -o bind "$DATA/content" "$dir"; then
        CONTENT=$dir
    else
        say "harness-init: cannot bind $DATA/content at $dir"
    fi
}

# mount_basics: proc, sys, devtmpfs, a tmpfs /run, the mount points, and unthrottled /dev/kmsg.
mount_basics() {
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    mkdir -p /run /tmp "$DATA" "$MEDIA" /root
    mount -t tmpfs -o mode=0755 tmpfs /run
    # Lines written to /dev/kmsg are not rate-limited (the default allows 10 per 5 s).
    echo on > /proc/sys/kernel/printk_devkmsg 2>/dev/null
}

# say LINE: one console line through the kernel log, at notice level (shown with loglevel>=6).
say() {
    if [ -c /dev/kmsg ] && echo "<5>$*" > /dev/kmsg 2>/dev/null; then
        return 0
    fi
    echo "$*" > /dev/console
}

# snapshot_point: a snapshot machine (harness.snapshot=1) stops here, after the modules and
# before anything reads the data disk, while the disk is the snapshot's placeholder (its first
# sector begins with SNAPSHOT_MARK; a real data disk's first sector is zero, ext4 leaves it
# unused).  The host saves the machine at the POINT line; each restore names the file's own disk
# in the placeholder's place, and the next poll sees it.  The polls read with O_DIRECT (no page
# cache); before going on, the block device's buffers and the page cache are dropped
# (BLKFLSBUF, drop_caches), so nothing read from the placeholder can be served for the new disk,
# and a buffered read of sector 0 proves it (stale=1 if the mark is still seen).  A reboot of
# the same machine (a crash, then a reset) finds the file's disk at once and goes straight on.
SNAPSHOT_MARK=HARNESS-SNAPSHOT-PLACEHOLDER
snapshot_point() {
    [ -b "$DISK" ] || return 0  # no data disk at all: boot() says so
    placeholder_disk direct || return 0
    say "HARNESS-SNAPSHOT-POINT disk=$DISK"
    while placeholder_disk direct; do usleep 10000; done
    blockdev --flushbufs "$DISK" 2>/dev/null
    sync
    echo 3 > /proc/sys/vm/drop_caches 2>/dev/null
    stale=0
    placeholder_disk buffered && stale=1
    say "HARNESS-SNAPSHOT-RESUMED disk=$DISK stale=$stale"
}

# placeholder_disk direct|buffered: whether the data disk's first sector begins with SNAPSHOT_MARK.
placeholder_disk() {
    if [ "$1" = direct ]; then
        head_bytes=$(dd if="$DISK" bs=512 count=1 iflag=direct 2>/dev/null | head -c 28)
    else
        head_bytes=$(dd if="$DISK" bs=512 count=1 2>/dev/null | head -c 28)
    fi
    [ "$head_bytes" = "$SNAPSHOT_MARK" ]
}

# wait_for TEST ARG TRIES: poll every 50 ms until `test TEST ARG` holds, at most TRIES times.
wait_for() {
    n=0
    while ! test "$1" "$2"; do
        [ "$n" -ge "$3" ] && return 1
        usleep 50000
        n=$((n + 1))
    done
    return 0
}

# load_modules: the kernel modules, dependencies first (the list is made at build time
# with modprobe --show-depends).  "No such device" (e.g. crc32c-intel on a CPU without
# SSE4.2) and "File exists" are normal.
load_modules() {
    while read -r ko; do
        [ -n "$ko" ] || continue
        if ! out=$(insmod "$ko" 2>&1); then
            case "$out" in
                *"No such device"*|*"File exists"*) ;;
                *) say "harness-init: ${ko##*/} not loaded: $out" ;;
            esac
        fi
    done < /etc/harness/modules
}

# run_recovery PATH: run $MEDIA/recover.sh (PATH: safe-mode|recovery-env), its output on the
# console line by line, bounded by $RECOVERY_TIMEOUT seconds; then sync.  Sets recovery_rc.
run_recovery() {
    case "$RECOVERY_TIMEOUT" in
        ''|*[!0-9]*|0) RECOVERY_TIMEOUT=120 ;;
    esac
    say "HARNESS-RECOVERY-START path=$1"
    rm -f /run/recovery.rc
    {
        cd /
        # Its own session and process group (pgid = its pid), so that whatever the script
        # leaves running can be killed as a group.  timeout: TERM after the bound, KILL 5 s later.
        HARNESS_CONTENT_DIR=$CONTENT HARNESS_BAD_FILES=$MEDIA/bad-files.txt \
            HARNESS_RECOVERY_PATH=$1 \
            setsid timeout -k 5 "$RECOVERY_TIMEOUT" sh "$MEDIA/recover.sh" < /dev/null 2>&1 &
        rec_pid=$!
        wait "$rec_pid"
        echo "$?" > /run/recovery.rc
        kill -KILL -"$rec_pid" 2>/dev/null
    } 2>&1 | while IFS= read -r rec_line || [ -n "$rec_line" ]; do
        # Whole lines through the kernel log; the script cannot forge a harness marker.
        rec_line=${rec_line//HARNESS-/HARNESS_}
        say "recovery: ${rec_line:0:900}"
    done
    recovery_rc=
    read -r recovery_rc < /run/recovery.rc 2>/dev/null
    # rc: the script's exit status; 143/137 when the time bound killed it; -1 unknown.
    say "HARNESS-RECOVERY-DONE path=$1 rc=${recovery_rc:--1}"
    sync
}

# start_agent: the QEMU guest agent on the virtio-serial port named org.qemu.guest_agent.0
# (the domain's <channel> with that target name; virtio_console must be loaded).  No udev
# here: the port is found by its name in sysfs and /dev/virtio-ports/<name> is linked by
# hand, as udev would.  The port shows up shortly after virtio_console binds (the host
# announces it on the control queue): wait up to 2 s.  A domain without the channel is
# normal (plain QEMU boots): HARNESS-AGENT-SKIPPED, nothing else.
#   HARNESS-AGENT-STARTED port=/dev/vportNpM pid=<qemu-ga pid>
#   HARNESS-AGENT-SKIPPED reason=no-virtio-serial|no-agent-port
#   HARNESS-AGENT-ERROR reason=no-qemu-ga|qemu-ga-failed
start_agent() {
    if [ ! -d /sys/class/virtio-ports ]; then
        say "HARNESS-AGENT-SKIPPED reason=no-virtio-serial"
        return 0
    fi
    agent_port=
    n=0
    while [ -z "$agent_port" ] && [ "$n" -le 40 ]; do
        set +f
        for name_file in /sys/class/virtio-ports/*/name; do
            [ -f "$name_file" ] || continue
            read -r port_name < "$name_file" 2>/dev/null
            if [ "$port_name" = "$AGENT_PORT_NAME" ]; then
                agent_port=${name_file%/name}
                agent_port=${agent_port##*/}
            fi
        done
        set -f
        [ -n "$agent_port" ] && break
        usleep 50000
        n=$((n + 1))
    done
    if [ -z "$agent_port" ]; then
        say "HARNESS-AGENT-SKIPPED reason=no-agent-port"
        return 0
    fi
    if ! command -v qemu-ga > /dev/null; then
        say "HARNESS-AGENT-ERROR reason=no-qemu-ga"
        return 1
    fi
    wait_for -c "/dev/$agent_port" 40
    mkdir -p /dev/virtio-ports
    ln -sf "../$agent_port" "/dev/virtio-ports/$AGENT_PORT_NAME"
    qemu-ga -m virtio-serial -p "/dev/virtio-ports/$AGENT_PORT_NAME" -f /run/qemu-ga.pid \
        -t /run -l /run/qemu-ga.log < /dev/null > /dev/null 2>&1 &
    agent_pid=$!
    usleep 100000
    if ! kill -0 "$agent_pid" 2>/dev/null; then
        say "harness-init: qemu-ga: $(tail -n 3 /run/qemu-ga.log 2>/dev/null | tr '\n' ' ')"
        say "HARNESS-AGENT-ERROR reason=qemu-ga-failed"
        return 1
    fi
    say "HARNESS-AGENT-STARTED port=/dev/$agent_port pid=$agent_pid"
    return 0
}
