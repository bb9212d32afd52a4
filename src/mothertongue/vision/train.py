"""The two vision training stages on the project's trainer stack (transformers Trainer + PEFT).

    mothertongue vision recipes/vision_de.yaml          # compose, stage 1, stage 2 (resumes after a kill)

Stage 1 trains the projector only, on captions: encoder and language model are frozen, so they
leave it bit for bit unchanged. Stage 2 trains projector and language model (a LoRA adapter,
merged at the end, or every weight) on visual instructions, with `vision.text_mix` of its
examples text-only target-language conversations from the build stage, so the model does not
drift back to English. The encoder stays frozen in both.

Examples are rendered with the run's chat template and loss mask (`encoding.encode`: assistant turns
and their end-of-turn token are trained), then each image token is widened to the encoder's
`image_seq_length` positions (never trained). The encoder being frozen, its features are computed
once per image and read from a file each step (`vision.stageN.cache_features`, features.py);
without the cache, images are decoded, processed and encoded per batch.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from transformers import Trainer

from mothertongue.config import Recipe, VisionTrainConfig
from mothertongue.training.trainers import EmbeddingLearningRate, ResumableLogging

IGNORE = -100


class VisionTrainer(ResumableLogging, EmbeddingLearningRate, Trainer):
    """transformers' Trainer for a Llava model on pre-tokenized examples with images; its loss
    curve survives a resume like the text trainers' (ResumableLogging), and the projector can
    have its own learning rate (EmbeddingLearningRate's split of the parameter groups)."""

    embedding_modules = ("multi_modal_projector",)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """A batch from the feature cache carries the encoder's selected features instead of pixels:
        the projector runs on them here and Llava places its output at the image tokens, as it
        does with the encoder's own (`mm_encoder_outputs`)."""
        feats = inputs.pop("image_features", None)
        if feats is not None:
            inputs["mm_encoder_outputs"] = {"image": project(model, feats, self.accelerator.autocast())}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Full-model checkpoints through `from_pretrained`. save_pretrained writes Llava's
        weights under their published names (language_model.model.*, vision_tower.*), and the
        Trainer's own resume loads them non-strictly into the model's new names
        (model.language_model.*): nothing matches, nothing is loaded, and the run silently
        continues from the weights it started with."""
        from peft import PeftModel

        model = model if model is not None else self.model
        if isinstance(model, PeftModel):  # adapter checkpoints keep the model's own names
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        saved = type(model).from_pretrained(resume_from_checkpoint, dtype=next(model.parameters()).dtype)
        model.load_state_dict(saved.state_dict(), strict=True)


def project(model, feats, autocast):
    """Llava's image output for cached features: its (trained) projector applied to them."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from mothertongue.vision.features import unwrap

    with autocast:  # through PEFT's wrapper of the projector (modules_to_save) when there is one
        out = unwrap(model).model.multi_modal_projector(feats)
    return BaseModelOutputWithPooling(pooler_output=list(out))


def encode_examples(records: list[dict], tokenizer, model_config, system: str | None, max_length: int,
                    counts: dict) -> list[dict]:
    """Token ids and labels (image positions widened, never trained) per record; records longer
    than `max_length` are counted and left out."""
    from mothertongue.encoding import encode
    from mothertongue.prompts import with_system

    token_id, width = model_config.image_token_id, model_config.image_seq_length
    out = []
    for r in records:
        ids, labels, _ = encode(tokenizer, with_system(r["messages"], system))
        wide_ids, wide_labels = [], []
        for t, lab in zip(ids, labels, strict=True):
            if t == token_id:
                wide_ids += [t] * width
                wide_labels += [IGNORE] * width
            else:
                wide_ids.append(t)
                wide_labels.append(lab)
        if len(wide_ids) > max_length:
            key = f"longer than build.max_length ({max_length} tokens)"
            counts.setdefault(key, []).append(r.get("loc") or r["id"])
            continue
        out.append({"input_ids": wide_ids, "labels": wide_labels, "images": r.get("images", [])})
    return out


def text_mix_rows(build_dir: Path, n_image: int, share: float, seed: int) -> list[dict]:
    """`share` of the stage-2 examples as text-only rows of build/train.jsonl (as many as exist)."""
    from mothertongue.conversation import iter_jsonl

    if share <= 0 or not (build_dir / "train.jsonl").exists():
        return []
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"], "images": []}
            for _, r in iter_jsonl(build_dir / "train.jsonl")]
    want = round(n_image * share / (1 - share))
    random.Random(seed).shuffle(rows)
    return rows[:want]


class Collator:
    """Pads a batch (right, pad id / -100) and turns its images into `pixel_values`, or with a
    feature cache into the encoder's cached `image_features`."""

    def __init__(self, processor, recipe: Recipe, cache=None):
        self.processor, self.recipe, self.cache = processor, recipe, cache
        self.pad = processor.tokenizer.pad_token_id

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        from mothertongue.vision.data import load_image

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        refs = []
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            labels[i, :n] = torch.tensor(b["labels"])
            mask[i, :n] = 1
            refs += b["images"]
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if refs and self.cache is not None:
            out["image_features"] = self.cache.features(refs)
        elif refs:
            images = [load_image(ref, self.recipe) for ref in refs]
            out["pixel_values"] = self.processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return out


