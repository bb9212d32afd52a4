"""Unnatural Instructions (core and full): `instruction` + `instances` (+ `reformulations`), JSONL.

    mothertongue ingest recipe.yaml      # sources: [{path: full_data.jsonl, format: unnatural}]

Source (the shape of a row of `core_data.jsonl`; the full data adds `reformulations`)::

    {"instruction": "You are given a science question and four answer options. ...",
     "instances": [{"instruction_with_input": "You are given a science question ...\\nQuestion: ...",
                    "input": "Question: ...", "constraints": "The output should be 'A', 'B', 'C' or 'D'.",
                    "output": "B"}],
     "reformulations": [{"instruction": "...", "instruction_with_input": "...", "input": "...", "output": "B"}]}

becomes::

    Conversation(id="core_data-2be1…", source="core_data", meta={"file": ..., "line": 1, "instance": 0},
                 messages=[Message("user", "You are given a science question ...\\nQuestion: ...\\n\\n"
                                           "The output should be 'A', 'B', 'C' or 'D'."),
                           Message("assistant", "B")])

One conversation per instance and (with `options.reformulations`, default true) per
reformulation, tagged `reformulation`. `options.constraints` (default true) appends an instance's
constraints to the user turn. Every instance and reformulation counts as a record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import (
    Adapter,
    FormatOptions,
    IngestReport,
    clean,
    loc_meta,
    stable_id,
)


class UnnaturalOptions(FormatOptions):
    constraints: bool = Field(True, description="Append an instance's constraints to the user turn.")
    reformulations: bool = Field(True, description="Also convert the reformulations (full data), tagged `reformulation`.")


class UnnaturalAdapter(Adapter):
    name = "unnatural"
    Options = UnnaturalOptions
    required = ("instruction", "instances")

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        if not isinstance(obj, dict) or not isinstance(obj.get("instances"), list):
            report.bad(loc, "missing field instances", "field 'instances' is missing or not a list")
            return
        items = [("instances", i, x) for i, x in enumerate(obj["instances"])]
        items += [("reformulations", i, x) for i, x in enumerate(obj.get("reformulations") or [])]
        if not items:
            report.skip(loc, "instruction without instances")
            return
        for k, (field, i, inst) in enumerate(items):
            where = f"{loc} {field}[{i}]"
            if k:
                report.read += 1  # the reader counted the row as its first unit; each is a record
            if field == "reformulations" and not self.opts.reformulations:
                report.skip(where, "reformulation (options.reformulations=false)")
                continue
            if not isinstance(inst, dict):
                report.bad(where, "not an object", f"field '{field}[{i}]' is not an object")
                continue
            text = inst.get("instruction_with_input")
            if not isinstance(text, str) or not text.strip():
                ins, inp = inst.get("instruction") or obj.get("instruction"), inst.get("input")
                text = f"{ins}\n\n{inp}" if isinstance(ins, str) and isinstance(inp, str) and inp.strip() else ins
            out = inst.get("output")
            if not isinstance(text, str) or not text.strip():
                report.bad(where, "missing field instruction_with_input",
                           f"field '{field}[{i}].instruction_with_input' is missing or empty")
                continue
            if not isinstance(out, str) or not out.strip():
                report.bad(where, "empty output", f"field '{field}[{i}].output' is missing or empty")
                continue
            user = clean(text)
            cons = inst.get("constraints")
            if self.opts.constraints and isinstance(cons, str) and cons.strip():
                user = f"{user}\n\n{clean(cons).strip()}"
            yield Conversation(
                id=stable_id(self.src_name, user, out),
                messages=[Message("user", user), Message("assistant", clean(out))],
                lang=self.opts.lang,
                source=self.src_name,
                tags=["reformulation"] if field == "reformulations" else [],
                meta={**loc_meta(loc), field[:-1]: i},
            )
