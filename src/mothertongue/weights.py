"""Which model weights may be loaded, checked before loading: one-line errors instead of tracebacks.

    check_base_model("models/my-llama", allow_pickle=False)   # raises StageError with the reason
    require_safetensors(Path("runs/x/train/model"), "adapter", "train.allow_pickle: true")

A model is a local folder or a hub id. A folder must exist, hold something and be a Hugging Face
model (config.json) or PEFT adapter (adapter_config.json). A hub id needs the hub to be reachable
(and not switched off with HF_HUB_OFFLINE=1) unless the model is in the local cache. Weights load as safetensors only: a pickle checkpoint (.bin, .pt, ...)
can run code when it is loaded, so one is refused unless the user opts in (`train.allow_pickle`).
"""

from __future__ import annotations

import os
from pathlib import Path

from mothertongue.errors import StageError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def pickle_only(folder: Path) -> list[str]:
    """Names of the pickle weight files in `folder` when it has no safetensors file; else []."""
    files = [p for p in folder.iterdir() if p.is_file()]
    if any(p.suffix == ".safetensors" for p in files):
        return []
    # training_args.bin and the like hold settings, not weights, but load through pickle all the same
    return sorted(p.name for p in files if p.suffix in PICKLE_SUFFIXES)


def require_safetensors(folder: Path, what: str, opt_in: str, allowed: bool = False) -> None:
    """Stop, naming the file and the opt-in, when the `what` in `folder` has only pickle weights."""
    found = [] if allowed else pickle_only(folder)
    if found:
        raise StageError(
            f"{folder / found[0]}: the {what} has only pickle weights, which can run code when loaded; "
            f"convert it to safetensors, or set {opt_in} if you trust the file"
        )


def looks_like_path(name: str) -> bool:
    """A value meant as a local folder: absolute, ./ ../ ~, or more than one `/` (hub ids are `org/name`)."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or name.endswith("/")
            or "\\" in name)


def hub_offline() -> bool:
    from huggingface_hub import constants

    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def in_hub_cache(repo_id: str, filename: str = "config.json") -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo_id, filename), str)
    except ValueError:  # not a valid repo id
        return False


def check_base_model(name: str, allow_pickle: bool = False, field: str = "base_model",
                     opt_in: str = "train.allow_pickle: true", weights: bool = True) -> None:
    """Raise a one-line StageError when `name` (a recipe's `field`) cannot be loaded: a missing or
    empty folder, a folder without a model config or with pickle-only weights (both only when
    `weights`; not with `allow_pickle`), or a hub id that is not cached while the hub is offline
    or unreachable."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise StageError(f"{field}: {name} is a file; give a model folder or a hub id")
        if not any(path.iterdir()):
            raise StageError(f"{field}: {name} is an empty folder; copy the model's files into it")
        if not weights:  # only the tokenizer is wanted here; its files are checked by its loader
            return
        adapter = (path / "adapter_config.json").exists()
        if not adapter and not (path / "config.json").exists():
            raise StageError(f"{field}: {name} has no config.json; it is not a Hugging Face model folder")
        require_safetensors(path, "adapter" if adapter else "model", opt_in, allow_pickle)
        return
    if looks_like_path(name):
        raise StageError(f"{field}: no such folder {name}")
    if in_hub_cache(name):
        return
    if hub_offline():
        raise StageError(
            f"{field}: {name} is not a local folder and not in the Hugging Face cache, and the hub is offline "
            "(HF_HUB_OFFLINE=1); give a local folder, or download it once with the hub reachable"
        )
    unreachable = hub_unreachable()
    if unreachable:  # say so now, not after the hub client's retries (about a minute)
        raise StageError(
            f"{field}: {name} is not a local folder and not in the Hugging Face cache, and the hub cannot be "
            f"reached ({unreachable}); give a local folder, or download it once with the hub reachable"
        )


def hub_unreachable(timeout_s: float = 5.0) -> str | None:
    """Why the hub endpoint (HF_ENDPOINT) cannot be connected to, or None when it can."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout_s).close()
    except OSError as e:
        return f"{url.hostname}:{port}: {e.strerror or e}"
    return None

