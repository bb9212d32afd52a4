"""Train stage: SFT (full, LoRA, QLoRA), DPO, ORPO and continued pretraining with TRL + PEFT.

    mothertongue train recipes/quickstart.yaml
    mothertongue train recipes/quickstart.yaml train.adapter=lora train.epochs=5
    accelerate launch --config_file accelerate/ddp.yaml -m mothertongue train RECIPE   # many GPUs

sft trains on `build/train.jsonl` (token ids with the loss mask already applied: assistant turns
and their end-of-turn token); dpo/orpo on `build/preference.jsonl`; cpt on `build/text.jsonl`.
Evaluates on `build/dev.jsonl` when it has examples, checkpoints every `train.save_steps` steps
and, when rerun after a kill, resumes from the last complete checkpoint (weights, optimizer,
scheduler, RNG and data position). Writes `train/model/` (adapter or full model, tokenizer with
the chat template, model card README.md, resolved recipe), `train/loss.json`, `train/loss.png`,
TensorBoard logs in `train/tensorboard/` and, for the `tiny` base, the untuned starting weights
in `train/base_model/` so the before/after comparison uses the very same model.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mothertongue.config import Recipe, save_resolved
from mothertongue.conversation import DataError
from mothertongue.models import (
    TINY,
    load_base_model,
    read_template_info,
    save_tokenizer,
    stop_token_ids,
)
from mothertongue.progress import num
from mothertongue.runs import RunDir, atomic_write_json, write_folder
from mothertongue.vocab.stage import base_model_path


def last_complete_checkpoint(ckpt_dir: Path, is_main: bool = True) -> str | None:
    """Newest checkpoint that was written to the end (trainer_state.json is saved last); a
    checkpoint cut short by a kill is removed so it is never resumed from."""
    if not ckpt_dir.exists():
        return None
    found = []
    for d in ckpt_dir.glob("checkpoint-*"):
        step = d.name.rsplit("-", 1)[-1]
        if d.is_dir() and step.isdigit():
            found.append((int(step), d))
    for _, d in sorted(found, reverse=True):
        if _whole_json(d / "trainer_state.json"):
            return str(d)
        if is_main:
            print(f"[train] ignoring incomplete checkpoint {d.name} (interrupted while saving)")
            shutil.rmtree(d, ignore_errors=True)
    return None


def _whole_json(path: Path) -> bool:
    """The file exists and parses: transformers writes trainer_state.json in place, so a kill
    while it is written leaves it empty or cut short."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def saved_model_complete(folder: Path) -> bool:
    """Whether `folder` holds a whole saved model: its config and every weight file it names."""
    if not (folder / "config.json").exists():
        return False
    if (folder / "model.safetensors").exists():
        return True
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return False
    try:
        shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
    except (OSError, ValueError, KeyError):
        return False
    return all((folder / s).exists() for s in shards)


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


def load_data(recipe: Recipe, build_dir: Path) -> tuple:
    """(train dataset, eval dataset or None, counts) for the recipe's method."""
    from mothertongue.training import data

    method = recipe.train.method
    counts: dict = {}
    dev = data.load_sft(build_dir / "dev.jsonl")
    if method == "sft":
        train = data.load_sft(build_dir / "train.jsonl")
        if len(train) == 0:
            raise DataError(f"{build_dir / 'train.jsonl'}: no training examples")
    elif method == "cpt":
        train, blank = data.load_text(build_dir / "text.jsonl")
        counts["blank text rows skipped"] = blank
    else:
        train = data.load_preference(build_dir / "preference.jsonl")
        dev_file = build_dir / "preference_dev.jsonl"  # written when ingest.dev_fraction > 0
        dev = data.load_preference(dev_file) if dev_file.exists() else dev.select([])
    return train, (dev if len(dev) else None), counts


