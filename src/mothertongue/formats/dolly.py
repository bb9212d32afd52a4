"""Dolly: `{instruction, context, response, category}` records (databricks-dolly-15k), JSONL.

    mothertongue ingest recipe.yaml      # with  sources: [{path: dolly.jsonl, format: dolly}]

Source (a row of `databricks-dolly-15k.jsonl`)::

    {"instruction": "Which is a species of fish? Tope or Rope", "context": "",
     "response": "Tope", "category": "classification"}

becomes::

    Conversation(id="dolly-0a9b…", source="dolly", tags=["classification"],
                 meta={"file": "databricks-dolly-15k.jsonl", "line": 2},
                 messages=[Message("user", "Which is a species of fish? Tope or Rope"),
                           Message("assistant", "Tope")])

`context` (often empty) follows the instruction after a blank line (`options.context_join`;
`options.context_first: true` puts it before). The category is kept as a tag.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import Field

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, FormatOptions, IngestReport, stable_id


class DollyOptions(FormatOptions):
    context_join: str = Field("\n\n", description="Put between the instruction and a non-empty context.")
    context_first: bool = Field(False, description="Put the context before the instruction.")


class DollyAdapter(Adapter):
    name = "dolly"
    Options = DollyOptions
    required = ("instruction", "response")
    _used = ("instruction", "context", "response", "category")

    @classmethod
    def sniff(cls, path, sample) -> str | None:
        if sample and all(isinstance(r, dict) and "response" in r and "instruction" in r for r in sample[:5]):
            return "records have instruction and response (Dolly)"
        return None

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        got = self.fields(obj, loc, report, self.required)
        if got is None:
            return
        instruction, response = got
        context = self.optional_text(obj, "context", loc, report)
        if context is False:
            return
        context = (context or "").strip()
        user = instruction
        if context:
            join = self.opts.context_join
            user = f"{context}{join}{instruction}" if self.opts.context_first else f"{instruction}{join}{context}"
        category = obj.get("category")
        yield Conversation(
            id=stable_id(self.src_name, instruction, context, response),
            messages=[Message("user", user), Message("assistant", response)],
            lang=self.opts.lang,
            source=self.src_name,
            tags=[str(category)] if category else [],
            meta=self.meta_of(obj, loc, self._used),
        )
