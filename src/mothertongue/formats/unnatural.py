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

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, IngestReport, clean, loc_meta, stable_id


class UnnaturalAdapter(Adapter):
    name = "unnatural"
    option_names = ("lang", "constraints", "reformulations")
    required = ("instruction", "instances")

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        if not isinstance(obj, dict) or not isinstance(obj.get("instances"), list):
            report.bad(loc, "missing field instances", "field 'instances' is missing or not a list")
            return
        items = [("instances", i, x) for i, x in enumerate(obj["instances"])]
        if self.options.get("reformulations", True):
            items += [("reformulations", i, x) for i, x in enumerate(obj.get("reformulations") or [])]
        else:
            n = len(obj.get("reformulations") or [])
            for i in range(n):
                report.skip(f"{loc} reformulations[{i}]", "reformulation (options.reformulations=false)")
        if not items:
            report.skip(loc, "instruction without instances")
            return
        report.read += len(items) - 1  # the reader counted the row; count its instances
        for field, i, inst in items:
            where = f"{loc} {field}[{i}]"
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
            if self.options.get("constraints", True) and isinstance(cons, str) and cons.strip():
                user = f"{user}\n\n{clean(cons).strip()}"
            yield Conversation(
                id=stable_id(self.src_name, user, out),
                messages=[Message("user", user), Message("assistant", clean(out))],
                lang=self.options.get("lang"),
                source=self.src_name,
                tags=["reformulation"] if field == "reformulations" else [],
                meta={**loc_meta(loc), field[:-1]: i},
            )
