"""Natural Instructions (v2 / Super-NaturalInstructions) task files: one JSON object per task.

    mothertongue ingest recipe.yaml      # sources: [{path: tasks/, format: natural_instructions}]

Source (abridged from `tasks/task001_quoref_question_generation.json`)::

    {"Definition": ["In this task, you're given passages that contain mentions of names of people, ..."],
     "Input_language": ["English"], "Categories": ["Question Generation"],
     "Positive Examples": [{"input": "Passage: ...", "output": "What is the ...?", "explanation": "..."}],
     "Negative Examples": [...],
     "Instances": [{"id": "task001-919fd5ef2ae84fb7b5e4d3c1f4c0f3ad", "input": "Passage: ...",
                    "output": ["What is the last name of the person who ...?"]}]}

becomes, for the instance (options default: answer first, definition in the user turn)::

    Conversation(id="task001-919fd5ef2ae84fb7b5e4d3c1f4c0f3ad", source="task001_quoref_question_generation",
                 lang="en", tags=["Question Generation"], meta={"file": ..., "line": 1, "instance": 0},
                 messages=[Message("user", "In this task, you're given passages ...\\n\\nPassage: ..."),
                           Message("assistant", "What is the last name of the person who ...?")])

One conversation per instance; its `output` is a list: `options.answer: first` (default) takes the
first answer, `all` makes one conversation per answer (ids get `#k`). `options.definition`: user
(prepended to the first user turn), system, or none. `options.examples: k` adds the first k
positive examples as earlier turns. Every instance counts as a record in the report.
A path that is a folder reads every `*.json` task file in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, IngestReport, clean, loc_meta, stable_id

LANG_CODES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "chinese": "zh", "japanese": "ja", "korean": "ko", "arabic": "ar",
    "hindi": "hi", "turkish": "tr", "polish": "pl", "persian": "fa", "swedish": "sv", "czech": "cs",
    "greek": "el", "hebrew": "he", "vietnamese": "vi", "indonesian": "id", "bengali": "bn", "urdu": "ur",
    "tamil": "ta", "telugu": "te", "marathi": "mr", "gujarati": "gu", "punjabi": "pa", "thai": "th",
}


class NaturalInstructionsAdapter(Adapter):
    name = "natural_instructions"
    option_names = ("lang", "answer", "definition", "examples")
    required = ("Definition", "Instances")
    suffixes = (".json",)

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        if not isinstance(obj, dict) or not isinstance(obj.get("Instances"), list):
            report.bad(loc, "missing field Instances", "field 'Instances' is missing or not a list")
            return
        instances = obj["Instances"]
        if not instances:
            report.skip(loc, "task without instances")
            return
        report.read += len(instances) - 1  # the reader counted the task; count its instances
        definition = obj.get("Definition")
        definition = clean(" ".join(definition) if isinstance(definition, list) else definition or "").strip()
        task = loc.rpartition(":")[0].rpartition("/")[2].removesuffix(".json") or self.src_name
        lang = self.options.get("lang")
        in_lang = obj.get("Input_language") or []
        if lang is None and in_lang:
            lang = LANG_CODES.get(str(in_lang[0]).lower())
        where_def = self.options.get("definition", "user")
        if where_def not in ("user", "system", "none"):
            raise ValueError("options.definition must be user, system or none")
        answer = self.options.get("answer", "first")
        shots: list[Message] = []
        for ex in (obj.get("Positive Examples") or [])[: int(self.options.get("examples", 0))]:
            shots += [Message("user", clean(ex.get("input", ""))), Message("assistant", clean(ex.get("output", "")))]
        base_meta = {"task": task, "negative_examples": len(obj.get("Negative Examples") or [])}
        tags = [str(c) for c in obj.get("Categories") or []]
        for i, inst in enumerate(instances):
            where = f"{loc} Instances[{i}]"
            if not isinstance(inst, dict) or not isinstance(inst.get("input"), str):
                report.bad(where, "missing field input", f"field 'Instances[{i}].input' is missing")
                continue
            outs = inst.get("output")
            outs = [outs] if isinstance(outs, str) else outs
            outs = [clean(o) for o in outs or [] if isinstance(o, str) and o.strip()]
            if not outs:
                report.bad(where, "empty output", f"field 'Instances[{i}].output' has no answer")
                continue
            if not inst["input"].strip():
                report.bad(where, "empty input", f"field 'Instances[{i}].input' is empty")
                continue
            first = shots[0].content if shots else clean(inst["input"])
            if where_def == "user" and definition:
                first = f"{definition}\n\n{first}"
            msgs = [Message("system", definition)] if where_def == "system" and definition else []
            turns = shots + [Message("user", clean(inst["input"]))]
            turns[0] = Message("user", first)
            iid = str(inst.get("id") or stable_id(task, inst["input"]))
            for k, out in enumerate(outs if answer == "all" else outs[:1]):
                yield Conversation(
                    id=iid if k == 0 else f"{iid}#{k}",
                    messages=msgs + turns + [Message("assistant", out)],
                    lang=lang,
                    source=self.src_name,
                    tags=tags,
                    meta={**loc_meta(loc), "instance": i,
                          "answers": len(outs), **base_meta},
                )
