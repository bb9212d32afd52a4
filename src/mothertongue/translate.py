"""Translate stage: machine-translate ingested conversations into the recipe's language.

    mothertongue translate recipes/my.yaml                       # resumable: rerun after a crash
    mothertongue translate recipes/my.yaml --dry-run             # the plan: routes, models, segments, time
    mothertongue translate recipes/my.yaml --shard 0/4           # one of 4 workers (then rerun without)

Every message is split into segments (text.segment: sentences, pieces of over-long sentences;
code, URLs, markup and placeholders never reach the model). Each distinct segment is translated
once per route leg and stored in the translation memory (SQLite, engines.memory) one batch per
transaction, so a kill loses at most the batch in flight and a rerun does only what is missing.
Outputs are then assembled from the memory into `translate/` (atomically, by runs.run_stage):
`{train,dev,test}.jsonl` (lang = target; original messages in meta["source_messages"]),
`pairs.jsonl`, `parallel.jsonl` (one row per translated train message), `flagged.jsonl`
(conversations that failed the quality gate; kept out unless translate.keep_flagged) and
`report.json` (counts by language pair, pass-through, pivoted, flagged).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.conversation import (
    Conversation,
    DataError,
    Message,
    PreferencePair,
    read_conversations,
    read_pairs,
    write_jsonl,
)
from mothertongue.runs import RunDir, StageError, atomic_write_json

SPLITS = ("train", "dev", "test")
UNDETERMINED = "und"


@dataclass
class Unit:
    """One message (or pair field) to translate."""

    where: tuple  # ("conv", split, ci, mi) | ("pair", pi, "prompt", mi) | ("pair", pi, "chosen"|"rejected")
    text: str
    src: str
    guessed: bool = False
    doc: object = None


@dataclass
class Plan:
    recipe: Recipe
    convs: dict[str, list[Conversation]]
    pairs: list[PreferencePair]
    units: list[Unit]
    routes: dict[str, list]  # src -> [Leg]
    engines: dict[str, object] = field(default_factory=dict)  # model -> Engine

    @property
    def target(self) -> str:
        return self.recipe.language


def memory_path(recipe: Recipe) -> Path:
    t = recipe.translate
    return recipe.resolve_path(t.memory) if t.memory else Path(recipe.run_dir) / "translate-memory.sqlite"


def shard_memory_paths(recipe: Recipe) -> list[Path]:
    """The `--shard` workers' memory files beside the main memory, which the next full run merges."""
    main = memory_path(recipe)
    return sorted(main.parent.glob(main.stem + ".shard*.sqlite"))


# ---------------------------------------------------------------------------- planning
def _read_input(run: RunDir) -> tuple[dict[str, list[Conversation]], list[PreferencePair]]:
    d = run.require("ingest", "translate")
    convs = {s: read_conversations(d / f"{s}.jsonl") if (d / f"{s}.jsonl").exists() else [] for s in SPLITS}
    pairs = read_pairs(d / "pairs.jsonl") if (d / "pairs.jsonl").exists() else []
    return convs, pairs


def _code(lang: str | None) -> str:
    """`EN`, `en-US`, `en_GB` -> `en` (routes and memory keys use bare ISO 639-1 codes)."""
    return (lang or "").strip().replace("_", "-").split("-")[0].lower()


def _units(convs, pairs) -> list[Unit]:
    units = []
    for split in SPLITS:
        for ci, c in enumerate(convs[split]):
            for mi, m in enumerate(c.messages):
                units.append(Unit(("conv", split, ci, mi), m.content, _code(m.lang or c.lang)))
    for pi, p in enumerate(pairs):
        for mi, m in enumerate(p.prompt):
            units.append(Unit(("pair", pi, "prompt", mi), m.content, _code(m.lang or p.lang)))
        units.append(Unit(("pair", pi, "chosen"), p.chosen, _code(p.lang)))
        units.append(Unit(("pair", pi, "rejected"), p.rejected, _code(p.lang)))
    return units


