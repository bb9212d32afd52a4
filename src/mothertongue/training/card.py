"""The model card written next to a trained model: `train/model/README.md` with YAML metadata.

    mothertongue train recipes/quickstart.yaml     # then: cat runs/quickstart/train/model/README.md

The metadata follows the Hugging Face model card schema (base_model, language, datasets,
library_name, tags, model-index with eval results) so the folder can be pushed to a hub as is.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from mothertongue.config import Recipe


def _datasets(recipe: Recipe) -> list[str]:
    out = []
    for s in recipe.ingest.sources:
        out.append(s.name or Path(s.path).name if not _looks_like_hub_id(s.path) else s.path)
    return out


def _looks_like_hub_id(p: str) -> bool:
    return p.count("/") == 1 and not Path(p).suffix and not p.startswith((".", "/"))


def write_card(recipe: Recipe, path: Path, summary: dict, hyper: dict) -> None:
    cfg = recipe.train
    peft = cfg.adapter in ("lora", "qlora")
    base = recipe.base_model if recipe.base_model != "tiny" else None
    meta: dict = {
        "language": [recipe.language],
        "library_name": "peft" if peft else "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["mothertongue", "trl", cfg.method] + ([cfg.adapter] if peft else []),
    }
    if base:
        meta["base_model"] = base
    datasets = _datasets(recipe)
    if datasets:
        meta["datasets"] = datasets
    eval_loss = summary.get("eval_loss")
    if eval_loss is not None:
        meta["model-index"] = [
            {
                "name": recipe.name,
                "results": [
                    {
                        "task": {"type": "text-generation"},
                        "dataset": {"name": f"{recipe.name} dev split", "type": "dev"},
                        "metrics": [{"type": "loss", "value": round(float(eval_loss), 4), "name": "dev loss"}],
                    }
                ],
            }
        ]
    tr = recipe.translate
    translation = (
        f"machine-translated into `{recipe.language}` with the `{tr.engine}` engine, model `{tr.model or 'catalogue default'}`"
        if tr.enabled
        else "used as is (no machine translation)"
    )
    rows = "\n".join(f"| {k} | {v} |" for k, v in hyper.items())
    how = (
        "```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
        "model = AutoPeftModelForCausalLM.from_pretrained(PATH)\ntokenizer = AutoTokenizer.from_pretrained(PATH)\n```"
        if peft
        else "```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        "model = AutoModelForCausalLM.from_pretrained(PATH)\ntokenizer = AutoTokenizer.from_pretrained(PATH)\n```"
    )
    body = f"""# {recipe.name}

A {recipe.language} chat model trained with [mothertongue](https://github.com/) ({cfg.method}, {cfg.adapter})
from **{base or "the embedded tiny model (built locally)"}**.

## Data
Sources: {", ".join(f"`{d}`" for d in datasets) or "none listed"}; {translation}.
The chat template used in training is saved with the tokenizer (`tokenizer.chat_template`).

## Training
| setting | value |
|---|---|
{rows}

Result: {summary.get("steps")} steps, training loss {_fmt(summary.get("first_loss"))} -> {_fmt(summary.get("final_loss"))}, dev loss {_fmt(eval_loss)}.

## Use
{how}

`mothertongue chat RUN_DIR` talks to it with the right stop tokens; the full resolved recipe is in
`mothertongue_recipe.yaml`.
"""
    text = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + body
    path.write_text(text, encoding="utf-8")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"
