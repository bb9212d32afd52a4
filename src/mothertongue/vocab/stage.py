"""Vocab stage: extend the base tokenizer for the target language and initialise the new rows.

    mothertongue tokenizer recipes/my.yaml --report          # diagnosis only: tokens per word
    mothertongue run recipes/my.yaml vocab.enabled=true      # ingest -> translate -> vocab -> build ...

Target-language text comes from the translated (or ingested) conversations, `build.native` and
`vocab.texts`. Measurements use text no stage trains on: the test split's target-language turns
and `evaluate.perplexity_file`; a recipe with neither holds a share (`vocab.heldout_fraction`,
chosen by a hash of the text) out of the extension only, and the report says so. English text (the shipped English prompts, English source conversations and
`vocab.english_texts`) must tokenize to the same ids after the extension.

Writes `vocab/model/` (the base model with grown embeddings and the extended tokenizer: build,
train, evaluate, chat and export use it as the base model), `vocab/heldout_target.txt`,
`vocab/heldout_en.txt`, `vocab/report.json` and `vocab/report.md` (fertility and bits per byte of
the base and of the extended model before training).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.runs import RunDir, StageError, atomic_write_json, atomic_write_text

MODEL = "model"


def base_model_path(recipe: Recipe) -> str:
    """Where the run's base model (weights and tokenizer) comes from: the vocab stage's extended
    model when the stage is on, else `base_model`."""
    if recipe.vocab.enabled:
        return str((Path(recipe.run_dir) / "vocab" / MODEL).resolve())
    return recipe.base_model


def _held_out(text: str, fraction: float) -> bool:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF < fraction


def _conversation_texts(rundir: RunDir, stage: str, lang: str, splits: tuple[str, ...]) -> list[str]:
    from mothertongue.conversation import read_conversations

    d = rundir.stage(stage)
    if not rundir.complete(stage):
        return []
    out = []
    for split in splits:
        if (d / f"{split}.jsonl").exists():
            for c in read_conversations(d / f"{split}.jsonl"):
                out += [m.content for m in c.messages if (m.lang or c.lang or "").lower().startswith(lang) and m.content.strip()]
    return out


def gather(recipe: Recipe) -> dict[str, list[str]]:
    """The recipe's text, deduplicated in a stable order: `train` (target language, what the
    extension learns from), `held_out` (target language never trained on: the test split and
    `evaluate.perplexity_file`) and `english`."""
    from mothertongue import mix
    from mothertongue.metrics.suites import find_file, load_suite, read_texts

    rundir = RunDir(Path(recipe.run_dir))
    base_dir = Path(recipe.base_dir)
    data_stage = "translate" if recipe.translate.enabled else "ingest"
    train = _conversation_texts(rundir, data_stage, recipe.language, ("train", "dev"))
    train += mix.native_chunks(recipe) if recipe.build.native else []
    for f in recipe.vocab.texts:
        train += read_texts(find_file(f, base_dir))
    held = _conversation_texts(rundir, data_stage, recipe.language, ("test",))
    if recipe.evaluate.perplexity_file:
        held += read_texts(find_file(recipe.evaluate.perplexity_file, base_dir))
    english = [i.messages[-1]["content"] for i in load_suite("en", base_dir)[1]]
    if recipe.language != "en":
        english += _conversation_texts(rundir, "ingest", "en", ("train", "dev", "test"))
        for f in recipe.vocab.english_texts:
            english += read_texts(find_file(f, base_dir))
    held = list(dict.fromkeys(held))
    train = [t for t in dict.fromkeys(train) if t not in set(held)]
    return {"train": train, "held_out": held, "english": list(dict.fromkeys(english))}


def diagnose(recipe: Recipe) -> dict:
    """Fertility of the base tokenizer on the recipe's target-language and English text."""
    from mothertongue.models import TINY, load_tokenizer
    from mothertongue.vocab.fertility import fertility, recommend

    if recipe.base_model == TINY:
        raise StageError("vocab: base_model tiny gets a tokenizer trained on your own data by build; set base_model to a pretrained model")
    texts = gather(recipe)
    target = texts["train"] + texts["held_out"]
    if not target:
        raise StageError(
            f"vocab: no {recipe.language} text found; run ingest (and translate) first, or set build.native or vocab.texts"
        )
    tok = load_tokenizer(recipe.base_model, recipe.train.trust_remote_code)
    rows = {recipe.language: fertility(tok, target), "en": fertility(tok, texts["english"])}
    yes, why = recommend(rows[recipe.language], rows["en"], recipe.vocab.recommend_ratio)
    return {"base_model": recipe.base_model, "fertility": rows, "recommend_extension": yes, "recommendation": why}


