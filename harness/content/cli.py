"""`harness content ...`: make, mutate, inspect and check channel files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..errors import HarnessError
from ..paths import CONTENT_FIXTURES, INSTALLED
from .faults import CATALOGUE, fault
from .files import read_content_file, write_content_file
from .fixture_set import write_fixture_set
from .format import Kind, Scan, scan, with_crc_fixed
from .generate import new_channel_file
from .oracle import BUILDS, predict
from .sensor import check_file

MAX_LISTED_INSTANCES = 20


def register(groups: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    content = groups.add_parser("content", help="make, mutate, inspect and check channel files")
    sub = content.add_subparsers(dest="command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("new", help="write a well-formed channel file")
    p.add_argument("--fields", type=int, default=20, help="input fields per instance (default 20)")
    p.add_argument("--instances", type=int, default=4, help="template instances (default 4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--channel", type=int, default=291)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(run=cmd_new)

    p = sub.add_parser("mutate", help="apply a named fault model to a well-formed file")
    p.add_argument("file", type=Path)
    p.add_argument("--fault", required=True, choices=sorted(CATALOGUE), metavar="NAME",
                   help="one of: " + ", ".join(CATALOGUE))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(run=cmd_mutate)

    p = sub.add_parser("inspect", help="show a file's structure, its problems and the spec's expectation")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_inspect)

    p = sub.add_parser("check", help="run the sensor on a file: its C interpreter (host build) "
                                     "or the built Windows driver under a kernel emulator (--target sys)")
    p.add_argument("file", type=Path)
    p.add_argument("--sensor", required=True, choices=BUILDS)
    p.add_argument("--target", choices=("host", "sys"), default="host",
                   help="host: the interpreter built for this machine (default); sys: the built "
                        "harnessflt.sys booted under a Windows kernel emulator (docs/sys-tier.md)")
    p.add_argument("--driver", type=Path, metavar="SYS",
                   help="with --target sys: this driver image instead of drivers/build/windows/<sensor>/")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("faults", help="list the fault models and their expected outcomes")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_faults)

    p = sub.add_parser("fix-crc", help="rewrite the header CRC over the body (fuzzer reproducers)")
    p.add_argument("file", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(run=cmd_fix_crc)

    p = sub.add_parser("fixtures", help="regenerate the content fixtures and their table")
    p.add_argument("--out", type=Path, default=Path("fixtures/content") if INSTALLED else CONTENT_FIXTURES)
    p.set_defaults(run=cmd_fixtures)


def _expect_line(data: bytes) -> str:
    return ", ".join(f"{build} {p.outcome}" for build, p in predict(data).items())


def cmd_new(args: argparse.Namespace) -> int:
    try:
        cf = new_channel_file(fields=args.fields, instances=args.instances, seed=args.seed,
                              channel=args.channel)
    except ValueError as exc:
        raise HarnessError(f"content new: {exc}") from None
    data = cf.to_bytes()
    write_content_file(args.output, data)
    print(f"wrote {args.output}: {len(data)} bytes, {args.fields} fields, {args.instances} instances "
          f"(spec expects: {_expect_line(data)})")
    return 0


def cmd_mutate(args: argparse.Namespace) -> int:
    model = fault(args.fault)
    source = read_content_file(args.file)
    try:
        data = model.apply(source, seed=args.seed)
    except ValueError as exc:  # ContentFormatError and FaultError
        raise HarnessError(f"{args.file}: cannot apply {model.name}: {exc}") from None
    write_content_file(args.output, data)
    expected = model.expected_for(data)
    print(f"wrote {args.output}: {len(data)} bytes, fault {model.name}, seed {args.seed} "
          f"(expected: " + ", ".join(f"{b} {expected[b]}" for b in BUILDS) + ")")
    return 0


def _payload_text(payload: bytes) -> str:
    return payload.decode("utf-8", "backslashreplace")


def inspect_json(path: Path, data: bytes, result: Scan) -> dict[str, Any]:
    h = result.header
    return {
        "file": str(path), "size": result.size,
        "header": None if h is None else {
            "magic": h.magic.decode("latin-1"), "version": h.version, "channel": h.channel,
            "template": h.template, "fields": h.fields, "instances": h.instances,
            "body_len": h.body_len, "crc32": f"{h.crc32:#010x}",
        },
        "crc_actual": None if result.crc_actual is None else f"{result.crc_actual:#010x}",
        "well_formed": result.well_formed,
        "problems": [{"code": p.code, "offset": p.offset, "field": p.field, "message": p.message}
                     for p in result.problems],
        "instances": [{
            "index": n, "id": inst.id, "offset": inst.offset, "criteria_declared": inst.declared_criteria,
            "criteria": [{"index": i, "kind": Kind(c.kind).name.lower(), "len": c.length,
                          "payload": _payload_text(c.payload), "offset": c.offset}
                         for i, c in enumerate(inst.criteria)],
        } for n, inst in enumerate(result.instances)],
        "expected": {build: p.to_json() for build, p in predict(data).items()},
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    data = read_content_file(args.file)
    result = scan(data)
    if args.json:
        print(json.dumps(inspect_json(args.file, data, result), indent=2))
        return 0
    print(f"file        {args.file} ({result.size} bytes)")
    h = result.header
    if h is not None:
        crc_state = "ok" if result.crc_actual == h.crc32 else f"body gives {result.crc_actual:#010x}"
        print(f"header      magic {h.magic!r} version {h.version} channel {h.channel} template {h.template} "
              f"fields {h.fields} instances {h.instances} body_len {h.body_len} "
              f"crc32 {h.crc32:#010x} ({crc_state})")
    for n, inst in enumerate(result.instances[:MAX_LISTED_INSTANCES]):
        kinds = [c.kind for c in inst.criteria]
        print(f"instance {n:<3} id {inst.id} at offset {inst.offset}: {inst.declared_criteria} criteria "
              f"({kinds.count(Kind.WILDCARD)} wildcard, {kinds.count(Kind.EXACT)} exact, "
              f"{kinds.count(Kind.PREFIX)} prefix)")
        for i, c in enumerate(inst.criteria):
            if c.kind != Kind.WILDCARD:
                note = "   <- no input for this field: the sensor supplies 20" if i >= 20 else ""
                print(f"    field {i + 1:<3} {Kind(c.kind).name.lower():<7} {_payload_text(c.payload)!r}{note}")
    hidden = len(result.instances) - MAX_LISTED_INSTANCES
    if hidden > 0:
        print(f"... {hidden} more instances (use --json for all)")
    if result.problems:
        print("well-formed no; parsing stopped or failed at:")
        for p in result.problems:
            print(f"  {p}")
    else:
        print("well-formed yes")
    for build, p in predict(data).items():
        why = f" ({p.reason_code}: {p.detail})" if p.reason_code else ""
        print(f"spec expects {build}: {p.outcome}{why}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.target == "sys":
        return _check_sys(args)
    if args.driver is not None:
        raise HarnessError(f"{args.driver}: --driver needs --target sys (the host tier runs no driver image)")
    result = check_file(args.file, args.sensor)
    if args.json:
        spec = predict(read_content_file(args.file))[args.sensor]
        print(json.dumps({**result.to_json(), "spec_expects": spec.to_json()}))
        return 0
    print(f"{args.file}: {result.outcome} ({args.sensor} sensor): {result.reason}"
          + (f" [{result.reason_code}]" if result.reason_code else ""))
    return 0


def _check_sys(args: argparse.Namespace) -> int:
    from ..sys_tier.check import check_file_sys  # the emulator loads only for this tier

    report = check_file_sys(args.file, args.sensor, driver=args.driver)
    spec = predict(read_content_file(args.file))[args.sensor]
    if args.json:
        print(json.dumps({"sensor": args.sensor, **report, "spec_expects": spec.to_json()}))
        return 0
    print(f"{args.file}: {report['outcome']} ({args.sensor} driver, emulated): {report['reason']}"
          + (f" [{report['reason_code']}]" if report["reason_code"] else ""))
    if report["bugcheck"]:
        bc = report["bugcheck"]
        print(f"  bugcheck {bc['code']} {bc['name']} ({', '.join(bc['parameters'])}) "
              f"in {report['crash']['location']}")
    return 0


def cmd_faults(args: argparse.Namespace) -> int:
    rows = [{"name": m.name, "description": m.description,
             "expected": m.expected or "per file: see `harness content inspect`"} for m in CATALOGUE.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for m in CATALOGUE.values():
        exp = ", ".join(f"{b} {o}" for b, o in m.expected.items()) if m.expected else "decided per file"
        print(f"{m.name:<22} {exp:<38} {m.description}")
    return 0


def cmd_fix_crc(args: argparse.Namespace) -> int:
    data = with_crc_fixed(read_content_file(args.file))
    write_content_file(args.output, data)
    print(f"wrote {args.output} (spec expects: {_expect_line(data)})")
    return 0


def cmd_fixtures(args: argparse.Namespace) -> int:
    fixtures = write_fixture_set(args.out)
    print(f"wrote {len(fixtures)} fixtures and expected.yaml to {args.out}")
    return 0
