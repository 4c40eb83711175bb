"""`harness image build windows ...`: the Windows golden-image recipe (harness/windows/image.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .windows.domain import EDITIONS
from .windows.image import DEFAULT_DISK_GIB, DEFAULT_TIMEOUT, SENSOR_BUILDS


def register(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    image = groups.add_parser("image", help="golden images")
    sub = image.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)
    build = sub.add_parser("build", help="build a golden image")
    family = build.add_subparsers(dest="family", metavar="FAMILY", required=True)
    p = family.add_parser("windows", help="unattended Windows install -> read-only golden qcow2",
                          description="Installs Windows unattended from its ISO into a new qcow2 disk "
                                      "(EMS on COM1, test signing, the sample sensor, OpenSSH), waits for "
                                      "HARNESS-IMAGE-READY on COM2 and the shutdown, then stamps the image "
                                      "read-only with a sha256 manifest. See docs/running-on-windows.md.")
    p.add_argument("--iso", type=Path, required=True, help="the Windows install ISO")
    p.add_argument("--virtio-win", type=Path, required=True, help="the virtio-win driver ISO")
    p.add_argument("--edition", choices=sorted(EDITIONS), default="win11")
    p.add_argument("--image-index", type=int, default=1,
                   help="index of the edition in sources/install.wim (default 1; "
                        "dism /Get-ImageInfo or wiminfo lists them)")
    p.add_argument("--out", type=Path, default=Path("build/images"), help="output directory (default build/images)")
    p.add_argument("--sensor", choices=SENSOR_BUILDS, default="vulnerable", help="sensor build installed")
    p.add_argument("--product-key", help="product key (default: none; evaluation media need none)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help=f"seconds to wait for HARNESS-IMAGE-READY (default {DEFAULT_TIMEOUT:.0f})")
    p.add_argument("--disk-size", type=int, default=DEFAULT_DISK_GIB, help="disk size in GiB (default 64)")
    p.add_argument("--uri", default="qemu:///system", help="libvirt URI")
    p.add_argument("--force", action="store_true", help="replace an existing golden image")
    p.add_argument("--config", type=Path, help="YAML file with profiles (with --profile: install that profile's "
                                                "vendor driver: block instead of the sample sensor)")
    p.add_argument("--profile", help="a family: windows profile with a driver: block (docs/windows-vendor-driver.md)")
    p.set_defaults(run=cmd_image_build_windows)


def cmd_image_build_windows(args: argparse.Namespace) -> int:
    from .config import select_profile
    from .windows.image import ImageRequest, build_windows_image

    profile = select_profile(args.config, args.profile) if args.config or args.profile else None
    req = ImageRequest(iso=args.iso, virtio_win=args.virtio_win, edition=args.edition,
                       image_index=args.image_index, out=args.out, sensor=args.sensor,
                       product_key=args.product_key, timeout=args.timeout, disk_gib=args.disk_size,
                       force=args.force, uri=args.uri,
                       driver=profile.driver if profile else None, profile=profile.name if profile else "")
    golden = build_windows_image(req, progress=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"image     {golden.image}\nsha256    {golden.sha256}\nmanifest  {golden.manifest}")
    return 0
