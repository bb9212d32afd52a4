"""The vision model's scorecard on held-out image-text data (`vision.heldout`), written by the stage.

    mothertongue vision RECIPE          # -> runs/NAME/vision/scorecard.json (and in the model card)

Each held-out record is asked what precedes its last assistant turn (its images included) and
answered greedily; the reply is scored against that turn: exact match (whitespace normalised) and
corpus chrF (sacreBLEU), and for language fidelity (evaluate's detector and candidate languages,
`evaluate.fidelity_languages`) the share of judgeable replies in the recipe's language (None
where the language detector does not know it). Image dependence: the same question is asked again with the images of the
next record whose reference differs, and the share of replies that change is reported; a model
that ignores its images scores 0 there however fluent its captions are.
"""

from __future__ import annotations

from mothertongue.config import Recipe

SAMPLES = 20  # replies listed in the scorecard


def _prompt(record: dict) -> tuple[list[dict], str]:
    msgs = record["messages"]
    last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    return msgs[:last], msgs[last]["content"]


def score(
    recipe: Recipe,
    model,
    processor,
    stop_ids: list[int],
    records: list[dict],
    system: str | None,
    max_new_tokens: int = 64,
) -> dict:
    """Exact match, chrF and image dependence of greedy replies to `records` (see the module)."""
    from mothertongue.metrics.reference import chrf, exact_match, exact_match_rate
    from mothertongue.prompts import with_system
    from mothertongue.vision.data import load_image
    from mothertongue.vision.infer import answer

    def reply(msgs: list[dict], refs: list[str]) -> str:
        images = [load_image(r, recipe) for r in refs]
        return answer(
            model,
            processor,
            with_system(msgs, system),
            images,
            stop_ids,
            max_new_tokens=max_new_tokens,
            do_sample=False,
        ).text

    asked = [_prompt(r) for r in records]
    hyps = [reply(msgs, r["images"]) for (msgs, _), r in zip(asked, records, strict=True)]
    refs = [ref for _, ref in asked]
    changed, swaps, samples = 0, 0, []
    for i, ((msgs, ref), r) in enumerate(zip(asked, records, strict=True)):
        other = next(
            (
                records[(i + k) % len(records)]
                for k in range(1, len(records))
                if _prompt(records[(i + k) % len(records)])[1] != ref
                and len(records[(i + k) % len(records)]["images"]) == len(r["images"])
            ),
            None,
        )
        swapped = reply(msgs, other["images"]) if other is not None else None
        if swapped is not None:
            swaps += 1
            changed += swapped != hyps[i]
        if len(samples) < SAMPLES:
            samples.append(
                {
                    "images": r["images"],
                    "reference": ref,
                    "reply": hyps[i],
                    "exact": exact_match(hyps[i], ref),
                    "with_other_images": swapped,
                }
            )
    return {
        **_fidelity(recipe, hyps),
        "examples": len(records),
        "exact_match": exact_match_rate(hyps, refs),
        "chrf": round(chrf(hyps, refs), 2),
        "image_dependence": changed / swaps if swaps else None,
        "image_swaps": swaps,
        "samples": samples,
    }


def _fidelity(recipe: Recipe, replies: list[str]) -> dict:
    from mothertongue.metrics.fidelity import FidelityJudge, fidelity_scores
    from mothertongue.text.langid import lingua_codes

    cfg = recipe.evaluate
    if recipe.language not in lingua_codes():  # the detector does not know it: not judged
        return {"fidelity": None}
    judge = FidelityJudge(recipe.language, cfg.fidelity_languages, cfg.min_letters)
    scores = fidelity_scores([judge.judge(r) for r in replies], [recipe.language] * len(replies))
    return {"fidelity": scores["fidelity"], "fidelity_judged": scores["judged"]}
