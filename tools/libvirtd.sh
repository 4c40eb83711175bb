#!/usr/bin/env bash
# Start virtlogd and libvirtd when they are not running (these machines have no
# systemd), and wait until qemu:///system answers.  Idempotent; says what it does.
#
#   tools/libvirtd.sh start | stop | status
set -euo pipefail

URI=${HARNESS_LIBVIRT_URI:-qemu:///system}
WAIT_S=${LIBVIRTD_WAIT_S:-30}
CONF="$(cd "$(dirname "$0")" && pwd)/virtlogd.conf"
say() { printf 'libvirtd: %s\n' "$*"; }

running() { [ -f "/run/$1.pid" ] && kill -0 "$(cat "/run/$1.pid")" 2>/dev/null; }

answers() { timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; }

start() {
  if [ "$(id -u)" != 0 ]; then
    say "not root: cannot start the system daemons; ask an admin, or run as root"
    exit 1
  fi
  if running virtlogd && ! grep -qaF "tools/virtlogd.conf" "/proc/$(cat /run/virtlogd.pid)/cmdline"; then
    if pgrep -f qemu-system-x86_64 >/dev/null; then
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