def _assign_languages(units: list[Unit], recipe: Recipe) -> None:
    """Language from the data, else translate.source_lang, else lingua; undetectable ones get the
    most common language of the dataset (counted as guessed in the report)."""
    from mothertongue.text.langid import LangId
    from mothertongue.text.segment import has_letters

    t = recipe.translate
    langid = None
    for u in units:
        if u.src:
            continue
        if t.source_lang:
            u.src = t.source_lang
            continue
        if not has_letters(u.text):
            u.src = recipe.language  # numbers, code only: nothing to translate
            continue
        langid = langid or LangId(t.detect_languages)
        code, _conf = langid.detect(u.text)
        u.src = code or UNDETERMINED
    common = Counter(u.src for u in units if u.src != UNDETERMINED).most_common(1)
    for u in units:
        if u.src == UNDETERMINED:
            u.src, u.guessed = (common[0][0] if common else UNDETERMINED), True


def make_plan(recipe: Recipe, run: RunDir, load: bool = True) -> Plan:
    """Read the input, decide languages and routes (unroutable pairs stop here), segment."""
    from mothertongue.engines import load_engine
    from mothertongue.engines.catalogue import route
    from mothertongue.text.segment import approx_tokens, segment

    t = recipe.translate
    convs, pairs = _read_input(run)
    units = _units(convs, pairs)
    _assign_languages(units, recipe)
    routes, missing = {}, Counter()
    for u in units:
        if u.src not in routes:
            routes[u.src] = route(u.src, recipe.language, t.family, t.model, t.models, t.pivot)
        if routes[u.src] is None:
            missing[u.src] += 1
    if missing:
        listed = ", ".join(f"{s}->{recipe.language} ({n} messages)" for s, n in missing.most_common())
        raise StageError(
            f"no translation model for {listed}; nothing was translated. Name one with "
            f'translate.models={{"{missing.most_common(1)[0][0]}-{recipe.language}": MODEL}}, '
            f"set translate.model, or pick another translate.family"
        )
    plan = Plan(recipe, convs, pairs, units, routes)
    if load:
        for legs in routes.values():
            for leg in legs:
                if leg.model not in plan.engines:
                    eng = load_engine(t.engine, leg.model, t.device, t.options)
                    eng.batch_tokens = t.batch_tokens
                    plan.engines[leg.model] = eng
    counters: dict[str, object] = {}
    for u in units:
        legs = routes[u.src]
        if not legs:
            continue
        eng = plan.engines.get(legs[0].model)
        if legs[0].model not in counters:
            counters[legs[0].model] = _cached(eng.count_tokens) if eng else approx_tokens
        u.doc = segment(u.text, u.src, t.max_segment_tokens, counters[legs[0].model])
    return plan


def _cached(fn):
    cache: dict[str, int] = {}

    def count(s: str) -> int:
        if s not in cache:
            cache[s] = fn(s)
        return cache[s]

    return count


# ----------------------------------------------------------------------- quality gate
def _max_run(words: list[str]) -> int:
    """Longest run of one 1-3 word n-gram repeated back to back."""
    best = 1
    for n in (1, 2, 3):
        for start in range(n):
            run, prev = 1, None
            for i in range(start, len(words) - n + 1, n):
                g = tuple(words[i : i + n])
                run = run + 1 if g == prev else 1
                prev = g
                best = max(best, run)
    return best


def gate(src: str, out: str, tgt_lang: str, recipe: Recipe, langid=None) -> list[str]:
    """Reasons a translation looks wrong (empty list: it passed)."""
    t = recipe.translate
    if not out.strip():
        return ["empty"]
    reasons = []
    if len(src) >= 10:
        r = len(out) / len(src)
        if not t.min_length_ratio <= r <= t.max_length_ratio:
            reasons.append("length_ratio")
    if _max_run(out.lower().split()) > max(3, _max_run(src.lower().split())):
        reasons.append("repetition")
    if langid is not None and sum(ch.isalpha() for ch in out) >= 30 and langid.is_language(out, tgt_lang) is False:
        reasons.append("language")
    return reasons


