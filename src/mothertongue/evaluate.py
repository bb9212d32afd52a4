"""Evaluate stage: the base and the tuned model side by side on the same prompts.

    mothertongue evaluate runs/quickstart            # a finished run (uses its recipe.resolved.yaml)
    mothertongue evaluate recipes/quickstart.yaml evaluate.suites=[de] --force

Both models answer the same prompts with the generation code chat uses (batched, same end-of-turn
stop). Sets: `held-out` (the `test` split, with references), `train` (a sample of training
conversations: were they learned?), the prompt suites (`prompts-de`, `prompts-en`, or your own
files), and optionally `parallel` (the model as translator). Per set and model: language
fidelity per reply and per sentence (lingua), exact match and chrF where there are references,
BLEU on the parallel file, perplexity on held-out text, and behaviour (ended at end of turn,
reply length, repetition). Optional: lm-evaluation-harness benchmarks and an LLM judge.

Writes `evaluate/scorecard.json` (`card["models"][base|tuned][set][metric]`), `scorecard.md`,
`scorecard.html` (self-contained, plots embedded) and every generation to `generations.jsonl`.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from mothertongue import progress
from mothertongue.config import Recipe
from mothertongue.conversation import Conversation, DataError, read_conversations, write_jsonl
from mothertongue.metrics.reference import chrf, exact_match  # noqa: F401  (kept importable from here)
from mothertongue.metrics.suites import (
    Item,
    find_file,
    load_suite,
    read_parallel,
    read_texts,
    shipped_suites,
)
from mothertongue.prompts import base_system_prompt, with_system
from mothertongue.runs import RunDir, StageError, atomic_write_json

REFERENCE_SETS = ("held-out", "train")


def _item(conv: Conversation, system_prompt: str | None) -> Item:
    msgs = with_system([{"role": m.role, "content": m.content} for m in conv.messages], system_prompt)
    return Item(conv.id, msgs[:-1], msgs[-1]["content"], conv.lang)


def suites_for(recipe: Recipe) -> list[str]:
    """The prompt suites to score: the recipe's, else the target language's shipped one and English."""
    if recipe.evaluate.suites is not None:
        return recipe.evaluate.suites
    shipped = shipped_suites()
    return [s for s in dict.fromkeys([recipe.language.lower(), "en"]) if s in shipped]


def build_sets(recipe: Recipe, run: RunDir) -> tuple[dict[str, list[Item]], dict[str, list[str]], dict]:
    """The prompts both models answer, by set; the texts scored by likelihood (perplexity, bits
    per byte), by set; set metadata."""
    from mothertongue.metrics.fidelity import language_name

    # The system prompt the model was trained with ("auto" resolves to the language's own).
    cfg, sys_prompt = recipe.evaluate, base_system_prompt(recipe.build, recipe.language)
    data = run.data_dir(recipe, "evaluate")
    test = read_conversations(data / "test.jsonl")
    train = read_conversations(data / "train.jsonl")
    if cfg.max_prompts:
        test = test[: cfg.max_prompts]
    rng = random.Random(recipe.seed)
    sample = train if len(train) <= cfg.train_sample else rng.sample(train, cfg.train_sample)
    sets = {"held-out": [_item(c, sys_prompt) for c in test], "train": [_item(c, sys_prompt) for c in sample]}
    info = {name: {"kind": "reference", "source": f"{data.name}/{'test' if name == 'held-out' else 'train'}.jsonl"} for name in sets}
    base_dir = Path(recipe.base_dir)
    for spec in suites_for(recipe):
        name, items = load_suite(spec, base_dir, language=recipe.language)
        items = items[: cfg.suite_max_prompts] if cfg.suite_max_prompts else items
        if sys_prompt:
            items = [replace(i, messages=with_system(i.messages, sys_prompt)) for i in items]
        sets[name] = items
        info[name] = {"kind": "suite", "source": spec}
    if cfg.parallel_file:
        path = find_file(cfg.parallel_file, base_dir)
        lang_name = language_name(recipe.language)
        sets["parallel"] = [
            Item(f"parallel-{i}", [{"role": "user", "content": cfg.translate_prompt.format(language=lang_name, source=src)}], ref, None, "translate")
            for i, (src, ref) in enumerate(read_parallel(path), 1)
        ]
        info["parallel"] = {"kind": "parallel", "source": str(path)}
    if cfg.perplexity_file:
        texts = {"text": read_texts(find_file(cfg.perplexity_file, base_dir))}
        info["text"] = {"kind": "perplexity", "source": cfg.perplexity_file}
    else:
        texts = {"held-out": [i.reference for i in sets["held-out"] if i.reference]}
    english = original_answers(test, recipe.language)
    if english:
        texts["english"] = english
        info["english"] = {"kind": "perplexity", "source": f"{data.name}/test.jsonl (original answers)"}
    return {k: v for k, v in sets.items() if v}, {k: v for k, v in texts.items() if v}, info


def original_answers(convs: list[Conversation], target: str) -> list[str]:
    """The untranslated answers the translate stage kept for held-out conversations whose
    original is in another language (English, mostly): how well a model still knows it."""
    out = []
    for c in convs:
        lang = (c.meta.get("source_lang") or "").lower()
        if lang and lang != target.lower():
            out += [m["content"] for m in c.meta.get("source_messages") or [] if m["role"] == "assistant"]
    return out


def expected_langs(name: str, items: list[Item], recipe: Recipe, lid) -> list[str]:
    """The language each reply should be in: the target, or the prompt's own for suites if so configured."""
    target = recipe.language
    if name in REFERENCE_SETS or name == "parallel":
        return [target] * len(items)
    out = []
    for it in items:
        rule = it.expect or recipe.evaluate.expect_reply_in  # an item's own `expect` wins (cross-lingual suites)
        if rule == "target":
            lang = target
        elif rule == "prompt":
            lang = it.lang or lid.detect(it.messages[-1]["content"]) or target
        else:
            lang = rule
        out.append(lang.lower())
    return out


