"""Where a model runs and in which dtype: one place for training, inference and the MT engines.

    device = resolve_device("auto")             # "cuda" when a GPU is visible, else "cpu"
    dtype = torch_dtype("auto", device)         # float16 on GPU, float32 on CPU (engines)
    dtype = inference_dtype()                   # chat/serve/evaluate: fp32 on CPU, bf16/fp16 on GPU
    mode = train_precision("auto", hidden_size) # "bf16" | "fp16" | "fp32" for the trainer

torch is imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

from pathlib import Path

# Below this width, CPU autocast spends more time casting weights each step than the bf16
# matrix multiplies save (measured: a 64-wide model trains ~1.4x slower under autocast).
CPU_BF16_MIN_HIDDEN = 512

DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def resolve_device(device: str = "auto") -> str:
    """`auto` becomes "cuda" when a GPU is visible, else "cpu"; anything else is kept."""
    if device != "auto":
        return device
    return "cuda" if cuda_available() else "cpu"


def torch_dtype(name: str, device: str):
    """A dtype option (auto, float32, bfloat16, float16) as a torch dtype; auto: float16 on a
    GPU, float32 elsewhere."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {', '.join(DTYPE_NAMES)}") from None


def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), so autocast pays off."""
    import torch

    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # very old torch
        return False
    if "AMX" in cap:
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="ignore")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_dtype(precision: str):
    """dtype the weights are loaded in: fp32 on CPU (bf16 there is autocast, see `train_precision`),
    bf16 on GPUs that support it, else fp16."""
    import torch

    if precision == "fp32" or not torch.cuda.is_available():
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def inference_dtype():
    """dtype for generating with a trained model: fp32 on CPU, bf16 (or fp16) on a GPU."""
    return pick_dtype("auto")


def train_precision(precision: str, hidden_size: int | None = None) -> str:
    """The mixed-precision mode training runs in: "bf16", "fp16" or "fp32"."""
    import torch

    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    wide = hidden_size is None or hidden_size >= CPU_BF16_MIN_HIDDEN
    return "bf16" if wide and cpu_has_bf16() else "fp32"
