"""Translate, optional check: an LLM judge's quality score of every translated segment.

    translate:
      quality_estimation: {enabled: true, url: "http://127.0.0.1:8000/v1", model: Qwen/Qwen2.5-7B-Instruct}

Reference-free quality estimation in the manner of GEMBA-DA (Kocmi and Federmann, 2023): the judge,
any OpenAI-compatible server, sees the source segment and its translation and answers a score from
0 to 100. The score is kept per segment in the translation memory (`scores`: `qe`, and `qe_judge`
naming the judge's settings, so a rerun asks only about what that judge has not scored) and
summarised in the translate report; a segment under `min_score` is flagged like a quality-gate
failure ("flagged:quality-estimation") and its record goes to flagged.jsonl. An answer without a
number in 0-100 is counted as unparsed and flags nothing. A human correction (`mothertongue
review`) and a segment another check flagged keep their status.

The requests go through the remote engine's client: concurrency, rate limit, timeout and retries
with backoff; the key comes from the environment variable `api_key_env` and is stored nowhere.
A judge that fails for good stops the stage with one line; the translations and the scores of
the batches judged so far stay in the memory, so a rerun continues. Like the round-trip score,
only directly routed segments are judged (pivoted ones are counted as skipped).

Why no QE model (COMET-Kiwi): `unbabel-comet` pins a Transformers older than this project's, and
the CometKiwi weights are licensed for non-commercial use only; an LLM judge has neither problem.
"""

from __future__ import annotations

import hashlib
import json
import re

from mothertongue.digests import DigestSet
from mothertongue.engines.memory import Memory
from mothertongue.engines.remote import RemoteEngine
from mothertongue.languages import english_name
from mothertongue.translate.plan import Plan

FLAG = "flagged:quality-estimation"
JUDGE = "__quality_estimation__"  # the judge's place among the plan's engines, shared by the chunks
ASK = 64  # segments per round of requests: scores are committed after each
DEFAULT_PROMPT = (
    "Rate the translation below from {src_name} into {tgt_name} with one number from 0 to 100: 0 means "
    "no meaning is preserved, 100 means the meaning is fully preserved in fluent, correct {tgt_name}. "
    "Answer with the number only.\n\n"
    '{src_name} source: "{source}"\n{tgt_name} translation: "{translation}"\nScore:'
)
NUMBER = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)(?![\d.])")


class Judge(RemoteEngine):
    """The remote engine's client, asking for scores instead of translations."""

    label = "translate.quality_estimation (judge"
    section = "translate.quality_estimation"


def parse_score(answer: str) -> float | None:
    """The first number in the judge's answer if it lies in 0-100, else None."""
    m = NUMBER.search(answer)
    if m is None:
        return None
    value = float(m.group(1))
    return value if 0 <= value <= 100 else None


def judge_key(plan: Plan) -> str:
    """Who scored: the judge's URL, model and prompt (a different judge scores again)."""
    q = plan.recipe.translate.quality_estimation
    spec = json.dumps([q.url.rstrip("/"), q.model, q.prompt or DEFAULT_PROMPT], ensure_ascii=False)
    return f"qe:{hashlib.sha1(spec.encode()).hexdigest()[:12]}"


def load_judge(plan: Plan) -> Judge:
    q = plan.recipe.translate.quality_estimation
    if JUDGE not in plan.engines:
        opts = {"url": q.url, "api_key_env": q.api_key_env, "max_tokens": 8, "temperature": 0.0,
                "concurrency": q.concurrency, "requests_per_second": q.requests_per_second,
                "timeout": q.timeout, "retries": q.retries}  # fmt: skip
        plan.engines[JUDGE] = Judge(q.model, device="cpu", options=opts)
    return plan.engines[JUDGE]


def score(plan: Plan, memory: Memory, seen: DigestSet | None = None) -> dict:
    """Ask the judge about every directly routed segment it has not scored; flag those under the
    threshold; segments in `seen` (scored for an earlier chunk of the run) are left out. Returns
    counts that add up over chunks (`summary` makes the report's section)."""
    q = plan.recipe.translate.quality_estimation
    prompt, key = q.prompt or DEFAULT_PROMPT, judge_key(plan)
    counts: dict = {"scored": 0, "asked": 0, "unparsed": 0, "flagged": 0, "score_sum": 0.0, "skipped": {}}
    for src, leg, segments in plan.direct_segments(counts["skipped"], seen):
        store = plan.store(memory, leg)
        forward = store.get(segments)
        stored = store.scores(forward)
        todo = [s for s in sorted(forward) if stored.get(s, {}).get("qe_judge") != key]
        names = {"src_name": english_name(src), "tgt_name": english_name(plan.target)}
        for i in range(0, len(todo), ASK):
            batch = todo[i : i + ASK]
            answers = load_judge(plan).complete(
                [prompt.format(source=s, translation=forward[s][0], **names) for s in batch])
            new = {s: {"qe": parse_score(a), "qe_judge": key} for s, a in zip(batch, answers)}
            store.set_scores(new)
            stored.update(new)
            counts["asked"] += len(batch)
        values = {s: stored[s]["qe"] for s in forward if stored[s].get("qe") is not None}
        counts["unparsed"] += len(forward) - len(values)
        counts["scored"] += len(values)
        counts["score_sum"] += sum(values.values())
        counts["flagged"] += store.flag_under(values, {s: st for s, (_, st) in forward.items()}, q.min_score, FLAG)
    return counts


def summary(counts: dict, min_score: float) -> dict:
    """The translate report's `segments.quality_estimation`."""
    n = counts["scored"]
    return {"scored": n, "asked": counts["asked"], "unparsed": counts["unparsed"], "flagged": counts["flagged"],
            "mean_score": round(counts["score_sum"] / n, 1) if n else None, "min_score": min_score,
            "skipped": counts["skipped"]}  # fmt: skip