# ------------------------------------------------------------------------- the work
def _shard_of(text: str, n: int) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16) % n


def _translate_leg(plan: Plan, leg, sources: set[str], memory, shard, bar, langid) -> dict[str, int]:
    """Translate the sources of one leg that the memory lacks; commit one batch at a time."""
    t = plan.recipe.translate
    eng = plan.engines[leg.model]
    key = eng.settings_key(t.beam_size)
    have = memory.get_many(key, leg.model, leg.src, leg.tgt, sources)
    todo = sorted(s for s in sources if s not in have and (shard is None or _shard_of(s, shard[1]) == shard[0]))
    stats = {"from_memory": len(sources) - len(todo), "translated": 0, "retried": 0, "flagged": 0}
    todo.sort(key=len)
    # Commit units of about one engine batch: small enough that a kill loses little.
    i = 0
    while i < len(todo):
        budget, j = 0, i
        while j < len(todo) and (j == i or budget + len(todo[j]) // 3 + 1 <= t.batch_tokens):
            budget += len(todo[j]) // 3 + 1
            j += 1
        chunk = todo[i:j]
        outs = eng.translate(chunk, leg.src, leg.tgt, t.beam_size)
        status = ["ok"] * len(chunk)
        if t.quality_gate:
            bad = [k for k, (s, o) in enumerate(zip(chunk, outs)) if gate(s, o, leg.tgt, plan.recipe, langid)]
            if bad:
                again = eng.translate([chunk[k] for k in bad], leg.src, leg.tgt, max(t.retry_beam_size, t.beam_size))
                for k, o in zip(bad, again):
                    reasons = gate(chunk[k], o, leg.tgt, plan.recipe, langid)
                    if reasons:
                        status[k] = "flagged:" + ",".join(reasons)
                        stats["flagged"] += 1
                    else:
                        outs[k], status[k] = o, "retried"
                        stats["retried"] += 1
        memory.put_many(key, leg.model, leg.src, leg.tgt, zip(chunk, outs, status))
        stats["translated"] += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
        i = j
    return stats


def execute(plan: Plan, memory, shard: tuple[int, int] | None = None) -> dict:
    """Translate everything the memory lacks (this shard's part only, when sharded)."""
    from mothertongue.text.langid import LangId, lingua_codes

    t = plan.recipe.translate
    langid = LangId(None) if t.quality_gate else None
    by_leg1: dict[tuple, set[str]] = defaultdict(set)
    for u in plan.units:
        legs = plan.routes[u.src]
        if legs:
            by_leg1[legs[0]].update(u.doc.segments())
    total = sum(len(v) for v in by_leg1.values())
    bar = None
    if t.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="seg", desc="translate", smoothing=0.1)
    stats: Counter = Counter()
    for leg, segs in by_leg1.items():
        lid = langid if leg.tgt in lingua_codes() else None
        stats.update(_translate_leg(plan, leg, segs, memory, shard, bar, lid))
    # Second legs of pivoted routes: the pivot-language outputs of the first legs.
    for legs in plan.routes.values():
        if len(legs) < 2:
            continue
        first, second = legs
        eng = plan.engines[first.model]
        segs = by_leg1.get(first, set())
        got = memory.get_many(eng.settings_key(t.beam_size), first.model, first.src, first.tgt, segs)
        mids = {tgt for s, (tgt, _st) in got.items() if shard is None or _shard_of(s, shard[1]) == shard[0]}
        lid = langid if second.tgt in lingua_codes() else None
        stats.update({f"pivot_{k}": v for k, v in _translate_leg(plan, second, mids, memory, None, None, lid).items()})
    if bar is not None:
        bar.close()
    stats["segments"] = total
    return dict(stats)


