"""The frozen encoder's image features, computed once per image, for training without the encoder.

    cache = build_cache(model, processor, recipe, refs, run / "vision.partial" / "features", device)
    cache.features(["/data/shapes/0001.png"])  # -> tensor (1, image tokens, encoder hidden size)

The encoder is frozen in both vision stages, so what it gives for an image never changes: running
it on every batch of every epoch (and decoding and resizing the image each time) is repeated work.
`build_cache` runs it once per distinct image and keeps Llava's selected features (layer
`vision_feature_layer`, the CLS token dropped or kept as `vision_feature_select_strategy` says),
i.e. exactly what Llava hands its projector, in one memory-mapped file; a training batch then
reads its images' rows and only the projector and language model run (`VisionTrainer`).

The file holds each image's features as raw bytes of the dtype the encoder produced (bf16 under
bf16 mixed precision, so nothing is rounded), so it takes images x tokens x hidden x 2 or 4
bytes of disk (a SigLIP-so400m image: 729 x 1152 x 4 = 3.4 MB in fp32); `vision.stage1/2.cache_features:
false` turns it off for sets that do not fit. `features.json`, written last, names the images and
what the features depend on; a rerun after a kill reuses the file when they still match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.runs import atomic_write_json

INDEX = "features.json"
DATA = "features.bin"


def unwrap(model):
    """The LlavaForConditionalGeneration inside a PEFT model (stage 2 with LoRA), or the model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def select_features(model, pixel_values):
    """What Llava's `get_image_features` gives its projector: the chosen hidden layer (or layers,
    concatenated), the CLS token dropped for the `default` strategy."""
    import torch

    model = unwrap(model)
    cfg = model.config
    out = model.model.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
    layers = (
        cfg.vision_feature_layer
        if isinstance(cfg.vision_feature_layer, list)
        else [cfg.vision_feature_layer]
    )
    picked = [out.hidden_states[k] for k in layers]
    if cfg.vision_feature_select_strategy == "default":
        picked = [h[:, 1:] for h in picked]
    return picked[0] if len(picked) == 1 else torch.cat(picked, dim=-1)


class FeatureCache:
    """Read-only view of a finished cache folder: image reference -> its feature rows."""

    def __init__(self, folder: Path):
        import numpy as np
        import torch

        meta = json.loads((folder / INDEX).read_text(encoding="utf-8"))
        self.meta = meta
        self.index = {ref: i for i, ref in enumerate(meta["images"])}
        self.shape = tuple(meta["shape"])
        self.dtype = getattr(torch, meta["dtype"])
        self.rows = np.memmap(
            folder / DATA, dtype=np.uint8, mode="r", shape=(len(meta["images"]), meta["row_bytes"])
        )

    def __contains__(self, ref: str) -> bool:
        return ref in self.index

    def features(self, refs: list[str]):
        """(len(refs), tokens, hidden) in the dtype the encoder produced them in."""
        import numpy as np
        import torch

        raw = torch.from_numpy(np.stack([self.rows[self.index[r]] for r in refs]))
        return raw.view(self.dtype).reshape(len(refs), *self.shape)


def cache_key(model, processor, recipe: Recipe, dtype: str) -> dict:
    """Everything the cached features depend on besides the image: a changed one means recompute."""
    import torch

    model = unwrap(model)
    cfg = model.config
    weights = hashlib.sha256()
    for name, p in sorted(model.model.vision_tower.state_dict().items()):
        weights.update(
            name.encode() + p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()
        )
    return {
        "encoder": recipe.vision.encoder,
        "weights": weights.hexdigest()[:16],
        "layer": cfg.vision_feature_layer,
        "strategy": cfg.vision_feature_select_strategy,
        "dtype": dtype,
        "image_processor": processor.image_processor.to_json_string(),
    }


def open_cache(folder: Path, key: dict, refs: list[str]) -> FeatureCache | None:
    """The cache in `folder` if it is complete, made with `key` and holds every one of `refs`."""
    if not (folder / INDEX).exists():
        return None
    cache = FeatureCache(folder)
    if cache.meta.get("key") != key or any(r not in cache for r in refs):
        return None
    return cache


def build_cache(
    model,
    processor,
    recipe: Recipe,
    refs: list[str],
    folder: Path,
    device=None,
    autocast: Callable[[], AbstractContextManager] | None = None,
    batch_size: int = 32,
) -> FeatureCache:
    """Encode each distinct image of `refs` once (on `device`, under the trainer's `autocast()`) and
    keep the features in `folder`; an existing matching cache is reused."""
    import numpy as np
    import torch

    from mothertongue.vision.data import load_image

    refs = list(dict.fromkeys(refs))
    if not refs:
        raise ValueError("build_cache: no images")
    tower = unwrap(model).model.vision_tower
    device = device or next(tower.parameters()).device
    autocast = autocast or nullcontext
    was_training = tower.training
    tower.eval()  # a frozen encoder: no dropout, as in every training step's features
    folder.mkdir(parents=True, exist_ok=True)
    rows = None
    try:
        for start in range(0, len(refs), batch_size):
            chunk = refs[start : start + batch_size]
            images = [load_image(r, recipe) for r in chunk]
            pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"]
            with torch.no_grad(), autocast():
                feats = select_features(
                    model, pixels.to(device, dtype=next(tower.parameters()).dtype)
                )
            feats = feats.detach().cpu().contiguous()
            if rows is None:
                shape, dtype = tuple(feats.shape[1:]), str(feats.dtype).removeprefix("torch.")
                key = cache_key(model, processor, recipe, dtype)
                found = open_cache(folder, key, refs)
                if found is not None:
                    return found
                (folder / INDEX).unlink(
                    missing_ok=True
                )  # the old index no longer describes the file
                row_bytes = feats[0].numel() * feats.element_size()
                # a new file, renamed over the old one: an open cache may still map the old
                rows = np.memmap(
                    folder / (DATA + ".tmp"),
                    dtype=np.uint8,
                    mode="w+",
                    shape=(len(refs), row_bytes),
                )
            rows[start : start + len(chunk)] = (
                feats.view(torch.uint8).reshape(len(chunk), -1).numpy()
            )
    finally:
        tower.train(was_training)
    rows.flush()
    del rows
    (folder / (DATA + ".tmp")).replace(folder / DATA)
    atomic_write_json(
        folder / INDEX,
        {"key": key, "shape": list(shape), "dtype": dtype, "row_bytes": row_bytes, "images": refs},
    )
    return FeatureCache(folder)
