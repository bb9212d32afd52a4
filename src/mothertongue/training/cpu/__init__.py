"""CPU training kernels, behind one recipe switch and a version guard.

    mothertongue train RECIPE                          # train.cpu_kernels: auto (default)
    mothertongue train RECIPE train.cpu_kernels=off    # TRL / Transformers / PEFT exactly as shipped

When training runs on a CPU, `auto` replaces three stock pieces with ones measured faster there
(README, "Benchmark"), each tested equal to the stock path in tests/test_train.py:

  loss.py       the SFT loss on the trained positions only, LM head fused in (TRL's CPU path scores
                every position)
  attention.py  padding-free rows attend per example (Transformers' CPU SDPA masks the whole row)
  lora.py       each LoRA layer in one autograd step, frozen base kept in bf16 under bf16 autocast

They lean on private parts of those libraries (TRL's trainer metrics, Transformers' attention
registry, PEFT's layer internals). `unsupported()` checks the installed versions and that every
private name they use is still there; if not, training goes the stock way and says why once.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import PackageNotFoundError, version

from packaging.version import Version

# oneDNN (PyTorch's CPU matrix multiply for bf16) caches up to 1,024 compiled kernels by shape.
# Padding-free batches change shape every step, so the cache only grows (measured on the 36.9M
# LoRA benchmark: peak 1,570 MiB with the default, 1,346 MiB with 64, same speed; 0 halves the
# speed). oneDNN reads this when it first runs, so it must be set before any bf16 matmul; a value
# the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")

# [lowest version tested, first version not accepted): a new major release may change anything.
VERSIONS = {"trl": ("1.16", "2"), "transformers": ("5.0", "6"), "peft": ("0.17", "1")}

# Private (or internal) names the kernels use, as module -> attributes.
MODULE_NAMES = {
    "trl.kernels.chunked_logprob": ("_use_triton",),
    "transformers": ("AttentionInterface",),
    "transformers.masking_utils": ("AttentionMaskInterface", "sdpa_mask"),
    "transformers.integrations.sdpa_attention": ("sdpa_attention_forward",),
    "peft.tuners.lora.layer": ("Linear",),
    "peft.tuners.tuners_utils": ("BaseTunerLayer",),
}
# Attributes TRL's SFTTrainer sets on itself that the CPU loss keeps up to date.
TRAINER_ATTRS = ("_metrics", "_total_train_tokens", "aux_loss_enabled")
# Attributes of PEFT's LoRA Linear layers the fused path reads.
LORA_LAYER_ATTRS = ("lora_A", "lora_B", "scaling", "lora_dropout", "lora_variant", "merged",
                    "disable_adapters", "active_adapters", "cast_input_dtype_enabled")

_told: set[str] = set()


def unsupported() -> str | None:
    """Why the CPU kernels cannot run against the installed libraries, or None when they can."""
    for package, (low, high) in VERSIONS.items():
        try:
            found = Version(version(package))
        except PackageNotFoundError:
            return f"{package} is not installed"
        if not Version(low) <= found < Version(high):
            return f"{package} {found} is outside the tested range >={low},<{high}"
    for module, names in MODULE_NAMES.items():
        try:
            mod = importlib.import_module(module)
        except ImportError:
            return f"{module} is gone"
        for name in names:
            if not hasattr(mod, name):
                return f"{module}.{name} is gone"
    return None


def missing(obj, names) -> str | None:
    """The first of `names` that `obj` lacks, as a reason; None when it has them all."""
    for name in names:
        if not hasattr(obj, name):
            return f"{type(obj).__name__}.{name} is gone"
    return None


def enabled(setting: str) -> bool:
    """Whether the CPU kernels run: `train.cpu_kernels` is auto, training is on CPU, and the
    installed libraries still have what they use (else the stock path, and a line saying why)."""
    import torch

    if setting == "off" or torch.cuda.is_available():
        return False
    reason = unsupported()
    if reason:
        tell(reason)
    return reason is None


def tell(reason: str) -> None:
    """Say once per process why training takes the stock path."""
    if reason not in _told:
        _told.add(reason)
        print(f"[train] CPU kernels off ({reason}); training on the stock TRL/Transformers/PEFT path")
