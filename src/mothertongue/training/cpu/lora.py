"""LoRA layers computed in one step each while training on CPU under bf16 autocast.

PEFT computes an adapted linear layer as `base(x) + lora_B(lora_A(dropout(x))) * scaling`: under
autocast that is three matrix multiplies, a scaling pass and an addition over the `[tokens, out]`
output, plus casts of both adapter weights on the way in and on the way back, each its own autograd
node. On a CPU every one of those passes over memory costs as much as a small matrix multiply
(measured on the 36.9M benchmark model, r=64 on all linear layers: the scaling and addition passes
alone were ~6% of a step, and the rank-64 products ran at half the speed of the same products on
their own). Here the scaling is folded into B (rank x out, small), the adapter's product is added
inside the base product's output buffer (`addmm_`), and backward is written out: the input gradient
is one full product plus one rank-r product added in place, the adapter gradients are two rank-r
products. Same arithmetic as PEFT under autocast (bf16 products, float32 adapter weights and
gradients), checked against it in tests. Net gain on the benchmark: ~2% of a step; the rank-r
products themselves stay memory-bound (stacking sibling layers' A matrices measured no faster).

Used only where it is the same computation: plain LoRA (no DoRA or other variant), no dropout, one
active adapter, unmerged, frozen base weights already stored in bf16, training under CPU autocast.
Anything else (evaluation, generation, inference after training) goes through PEFT's own forward.
`restore` removes the replacement before the model is saved or used elsewhere.
"""

from __future__ import annotations

import torch
from peft.tuners.lora.layer import Linear
from peft.tuners.tuners_utils import BaseTunerLayer

from mothertongue.training import cpu


class FusedLoraLinear(torch.autograd.Function):
    """`x @ W.T + bias + (x @ A.T) @ (scaling * B).T` with W frozen, in the base weight's dtype."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float):
        dtype = weight.dtype
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)
        a = lora_a.to(dtype)
        b = (lora_b * scaling).to(dtype)
        h = x2 @ a.t()  # [tokens, r]
        y = torch.addmm(bias.to(dtype), x2, weight.t()) if bias is not None else x2 @ weight.t()
        y.addmm_(h, b.t())
        ctx.save_for_backward(x2, h, weight, a, b)
        ctx.scaling = scaling
        ctx.x_meta = (x.shape, x.dtype)
        return y.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, dy):
        x2, h, weight, a, b = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1]).to(weight.dtype)
        g = dy2 @ b  # [tokens, r]
        dx = None
        if ctx.needs_input_grad[0]:
            shape, dtype = ctx.x_meta
            dx = (dy2 @ weight).addmm_(g, a).view(shape).to(dtype)
        da = (g.t() @ x2).float() if ctx.needs_input_grad[3] else None
        db = (dy2.t() @ h).float().mul_(ctx.scaling) if ctx.needs_input_grad[4] else None
        return dx, None, None, da, db, None


def _fast_forward(layer, original):
    """A forward for one PEFT LoRA Linear layer: the fused path while training under CPU autocast,
    PEFT's own forward otherwise."""

    def forward(x, *args, **kwargs):
        if (not layer.training or args or kwargs or layer.disable_adapters or layer.merged
                or not torch.is_autocast_enabled("cpu") or torch.get_autocast_dtype("cpu") != torch.bfloat16):
            return original(x, *args, **kwargs)
        (name,) = layer.active_adapters
        base = layer.get_base_layer()
        return FusedLoraLinear.apply(x, base.weight, base.bias, layer.lora_A[name].weight,
                                       layer.lora_B[name].weight, layer.scaling[name])

    return forward


def eligible_layers(model) -> list:
    """The model's PEFT LoRA Linear layers, if every one of them can take the fused path; else []."""
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    for m in layers:
        reason = cpu.missing(m, cpu.LORA_LAYER_ATTRS)
        if reason:
            cpu.tell(reason)
            return []
        names = list(m.lora_A.keys())
        if (len(names) != 1 or m.lora_variant or m.merged or type(m.get_base_layer()) is not torch.nn.Linear
                or m.get_base_layer().weight.dtype != torch.bfloat16 or m.get_base_layer().weight.requires_grad
                or not isinstance(m.lora_dropout[names[0]], torch.nn.Identity)):
            return []
    return layers


def use_fused(model) -> bool:
    """Route every LoRA Linear layer of `model` through the fused path while training (see module
    docstring); False, and nothing changed, if any layer does not qualify."""
    layers = eligible_layers(model)
    for m in layers:
        m.forward = _fast_forward(m, type(m).forward.__get__(m))
    return bool(layers)


def set_adapter_input_casting(model, enabled: bool) -> None:
    """PEFT casts each adapter's input to the adapter's float32 before autocast casts it back: two
    copies per adapted layer, the bf16 one kept for backward next to the base layer's own. Under
    autocast the input can go in as it is (turned back on after training)."""
    for m in model.modules():
        if isinstance(m, BaseTunerLayer):
            m.cast_input_dtype_enabled = enabled


def keep_frozen_base_in_bf16(adapter: str, train_embeddings: bool, bf16: bool, model) -> bool:
    """Whether the frozen base of a LoRA run is stored in bf16 rather than float32: when training
    runs under bf16 autocast on CPU (GPUs load bf16 weights to begin with), and not when the
    embeddings and LM head are trained in full (their optimizer wants float32 weights). The frozen
    weights are then only ever read as bf16: half the base's memory, no weight casts per step."""
    return (adapter == "lora" and not train_embeddings and bf16 and not torch.cuda.is_available()
            and next(model.parameters()).dtype == torch.float32)


def restore(model) -> None:
    """PEFT's own forward on every LoRA layer again."""
    for m in model.modules():
        if isinstance(m, Linear) and "forward" in m.__dict__:
            del m.forward
