"""Translate, step 1 (the plan): read the ingested data, give every message a language, route, segment.

    python -c "from mothertongue.translate.plan import TextKey, RecordKey; print(TextKey(RecordKey('conv', 'train', 0), 'messages', 1).label)"

Every message, preference-pair field and document becomes a `Unit` addressed by a `TextKey`.
Its source language comes from the data (message `lang`, else the record's), else
`translate.source_lang`, else the language detector, message by message; texts too short or too
uncertain to tell get the dominant language of the plan's records (counted as guessed in the
report). Each language gets a route (no legs: already the target; one leg; or two through the
pivot) and each unit a segmented `Doc`. The stage plans an input larger than
`translate.chunk_records` records chunk by chunk (`read_chunks`), so memory stays bounded.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from mothertongue.config import Recipe
from mothertongue.conversation import (
    SPLITS,
    Conversation,
    DataError,
    Document,
    PreferencePair,
    iter_jsonl,
    read_conversations,
    read_documents,
    read_pairs,
)
from mothertongue.digests import DigestSet, digest
from mothertongue.engines import Engine, load_engine
from mothertongue.engines.catalogue import Leg, route
from mothertongue.engines.memory import LegMemory, Memory
from mothertongue.engines.toy import ensure_toy_model, is_toy
from mothertongue.runs import RunDir, StageError
from mothertongue.text.langid import LangId
from mothertongue.text.segment import Doc, approx_tokens, has_letters, segment

UNDETERMINED = "und"


class RecordKey(NamedTuple):
    """One conversation (`kind` "conv", its split), preference pair ("pair") or document ("doc")."""

    kind: str
    split: str  # train/dev/test for conversations; "pairs" for preference pairs; "documents"
    index: int


class TextKey(NamedTuple):
    """One text of a record: message i of a conversation, prompt message i, chosen or rejected."""

    record: RecordKey
    field: str  # "messages", "prompt", "chosen", "rejected" or "text" (a document)
    message: int | None = None

    @property
    def label(self) -> str:
        """Where the text is, as the report names it: `train/3/1`, `5/prompt/0`, `5/chosen`."""
        if self.record.kind == "conv":
            return f"{self.record.split}/{self.record.index}/{self.message}"
        if self.record.kind == "doc":
            return f"documents/{self.record.index}"
        tail = f"/{self.message}" if self.message is not None else ""
        return f"{self.record.index}/{self.field}{tail}"


@dataclass
class Unit:
    """One message (or pair field) to translate."""

    key: TextKey
    text: str
    src: str
    guessed: bool = False
    doc: Doc | None = None


@dataclass
class Plan:
    recipe: Recipe
    convs: dict[str, list[Conversation]]
    pairs: list[PreferencePair]
    units: list[Unit]
    routes: dict[str, list[Leg]]  # source language -> legs ([]: already the target)
    engines: dict[str, Engine] = field(default_factory=dict)  # model -> engine
    counters: dict[str, Callable[[str], int]] = field(
        default_factory=dict
    )  # model -> cached token count
    docs: list[Document] = field(default_factory=list)
    # Global index of each part's first record in this plan (a chunk of a larger input): keeps
    # RecordKey indexes, labels and ids the same however the input is chunked.
    offsets: dict[str, int] = field(default_factory=dict)

    @property
    def target(self) -> str:
        return self.recipe.language

    def store(self, memory: Memory, leg: Leg) -> LegMemory:
        """The translation memory of one leg, keyed by the settings of the leg's engine."""
        return memory.for_leg(
            self.engines[leg.model].settings_key(self.recipe.translate.beam_size), leg
        )

    def direct_segments(self, skipped: dict[str, int], seen: DigestSet | None = None) -> Iterator[tuple[str, Leg, list[str]]]:
        """(source language, its one leg, its distinct segments) for every directly routed source
        language; a pivoted one is counted in `skipped` instead (the checks that score segments
        against their source, round trip and quality estimation, score one leg only). With
        `seen` (one set per check, kept by the stage across chunks), a segment already yielded
        or counted for an earlier chunk is left out, so the checks count distinct segments."""
        for src, legs in self.routes.items():
            if not legs:
                continue
            segments = sorted({s for u in self.units if u.src == src and u.doc for s in u.doc.segments()})
            if seen is not None:
                segments = [s for s in segments if seen.add(digest((src, s)))]
            if not segments:
                continue
            if len(legs) > 1:
                skipped[f"{src}->{self.target} (pivoted)"] = len(segments)
                continue
            yield src, legs[0], segments

    def count_tokens(self, model: str) -> Callable[[str], int]:
        """Token count of the model's tokenizer (cached: segmenting and batching both ask)."""
        if model not in self.counters:
            eng = self.engines.get(model)
            self.counters[model] = cached(eng.count_tokens) if eng else approx_tokens
        return self.counters[model]


