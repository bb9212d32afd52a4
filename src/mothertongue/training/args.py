"""Trainer arguments for every method: learning rates, batching, precision, the TRL config object.

    mothertongue train RECIPE train.method=sft|dpo|orpo|cpt train.adapter=full|lora|qlora

One place decides the defaults per method so `train.py` only orchestrates; `trainers.py` builds the
trainer from what is decided here.
"""

from __future__ import annotations

import os
from pathlib import Path

from mothertongue import progress
from mothertongue.config import Recipe
from mothertongue.models import train_precision
from mothertongue.training.trackers import report_to

# Peak learning rates that work for most models; full fine-tuning moves every weight, so it
# needs a rate about ten times smaller than an adapter. Preference methods start from a
# model that already answers, so they nudge it more gently still.
DEFAULT_LR = {
    ("sft", "full"): 2e-5,
    ("sft", "lora"): 2e-4,
    ("cpt", "full"): 5e-5,
    ("cpt", "lora"): 1e-4,
    ("dpo", "full"): 1e-6,
    ("dpo", "lora"): 2e-5,
    ("orpo", "full"): 8e-6,
    ("orpo", "lora"): 5e-5,
}


def learning_rate(recipe: Recipe) -> float:
    """The recipe's peak learning rate, else the default for its method and adapter."""
    cfg = recipe.train
    if cfg.learning_rate is not None:
        return cfg.learning_rate
    return DEFAULT_LR[(cfg.method, "full" if cfg.adapter == "full" else "lora")]


def common_args(recipe: Recipe, out: Path, has_eval: bool, hidden_size: int | None = None) -> dict:
    """TrainingArguments shared by every method."""
    import torch

    cfg = recipe.train
    on_gpu = torch.cuda.is_available()
    mode = train_precision(cfg.precision, hidden_size)
    eval_steps = cfg.eval_steps or cfg.save_steps
    return dict(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=learning_rate(recipe),
        lr_scheduler_type=cfg.scheduler,
        # A float below 1 is a share of the total steps (transformers >= 5).
        warmup_steps=float(cfg.warmup_ratio) if cfg.warmup_ratio else 0,
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=eval_steps if has_eval else None,
        seed=recipe.seed,
        data_seed=recipe.seed,
        # On CPU, bf16=True means autocast: fp32 master weights, bf16 matrix multiplies.
        bf16=mode == "bf16",
        fp16=mode == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        report_to=report_to(recipe),
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        ddp_backend="gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=not progress.verbose(),  # `mothertongue -v`: the Trainer's own bar and dicts
    )


def make_args(recipe: Recipe, out: Path, has_eval: bool, hidden_size: int | None = None):
    """The TRL config object for the recipe's method."""
    cfg = recipe.train
    common = common_args(recipe, out, has_eval, hidden_size)
    max_len = recipe.build.max_length
    if cfg.method in ("sft", "cpt"):
        from trl import SFTConfig

        if cfg.method == "cpt":
            # Native text has no turn structure: pack it into full max_length rows, splitting long
            # documents instead of truncating them; the loss covers every token.
            batching = dict(packing=True, packing_strategy="bfd_split", max_length=max_len)
            extra = dict(dataset_text_field="text", completion_only_loss=False)
        elif cfg.packing:
            batching = dict(packing=True, packing_strategy="bfd", max_length=max_len)
            extra = {}
        elif cfg.padding_free:
            # Examples are already cut to build.max_length by the build stage; TRL refuses a
            # max_length here because padding-free batches are not truncated.
            batching = dict(padding_free=True, max_length=None)
            extra = {}
        else:
            batching = dict(max_length=max_len)
            extra = {}
        return SFTConfig(**common, **batching, **extra)
    if cfg.method == "dpo":
        from trl import DPOConfig

        return DPOConfig(**common, beta=cfg.beta, max_length=max_len)
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig(**common, beta=cfg.beta, max_length=max_len)
