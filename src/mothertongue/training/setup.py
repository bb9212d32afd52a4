"""Trainer construction for every method: TRL trainer class, its config, PEFT adapter, optimizer groups.

    mothertongue train RECIPE train.method=sft|dpo|orpo|cpt train.adapter=full|lora|qlora

One place decides the defaults per method (learning rate, batching, precision) so `train.py`
only orchestrates. The training loop itself is TRL's (SFTTrainer, DPOTrainer, ORPOTrainer).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mothertongue.config import Recipe

# oneDNN (PyTorch's CPU matrix multiply for bf16) caches up to 1,024 compiled kernels by shape.
# Padding-free batches change shape every step, so the cache only grows: measured on the 36.9M
# LoRA benchmark, peak memory 1,570 MiB with the default, 1,346 MiB with 64, same speed (0 halves
# the speed). Read when oneDNN first runs, so this only acts if no bf16 matmul ran in the process
# before training; a value the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

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
    cfg = recipe.train
    if cfg.learning_rate is not None:
        return cfg.learning_rate
    return DEFAULT_LR[(cfg.method, "full" if cfg.adapter == "full" else "lora")]


def embedding_module_names(model) -> list[str]:
    """Leaf names of the input embedding and LM head modules (e.g. embed_tokens, lm_head)."""
    wanted = {id(model.get_input_embeddings())}
    out_emb = model.get_output_embeddings()
    if out_emb is not None:
        wanted.add(id(out_emb))
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if id(m) in wanted and name})


def lora_config(recipe: Recipe, model):
    from peft import LoraConfig

    cfg = recipe.train
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        use_dora=cfg.use_dora,
        use_rslora=cfg.use_rslora,
        # Embeddings and LM head are trained in full (not low-rank) when asked: a new language
        # needs its tokens' vectors to move, which a rank-r update of a linear layer cannot do.
        modules_to_save=embedding_module_names(model) if cfg.train_embeddings else None,
        task_type="CAUSAL_LM",
    )


def common_args(recipe: Recipe, out: Path, has_eval: bool, hidden_size: int | None = None) -> dict:
    """TrainingArguments shared by every method."""
    import torch

    from mothertongue.models import train_precision

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
        report_to=["tensorboard"],
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        ddp_backend="gloo" if not on_gpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        ddp_find_unused_parameters=False,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
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


LOSS_CHUNK_TOKENS = 256


@functools.cache
def _fused_head_loss_fn():
    """An autograd function for `sum(cross_entropy(hidden @ weight.T + bias, target))` that never
    holds the `[positions, vocab]` logits for more than LOSS_CHUNK_TOKENS positions at a time.

    The loss is the last thing computed, so its gradient can be taken in the forward pass, chunk by
    chunk, while each chunk's logits exist: d loss / d logits = softmax - one_hot. Only the
    gradients for the hidden states (and weight and bias when they train) are kept; backward scales
    them. Same arithmetic as autograd on the plain expression (matrix multiplies in the autocast
    dtype, softmax in float32), no recompute, a few tens of MiB of logits instead of several
    hundred for a long batch. Returns [loss sum, correct top-1 count]."""
    import torch

    class FusedHeadLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, bias, target):
            dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else weight.dtype
            w = weight.to(dtype)
            b = bias.to(dtype) if bias is not None else None
            want_w, want_b = weight.requires_grad, bias is not None and bias.requires_grad
            grad_h = torch.empty(hidden.shape, dtype=torch.float32)
            grad_w = torch.zeros(weight.shape, dtype=torch.float32) if want_w else None
            grad_b = torch.zeros(bias.shape, dtype=torch.float32) if want_b else None
            loss = torch.zeros((), dtype=torch.float32)
            correct = torch.zeros((), dtype=torch.float32)
            for i in range(0, len(target), LOSS_CHUNK_TOKENS):
                h, y = hidden[i:i + LOSS_CHUNK_TOKENS].to(dtype), target[i:i + LOSS_CHUNK_TOKENS]
                z = torch.nn.functional.linear(h, w, b).float()
                rows = torch.arange(len(y))
                correct += (z.argmax(-1) == y).sum()
                lse = z.logsumexp(-1)
                loss += (lse - z[rows, y]).sum()
                z.sub_(lse.unsqueeze(-1)).exp_()  # softmax, in place
                z[rows, y] -= 1
                g = z.to(dtype)
                grad_h[i:i + LOSS_CHUNK_TOKENS] = g @ w
                if want_w:
                    grad_w.add_((g.t() @ h).float())
                if want_b:
                    grad_b.add_(z.sum(0))
            ctx.save_for_backward(grad_h, grad_w, grad_b)
            ctx.dtypes = (hidden.dtype, weight.dtype, bias.dtype if bias is not None else None)
            ctx.mark_non_differentiable(correct)
            return torch.stack([loss, correct])

        @staticmethod
        def backward(ctx, grad_out):
            grad_h, grad_w, grad_b = ctx.saved_tensors
            scale = grad_out[0]
            h_dt, w_dt, b_dt = ctx.dtypes
            return ((grad_h * scale).to(h_dt), None if grad_w is None else (grad_w * scale).to(w_dt),
                    None if grad_b is None else (grad_b * scale).to(b_dt), None)

    return FusedHeadLoss


def _chunked_loss(head, hidden, target):
    """[summed cross-entropy, correct top-1 count] over the given positions, LM head included:
    fused and chunked (see `_fused_head_loss_fn`) for a plain linear head, through autograd on the
    whole logits for anything else (a head wrapped for training, e.g. PEFT modules_to_save)."""
    import torch
    from torch.nn.functional import cross_entropy

    if type(head) is torch.nn.Linear:
        return _fused_head_loss_fn().apply(hidden, head.weight, head.bias, target)
    logits = head(hidden).float()
    return torch.stack([cross_entropy(logits, target, reduction="sum"), (logits.argmax(-1) == target).sum().float()])


def _sft_trainer():
    """TRL's SFTTrainer, with the loss on the trained positions only where TRL has no fused kernel.

    TRL scores the LM head through a Triton kernel on CUDA/XPU. Elsewhere (CPU) it folds the
    `[tokens, vocab]` tiles in torch for every position, prompt and padding included, computes
    entropy and top-1 on the side, and runs the head's backward in float32: measured here for 700
    tokens x 16k vocab, 1.35 s per step against 0.29 s for projecting only the positions whose
    label counts and taking the cross-entropy. So on CPU, single process, the training loss is
    computed that way; evaluation, multi-process and GPU runs keep TRL's path."""
    from trl import SFTTrainer
    from trl.kernels.chunked_logprob import _use_triton

    class SFTTrainerCompactLoss(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs.get("labels")
            device = labels.device if labels is not None else None
            if (return_outputs or labels is None or _use_triton(device) or self.accelerator.num_processes > 1
                    or self.aux_loss_enabled or not self.model.training):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            lm = self.accelerator.unwrap_model(model)
            lm = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # PEFT: LoRA layers sit inside
            features = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
            with self.accelerator.autocast():  # the backbone is called directly, not through the wrapped forward
                hidden = lm.base_model(**features, use_cache=False).last_hidden_state
                target = labels[:, 1:]
                keep = target != -100
                sums = _chunked_loss(lm.get_output_embeddings(), hidden[:, :-1][keep], target[keep])
            loss = sums[0] / (keep.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
            self._metrics["train"]["mean_token_accuracy"].append(sums[1].item() / max(int(keep.sum()), 1))
            if "attention_mask" in inputs:
                self._total_train_tokens += int(inputs["attention_mask"].sum())
            elif "position_ids" in inputs:
                self._total_train_tokens += int(inputs["position_ids"].size(1))
            self._metrics["train"]["num_tokens"] = [self._total_train_tokens]
            return loss

    SFTTrainerCompactLoss.__name__ = "SFTTrainer"
    return SFTTrainerCompactLoss


def trainer_class(recipe: Recipe):
    """TRL's trainer for the method, with embeddings/LM head on their own learning rate when asked."""
    cfg = recipe.train
    if cfg.method in ("sft", "cpt"):
        base = _sft_trainer()
    elif cfg.method == "dpo":
        from trl import DPOTrainer as base
    else:
        from trl.experimental.orpo import ORPOTrainer as base
    if not cfg.train_embeddings:
        return base
    emb_lr = cfg.embedding_learning_rate or learning_rate(recipe) / 10

    class WithEmbeddingLR(base):
        _emb_names: list[str] = []

        def create_optimizer(self, model=None):
            new = self.optimizer is None
            opt = super().create_optimizer(model)
            if not new:
                return opt
            names = set(self._emb_names)
            emb = {
                id(p)
                for n, p in (model or self.model).named_parameters()
                if p.requires_grad and names & set(n.split("."))
            }
            # Split each group (decay / no decay) into its embedding and other parameters, before
            # the scheduler is built so it scales both rates alike.
            groups = []
            for g in opt.param_groups:
                rest = [p for p in g["params"] if id(p) not in emb]
                moved = [p for p in g["params"] if id(p) in emb]
                opts = {k: v for k, v in g.items() if k != "params"}
                if rest:
                    groups.append({**opts, "params": rest})
                if moved:
                    groups.append({**opts, "params": moved, "lr": emb_lr})
            opt.param_groups.clear()
            for g in groups:
                opt.add_param_group(g)
            return opt

    WithEmbeddingLR.__name__ = base.__name__
    return WithEmbeddingLR


def hidden_size(model) -> int | None:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(cfg, "hidden_size", None)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def frozen_base_in_bf16(recipe: Recipe, model, args) -> bool:
    """Whether the frozen base of a LoRA run is stored in bf16 rather than float32: on CPU when
    training runs under bf16 autocast (GPUs load bf16 weights to begin with), and not when the
    embeddings and LM head are trained in full (their optimizer wants float32 weights)."""
    import torch

    cfg = recipe.train
    return (cfg.adapter == "lora" and not cfg.train_embeddings and bool(args.bf16)
            and not torch.cuda.is_available() and next(model.parameters()).dtype == torch.float32)


def build_trainer(recipe: Recipe, model, tokenizer, train_ds, eval_ds, out: Path):
    """The configured TRL trainer; PEFT wraps the model inside it for lora/qlora."""
    cfg = recipe.train
    emb_names = embedding_module_names(model)
    if cfg.adapter == "full" and cfg.train_embeddings:
        for p in model.parameters():
            p.requires_grad_(True)
    peft = lora_config(recipe, model) if cfg.adapter in ("lora", "qlora") else None
    if cfg.adapter == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    args = make_args(recipe, out, eval_ds is not None, hidden_size(model))
    frozen_bf16 = frozen_base_in_bf16(recipe, model, args)
    if frozen_bf16:
        # LoRA on a CPU with bf16 autocast: the frozen weights are only ever read as bf16, so keep
        # them that way instead of casting every weight on every forward (PEFT keeps the adapters
        # themselves in float32). Half the base's memory, and no copies per step.
        import torch

        model.to(torch.bfloat16)
    packed = getattr(args, "packing", False) and getattr(args, "packing_strategy", "") in ("bfd", "bfd_split")
    if (getattr(args, "padding_free", False) or packed) and not _cuda():
        from mothertongue.training import attention

        attention.use_varlen(model)  # no block-diagonal attention over the whole packed row
    cls = trainer_class(recipe)
    if hasattr(cls, "_emb_names"):
        cls._emb_names = emb_names
    trainer = cls(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=peft,
    )
    if frozen_bf16:
        # PEFT casts each adapter's input to the adapter's float32 before autocast casts it back:
        # two copies per adapted layer, the bf16 one kept for backward next to the base layer's
        # own. Under autocast the input can go in as it is (restored by `after_training`).
        _set_adapter_input_casting(trainer.model, False)
        from mothertongue.training import lora_cpu

        lora_cpu.use_fused(trainer.model)  # each adapted layer in one step (see lora_cpu)
    return trainer


def _set_adapter_input_casting(model, enabled: bool) -> None:
    from peft.tuners.tuners_utils import BaseTunerLayer

    for m in model.modules():
        if isinstance(m, BaseTunerLayer):
            m.cast_input_dtype_enabled = enabled


def after_training(model) -> None:
    """Undo the training-only speed settings before the model is saved, evaluated or chatted with."""
    from mothertongue.training import attention, lora_cpu

    attention.restore(model)
    lora_cpu.restore(model)
    _set_adapter_input_casting(model, True)