# ------------------------------------------------------------------------- assembly
def _lookup(plan: Plan, memory, legs):
    """segment -> (translation, status) through every leg of a route, from the memory."""
    t = plan.recipe.translate

    def fetch(leg, texts):
        eng = plan.engines[leg.model]
        return memory.get_many(eng.settings_key(t.beam_size), leg.model, leg.src, leg.tgt, texts)

    def resolve(segs: set[str]) -> dict[str, tuple[str, str]]:
        cur = {s: (s, "ok") for s in segs}
        for leg in legs:
            got = fetch(leg, {v for v, _ in cur.values()})
            nxt = {}
            for s, (v, st) in cur.items():
                if v not in got:
                    raise StageError(f"segment missing from the translation memory ({leg.src}->{leg.tgt}): {v[:60]!r}; rerun without --shard")
                tv, tst = got[v]
                nxt[s] = (tv, st if st.startswith("flagged") else tst)
            cur = nxt
        return cur

    return resolve


def assemble(plan: Plan, memory, out: Path) -> dict:
    from mothertongue.text.langid import LangId, lingua_codes

    t = plan.recipe.translate
    tgt = plan.target
    check = LangId(None) if t.quality_gate and tgt in lingua_codes() else None
    segs_by_src: dict[str, set[str]] = defaultdict(set)
    for u in plan.units:
        if plan.routes[u.src]:
            segs_by_src[u.src].update(u.doc.segments())
    table = {src: _lookup(plan, memory, plan.routes[src])(segs) for src, segs in segs_by_src.items()}
    new_text: dict[tuple, str] = {}
    flags: dict[tuple, list[str]] = defaultdict(list)  # record key -> reasons
    pair_counts: Counter = Counter()
    passthrough = pivoted = guessed = 0
    for u in plan.units:
        rec = u.where[:3] if u.where[0] == "conv" else u.where[:2]
        if u.guessed:
            guessed += 1
        legs = plan.routes[u.src]
        if not legs:
            new_text[u.where] = u.text
            passthrough += 1
            continue
        tab = table[u.src]
        new_text[u.where] = u.doc.render(lambda s, tab=tab: tab[s][0])
        bad = sorted({st.split(":", 1)[1] for s in u.doc.segments() if (st := tab[s][1]).startswith("flagged")})
        if bad:
            flags[rec].append(f"{'/'.join(map(str, u.where[1:]))}: {','.join(bad)}")
        elif check is not None and check.is_language(new_text[u.where], tgt) is False:
            flags[rec].append(f"{'/'.join(map(str, u.where[1:]))}: language")
        pair_counts[f"{u.src}->{tgt}"] += 1
        pivoted += len(legs) > 1
    return _write(plan, out, new_text, flags, pair_counts, passthrough, pivoted, guessed)


