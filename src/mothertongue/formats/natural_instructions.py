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
                 lang="en", tags=["Question Generation"], meta={"file": ..., "line": 1234, "instance": 0},
                 messages=[Message("user", "In this task, you're given passages ...\\n\\nPassage: ..."),
                           Message("assistant", "What is the last name of the person who ...?")])

One conversation per instance; its `output` is a list: `options.answer: first` (default) takes the
first answer, `all` makes one conversation per answer (ids get `#k`). `options.definition`: user
(prepended to the first user turn), system, or none. `options.examples: k` adds the first k
positive examples as earlier turns. Every instance counts as a record in the report, located at
its own line of the task file. When a task's Input_language, Output_language and
Instruction_language differ (German input, English output), every message carries its own
`lang` (a user turn that holds both the definition and the input in different languages gets
none, so the translate stage detects it). A path that is a folder reads every `*.json` task file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from mothertongue.conversation import Conversation, DataError, Message
from mothertongue.formats.base import (
    Adapter,
    FormatOptions,
    IngestReport,
    clean,
    decode_text,
    files_in,
    iter_json_records,
    loc_meta,
    stable_id,
)

LANG_CODES = {
    "english": "en", "german": "de", "french": "fr", "spanish": "es", "italian": "it", "portuguese": "pt",
    "dutch": "nl", "russian": "ru", "chinese": "zh", "japanese": "ja", "korean": "ko", "arabic": "ar",
    "hindi": "hi", "turkish": "tr", "polish": "pl", "persian": "fa", "swedish": "sv", "czech": "cs",
    "greek": "el", "hebrew": "he", "vietnamese": "vi", "indonesian": "id", "bengali": "bn", "urdu": "ur",
    "tamil": "ta", "telugu": "te", "marathi": "mr", "gujarati": "gu", "punjabi": "pa", "thai": "th",
}


def lang_code(names: Any) -> str | None:
    """"German" (or ["German"]) -> "de"; None when the task does not say or the name is unknown."""
    name = names[0] if isinstance(names, list) and names else names
    if not isinstance(name, str) or not name.strip():
        return None
    code = LANG_CODES.get(name.strip().lower())
    if code is None:  # the detector's table knows 75 languages by their English names
        from lingua import Language

        lang = getattr(Language, name.strip().upper().replace(" ", "_"), None)
        code = lang.iso_code_639_1.name.lower() if lang is not None else None
    return code


def task_with_lines(text: str) -> tuple[dict, list[int]]:
    """The task object and the line of every element of its `Instances` list, in one pass:
    the top-level values are decoded one by one, the instances element by element."""
    dec = json.JSONDecoder()
    ws = " \t\r\n\ufeff"
    n, pos = len(text), 0

    def skip(p: int) -> int:
        while p < n and text[p] in ws:
            p += 1
        return p

    pos = skip(pos)
    if pos >= n or text[pos] != "{":
        raise ValueError("not a JSON object")
    obj: dict = {}
    lines: list[int] = []
    pos = skip(pos + 1)
    while pos < n and text[pos] != "}":
        key, pos = dec.raw_decode(text, pos)
        pos = skip(pos)
        if text[pos] != ":":
            raise ValueError("expected ':'")
        pos = skip(pos + 1)
        if key == "Instances" and text[pos] == "[":
            items, line, last = [], text.count("\n", 0, pos) + 1, pos
            pos = skip(pos + 1)
            while text[pos] != "]":
                line += text.count("\n", last, pos)
                last = pos
                item, pos = dec.raw_decode(text, pos)
                items.append(item)
                lines.append(line)
                pos = skip(pos)
                if text[pos] == ",":
                    pos = skip(pos + 1)
            value, pos = items, pos + 1
        else:
            value, pos = dec.raw_decode(text, pos)
        obj[key] = value
        pos = skip(pos)
        if pos < n and text[pos] == ",":
            pos = skip(pos + 1)
    return obj, lines