def fit(recipe: Recipe, run: RunDir, out: Path):
    """Train and save; returns (trainer, summary). Separate from `run` so tests can inspect the
    in-memory model next to what was saved."""
    from transformers import AutoTokenizer

    from mothertongue.training.args import learning_rate
    from mothertongue.training.card import write_card
    from mothertongue.training.trainers import after_training, build_trainer

    # Before the trainer exists the process group may not be up yet: rank from the launcher's env.
    is_main = int(os.environ.get("RANK", "0")) == 0
    cfg = recipe.train
    build_dir = run.require("build", "train")
    tok_dir = build_dir / "tokenizer"
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    info = read_template_info(tok_dir)
    if tokenizer.pad_token is None or tokenizer.pad_token_id in stop_token_ids(tokenizer, info.get("end_of_turn")):
        # Padding with EOS/end-of-turn would mask the very token that teaches the model to stop.
        tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    train_ds, eval_ds, counts = load_data(recipe, build_dir)

    base_saved = recipe.base_model == TINY
    base_dir = out / "base_model"
    if base_saved:
        # Built from the seed, so every rank (and every resume) gets the very same weights; the
        # main process keeps them for the before/after comparison.
        model = load_base_model(recipe, tokenizer)
        if is_main:
            if base_dir.exists() and not saved_model_complete(base_dir):
                shutil.rmtree(base_dir)  # half written by a version that saved in place: redo it
            write_folder(base_dir, model.save_pretrained)
        if cfg.adapter == "qlora":  # quantization happens at load time: reload from disk
            _wait_for(base_dir / "model.safetensors")
            model = load_base_model(recipe, tokenizer, path=str(base_dir))
    else:
        model = load_base_model(recipe, tokenizer)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    stops = stop_token_ids(tokenizer, info.get("end_of_turn"))
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    # No KV cache in training: with a cache transformers does not see the padding-free sequence
    # boundaries and lets one example attend to the one before it.
    model.config.use_cache = False

    # TensorBoard logs outside checkpoints/ (deleted at the end), in the same place on resume.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")
    trainer = build_trainer(recipe, model, tokenizer, train_ds, eval_ds, out)
    state = trainer.accelerator
    last = last_complete_checkpoint(out / "checkpoints", state.is_main_process)
    state.wait_for_everyone()
    if last and state.is_main_process:
        print(f"[train] resuming from {last}")
    result = trainer.train(resume_from_checkpoint=last)
    after_training(trainer.model)

    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    runtime = result.metrics.get("train_runtime", 0.0)
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    summary = {
        "method": cfg.method,
        "adapter": cfg.adapter,
        "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "eval_loss": evals[-1] if evals else None,
        "train_runtime_s": round(runtime, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / runtime, 1) if runtime else None,
        "precision": "bf16" if trainer.args.bf16 else "fp16" if trainer.args.fp16 else "fp32",
        "world_size": state.num_processes,
        "distributed": ("fsdp" if trainer.is_fsdp_enabled else "deepspeed" if trainer.is_deepspeed_enabled
                        else "ddp" if state.num_processes > 1 else None),
        "learning_rate": learning_rate(recipe),
        "resumed_from": Path(last).name if last else None,
        "counts": counts,
    }

    model_dir = out / "model"
    trainer.model.config.use_cache = True
    trainer.model.generation_config.eos_token_id = stops
    trainer.save_model(str(model_dir))  # main process only, gathers FSDP/ZeRO-3 shards
    state.wait_for_everyone()
    if state.is_main_process:
        save_tokenizer(tokenizer, model_dir)
        if (tok_dir / RunDir.TEMPLATE_INFO).exists():
            shutil.copy(tok_dir / RunDir.TEMPLATE_INFO, model_dir / RunDir.TEMPLATE_INFO)
        save_resolved(recipe, model_dir / RunDir.RECIPE_COPY)
        hyper = _hyperparameters(recipe, trainer, info.get("template"))
        write_card(recipe, model_dir / "README.md", summary, hyper)
        atomic_write_json(out / "loss.json", history)
        plot_loss(history, out / "loss.png")
        model_info = {
            "adapter": cfg.adapter,
            "base_path": base_model_path(recipe),
            "base_saved": base_saved,
            "end_of_turn": info.get("end_of_turn"),
            "trust_remote_code": cfg.trust_remote_code,
            "method": cfg.method,
        }
        atomic_write_json(out / RunDir.MODEL_INFO, model_info)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    return trainer, summary


def _hyperparameters(recipe: Recipe, trainer, template: str | None) -> dict:
    cfg, a = recipe.train, trainer.args
    h = {
        "method": cfg.method,
        "adapter": cfg.adapter + (f" ({cfg.qlora_bits}-bit base)" if cfg.adapter == "qlora" else ""),
        "learning rate": a.learning_rate,
        "schedule": f"{a.lr_scheduler_type} with {cfg.warmup_ratio:.0%} warmup",
        "epochs / max steps": f"{cfg.epochs} / {cfg.max_steps}",
        "batch size x accumulation x devices": f"{cfg.batch_size} x {cfg.grad_accum} x {trainer.accelerator.num_processes}",
        "precision": "bf16" if a.bf16 else "fp16" if a.fp16 else "fp32",
        "batching": "packed" if cfg.packing or cfg.method == "cpt" else "padding-free" if cfg.padding_free and cfg.method == "sft" else "padded",
        "max length": recipe.build.max_length,
        "chat template": template or recipe.build.template or "tokenizer's own",
    }
    if cfg.adapter != "full":
        h["LoRA"] = f"r={cfg.lora_r}, alpha={cfg.lora_alpha}, dropout={cfg.lora_dropout}, targets={cfg.target_modules}" + (
            ", DoRA" if cfg.use_dora else ""
        ) + (", rsLoRA" if cfg.use_rslora else "")
    if cfg.method in ("dpo", "orpo"):
        h["beta"] = cfg.beta
    if cfg.train_embeddings:
        h["embeddings + LM head"] = f"trained, lr {cfg.embedding_learning_rate or a.learning_rate / 10}"
    return h


def _wait_for(path: Path, timeout_s: float = 600) -> None:
    import time

    deadline = time.time() + timeout_s
    while not path.exists() and time.time() < deadline:
        time.sleep(0.5)


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    trainer, summary = fit(recipe, rundir, out)
    if not trainer.accelerator.is_main_process:
        # Under `accelerate launch` every rank runs the stage; only the main one may write the
        # manifest and move train.partial into place, so the others stop here, successfully.
        raise SystemExit(0)
    dev = f", dev loss {num(summary['eval_loss'])}" if summary["eval_loss"] is not None else ""
    print(
        f"[train] {summary['steps']} steps, loss {num(summary['first_loss'])} -> {num(summary['final_loss'])}{dev}"
        f" ({num(summary['tokens_per_s'])} tokens/s, {summary['precision']}, {summary['world_size']} process(es))"
    )
    return summary
