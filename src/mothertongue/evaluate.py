"""Evaluate stage: the base and the tuned model side by side on the same prompts.

    mothertongue evaluate recipes/quickstart.yaml

Scores greedy answers against references on two sets: held-out conversations (`test` split,
e.g. the text format's `_EVAL_` part) and a sample of training conversations (does the model
reproduce what it was taught?). Metrics: exact match, chrF (sacreBLEU), and the share of replies
that ended at the end-of-turn token instead of running on. Writes `evaluate/scorecard.json`,
`evaluate/scorecard.md` and every generation to `evaluate/generations.jsonl`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.conversation import Conversation, read_conversations, write_jsonl
from mothertongue.runs import RunDir, atomic_write_json, atomic_write_text


def exact_match(hyp: str, ref: str) -> bool:
    return " ".join(hyp.split()) == " ".join(ref.split())


def chrf(hyps: list[str], refs: list[str]) -> float:
    from sacrebleu.metrics import CHRF

    if not hyps:
        return 0.0
    return CHRF().corpus_score(hyps, [refs]).score


def _prompt_and_ref(conv: Conversation, system_prompt: str | None) -> tuple[list[dict], str]:
    msgs = [{"role": m.role, "content": m.content} for m in conv.messages]
    if system_prompt and msgs[0]["role"] != "system":
        msgs.insert(0, {"role": "system", "content": system_prompt})
    return msgs[:-1], msgs[-1]["content"]


def score_model(model, tokenizer, stop_ids, sets: dict[str, list[Conversation]], recipe: Recipe) -> tuple[dict, list[dict]]:
    from mothertongue.generation import generate, generation_kwargs

    kw = generation_kwargs(recipe.evaluate.preset, recipe.chat, recipe.evaluate.max_new_tokens)
    scores, gens = {}, []
    for name, convs in sets.items():
        if not convs:
            continue
        pairs = [_prompt_and_ref(c, recipe.build.system_prompt) for c in convs]
        replies = generate(model, tokenizer, [p for p, _ in pairs], stop_ids, **kw)
        refs = [r for _, r in pairs]
        hyps = [r.text for r in replies]
        scores[name] = {
            "n": len(convs),
            "exact_match": sum(exact_match(h, r) for h, r in zip(hyps, refs)) / len(refs),
            "chrf": chrf(hyps, refs),
            "ended_at_eot": sum(r.ended for r in replies) / len(replies),
            "mean_reply_tokens": sum(r.new_tokens for r in replies) / len(replies),
        }
        for c, (p, ref), rep in zip(convs, pairs, replies):
            gens.append({"set": name, "id": c.id, "prompt": p[-1]["content"], "reference": ref,
                         "reply": rep.text, "ended": rep.ended})
    return scores, gens


ROWS = [("exact_match", "exact match", "{:.1%}"), ("chrf", "chrF", "{:.1f}"),
        ("ended_at_eot", "ended at end of turn", "{:.1%}"), ("mean_reply_tokens", "mean reply tokens", "{:.1f}")]


def format_table(card: dict) -> str:
    models = [m for m in ("base", "tuned") if m in card["models"]]
    lines = [f"| {'set':<14} | {'metric':<22} | " + " | ".join(f"{m:>8}" for m in models) + " |",
             "|" + "-" * 16 + "|" + "-" * 24 + "|" + "|".join("-" * 10 for _ in models) + "|"]
    sets = list(card["models"]["tuned"])
    for s in sets:
        n = card["models"]["tuned"][s]["n"]
        for key, label, fmt in ROWS:
            vals = [fmt.format(card["models"][m][s][key]) for m in models]
            lines.append(f"| {s + ' (' + str(n) + ')':<14} | {label:<22} | " + " | ".join(f"{v:>8}" for v in vals) + " |")
    return "\n".join(lines)


def run(recipe: Recipe, run: RunDir, out: Path) -> dict:
    from mothertongue.models import load_for_inference

    data = run.data_dir(recipe, "evaluate")
    test = read_conversations(data / "test.jsonl")
    train = read_conversations(data / "train.jsonl")
    if recipe.evaluate.max_prompts:
        test = test[: recipe.evaluate.max_prompts]
    rng = random.Random(recipe.seed)
    sample = train if len(train) <= recipe.evaluate.train_sample else rng.sample(train, recipe.evaluate.train_sample)
    sets = {"held-out": test, "train": sample}

    card = {"language": recipe.language, "base_model": recipe.base_model, "models": {}}
    all_gens = []
    which = ["base", "tuned"] if recipe.evaluate.compare_base else ["tuned"]
    for w in which:
        model, tok, stop = load_for_inference(run.root, w)
        scores, gens = score_model(model, tok, stop, sets, recipe)
        card["models"][w] = scores
        all_gens += [{"model": w, **g} for g in gens]
        del model
    table = format_table(card)
    write_jsonl(out / "generations.jsonl", all_gens)
    atomic_write_json(out / "scorecard.json", card)
    atomic_write_text(out / "scorecard.md", f"# Scorecard: {recipe.name}\n\n{table}\n")
    print(f"[evaluate] base vs tuned, greedy decoding:\n{table}")
    return card


def print_scorecard(run_dir: Path) -> str:
    card = json.loads((RunDir(run_dir).require("evaluate", "scorecard") / "scorecard.json").read_text())
    return format_table(card)
