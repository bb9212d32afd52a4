"""Alpaca: `{instruction, input, output}` records, as a JSON list or JSONL.

    mothertongue ingest recipe.yaml      # with  sources: [{path: alpaca_data.json, format: alpaca}]

Source (the first row of Stanford Alpaca's `alpaca_data.json`)::

    {"instruction": "Give three tips for staying healthy.", "input": "",
     "output": "1.Eat a balanced diet and make sure to include plenty of fruits and vegetables. \\n2. ..."}

becomes::

    Conversation(id="alpaca-5c1e…", source="alpaca", meta={"file": "alpaca_data.json", "line": 2},
                 messages=[Message("user", "Give three tips for staying healthy."),
                           Message("assistant", "1.Eat a balanced diet and make sure ...\\n2. ...")])

A non-empty `input` is appended to the instruction after a blank line (`options.input_join`); an
`input` or `system` that is a number becomes its decimal text, one that is an object or a list is
a bad record (never written into the prompt as a Python repr). The
optional fields of Alpaca variants are kept: `system` becomes a system message, `history`
(`[[question, answer], ...]`, LLaMA-Factory style) becomes earlier turns; any other field goes to
`meta["extra"]`. Missing or empty `instruction`/`output` is a bad record naming file, line, field.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, FormatOptions, IngestReport, clean, stable_id


class AlpacaOptions(FormatOptions):
    input_join: str = Field("\n\n", description="Put between the instruction and a non-empty input.")
    system: str | None = Field(None, description="System message for records without their own `system`.")


class AlpacaAdapter(Adapter):
    name = "alpaca"
    Options = AlpacaOptions
    required = ("instruction", "output")
    _used = frozenset(("instruction", "input", "output", "system", "history"))

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self.join = self.opts.input_join
        self.lang = self.opts.lang
        self.system = self.opts.system

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        instruction = obj.get("instruction") if isinstance(obj, dict) else None
        output = obj.get("output") if instruction is not None else None
        if not (type(instruction) is str and type(output) is str and instruction.strip() and output.strip()):
            got = self.fields(obj, loc, report, self.required)  # the slow path names the problem
            if got is None:
                return
            instruction, output = got
        elif "\r" in instruction or "\r" in output:
            instruction, output = clean(instruction), clean(output)
        inp = self.optional_text(obj, "input", loc, report)
        system = self.optional_text(obj, "system", loc, report) if inp is not False else False
        if inp is False or system is False:
            return
        user = f"{instruction}{self.join}{inp}" if inp and inp.strip() else instruction
        messages: list[Message] = []
        system = system or self.system
        if system:
            messages.append(Message("system", clean(system)))
        history = obj.get("history")
        if history:
            if not isinstance(history, list) or not all(
                isinstance(h, (list, tuple)) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in history
            ):
                report.bad(loc, "bad field history", "field 'history' must be a list of [question, answer] text pairs")
                return
            for q, a in history:
                messages += [Message("user", clean(q)), Message("assistant", clean(a))]
        messages += [Message("user", user), Message("assistant", output)]
        yield Conversation(
            id=stable_id(self.src_name, instruction, inp or "", output),
            messages=messages,
            lang=self.lang,
            source=self.src_name,
            meta=self.meta_of(obj, loc, self._used),
        )