def code(lang: str | None) -> str:
    """`EN`, `en-US`, `en_GB` -> `en` (routes and memory keys use bare ISO 639-1 codes)."""
    return (lang or "").strip().replace("_", "-").split("-")[0].lower()


def read_input(rundir: RunDir) -> tuple[dict[str, list[Conversation]], list[PreferencePair], list[Document]]:
    d = rundir.require("ingest", "translate")
    convs = {
        s: read_conversations(d / f"{s}.jsonl") if (d / f"{s}.jsonl").exists() else []
        for s in SPLITS
    }
    pairs = read_pairs(d / "pairs.jsonl") if (d / "pairs.jsonl").exists() else []
    docs = read_documents(d / "documents.jsonl") if (d / "documents.jsonl").exists() else []
    return convs, pairs, docs


Input = tuple[dict[str, list[Conversation]], list[PreferencePair], list[Document], dict[str, int]]


def read_chunks(rundir: RunDir, size: int) -> Iterator[Input]:
    """The ingest output in chunks of at most `size` records (train, dev, test, pairs, documents
    in that order, a chunk holding the end of one part and the start of the next), each with its
    parts' global offsets; streamed, never read whole. An input smaller than `size` is one chunk."""
    d = rundir.require("ingest", "translate")
    readers = [(s, d / f"{s}.jsonl", Conversation) for s in SPLITS]
    readers += [("pairs", d / "pairs.jsonl", PreferencePair), ("documents", d / "documents.jsonl", Document)]
    parts: dict[str, list] = {}
    offsets: dict[str, int] = {}
    n = chunks = 0
    for part, path, cls in readers:
        if not path.exists():
            continue
        index = 0
        for lineno, obj in iter_jsonl(path):
            try:
                rec = cls.from_dict(obj)
            except (KeyError, TypeError) as e:
                raise DataError(f"{path}:{lineno}: not a {cls.__name__} record (field {e})") from None
            if part not in parts:
                parts[part], offsets[part] = [], index
            parts[part].append(rec)
            index += 1
            n += 1
            if n == size:
                yield _chunk(parts, offsets)
                parts, offsets, n, chunks = {}, {}, 0, chunks + 1
    if n or not chunks:  # an empty input is one empty chunk: the outputs are still written
        yield _chunk(parts, offsets)


def _chunk(parts: dict[str, list], offsets: dict[str, int]) -> Input:
    convs = {s: parts.get(s, []) for s in SPLITS}
    return convs, parts.get("pairs", []), parts.get("documents", []), offsets


def units_of(
    convs: dict[str, list[Conversation]], pairs: list[PreferencePair], docs: list[Document] = (),
    offsets: dict[str, int] | None = None,
) -> list[Unit]:
    off = offsets or {}
    units = []
    for split in SPLITS:
        for ci, c in enumerate(convs[split], off.get(split, 0)):
            rec = RecordKey("conv", split, ci)
            for mi, m in enumerate(c.messages):
                units.append(Unit(TextKey(rec, "messages", mi), m.content, code(m.lang or c.lang)))
    for pi, p in enumerate(pairs, off.get("pairs", 0)):
        rec = RecordKey("pair", "pairs", pi)
        for mi, m in enumerate(p.prompt):
            units.append(Unit(TextKey(rec, "prompt", mi), m.content, code(m.lang or p.lang)))
        units.append(Unit(TextKey(rec, "chosen"), p.chosen, code(p.lang)))
        units.append(Unit(TextKey(rec, "rejected"), p.rejected, code(p.lang)))
    for di, d in enumerate(docs, off.get("documents", 0)):
        units.append(Unit(TextKey(RecordKey("doc", "documents", di), "text"), d.text, code(d.lang)))
    return units


