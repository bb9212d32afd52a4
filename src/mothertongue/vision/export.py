"""The merged export of a vision run: the trained Llava model (LoRA already merged by the vision
stage) with its processor, checked by loading it back with `from_pretrained` and generating.

    mothertongue export runs/vision_de          # -> runs/vision_de/export/merged  (vllm serve it)

Called by the `merged` exporter when the run finished the vision stage. The probe is a caption
request on the first usable image of `vision.captions`; the export must answer it exactly as the
run's model does.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from mothertongue.errors import StageError
from mothertongue.runs import RunDir


def probe(run_dir: Path):
    """(messages, [image]) for the first usable caption image of the run's recipe."""
    from mothertongue.formats.report import IngestReport
    from mothertongue.vision.data import describe_prompt, load_image, read_source

    recipe = RunDir(run_dir).load_recipe()
    v = recipe.vision
    for src in v.captions:
        records = read_source(recipe, src.model_copy(update={"limit": 1}), IngestReport("skip"))
        if records:
            img = load_image(records[0]["images"][0], recipe)
            text = f"{v.image_token}\n{describe_prompt(recipe.language)}"
            return [{"role": "user", "content": text}], [img]
    raise StageError(f"{run_dir}: no usable image in vision.captions to verify the export with")


def export_vision(run_dir: Path, out_dir: Path) -> dict:
    from mothertongue.models import load_model
    from mothertongue.prompts import with_system
    from mothertongue.vision.infer import answer, run_model_dir

    src = run_model_dir(run_dir)
    model, tokenizer, stops, info = load_model(run_dir, "tuned", vision=True)
    msgs, images = probe(run_dir)
    msgs = with_system(msgs, info.system_prompt)
    ref = answer(model, info.processor, msgs, images, stops, max_new_tokens=32, do_sample=False)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    back, _, back_stops, back_info = load_model(out_dir)
    got = answer(back, back_info.processor, msgs, images, back_stops, max_new_tokens=32, do_sample=False)
    report = {"format": "merged", "path": str(out_dir), "vision": True, "probe_reply": got.text,
              "same_greedy_output": got.text == ref.text, "processor": True}
    if got.text != ref.text:
        raise StageError(f"the exported vision model at {out_dir} answers {got.text!r}, the run's model {ref.text!r}")
    return report
