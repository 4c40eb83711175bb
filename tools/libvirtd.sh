#!/usr/bin/env bash
# Start virtlogd and libvirtd when they are not running (these machines have no
# systemd), and wait until qemu:///system answers.  Idempotent; says what it does.
# Also keeps QEMU out of the cgroup cpu controller in qemu.conf (see CGROUPS below), and
# restarts a daemon started before its configuration changed when no QEMU runs.
#
#   tools/libvirtd.sh start | stop | status
set -euo pipefail

URI=${HARNESS_LIBVIRT_URI:-qemu:///system}
WAIT_S=${LIBVIRTD_WAIT_S:-30}
CONF="$(cd "$(dirname "$0")" && pwd)/virtlogd.conf"
QEMU_CONF=${HARNESS_QEMU_CONF:-/etc/libvirt/qemu.conf}
# QEMU stays out of the cgroup "cpu" controller. With libvirt's default every domain goes
# under /machine, and on a cgroup v1 host /machine has one cpu.shares weight (1024) that all
# VMs share against each process outside it: on a busy host the guest got a fraction of
# what the same QEMU started directly gets (bench/README.md, vm_verdict: "cgroup"). The
# other controllers stay (memory, cpuset, blkio, devices, freezer, cpuacct accounting).
CGROUPS='cgroup_controllers = [ "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio" ]'
say() { printf 'libvirtd: %s\n' "$*"; }

running() { [ -f "/run/$1.pid" ] && kill -0 "$(cat "/run/$1.pid")" 2>/dev/null; }

answers() { timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; }

qemu_running() { pgrep -f qemu-system-x86_64 >/dev/null; }

# qemu_conf: the cgroup line in qemu.conf (appended once; an admin's own setting is kept).
qemu_conf() {
  [ -f "$QEMU_CONF" ] || return 0
  grep -qxF "$CGROUPS" "$QEMU_CONF" && return 0
  if grep -qE '^[[:space:]]*cgroup_controllers[[:space:]]*=' "$QEMU_CONF"; then
    say "$QEMU_CONF has its own cgroup_controllers: left alone (the harness's guests run best with: $CGROUPS)"
    return 0
  fi
  say "$QEMU_CONF: QEMU out of the cgroup cpu controller ($CGROUPS)"
  printf '\n# Added by the harness (tools/libvirtd.sh): guests scheduled like any other process.\n%s\n' \
    "$CGROUPS" >> "$QEMU_CONF"
}

start() {
  if [ "$(id -u)" != 0 ]; then
    say "not root: cannot start the system daemons; ask an admin, or run as root"
    exit 1
  fi
  qemu_conf
  if running libvirtd && [ "$QEMU_CONF" -nt /run/libvirtd.pid ]; then
    if qemu_running; then
      say "libvirtd started before $QEMU_CONF changed; QEMU is running, so it is left alone: the change applies at its next restart (tools/libvirtd.sh stop; tools/libvirtd.sh start)"
    else
      say "restarting libvirtd: $QEMU_CONF changed since it started"
      kill "$(cat /run/libvirtd.pid)"
      for _ in $(seq 100); do running libvirtd || break; sleep 0.1; done
    fi
  fi
  if running virtlogd && ! grep -qaF "tools/virtlogd.conf" "/proc/$(cat /run/virtlogd.pid)/cmdline"; then
    if qemu_running; then
      say "virtlogd runs without $CONF (serial logs roll over at 2 MiB); QEMU is running, so it is left alone: restart it with tools/libvirtd.sh stop; tools/libvirtd.sh start"
    else
      say "restarting virtlogd with $CONF (serial logs roll over at 128 MiB, not 2 MiB)"
      kill "$(cat /run/virtlogd.pid)"
      for _ in $(seq 50); do running virtlogd || break; sleep 0.1; done
    fi
  fi
  if running virtlogd; then say "virtlogd running (pid $(cat /run/virtlogd.pid))"
  else say "starting virtlogd ($CONF)"; virtlogd -d -f "$CONF"; fi
  if running libvirtd; then say "libvirtd running (pid $(cat /run/libvirtd.pid))"
  else say "starting libvirtd (the first start probes QEMU's capabilities: ~10 s)"; libvirtd -d; fi
  local deadline=$((SECONDS + WAIT_S))
  until answers; do
    if [ $SECONDS -ge $deadline ]; then
      say "libvirtd does not answer on $URI after ${WAIT_S}s; see /var/log/libvirt/libvirtd.log"
      exit 1
    fi
    sleep 0.2
  done
  say "$URI answers"
}

stop() {
  for d in libvirtd virtlogd; do
    if running "$d"; then say "stopping $d"; kill "$(cat "/run/$d.pid")"; fi
  done
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) running virtlogd && running libvirtd && answers && say "up" || { say "down"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