def assign_languages(units: list[Unit], recipe: Recipe) -> None:
    """Language from the data, else translate.source_lang, else detected message by message.

    The dataset's dominant language (what the data says plus what was detected) is the prior:
    texts too short to tell, and detections that do not hold up against the dominant language
    alone (LangId.confirm), get the dominant language and are counted as guessed."""
    t = recipe.translate
    langid = LangId(t.detect_languages) if not t.source_lang else None
    votes: Counter = Counter()
    detected: list[Unit] = []
    for u in units:
        if u.src:
            votes[u.src] += 1
        elif t.source_lang:
            u.src = code(t.source_lang)
        elif not has_letters(u.text):
            u.src = recipe.language  # numbers, code only: nothing to translate
        else:
            lang, _conf = langid.detect(u.text)
            u.src = lang or UNDETERMINED
            if lang:
                votes[lang] += 1
                detected.append(u)
    dominant = votes.most_common(1)[0][0] if votes else UNDETERMINED
    for u in detected:
        if not langid.confirm(u.text, u.src, dominant):
            u.src, u.guessed = dominant, True
    for u in units:
        if u.src == UNDETERMINED:
            u.src, u.guessed = dominant, True


def plan_routes(units: list[Unit], recipe: Recipe) -> dict[str, list[Leg]]:
    """One route per source language; languages with none stop the stage before any work."""
    t = recipe.translate
    routes: dict[str, list[Leg] | None] = {}
    missing: Counter = Counter()
    for u in units:
        if u.src not in routes:
            routes[u.src] = route(u.src, recipe.language, t.family, t.model, t.models, t.pivot)
        if routes[u.src] is None:
            missing[u.src] += 1
    if missing:
        listed = ", ".join(
            f"{s}->{recipe.language} ({n} messages)" for s, n in missing.most_common()
        )
        raise StageError(
            f"no translation model for {listed}; nothing was translated. Name one with "
            f'translate.models={{"{missing.most_common(1)[0][0]}-{recipe.language}": MODEL}}, '
            f"set translate.model, or pick another translate.family. If the data is all in one language, "
            f"say which with translate.source_lang (languages not given by the data are detected, and "
            f"translate.detect_languages limits the candidates)"
        )
    return routes  # type: ignore[return-value]


def make_plan(
    recipe: Recipe, rundir: RunDir, load: bool = True, data: Input | None = None, engines: dict[str, Engine] | None = None
) -> Plan:
    """Read the input (or take `data`, one chunk of it), decide languages and routes (unroutable
    pairs stop here), segment. `engines` (model -> engine) are reused and added to."""
    t = recipe.translate
    convs, pairs, docs, offsets = data if data is not None else (*read_input(rundir), {})
    units = units_of(convs, pairs, docs, offsets)
    assign_languages(units, recipe)
    routes = plan_routes(units, recipe)
    if load:  # `toy:PATH` models are trained here from their parallel file (the quickstart's demo MT)
        toys = {leg.model for legs in routes.values() for leg in legs if is_toy(leg.model)}
        trained = {m: ensure_toy_model(m, Path(recipe.base_dir), rundir.root / "toy-mt") for m in toys}
        routes = {s: [Leg(leg.src, leg.tgt, trained.get(leg.model, leg.model)) for leg in legs] for s, legs in routes.items()}
    plan = Plan(recipe, convs, pairs, units, routes, engines if engines is not None else {}, docs=docs, offsets=offsets)
    if load:
        for legs in plan.routes.values():
            for leg in legs:
                if leg.model not in plan.engines:
                    plan.engines[leg.model] = load_engine(
                        t.engine, leg.model, t.device, t.options, batch_tokens=t.batch_tokens, allow_pickle=t.allow_pickle
                    )
                plan.engines[leg.model].check_pair(leg.src, leg.tgt)
    for u in units:
        legs = plan.routes[u.src]
        if legs:
            u.doc = segment(u.text, u.src, t.max_segment_tokens, plan.count_tokens(legs[0].model))
    return plan


def cached(fn: Callable[[str], int]) -> Callable[[str], int]:
    cache: dict[str, int] = {}

    def count(s: str) -> int:
        if s not in cache:
            cache[s] = fn(s)
        return cache[s]

    return count