def _write(plan, out, new_text, flags, pair_counts, passthrough, pivoted, guessed) -> dict:
    t = plan.recipe.translate
    tgt = plan.target
    flagged_rows, parallel, counts = [], [], {}
    for split in SPLITS:
        kept = []
        for ci, c in enumerate(plan.convs[split]):
            msgs = [Message(m.role, new_text[("conv", split, ci, mi)]) for mi, m in enumerate(c.messages)]
            meta = dict(c.meta)
            meta["source_messages"] = [m.to_dict() for m in c.messages]
            meta["source_lang"] = c.lang
            nc = Conversation(c.id, msgs, tgt, c.source, list(c.tags), meta)
            reasons = list(flags.get(("conv", split, ci), []))
            try:
                nc.validate()
            except DataError as e:
                reasons.append(f"invalid after translation: {e}")
            if reasons:
                flagged_rows.append({"kind": "conversation", "split": split, "id": c.id, "reasons": reasons, "record": nc.to_dict()})
                if not t.keep_flagged:
                    continue
            kept.append(nc)
            if split == "train":
                for m, tm in zip(c.messages, msgs):
                    if m.content != tm.content:
                        parallel.append({"src": m.content, "tgt": tm.content, "src_lang": m.lang or c.lang, "tgt_lang": tgt, "id": c.id})
        counts[split] = write_jsonl(out / f"{split}.jsonl", kept)
    new_pairs = []
    for pi, p in enumerate(plan.pairs):
        prompt = [Message(m.role, new_text[("pair", pi, "prompt", mi)]) for mi, m in enumerate(p.prompt)]
        meta = {**p.meta, "source": {"prompt": [m.to_dict() for m in p.prompt], "chosen": p.chosen, "rejected": p.rejected}}
        np_ = PreferencePair(p.id, prompt, new_text[("pair", pi, "chosen")], new_text[("pair", pi, "rejected")], tgt, p.source, meta)
        reasons = list(flags.get(("pair", pi), []))
        try:
            np_.validate()
        except DataError as e:
            reasons.append(f"invalid after translation: {e}")
        if reasons:
            flagged_rows.append({"kind": "pair", "id": p.id, "reasons": reasons, "record": np_.to_dict()})
            if not t.keep_flagged:
                continue
        new_pairs.append(np_)
    counts["pairs"] = write_jsonl(out / "pairs.jsonl", new_pairs)
    counts["parallel"] = write_jsonl(out / "parallel.jsonl", parallel)
    write_jsonl(out / "flagged.jsonl", flagged_rows)
    return {
        "target": tgt,
        "written": counts,
        "messages_by_pair": dict(pair_counts),
        "passthrough_messages": passthrough,
        "pivoted_messages": pivoted,
        "language_guessed_messages": guessed,
        "flagged": [{k: r[k] for k in ("kind", "id", "reasons") if k in r} | ({"split": r["split"]} if "split" in r else {}) for r in flagged_rows],
        "flagged_kept": t.keep_flagged,
    }


# ---------------------------------------------------------------------- entry points
def _merge_shards(memory, recipe: Recipe) -> list[str]:
    merged = []
    for p in shard_memory_paths(recipe):
        memory.merge_from(p)
        merged.append(p.name)
    return merged


def _routes_summary(plan: Plan) -> dict:
    return {f"{s}->{plan.target}": ([f"{leg.src}->{leg.tgt}: {leg.model}" for leg in legs] or ["pass-through"]) for s, legs in plan.routes.items()}


def run(recipe: Recipe, run: RunDir, out: Path) -> dict:
    """The stage: plan, translate what the memory lacks, assemble outputs, report."""
    from mothertongue.engines.memory import Memory

    started = time.time()
    plan = make_plan(recipe, run)
    memory = Memory(memory_path(recipe))
    try:
        merged = _merge_shards(memory, recipe)
        stats = execute(plan, memory)
        report = assemble(plan, memory, out)
    finally:
        memory.close()
    secs = time.time() - started
    report.update(
        engine=recipe.translate.engine, routes=_routes_summary(plan), segments=stats, merged_shards=merged,
        seconds=round(secs, 2), segments_per_second=round(stats.get("translated", 0) / secs, 2) if secs else None,
        memory=str(memory_path(recipe)),
    )  # fmt: skip
    atomic_write_json(out / "report.json", report)
    return {k: report[k] for k in ("written", "messages_by_pair", "passthrough_messages", "pivoted_messages")} | {
        "flagged": len(report["flagged"]), "segments": stats,
    }  # fmt: skip


