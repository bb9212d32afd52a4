"""Vision stage: compose a vision-language model from the run's model and an image encoder, then
train it in two stages. Runs after train when the recipe has a `vision:` section.

    mothertongue vision recipes/vision_de.yaml                       # or: mothertongue run RECIPE
    mothertongue vision recipes/vision_de.yaml vision.stage2.max_steps=50 --force
    mothertongue chat runs/vision_de --image photo.jpg

Reads the image data (`vision.captions`, `vision.instructions`; skips counted in
`vision/data_report.json`; with translate.enabled its text is machine-translated like ingested
text, see translate.py), `train/` (the tuned model, LoRA merged) and `build/train.jsonl` (the
text-only mix). Writes `vision/model/` (a LlavaForConditionalGeneration with its processor, chat
template, generation config and model card; loads with `from_pretrained`), `vision/stage1/`
(the trained projector weights), `vision/loss.json`, `vision/loss.png` and, with `vision.heldout`,
`vision/scorecard.json` (scorecard.py). The frozen encoder runs once per image
(`vision.partial/features/`, see features.py; removed when the stage is done). A kill in either
stage resumes from its last checkpoint; a finished stage 1 is not redone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.errors import DataError, StageError
from mothertongue.runs import RunDir, atomic_write_json

PROJECTOR_FILE = "projector.safetensors"


def _projector_state(model) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.model.multi_modal_projector.state_dict().items()}


def _stage1(recipe: Recipe, model, processor, examples: list[dict], out: Path, cache: Path) -> tuple[list[dict], dict]:
    from safetensors.torch import load_file, save_file

    from mothertongue.vision.train import fit_stage, freeze_for_stage1

    done = out / PROJECTOR_FILE
    if done.exists():  # a rerun after a kill in stage 2: stage 1's result is kept
        model.model.multi_modal_projector.load_state_dict(load_file(done))
        saved = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        return saved["history"], saved["summary"]
    freeze_for_stage1(model)
    _, history, summary = fit_stage(recipe, recipe.vision.stage1, model, processor, examples, out, cache)
    save_file(_projector_state(model), str(out / (PROJECTOR_FILE + ".tmp")))
    atomic_write_json(out / "summary.json", {"summary": summary, "history": history})
    (out / (PROJECTOR_FILE + ".tmp")).replace(done)  # last: marks stage 1 finished
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return history, summary


def _stage2(recipe: Recipe, model, processor, examples: list[dict], out: Path, cache: Path):
    from mothertongue.vision.train import fit_stage, lora_model, unfreeze_for_stage2

    if recipe.vision.adapter == "lora":
        model = lora_model(model, recipe)
    else:
        unfreeze_for_stage2(model)
    trainer, history, summary = fit_stage(recipe, recipe.vision.stage2, model, processor, examples, out, cache)
    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), history, summary


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    from mothertongue.models import read_template_info
    from mothertongue.train import plot_loss
    from mothertongue.vision.compose import compose, save
    from mothertongue.vision.train import encode_examples, text_mix_rows

    v = recipe.vision
    if v is None:
        raise StageError("the vision stage needs a `vision:` section in the recipe (see recipes/vision_de.yaml)")
    rundir.require("train", "vision")
    build_dir = rundir.require("build", "vision")
    if not v.captions:
        raise StageError("vision.captions: no image-caption sources listed; stage 1 trains on them")
    captions, instructions, heldout, rep1, rep2 = read_data(recipe, rundir, out)

    model, processor, stop_ids = compose(recipe, rundir)
    info = read_template_info(rundir.tuned_dir)
    system = info.get("system_prompt")
    too_long: dict = {}
    max_len = recipe.build.max_length
    ex1 = encode_examples(captions, processor.tokenizer, model.config, system, max_len, too_long)
    ex2 = encode_examples(instructions, processor.tokenizer, model.config, system, max_len, too_long)
    if not ex1 or not ex2:
        raise DataError(f"vision: every example is longer than build.max_length ({max_len} tokens) once each image "
                        f"takes {model.config.image_seq_length} tokens; raise build.max_length")
    mix = text_mix_rows(build_dir, len(ex2), v.text_mix, recipe.seed)

    (out / "stage1").mkdir(exist_ok=True)
    (out / "stage2").mkdir(exist_ok=True)
    hist1, s1 = _stage1(recipe, model, processor, ex1, out / "stage1", out / "features")
    model, hist2, s2 = _stage2(recipe, model, processor, ex2 + mix, out / "stage2", out / "features")

    model_dir = out / "model"
    save(model, processor, model_dir, info)
    summary = {
        "stage1": s1, "stage2": {**s2, "text_only_examples": len(mix)},
        "images": {"captions": len(captions), "instructions": len(instructions)},
        "skipped": {**rep1.skipped, **(rep2.skipped if rep2 else {})},
        "too_long": {k: len(v) for k, v in too_long.items()},
        "image_tokens": model.config.image_seq_length,
        "projector": v.projector, "adapter": v.adapter,
    }
    if heldout:
        from mothertongue.vision.scorecard import score

        card = score(recipe, model, processor, stop_ids, heldout, system)
        atomic_write_json(out / "scorecard.json", card)
        summary["scorecard"] = {k: card[k] for k in ("examples", "exact_match", "chrf", "fidelity", "image_dependence")}
    write_card(recipe, model_dir / "README.md", summary)
    atomic_write_json(out / "loss.json", {"stage1": hist1, "stage2": hist2})
    offset = s1["steps"] or 0
    plot_loss([h for h in hist1 if "loss" in h] + [{**h, "step": h["step"] + offset} for h in hist2 if "loss" in h],
              out / "loss.png")
    shutil.rmtree(out / "stage2" / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "features", ignore_errors=True)
    print(f"[vision] stage 1: {s1['steps']} steps, loss {s1['first_loss']} -> {s1['final_loss']}; "
          f"stage 2: {s2['steps']} steps, loss {s2['first_loss']} -> {s2['final_loss']}")
    return summary


def read_data(recipe: Recipe, rundir: RunDir, out: Path):
    """(captions, instructions, held-out records, the captions' and instructions' read reports):
    read, with translate.enabled machine-translated into the recipe's language
    (vision/translate.py; outputs in out/translate); the counts go to out/data_report.json."""
    from mothertongue.vision.data import read_sources

    v = recipe.vision
    captions, rep1 = read_sources(recipe, v.captions)
    instructions, rep2 = read_sources(recipe, v.instructions) if v.instructions else (captions, None)
    heldout, rep3 = read_sources(recipe, v.heldout) if v.heldout else ([], None)
    report = {"captions": rep1.to_dict(), "instructions": rep2.to_dict() if rep2 else "the captions"}
    if rep3:
        report["heldout"] = rep3.to_dict()
    if recipe.translate.enabled and (captions or instructions or heldout):
        from mothertongue.vision.translate import translate_records

        every = {r["id"]: r for r in captions + (instructions if rep2 else []) + heldout}
        done, report["translation"] = translate_records(recipe, rundir, list(every.values()), out / "translate")
        by_id = {r["id"]: r for r in done}
        captions = [by_id[r["id"]] for r in captions if r["id"] in by_id]
        instructions = [by_id[r["id"]] for r in instructions if r["id"] in by_id] if rep2 else captions
        heldout = [by_id[r["id"]] for r in heldout if r["id"] in by_id]
    atomic_write_json(out / "data_report.json", report)
    if not captions:
        raise DataError(f"vision.captions: no usable image-caption pairs (skipped: {dict(rep1.skipped)})")
    if not instructions:
        raise DataError(f"vision.instructions: no usable conversations (skipped: {dict(rep2.skipped)})")
    return captions, instructions, heldout, rep1, rep2


def write_card(recipe: Recipe, path: Path, summary: dict) -> None:
    """A model card with Hugging Face metadata for the composed, trained model."""
    import yaml

    v = recipe.vision
    meta = {"language": [recipe.language], "library_name": "transformers", "pipeline_tag": "image-text-to-text",
            "tags": ["mothertongue", "llava", "vision"]}
    if recipe.base_model != "tiny":
        meta["base_model"] = recipe.base_model
    s1, s2 = summary["stage1"], summary["stage2"]
    sc = summary.get("scorecard")
    scorecard = "" if not sc else (
        f"\n## Held-out scorecard\n{sc['examples']} held-out examples, greedy replies: exact match "
        f"{sc['exact_match']:.1%}, chrF {sc['chrf']}, in {recipe.language}: "
        f"{'n/a' if sc['fidelity'] is None else format(sc['fidelity'], '.1%')}, replies changed by another image: "
        f"{'n/a' if sc['image_dependence'] is None else format(sc['image_dependence'], '.1%')}.\n")
    body = f"""# {recipe.name} (vision)

A {recipe.language} vision-language model composed by mothertongue: the image encoder `{v.encoder}`,
a `{v.projector}` projector and the run's language model (from `{recipe.base_model}`), in the
LLaVA architecture (`LlavaForConditionalGeneration`).

## Training
| stage | trained | examples | steps | loss |
|---|---|---|---|---|
| 1 | projector (encoder and language model frozen) | {s1['examples']} captions | {s1['steps']} | {s1['first_loss']} -> {s1['final_loss']} |
| 2 | projector + language model ({v.adapter}) | {s2['examples']} ({s2['text_only_examples']} text-only) | {s2['steps']} | {s2['first_loss']} -> {s2['final_loss']} |

Image features: layer {v.feature_layer}, {summary['image_tokens']} tokens per image. Images skipped: {summary['skipped'] or 'none'}.
{scorecard}
## Use
```python
from transformers import AutoProcessor, LlavaForConditionalGeneration

model = LlavaForConditionalGeneration.from_pretrained(PATH)
processor = AutoProcessor.from_pretrained(PATH)
```
or `mothertongue chat RUN_DIR --image photo.jpg`, `vllm serve PATH`.
"""
    path.write_text("---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body,
                    encoding="utf-8")