def score_set(name: str, items: list[Item], replies, expected: list[str], lid) -> tuple[dict, list[dict]]:
    from mothertongue.metrics.behaviour import behaviour_scores, repetition
    from mothertongue.metrics.fidelity import fidelity_scores
    from mothertongue.metrics.lcb import line_level
    from mothertongue.metrics.reference import bleu, exact_match_rate

    hyps = [r.text for r in replies]
    judgements = [lid.judge(h) for h in hyps]
    scores: dict = {"n": len(items)}
    refs = [i.reference for i in items]
    if all(r is not None for r in refs):
        scores["exact_match"] = exact_match_rate(hyps, refs)
        scores["chrf"] = chrf(hyps, refs)
        if name == "parallel":
            scores["bleu"] = bleu(hyps, refs)
    scores.update(behaviour_scores(hyps, [r.ended for r in replies], [r.new_tokens for r in replies]))
    scores.update(fidelity_scores(judgements, expected))
    lcb = line_level(hyps, expected, lid.detect)
    scores.update({k: v for k, v in lcb.items() if k not in ("replies", "judgeable") and v is not None})
    scores["line_judgeable"] = lcb["judgeable"]
    gens = []
    for it, rep, j, exp in zip(items, replies, judgements, expected):
        gens.append({
            "set": name, "id": it.id, "category": it.category, "messages": it.messages,
            "prompt": it.messages[-1]["content"], "reference": it.reference, "reply": rep.text,
            "ended": rep.ended, "tokens": rep.new_tokens, "expected_lang": exp, "reply_lang": j.lang,
            "sentence_langs": j.sentences, "repetition": round(repetition(rep.text), 3),
        })
    return scores, gens