def format_report(report: dict) -> str:
    from mothertongue.vocab.fertility import table

    lines = [f"Tokenizer of {report['base_model']}", "", table(report["fertility"])]
    if "after" in report:
        lines += ["", f"After extension (+{report['extension']['added']} tokens), held-out text:", "",
                  table(report["after"])]
    if "bits_per_byte" in report:
        lines += ["", "| bits per byte | " + " | ".join(report["bits_per_byte"]) + " |",
                  "|---|" + "---:|" * len(report["bits_per_byte"])]
        for lang in next(iter(report["bits_per_byte"].values()), {}):
            lines.append(f"| {lang} | " + " | ".join(f"{v.get(lang):.4f}" if v.get(lang) is not None else "-"
                                                      for v in report["bits_per_byte"].values()) + " |")
    lines += ["", report["recommendation"]]
    return "\n".join(lines)


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mothertongue.metrics.perplexity import bits_per_byte
    from mothertongue.models import load_tokenizer
    from mothertongue.vocab.embeddings import grow_embeddings, warm_up_new_rows
    from mothertongue.vocab.extend import extend, new_token_ids
    from mothertongue.vocab.fertility import fertility
    from mothertongue.weights import check_base_model

    cfg = recipe.vocab
    report = diagnose(recipe)
    texts = gather(recipe)
    train_texts, held, english = texts["train"], texts["held_out"], texts["english"]
    report["held_out_from"] = "training" if held else "the tokenizer only"
    if not held:
        # No test split and no perplexity file: hold text out of the extension at least.
        held = [t for t in train_texts if _held_out(t, cfg.heldout_fraction)]
        train_texts = [t for t in train_texts if t not in set(held)]
    if not held or not train_texts:
        raise StageError(f"vocab: {len(train_texts)} {recipe.language} texts to learn from, {len(held)} held out; "
                         "add text (build.native, vocab.texts) or ingest.test_fraction / evaluate.perplexity_file")
    held_en = [t for t in english if _held_out(t, 0.5)]
    base_tok = load_tokenizer(recipe.base_model, recipe.train.trust_remote_code)
    new_tok, info = extend(base_tok, train_texts, english, cfg.extension_size, cfg.min_frequency)
    report["extension"] = info
    report["fertility"] = {f"{recipe.language} held-out": fertility(base_tok, held), "en": fertility(base_tok, english)}
    report["after"] = {f"{recipe.language} held-out": fertility(new_tok, held), "en": fertility(new_tok, english)}

    allow_pickle = recipe.train.allow_pickle
    check_base_model(recipe.base_model, allow_pickle)
    model = AutoModelForCausalLM.from_pretrained(recipe.base_model, dtype=torch.float32, trust_remote_code=recipe.train.trust_remote_code,
                                                 use_safetensors=None if allow_pickle else True)
    model.eval()
    bpb = {"base": {recipe.language: bits_per_byte(model, base_tok, held), "en": bits_per_byte(model, base_tok, held_en)}}
    report["embeddings"] = grow_embeddings(model, base_tok, new_tok, cfg.init, cfg.pad_to_multiple_of, recipe.seed)
    bpb["extended, untrained"] = {recipe.language: bits_per_byte(model, new_tok, held), "en": bits_per_byte(model, new_tok, held_en)}
    if cfg.warmup_new_rows_steps:
        losses = warm_up_new_rows(model, new_tok, train_texts, new_token_ids(base_tok, new_tok), cfg.warmup_new_rows_steps,
                                  cfg.warmup_learning_rate, seed=recipe.seed)
        report["warmup"] = {"steps": len(losses), "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None}
        bpb["new rows warmed up"] = {recipe.language: bits_per_byte(model, new_tok, held), "en": bits_per_byte(model, new_tok, held_en)}
    report["bits_per_byte"] = bpb
    report["texts"] = {"train": len(train_texts), "held_out": len(held), "english": len(english), "english_held_out": len(held_en)}

    model.save_pretrained(out / MODEL)
    new_tok.save_pretrained(out / MODEL)
    atomic_write_text(out / "heldout_target.txt", "\n".join(t.replace("\n", " ") for t in held) + "\n")
    atomic_write_text(out / "heldout_en.txt", "\n".join(t.replace("\n", " ") for t in held_en) + "\n")
    atomic_write_json(out / "report.json", report)
    text = format_report(report)
    atomic_write_text(out / "report.md", text + "\n")
    print(f"[vocab] +{info['added']} tokens ({info['kind']}), embeddings {report['embeddings']['rows_before']} -> "
          f"{report['embeddings']['rows_after']} rows ({cfg.init})\n{text}")
    return {k: report[k] for k in ("extension", "fertility", "after", "bits_per_byte", "texts")}


def scorecard_section(recipe: Recipe, rundir: RunDir, model, tok) -> dict | None:
    """The scorecard's `vocab` entry: the stage's fertility and bits per byte, plus the tuned
    model's bits per byte on the same held-out texts."""
    import json

    from mothertongue.metrics.perplexity import bits_per_byte

    d = rundir.stage("vocab")
    if not recipe.vocab.enabled or not rundir.complete("vocab"):
        return None
    report = json.loads((d / "report.json").read_text(encoding="utf-8"))
    held = [t for t in (d / "heldout_target.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    held_en = [t for t in (d / "heldout_en.txt").read_text(encoding="utf-8").splitlines() if t.strip()]
    bpb = dict(report["bits_per_byte"])
    bpb["tuned"] = {recipe.language: bits_per_byte(model, tok, held), "en": bits_per_byte(model, tok, held_en)}
    return {"fertility_before": report["fertility"], "fertility_after": report["after"],
            "added_tokens": report["extension"]["added"], "bits_per_byte": bpb}


def scorecard_markdown(section: dict) -> str:
    from mothertongue.vocab.fertility import table

    cols = list(section["bits_per_byte"])
    langs = list(next(iter(section["bits_per_byte"].values())))
    lines = ["", "## Vocabulary", "", f"+{section['added_tokens']} tokens. Fertility before:", "",
             table(section["fertility_before"]), "", "After:", "", table(section["fertility_after"]), "",
             "Bits per byte on held-out text (lower is better; comparable across vocabularies):", "",
             "| text | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for lang in langs:
        vals = [section["bits_per_byte"][c].get(lang) for c in cols]
        lines.append(f"| {lang} | " + " | ".join(f"{v:.4f}" if v is not None else "-" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def compare(runs: dict[str, Path], texts: list[str]) -> dict:
    """Tuned models of finished runs (e.g. the same CPT with and without extension) on the same
    held-out texts: bits per byte, training steps and tokens, and fertility of each run's tokenizer."""
    import json

    from mothertongue.metrics.perplexity import bits_per_byte
    from mothertongue.models import load_model
    from mothertongue.vocab.fertility import fertility

    out = {}
    for label, run_dir in runs.items():
        summary = json.loads((Path(run_dir) / "train" / "manifest.json").read_text(encoding="utf-8"))["summary"]
        model, tok, _, _ = load_model(Path(run_dir), "tuned")
        out[label] = {"bits_per_byte": bits_per_byte(model, tok, texts), "steps": summary["steps"],
                      "tokens": summary["tokens"], "fertility": fertility(tok, texts)["fertility"]}
        del model
    return out


def verdict(rows: dict, extended: str, plain: str) -> str:
    """One line saying whether the extended run is worse than the plain one, and by how much."""
    a, b = rows[extended], rows[plain]
    worse = a["bits_per_byte"] > b["bits_per_byte"]
    return (f"{extended} is {'worse than' if worse else 'no worse than'} {plain} on held-out text: "
            f"{a['bits_per_byte']:.4f} vs {b['bits_per_byte']:.4f} bits per byte after {a['steps']} vs {b['steps']} steps "
            f"({a['fertility']:.2f} vs {b['fertility']:.2f} tokens per word)")
