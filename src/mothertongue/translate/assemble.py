"""Translate, step 3 (assembly): put translated messages together from the memory and write them.

    python -c "from mothertongue.translate.assemble import assemble; help(assemble)"

Each unit's `Doc` is rendered with its segments' translations (through every leg of its route),
so code, URLs and markup come back byte-for-byte. A record with a flagged segment, or whose
translated text the detector says is not in the target language, goes to `flagged.jsonl` (and
out of the data unless translate.keep_flagged). Writes `{train,dev,test}.jsonl`, `pairs.jsonl`,
`parallel.jsonl`, `flagged.jsonl` and, when the input has documents, `documents.jsonl` into the
stage folder and returns the report's counts.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from mothertongue.conversation import (
    Conversation,
    DataError,
    Document,
    Message,
    PreferencePair,
    write_jsonl,
)
from mothertongue.engines.catalogue import Leg
from mothertongue.engines.memory import Memory
from mothertongue.runs import StageError
from mothertongue.text.langid import lingua_codes
from mothertongue.translate.gate import message_in_language
from mothertongue.translate.plan import SPLITS, Plan, RecordKey, TextKey

# flagged records listed in report.json (the first ones; all of them are in flagged.jsonl and
# counted in `flagged_count`), so the report stays small however many records are flagged
FLAGGED_IN_REPORT = 100


def cap_flagged(report: dict) -> dict:
    """The report with its list of flagged records cut to the first `FLAGGED_IN_REPORT`."""
    report["flagged"] = report["flagged"][:FLAGGED_IN_REPORT]
    return report


def lookup(
    plan: Plan, memory: Memory, legs: list[Leg]
) -> Callable[[set[str]], dict[str, tuple[str, str]]]:
    """segments -> {segment: (translation, status)} through every leg of a route, from the memory."""

    def resolve(segs: set[str]) -> dict[str, tuple[str, str]]:
        cur = {s: (s, "ok") for s in segs}
        for leg in legs:
            got = plan.store(memory, leg).get({v for v, _ in cur.values()})
            nxt = {}
            for s, (v, st) in cur.items():
                if v not in got:
                    raise StageError(
                        f"segment missing from the translation memory ({leg.src}->{leg.tgt}): {v[:60]!r}; rerun without --shard"
                    )
                tv, tst = got[v]
                nxt[s] = (tv, st if st.startswith("flagged") else tst)
            cur = nxt
        return cur

    return resolve


def assemble(plan: Plan, memory: Memory, out: Path, append: bool = False) -> dict:
    """Render the plan's records from the memory and write them (`append`: after earlier chunks)."""
    t = plan.recipe.translate
    tgt = plan.target
    check = t.quality_gate and tgt in lingua_codes()
    segs_by_src: dict[str, set[str]] = defaultdict(set)
    for u in plan.units:
        if plan.routes[u.src]:
            segs_by_src[u.src].update(u.doc.segments())
    table = {src: lookup(plan, memory, plan.routes[src])(segs) for src, segs in segs_by_src.items()}
    new_text: dict[TextKey, str] = {}
    src_lang: dict[TextKey, str] = {}
    flags: dict[RecordKey, list[str]] = defaultdict(list)
    pair_counts: Counter = Counter()
    passthrough = pivoted = guessed = 0
    for u in plan.units:
        src_lang[u.key] = u.src
        guessed += u.guessed
        legs = plan.routes[u.src]
        if not legs:
            new_text[u.key] = u.text
            passthrough += 1
            continue
        tab = table[u.src]
        new_text[u.key] = u.doc.render(lambda s, tab=tab: tab[s][0])
        bad = sorted(
            {
                st.split(":", 1)[1]
                for s in u.doc.segments()
                if (st := tab[s][1]).startswith("flagged")
            }
        )
        if bad:
            flags[u.key.record].append(f"{u.key.label}: {','.join(bad)}")
        elif check and u.src in lingua_codes() and message_in_language(new_text[u.key], u.src, tgt) is False:
            flags[u.key.record].append(f"{u.key.label}: language")
        pair_counts[f"{u.src}->{tgt}"] += 1
        pivoted += len(legs) > 1
    counts, flagged_rows = write(plan, out, new_text, src_lang, flags, append)
    return {
        "target": tgt,
        "written": counts,
        "messages_by_pair": dict(pair_counts),
        "passthrough_messages": passthrough,
        "pivoted_messages": pivoted,
        "language_guessed_messages": guessed,
        "flagged": [
            {k: r[k] for k in ("kind", "id", "reasons") if k in r}
            | ({"split": r["split"]} if "split" in r else {})
            for r in flagged_rows[:FLAGGED_IN_REPORT]
        ],
        "flagged_count": len(flagged_rows),
        "flagged_kept": t.keep_flagged,
    }


