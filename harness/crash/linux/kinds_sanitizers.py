"""Sanitizer reports: KASAN, KMSAN, KCSAN, KFENCE and UBSAN.

They are findings, not crashes: the kernel prints the report and carries on
(`fatal=False`) unless `panic_on_warn` turns it into a panic, which then joins
the report.  A report is closed by a line of `=` signs.
"""

from __future__ import annotations

from .kind import Kind, k

_FUNC = r"(?P<hf>[A-Za-z0-9_]+)[.+]"
_KASAN_ACCESS = (("rw", r"(Read|Write) (?:of size|at addr)"),)
_SANITIZER = {"fatal": False, "ends_with_rule": True}

SANITIZER_KINDS: tuple[Kind, ...] = (
    k("kasan", r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in " + _FUNC,
      "KASAN: invalid-free in {f}", locate="head-trace", skip=("slab_", "kfree", "vunmap", "vfree"), **_SANITIZER),
    # Hardware tag-based KASAN reports from inside the arm64 fault path.
    k("kasan", r"BUG: KASAN: (?P<what>[a-z-]+) in " + _FUNC, "KASAN: {what} {rw} in {f}", locate="head-trace",
      skip=("kernel_fault", "tag_check", "mem_abort", r"^el1_", r"^el1h_"), body_fields=_KASAN_ACCESS,
      **_SANITIZER),
    k("kasan", r"BUG: KASAN: (?P<what>[a-z-]+) on address", "KASAN: {what} {rw}", locate="none",
      body_fields=(("rw", r"(Read|Write) of size"),), **_SANITIZER),
    k("kasan", r"BUG: KASAN: (?P<what>.*)", "KASAN: {what}", locate="none",
      corrupted="the KASAN report names no function", **_SANITIZER),
    k("kmsan", r"BUG: KMSAN: kernel-usb-infoleak in", "KMSAN: kernel-usb-infoleak in {f}", locate="frames",
      skip=("alloc_skb", "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
            "usb_control_msg"), **_SANITIZER),
    # Crypto and netlink plumbing is where uninit data is used, not where the bug is.
    k("kmsan", r"BUG: KMSAN: (?P<what>[a-z-]+) in", "KMSAN: {what} in {f}", locate="frames",
      skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", r"_encrypt$", r"^(?:crypto|cipher|drbg|rng)_"),
      **_SANITIZER),
    k("kcsan", r"BUG: KCSAN: (?P<what>.*? in (?P<hf>[A-Za-z0-9_]+).*)", "KCSAN: {what}", locate="head",
      **_SANITIZER),
    k("kcsan", r"BUG: KCSAN: (?P<what>.*)", "KCSAN: {what}", locate="none", **_SANITIZER),
    k("kfence", r"BUG: KFENCE: (?P<what>use-after-free|out-of-bounds) (?P<rw>read|write) in " + _FUNC,
      "KFENCE: {what} {rw} in {f}", locate="head-frames", **_SANITIZER),
    k("kfence", r"BUG: KFENCE: invalid free in " + _FUNC, "KFENCE: invalid free in {f}", locate="head-frames",
      **_SANITIZER),
    k("kfence", r"BUG: KFENCE: invalid (?P<rw>read|write) in " + _FUNC, "KFENCE: invalid {rw} in {f}",
      locate="head-frames", **_SANITIZER),
    k("kfence", r"BUG: KFENCE: memory corruption in " + _FUNC, "KFENCE: memory corruption in {f}",
      locate="head-frames", **_SANITIZER),
    k("ubsan", r"UBSAN: Undefined behaviour in", "UBSAN: undefined-behaviour in {f}",
      skip=("ubsan", "overflow"), **_SANITIZER),
    k("ubsan", r"UBSAN: (?P<what>.*?) in ", "UBSAN: {what} in {f}", skip=("ubsan", "overflow"), **_SANITIZER),
)
