"""The cause of a crash in words, read from the minimised file's structure.

For a channel file the parser reads: the instances left and, in each, the non-wildcard
criteria on fields the sensor supplies no input for (the Channel File 291 case: field 21 of
21, index 20).  For any other file: the first problem the format scanner finds (a body_len
or a payload len past the end, a truncated instance...), with the spec oracle's account of
what the vulnerable build does with it.
"""

from __future__ import annotations

from typing import Any

from ..content.format import SENSOR_INPUTS, ChannelFile, Kind, scan
from ..content.oracle import predict_vulnerable
from .oracle import Crash
from .passes import parsable


def _kind(kind: int) -> str:
    return Kind(kind).name.lower() if kind in (0, 1, 2) else f"unknown ({kind})"


def describe(data: bytes, crash: Crash, original: ChannelFile | None = None) -> dict[str, Any]:
    """`culprit` for the JSON report: `summary` (one sentence) plus the structured facts."""
    out: dict[str, Any] = {"title": crash.title, "function": crash.function}
    cf = parsable(data)
    if cf is not None:
        out.update(_structural(cf, original))
    else:
        out.update(_malformed(data))
    return out


def _structural(cf: ChannelFile, original: ChannelFile | None) -> dict[str, Any]:
    hits = [(n, inst, i, c) for n, inst in enumerate(cf.instances) for i, c in enumerate(inst.criteria)
            if c.kind != Kind.WILDCARD and i >= SENSOR_INPUTS]
    base = {"instances": len(cf.instances), "fields": cf.fields}
    if not hits:
        kept = [(inst.id, i, _kind(c.kind)) for inst in cf.instances for i, c in enumerate(inst.criteria)
                if c.kind != Kind.WILDCARD]
        return {**base, "summary": f"{len(cf.instances)} instance(s) of {cf.fields} fields; non-wildcard "
                                   f"criteria left (instance id, index, kind): {kept}"}
    n, inst, i, crit = hits[0]
    original_index = None
    if original is not None:
        original_index = next((k for k, o in enumerate(original.instances) if o.id == inst.id), None)
    where = f" (instance {original_index} of {len(original.instances)} in the input)" if original and \
        original_index is not None else ""
    count = len(inst.criteria)
    header = "" if count == cf.fields else f" (the header declares {cf.fields} fields, the instance {count})"
    summary = (f"instance id {inst.id}{where}: the criterion at index {i}, i.e. field {i + 1} of {count}{header}, "
               f"is {_kind(crit.kind)} (not a wildcard), but the sensor supplies only {SENSOR_INPUTS} input "
               f"values, so the interpreter reads input {i + 1} from the guard slot past the input array")
    if len(hits) > 1:
        summary += f" ({len(hits) - 1} more such criteria left)"
    return {**base, "summary": summary, "instance_id": inst.id, "instance_index": n,
            "input_instance_index": original_index, "criterion_index": i, "field": i + 1,
            "kind": _kind(crit.kind), "payload_len": len(crit.payload)}


def _malformed(data: bytes) -> dict[str, Any]:
    result = scan(data)
    problem = result.problems[0] if result.problems else None
    prediction = predict_vulnerable(data)
    summary = f"{problem.field} at offset {problem.offset}: {problem.message}" if problem else "well-formed"
    if prediction.outcome == "crash":
        summary += f"; the vulnerable build: {prediction.detail}"
    return {"summary": summary, "problem": None if problem is None else
            {"code": problem.code, "offset": problem.offset, "field": problem.field},
            "spec_expects": prediction.to_json()}
