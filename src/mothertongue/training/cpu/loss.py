"""The SFT loss on CPU: cross-entropy over the trained positions only, LM head fused in, in chunks.

Used by `training.trainers.MothertongueSFTTrainer` while training on CPU in one process (see
`training.cpu.enabled`); evaluation, GPUs and multi-process runs keep TRL's own loss.

TRL scores the LM head through `ChunkedLogProbFunction`: a Triton kernel on the trained positions
on CUDA/XPU, but on CPU torch tiles over every position (prompt and padding included) with entropy
and top-1 on the side and the backward recomputing each tile (`benchmarks/train_loss.py` measures
both; numbers in the README). Here only the positions whose label counts are projected, and the
gradient is taken in the forward pass, chunk by chunk, while each chunk's logits exist:
d loss / d logits = softmax - one_hot. Same arithmetic as autograd on the plain expression (matrix
multiplies in the autocast dtype, softmax in float32), no recompute, a few tens of MiB of logits
instead of several hundred for a long batch.
"""

from __future__ import annotations

import torch
from torch.nn.functional import cross_entropy

CHUNK_TOKENS = 256


class FusedHeadLoss(torch.autograd.Function):
    """`[sum(cross_entropy(hidden @ weight.T + bias, target)), correct top-1 count]`, never holding
    the `[positions, vocab]` logits for more than CHUNK_TOKENS positions at a time."""

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
        for i in range(0, len(target), CHUNK_TOKENS):
            h, y = hidden[i : i + CHUNK_TOKENS].to(dtype), target[i : i + CHUNK_TOKENS]
            z = torch.nn.functional.linear(h, w, b).float()
            rows = torch.arange(len(y))
            correct += (z.argmax(-1) == y).sum()
            lse = z.logsumexp(-1)
            loss += (lse - z[rows, y]).sum()
            z.sub_(lse.unsqueeze(-1)).exp_()  # softmax, in place
            z[rows, y] -= 1
            g = z.to(dtype)
            grad_h[i : i + CHUNK_TOKENS] = g @ w
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
        return (
            (grad_h * scale).to(h_dt),
            None if grad_w is None else (grad_w * scale).to(w_dt),
            None if grad_b is None else (grad_b * scale).to(b_dt),
            None,
        )


def fused_head_loss(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                    target: torch.Tensor) -> torch.Tensor:
    """[summed cross-entropy, correct top-1 count] of `hidden` ([positions, width]) through a linear head."""
    return FusedHeadLoss.apply(hidden, weight, bias, target)


def chunked_loss(head: torch.nn.Module, hidden: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[summed cross-entropy, correct top-1 count] over the given positions, LM head included: fused
    and chunked for a plain linear head, through autograd on the whole logits for anything else (a
    head wrapped for training, e.g. PEFT modules_to_save)."""
    if type(head) is torch.nn.Linear:
        return fused_head_loss(hidden, head.weight, head.bias, target)
    logits = head(hidden).float()
    return torch.stack([cross_entropy(logits, target, reduction="sum"), (logits.argmax(-1) == target).sum().float()])


def sft_loss(trainer, model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """The training loss of one SFT batch, as TRL's `SFTTrainer.compute_loss` defines it (summed
    over trained positions, divided by their count or by `num_items_in_batch`), with TRL's token
    accuracy and token count metrics kept up to date."""
    labels = inputs["labels"]
    lm = trainer.accelerator.unwrap_model(model)
    lm = lm.get_base_model() if hasattr(lm, "get_base_model") else lm  # PEFT: LoRA layers sit inside
    features = {k: v for k, v in inputs.items() if k not in ("labels", "num_items_in_batch")}
    with trainer.accelerator.autocast():  # the backbone is called directly, not through the wrapped forward
        hidden = lm.base_model(**features, use_cache=False).last_hidden_state
        target = labels[:, 1:]
        keep = target != -100
        sums = chunked_loss(lm.get_output_embeddings(), hidden[:, :-1][keep], target[keep])
    loss = sums[0] / (keep.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
    trainer._metrics["train"]["mean_token_accuracy"].append(sums[1].item() / max(int(keep.sum()), 1))
    if "attention_mask" in inputs:
        trainer._total_train_tokens += int(inputs["attention_mask"].sum())
    elif "position_ids" in inputs:
        trainer._total_train_tokens += int(inputs["position_ids"].size(1))
    trainer._metrics["train"]["num_tokens"] = [trainer._total_train_tokens]
    return loss