def run_shard(recipe: Recipe, index: int, count: int) -> dict:
    """Translate this worker's share into its own memory file (merged by the final run)."""
    from mothertongue.engines.memory import Memory

    if not 0 <= index < count:
        raise StageError(f"--shard {index}/{count}: index must be in 0..{count - 1}")
    run = RunDir(Path(recipe.run_dir))
    plan = make_plan(recipe, run)
    main = memory_path(recipe)
    memory = Memory(main.with_name(f"{main.stem}.shard{index}of{count}.sqlite"))
    try:
        stats = execute(plan, memory, shard=(index, count))
    finally:
        memory.close()
    return {"memory": str(memory.path), **stats}


def dry_run(recipe: Recipe, calibrate: int = 16) -> str:
    """The plan in words: pairs, routes, models, segments, memory savings, estimated time."""
    from mothertongue.engines.memory import Memory

    run = RunDir(Path(recipe.run_dir))
    plan = make_plan(recipe, run)
    t = recipe.translate
    lines = [f"translate -> {plan.target} with engine {t.engine} (beam {t.beam_size})"]
    by_src = Counter(u.src for u in plan.units)
    for src, legs in plan.routes.items():
        how = " then ".join(f"{leg.src}->{leg.tgt} [{leg.model}]" for leg in legs) or "pass-through (already target language)"
        lines.append(f"  {src}->{plan.target}: {by_src[src]} messages, {'pivot ' if len(legs) > 1 else ''}{how}")
    all_segs = [s for u in plan.units if u.doc is not None for s in u.doc.segments()]
    uniq = set(all_segs)
    segs_by_src = {src: {s for u in plan.units if u.src == src for s in u.doc.segments()} for src, legs in plan.routes.items() if legs}
    mem_path = memory_path(recipe)
    # The main memory and any shard memories the next full run will merge (read here, not merged).
    shard_paths = shard_memory_paths(recipe)
    mems = [Memory(p) for p in ([mem_path] if mem_path.exists() else []) + shard_paths]
    if shard_paths:
        lines.append(f"  shard memories: {', '.join(p.name for p in shard_paths)} (merged by the next full run)")

    def in_memory(leg, texts) -> dict:
        key = plan.engines[leg.model].settings_key(t.beam_size)
        found: dict = {}
        for m in mems:
            found.update(m.get_many(key, leg.model, leg.src, leg.tgt, texts))
        return found

    # Pivoted routes translate twice: the first leg's (pivot-language) outputs go through the
    # second leg too. Outputs the first leg has not made yet count one each (an upper bound).
    known = second = 0
    try:
        for src, segs in segs_by_src.items():
            legs = plan.routes[src]
            got = in_memory(legs[0], segs)
            known += len(got)
            if len(legs) > 1:
                mids = {tgt for tgt, _st in got.values()}
                second += len(mids) - len(in_memory(legs[1], mids)) + len(segs) - len(got)
    finally:
        for m in mems:
            m.close()
    todo = len(uniq) - known
    lines.append(
        f"  segments: {len(all_segs)}; distinct {len(uniq)} (memory saves {len(all_segs) - len(uniq)} repeats); already in memory {known}; to translate {todo}"
        + (f" (+ at most {second} on the second legs of pivots)" if second else "")
    )
    if todo + second and calibrate:
        # Timed on segments of one route with its own first-leg model (not text in another language).
        src = next(src for src in segs_by_src if segs_by_src[src])
        leg, sample = plan.routes[src][0], sorted(segs_by_src[src])[:calibrate]
        t0 = time.time()
        plan.engines[leg.model].translate(sample, leg.src, leg.tgt, t.beam_size)
        rate = len(sample) / max(time.time() - t0, 1e-6)
        lines.append(f"  estimated time: {(todo + second) / rate / 60:.1f} min at {rate:.1f} segments/s (measured on {len(sample)} {leg.src}->{leg.tgt} segments)")
    return "\n".join(lines)


_SHARD = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str) -> tuple[int, int]:
    m = _SHARD.match(spec.strip())
    if not m or int(m.group(2)) < 1:
        raise StageError(f"--shard {spec!r}: expected i/n such as 0/4")
    return int(m.group(1)), int(m.group(2))