def training_args(recipe: Recipe, stage: VisionTrainConfig, out: Path, hidden: int | None):
    """TrainingArguments as the text stages make them, with this vision stage's own settings."""
    from transformers import TrainingArguments

    from mothertongue.training.args import common_args

    train = recipe.train.model_copy(update={
        "epochs": stage.epochs, "max_steps": stage.max_steps, "learning_rate": stage.learning_rate,
        "batch_size": stage.batch_size, "grad_accum": stage.grad_accum, "save_steps": stage.save_steps,
        "logging_steps": min(recipe.train.logging_steps, stage.save_steps)})
    args = common_args(recipe.model_copy(update={"train": train}), out, False, hidden)
    # Image paths travel in the dataset and the collator reads them: keep every column.
    return TrainingArguments(**args, remove_unused_columns=False)


def freeze_for_stage1(model) -> None:
    """Only the projector learns (minus the fixed identity layer of a `linear` projector)."""
    from mothertongue.vision.compose import fixed_parameters

    fixed = set(fixed_parameters(model))
    for name, p in model.named_parameters():
        p.requires_grad_(".multi_modal_projector." in name and name not in fixed)


def lora_model(model, recipe: Recipe):
    """PEFT LoRA on the language model's linear layers; the projector trained in full beside it."""
    import re

    import torch
    from peft import LoraConfig, get_peft_model

    from mothertongue.vision.compose import fixed_parameters

    tr = recipe.train
    leaves = sorted({n.rsplit(".", 1)[-1] for n, m in model.model.language_model.named_modules()
                     if isinstance(m, torch.nn.Linear)})
    pattern = r"model\.language_model\..*\.(" + "|".join(map(re.escape, leaves)) + ")"
    cfg = LoraConfig(r=tr.lora_r, lora_alpha=tr.lora_alpha, lora_dropout=tr.lora_dropout, target_modules=pattern,
                     use_rslora=tr.use_rslora, modules_to_save=["multi_modal_projector"])
    peft = get_peft_model(model, cfg)
    fixed = {n.rsplit(".", 1)[-1] for n in fixed_parameters(model) if "multi_modal_projector" in n}
    for name, p in peft.named_parameters():
        if "multi_modal_projector.modules_to_save" in name and "linear_2" in name and fixed:
            p.requires_grad_(False)
    return peft


def unfreeze_for_stage2(model) -> None:
    """Full stage 2: everything but the encoder (and a linear projector's identity layer) learns."""
    from mothertongue.vision.compose import fixed_parameters

    fixed = set(fixed_parameters(model))
    for name, p in model.named_parameters():
        p.requires_grad_(name not in fixed)


def fit_stage(recipe: Recipe, stage: VisionTrainConfig, model, processor, examples: list[dict], out: Path,
              cache_dir: Path | None = None):
    """Train `model` on `examples`, resuming from the newest complete checkpoint in out/checkpoints;
    with `stage.cache_features`, from the encoder's features computed once into `cache_dir`
    (default out/features)."""
    from datasets import Dataset

    from mothertongue.train import last_complete_checkpoint

    os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")
    model.config.use_cache = False
    hidden = model.config.text_config.hidden_size if hasattr(model.config, "text_config") else None
    args = training_args(recipe, stage, out, hidden)
    data = Dataset.from_list(examples)
    trainer = VisionTrainer(model=model, args=args, train_dataset=data, data_collator=Collator(processor, recipe))
    trainer.embedding_lr = stage.projector_learning_rate
    refs = [ref for e in examples for ref in e["images"]]
    if stage.cache_features and refs:
        from mothertongue.vision.features import build_cache

        # after the Trainer placed the model: the encoder runs on the training device. Several
        # processes: the main one writes the cache, the others then find it complete.
        with trainer.accelerator.main_process_first():
            trainer.data_collator.cache = build_cache(model, processor, recipe, refs, cache_dir or out / "features",
                                                      args.device, trainer.accelerator.autocast, stage.batch_size)
    last = last_complete_checkpoint(out / "checkpoints", trainer.accelerator.is_main_process)
    if last:
        print(f"[vision] resuming {out.name} from {last}")
    result = trainer.train(resume_from_checkpoint=last)
    model.config.use_cache = True
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    summary = {
        "examples": len(examples), "steps": trainer.state.global_step,
        "first_loss": losses[0] if losses else None, "final_loss": losses[-1] if losses else None,
        "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 1),
        "learning_rate": stage.learning_rate, "projector_learning_rate": stage.projector_learning_rate or stage.learning_rate,
        "resumed_from": Path(last).name if last else None,
        "cached_features": trainer.data_collator.cache is not None,
    }
    return trainer, history, summary