def score_model(model, tokenizer, stop_ids, sets: dict[str, list[Item]], recipe: Recipe, lid,
                texts: dict[str, list[str]] | None = None, bar: progress.Task | None = None) -> tuple[dict, list[dict]]:
    """Generate for every set (batched, chat's end-of-turn handling) and score it."""
    from mothertongue.generation import generate, generation_kwargs
    from mothertongue.metrics.perplexity import text_scores

    cfg = recipe.evaluate
    kw = generation_kwargs(cfg.preset, recipe.chat, cfg.max_new_tokens)
    scores, gens = {}, []
    for name, items in sets.items():
        replies = generate(model, tokenizer, [i.messages for i in items], stop_ids, batch_size=cfg.batch_size,
                           on_batch=bar.advance if bar is not None else None, **kw)
        scores[name], g = score_set(name, items, replies, expected_langs(name, items, recipe, lid), lid)
        gens += g
    for name, group in (texts or {}).items():
        got = text_scores(model, tokenizer, group, batch_size=cfg.batch_size)
        if got:
            scores.setdefault(name, {"n": len(group)}).update(
                perplexity=got["perplexity"], bits_per_byte=got["bits_per_byte"])
    return scores, gens


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    from mothertongue.metrics.fidelity import FidelityJudge
    from mothertongue.metrics.report import format_table, write_html, write_markdown
    from mothertongue.models import load_model

    cfg = recipe.evaluate
    started = time.time()
    sets, texts, info = build_sets(recipe, rundir)
    try:
        lid = FidelityJudge(recipe.language, cfg.fidelity_languages, cfg.min_letters)
    except ValueError as e:
        raise StageError(f"evaluate.fidelity_languages / language: {e}") from None
    card: dict = {"name": recipe.name, "language": recipe.language, "base_model": recipe.base_model,
                  "preset": cfg.preset, "max_new_tokens": cfg.max_new_tokens,
                  "expect_reply_in": cfg.expect_reply_in, "sets": info, "models": {}}
    all_gens = []
    which = ["base", "tuned"] if cfg.compare_base else ["tuned"]
    with progress.task("evaluate", total=len(which) * sum(map(len, sets.values())), unit="prompts") as bar:
        for w in which:
            model, tok, stop, _ = load_model(rundir.root, w, trust_remote_code=recipe.train.trust_remote_code)
            bar.update(model=w)
            scores, gens = score_model(model, tok, stop, sets, recipe, lid, texts, bar)
            if cfg.benchmarks:
                from mothertongue.metrics.benchmarks import run_benchmarks

                bench, note = run_benchmarks(model, tok, recipe)
                scores.update(bench)
                card["benchmarks_note"] = note
            card["models"][w] = scores
            if w == "tuned" and recipe.vocab.enabled:
                from mothertongue.vocab.stage import scorecard_section

                card["vocab"] = scorecard_section(recipe, rundir, model, tok)
            all_gens += [{"model": w, **g} for g in gens]
            del model
    if cfg.judge.enabled and "base" in card["models"]:
        from mothertongue.metrics.judge import judge_pairwise

        card["judge"] = judge_pairwise(all_gens, recipe)
    if cfg.english_regression_max is not None and "base" in card["models"]:
        from mothertongue.metrics.english import english_regression

        card["english_regression"] = english_regression(card["models"], cfg.english_regression_max)
    card["seconds"] = round(time.time() - started, 1)
    write_jsonl(out / "generations.jsonl", all_gens)
    atomic_write_json(out / "scorecard.json", card)
    write_markdown(card, out / "scorecard.md")
    if card.get("vocab"):
        from mothertongue.vocab.stage import scorecard_markdown

        with open(out / "scorecard.md", "a", encoding="utf-8") as f:
            f.write(scorecard_markdown(card["vocab"]))
    if cfg.html:
        write_html(card, all_gens, out / "scorecard.html")
    print(f"[evaluate] base vs tuned, {cfg.preset} decoding ({card['seconds']} s):\n{format_table(card)}")
    return card


def load_card(run_dir: Path) -> dict:
    path = RunDir(Path(run_dir)).require("evaluate", "the scorecard") / "scorecard.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg}); rerun `mothertongue evaluate {run_dir} --force`") from None


def print_scorecard(run_dir: Path) -> str:
    from mothertongue.metrics.report import format_table

    return format_table(load_card(run_dir))
