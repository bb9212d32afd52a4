"""Translate, optional check: the round-trip score of every translated segment.

    translate: {round_trip: {enabled: true, min_chrf: 40}}    # in a recipe
    translate: {round_trip: {enabled: true, model: Helsinki-NLP/opus-mt-de-en}}

Each translated segment is translated back into its source language with the reverse model (the
catalogue's, or `round_trip.model`) through the same engine and translation memory, so a rerun
translates nothing twice, and scored with chrF (sacreBLEU) against the source. The score is kept
per segment in the memory (`scores`, JSON) and summarised in the translate report; a segment under
`min_chrf` is flagged like a quality-gate failure ("flagged:round-trip"), and its record goes to
flagged.jsonl. A human correction (`mothertongue review`) is never overruled.

Round trips reward literal translations and punish some good free ones; chrF on short segments
is noisy. Use the score to find the broken, not to rank the good; the threshold is deliberately
low by default. Pivoted routes (two legs) are not scored.
"""

from __future__ import annotations

from pathlib import Path

from mothertongue.digests import DigestSet
from mothertongue.engines import load_engine
from mothertongue.engines.catalogue import Leg, direct_model
from mothertongue.engines.memory import Memory
from mothertongue.engines.toy import ensure_toy_model, is_toy
from mothertongue.translate.plan import Plan

FLAG = "flagged:round-trip"


def reverse_leg(plan: Plan, leg: Leg) -> Leg | None:
    """The leg back from the target into the source language, or None without a model for it."""
    t, r = plan.recipe.translate, plan.recipe
    model = t.round_trip.model or direct_model(leg.tgt, leg.src, t.family, None, t.models)
    if model and is_toy(model):
        model = ensure_toy_model(model, Path(r.base_dir), Path(r.run_dir) / "toy-mt")
    return Leg(leg.tgt, leg.src, model) if model else None


def score(plan: Plan, memory: Memory, seen: DigestSet | None = None) -> dict:
    """Back-translate and score every directly routed segment of the plan (those not in `seen`,
    the segments an earlier chunk of the run scored); returns counts that add up over chunks
    (`summary` makes the report's section of them)."""
    from sacrebleu.metrics import CHRF

    t = plan.recipe.translate
    chrf = CHRF()
    counts: dict = {"scored": 0, "flagged": 0, "chrf_sum": 0.0, "skipped": {}}
    for src, leg, segments in plan.direct_segments(counts["skipped"], seen):
        back = reverse_leg(plan, leg)
        if back is None:
            counts["skipped"][f"{src}->{plan.target} (no {plan.target}->{src} model)"] = len(segments)
            continue
        if back.model not in plan.engines:  # shared by the chunks of one run
            plan.engines[back.model] = load_engine(
                t.engine, back.model, t.device, t.options, batch_tokens=t.batch_tokens, allow_pickle=t.allow_pickle)
        eng = plan.engines[back.model]
        store = plan.store(memory, leg)
        forward = store.get(segments)
        back_store = memory.for_leg(eng.settings_key(t.beam_size), back)
        targets = sorted({tgt for tgt, _ in forward.values()})
        have = {tgt: out for tgt, (out, _) in back_store.get(targets).items()}
        todo = [x for x in targets if x not in have]
        for batch in eng.batches(todo, t.beam_size):
            chunk = [todo[i] for i in batch]
            outs = eng.translate(chunk, back.src, back.tgt, t.beam_size)
            back_store.put(zip(chunk, outs, ["ok"] * len(chunk)))
            have.update(zip(chunk, outs))
        values = {source: round(chrf.sentence_score(have[target], [source]).score, 1)
                  for source, (target, _) in forward.items()}
        store.set_scores({source: {"round_trip_chrf": v} for source, v in values.items()})
        counts["chrf_sum"] += sum(values.values())
        counts["scored"] += len(values)
        counts["flagged"] += store.flag_under(values, {s: st for s, (_, st) in forward.items()},
                                              t.round_trip.min_chrf, FLAG)
    return counts


def summary(counts: dict, min_chrf: float) -> dict:
    """The translate report's `segments.round_trip`: scored, flagged, mean chrF, threshold, skipped."""
    n = counts["scored"]
    return {"scored": n, "flagged": counts["flagged"], "mean_chrf": round(counts["chrf_sum"] / n, 1) if n else None,
            "min_chrf": min_chrf, "skipped": counts["skipped"]}