def keep_after_check(
    kind: str,
    record: Conversation | PreferencePair | Document,
    reasons: list[str],
    flagged_rows: list[dict],
    keep_flagged: bool,
    split: str | None = None,
) -> bool:
    """Whether a translated record goes into the data: it is validated again, and one with a reason
    (a flagged segment, the language check, or failing validation) is added to flagged_rows and
    kept only when `keep_flagged`."""
    reasons = list(reasons)
    try:
        record.validate()
    except DataError as e:
        reasons.append(f"invalid after translation: {e}")
    if not reasons:
        return True
    row = {"kind": kind} | ({"split": split} if split is not None else {})
    flagged_rows.append(row | {"id": record.id, "reasons": reasons, "record": record.to_dict()})
    return keep_flagged


def documents(
    plan: Plan, new_text: dict[TextKey, str], src_lang: dict[TextKey, str], flags: dict[RecordKey, list[str]],
    flagged_rows: list[dict],
) -> list[Document]:
    """The translated documents (original text in meta["source_text"]); flagged ones added to flagged_rows."""
    kept, keep_flagged = [], plan.recipe.translate.keep_flagged
    for di, d in enumerate(plan.docs, plan.offsets.get("documents", 0)):
        rec = RecordKey("doc", "documents", di)
        key = TextKey(rec, "text")
        nd = Document(d.id, new_text[key], plan.target, d.source,
                      {**d.meta, "source_text": d.text, "source_lang": d.lang or src_lang[key]})  # fmt: skip
        if keep_after_check("document", nd, flags.get(rec, []), flagged_rows, keep_flagged):
            kept.append(nd)
    return kept


def write(
    plan: Plan,
    out: Path,
    new_text: dict[TextKey, str],
    src_lang: dict[TextKey, str],
    flags: dict[RecordKey, list[str]],
    append: bool = False,
) -> tuple[dict[str, int], list[dict]]:
    """Write the stage's files (`append`: after earlier chunks); returns rows written per file and
    the flagged records."""
    keep_flagged = plan.recipe.translate.keep_flagged
    tgt = plan.target
    flagged_rows, parallel, counts = [], [], {}
    for split in SPLITS:
        kept = []
        for ci, c in enumerate(plan.convs[split], plan.offsets.get(split, 0)):
            rec = RecordKey("conv", split, ci)
            keys = [TextKey(rec, "messages", mi) for mi in range(len(c.messages))]
            msgs = [Message(m.role, new_text[k]) for m, k in zip(c.messages, keys)]
            meta = dict(c.meta)
            meta["source_messages"] = [m.to_dict() for m in c.messages]
            meta["source_lang"] = c.lang
            nc = Conversation(c.id, msgs, tgt, c.source, list(c.tags), meta)
            reasons = flags.get(rec, [])
            if not keep_after_check("conversation", nc, reasons, flagged_rows, keep_flagged, split):
                continue
            kept.append(nc)
            if split == "train":
                for m, tm, k in zip(c.messages, msgs, keys):
                    if m.content != tm.content:
                        parallel.append(
                            {
                                "src": m.content,
                                "tgt": tm.content,
                                "src_lang": m.lang or c.lang or src_lang[k],
                                "tgt_lang": tgt,
                                "id": c.id,
                            }
                        )
        counts[split] = write_jsonl(out / f"{split}.jsonl", kept, append)
    new_pairs = []
    for pi, p in enumerate(plan.pairs, plan.offsets.get("pairs", 0)):
        rec = RecordKey("pair", "pairs", pi)
        prompt = [
            Message(m.role, new_text[TextKey(rec, "prompt", mi)]) for mi, m in enumerate(p.prompt)
        ]
        meta = {
            **p.meta,
            "source": {
                "prompt": [m.to_dict() for m in p.prompt],
                "chosen": p.chosen,
                "rejected": p.rejected,
            },
        }
        np_ = PreferencePair(
            p.id,
            prompt,
            new_text[TextKey(rec, "chosen")],
            new_text[TextKey(rec, "rejected")],
            tgt,
            p.source,
            meta,
        )
        if keep_after_check("pair", np_, flags.get(rec, []), flagged_rows, keep_flagged):
            new_pairs.append(np_)
    counts["pairs"] = write_jsonl(out / "pairs.jsonl", new_pairs, append)
    if plan.docs:
        docs = documents(plan, new_text, src_lang, flags, flagged_rows)
        counts["documents"] = write_jsonl(out / "documents.jsonl", docs, append)
    counts["parallel"] = write_jsonl(out / "parallel.jsonl", parallel, append)
    write_jsonl(out / "flagged.jsonl", flagged_rows, append)
    return counts, flagged_rows
