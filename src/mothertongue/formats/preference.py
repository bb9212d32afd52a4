"""Preference data: `{prompt, chosen, rejected}`, each a string or a list of chat messages.

    mothertongue ingest recipe.yaml      # sources: [{path: prefs.jsonl, format: preference}]

Source (a row in TRL's preference format, as in trl-lib/ultrafeedback_binarized)::

    {"prompt": [{"role": "user", "content": "What color is the sky?"}],
     "chosen": [{"role": "assistant", "content": "It is blue."}],
     "rejected": [{"role": "assistant", "content": "It is green."}]}

becomes::

    PreferencePair(id="prefs-71ac…", source="prefs", meta={"file": "prefs.jsonl", "line": 1},
                   prompt=[Message("user", "What color is the sky?")],
                   chosen="It is blue.", rejected="It is green.")

A string prompt becomes one user message. Without `prompt` (TRL's implicit-prompt form, as in
Anthropic HH), `chosen` and `rejected` are whole conversations sharing everything but the last
assistant message; the shared part is the prompt. A different shared part is a bad record.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mothertongue.conversation import Message, PreferencePair
from mothertongue.formats.base import Adapter, IngestReport, clean, stable_id
from mothertongue.formats.openai import parse_messages


class PreferenceAdapter(Adapter):
    name = "preference"
    required = ("chosen", "rejected")

    def _answer(self, v: Any, field: str, loc: str, report: IngestReport) -> tuple[list[Message], str] | None:
        if isinstance(v, str):
            if not v.strip():
                report.bad(loc, f"empty {field}", f"field '{field}' is empty")
                return None
            return [], clean(v)
        msgs = parse_messages(v, field, loc, report)
        if msgs is None:
            return None
        if msgs[-1].role != "assistant":
            report.bad(loc, f"bad field {field}", f"field '{field}' must end with an assistant message")
            return None
        return msgs[:-1], msgs[-1].content

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[PreferencePair]:
        if not isinstance(obj, dict):
            report.bad(loc, "not an object", f"expected a JSON object, got {type(obj).__name__}")
            return
        for f in self.required:
            if obj.get(f) is None:
                report.bad(loc, f"missing field {f}", f"field '{f}' is missing")
                return
        c = self._answer(obj["chosen"], "chosen", loc, report)
        r = c and self._answer(obj["rejected"], "rejected", loc, report)
        if not c or not r:
            return
        prompt_raw = obj.get("prompt")
        if prompt_raw is None:
            if not c[0] or [m.to_dict() for m in c[0]] != [m.to_dict() for m in r[0]]:
                report.bad(loc, "missing field prompt", "field 'prompt' is missing and chosen/rejected "
                           "do not share a conversation prefix")
                return
            prompt = c[0]
        elif isinstance(prompt_raw, str):
            if not prompt_raw.strip():
                report.bad(loc, "empty prompt", "field 'prompt' is empty")
                return
            prompt = [Message("user", clean(prompt_raw))]
        else:
            prompt = parse_messages(prompt_raw, "prompt", loc, report)
            if prompt is None:
                return
            prompt = prompt + c[0]  # chosen may repeat nothing or continue the prompt
        if prompt[-1].role != "user":
            report.bad(loc, "bad field prompt", "field 'prompt' must end with a user message")
            return
        key = [f"{m.role}:{m.content}" for m in prompt]
        yield PreferencePair(
            id=stable_id(self.src_name, *key, c[1], r[1]),
            prompt=prompt,
            chosen=c[1],
            rejected=r[1],
            lang=self.opts.lang,
            source=self.src_name,
            meta=self.meta_of(obj, loc, ("prompt", "chosen", "rejected")),
        )