class NaturalInstructionsOptions(FormatOptions):
    answer: Literal["first", "all"] = Field("first", description="first: the first answer; all: one conversation per answer.")
    definition: Literal["user", "system", "none"] = Field("user", description="Where the task definition goes.")
    examples: int = Field(0, ge=0, description="Add the first k positive examples as earlier turns.")


class NaturalInstructionsAdapter(Adapter):
    name = "natural_instructions"
    Options = NaturalInstructionsOptions
    required = ("Definition", "Instances")
    suffixes = (".json",)

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self._lines: dict[str, list[int]] = {}

    def records(self, path: Path, report: IngestReport) -> Iterator[tuple[str, Any]]:
        for f in files_in(path, self.suffixes):
            try:
                obj, lines = task_with_lines(decode_text(f, self.source.encoding))
            except (ValueError, IndexError, DataError):  # the generic reader names what is wrong
                for line, obj in iter_json_records(f, report, self.source.encoding):
                    yield f"{f}:{line}", obj
                continue
            report.read += 1
            self._lines[f"{f}:1"] = lines
            yield f"{f}:1", obj

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        if not isinstance(obj, dict) or not isinstance(obj.get("Instances"), list):
            report.bad(loc, "missing field Instances", "field 'Instances' is missing or not a list")
            return
        instances = obj["Instances"]
        if not instances:
            report.skip(loc, "task without instances")
            return
        file, _, tail = loc.rpartition(":")
        if tail.isdigit():  # a file: every instance at its own line
            lines = self._lines.pop(loc, None) or [int(tail)] * len(instances)
        else:  # a dataset row
            file, lines = loc, None
        definition = obj.get("Definition")
        definition = clean(" ".join(definition) if isinstance(definition, list) else definition or "").strip()
        task = file.rpartition("/")[2].removesuffix(".json") or self.src_name
        in_lang, out_lang = lang_code(obj.get("Input_language")), lang_code(obj.get("Output_language"))
        def_lang = lang_code(obj.get("Instruction_language")) or in_lang
        lang = self.opts.lang or in_lang
        # per-message languages only where the task says they differ (and the user gave none)
        mixed = self.opts.lang is None and len({x for x in (in_lang, out_lang, def_lang) if x}) > 1
        u_lang, a_lang = (in_lang, out_lang) if mixed else (None, None)
        where_def = self.opts.definition
        shots: list[Message] = []
        for ex in (obj.get("Positive Examples") or [])[: self.opts.examples]:
            shots += [Message("user", clean(ex.get("input", "")), u_lang),
                      Message("assistant", clean(ex.get("output", "")), a_lang)]
        base_meta = {"task": task, "negative_examples": len(obj.get("Negative Examples") or [])}
        tags = [str(c) for c in obj.get("Categories") or []]
        for i, inst in enumerate(instances):
            if i:
                report.read += 1  # the reader counted the task as its first instance; each is a record
            line = lines[i] if lines else None
            where = f"{file}:{line} Instances[{i}]" if line else f"{loc} Instances[{i}]"
            if not isinstance(inst, dict) or not isinstance(inst.get("input"), str):
                report.bad(where, "missing field input", f"field 'Instances[{i}].input' is missing or not text")
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
            first_lang = u_lang
            if where_def == "user" and definition:
                first = f"{definition}\n\n{first}"
                first_lang = u_lang if def_lang == in_lang else None
            msgs = [Message("system", definition, def_lang if mixed else None)] \
                if where_def == "system" and definition else []
            turns = shots + [Message("user", clean(inst["input"]), u_lang)]
            turns[0] = Message("user", first, first_lang)
            iid = str(inst.get("id") or stable_id(task, inst["input"]))
            meta = {**({"file": file, "line": line} if line else loc_meta(loc)), "instance": i,
                    "answers": len(outs), **base_meta}
            origin = (where,)
            for k, out in enumerate(outs if self.opts.answer == "all" else outs[:1]):
                yield Conversation(
                    id=iid if k == 0 else f"{iid}#{k}",
                    messages=msgs + turns + [Message("assistant", out, a_lang)],
                    lang=lang,
                    source=self.src_name,
                    tags=tags,
                    meta=dict(meta),
                    origin=origin,
                )
