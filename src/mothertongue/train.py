"""Train stage: supervised fine-tuning with TRL's SFTTrainer, full or LoRA (PEFT).

    mothertongue train recipes/quickstart.yaml
    mothertongue train recipes/quickstart.yaml train.adapter=lora train.epochs=5

Trains on `build/train.jsonl` (token ids with the loss mask already applied: assistant turns and
their end-of-turn token), evaluates on `build/dev.jsonl` when it has examples, checkpoints every
`train.save_steps` steps and resumes from the last checkpoint when rerun after a kill. Writes
`train/model/` (adapter or full model, tokenizer with its chat template), `train/loss.json`,
`train/loss.png` and, for the `tiny` base, the untuned starting weights in `train/base_model/`
so the before/after comparison uses the very same model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.conversation import DataError
from mothertongue.models import TINY, load_base_model, pick_dtype, read_template_info, stop_token_ids
from mothertongue.runs import RunDir, atomic_write_json


def load_rows(path: Path):
    from datasets import Dataset

    ids, labels = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            ids.append(row["input_ids"])
            labels.append(row["labels"])
    return Dataset.from_dict({"input_ids": ids, "labels": labels})


def lora_config(cfg):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )


def sft_config(recipe: Recipe, out: Path, has_eval: bool):
    import torch
    from trl import SFTConfig

    cfg = recipe.train
    dtype = pick_dtype(cfg.precision)
    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.save_steps if has_eval else None,
        seed=recipe.seed,
        data_seed=recipe.seed,
        bf16=on_gpu and dtype == torch.bfloat16,
        fp16=on_gpu and dtype == torch.float16,
        activation_checkpointing=cfg.gradient_checkpointing,
        max_length=recipe.build.max_length,
        report_to=["tensorboard"],
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
    )


def plot_loss(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="dev loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(recipe: Recipe, run: RunDir, out: Path) -> dict:
    from transformers import AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTTrainer

    cfg = recipe.train
    build_dir = run.require("build", "train")
    tok_dir = build_dir / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    info = read_template_info(tok_dir)
    train_ds = load_rows(build_dir / "train.jsonl")
    dev_ds = load_rows(build_dir / "dev.jsonl")
    if len(train_ds) == 0:
        raise DataError(f"{build_dir / 'train.jsonl'}: no training examples")

    model = load_base_model(recipe, tokenizer)
    base_saved = recipe.base_model == TINY
    if base_saved and not (out / "base_model" / "config.json").exists():
        model.save_pretrained(out / "base_model")
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, info.get("end_of_turn"))
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    trainer = SFTTrainer(
        model=model,
        args=sft_config(recipe, out, has_eval=len(dev_ds) > 0),
        train_dataset=train_ds,
        eval_dataset=dev_ds if len(dev_ds) else None,
        processing_class=tokenizer,
        peft_config=lora_config(cfg) if cfg.adapter == "lora" else None,
    )
    last = get_last_checkpoint(str(out / "checkpoints")) if (out / "checkpoints").exists() else None
    if last:
        print(f"[train] resuming from {last}")
    result = trainer.train(resume_from_checkpoint=last)

    model_dir = out / "model"
    trainer.model.generation_config.eos_token_id = stop_token_ids(tokenizer, info.get("end_of_turn"))
    trainer.save_model(str(model_dir))
    tokenizer.save_pretrained(model_dir)
    shutil.copy(tok_dir / "mothertongue_template.json", model_dir / "mothertongue_template.json")
    history = trainer.state.log_history
    atomic_write_json(out / "loss.json", history)
    plot_loss(history, out / "loss.png")
    losses = [h["loss"] for h in history if "loss" in h]
    model_info = {
        "adapter": cfg.adapter,
        "base_path": recipe.base_model,
        "base_saved": base_saved,
        "end_of_turn": info.get("end_of_turn"),
        "trust_remote_code": cfg.trust_remote_code,
        "method": cfg.method,
    }
    atomic_write_json(out / "model_info.json", model_info)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    summary = {
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 1),
        "adapter": cfg.adapter,
    }
    print(f"[train] {summary['steps']} steps, loss {summary['first_loss']} -> {summary['final_loss']}")
    return summary
