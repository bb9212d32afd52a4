"""Loading a composed vision-language model and answering with images: chat, serve and export.

    from mothertongue.vision.infer import load, answer
    model, processor = load(Path("runs/shapes/vision/model"))
    reply = answer(model, processor, [{"role": "user", "content": "<image>\\nWas siehst du?"}], [img], stop_ids)

Messages are plain-text chat messages with the image token where each image goes (the form the
data reader writes); `answer` renders them with the saved chat template, lets the processor widen
each image token to the encoder's tokens and generates greedily or as the preset says.
"""

from __future__ import annotations

import json
from pathlib import Path

from mothertongue.errors import StageError
from mothertongue.runs import RunDir


def is_vision_folder(folder: Path) -> bool:
    """A saved model folder holding a Llava model (ours or anyone's)."""
    cfg = Path(folder) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("model_type") == "llava"
    except (OSError, ValueError):
        return False


def run_model_dir(run_dir: Path) -> Path | None:
    """The finished vision model of a run directory, if the run has one."""
    run = RunDir(Path(run_dir))
    return run.stage("vision") / "model" if run.complete("vision") else None


def load(folder: Path, trust_remote_code: bool = False):
    """(LlavaForConditionalGeneration in eval mode, its processor) from a saved folder."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from mothertongue.models import inference_dtype

    try:
        processor = AutoProcessor.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
        model = LlavaForConditionalGeneration.from_pretrained(str(folder), dtype=inference_dtype(), use_safetensors=True)
    except (OSError, ValueError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StageError(f"cannot load the vision model from {folder}: {first}") from None
    import torch

    model.eval()
    if torch.cuda.is_available():
        model.to("cuda")
    return model, processor


def count_images(messages: list[dict], image_token: str) -> int:
    return sum(m["content"].count(image_token) for m in messages if isinstance(m.get("content"), str))


def answer(model, processor, messages: list[dict], images: list, stop_ids: list[int], **gen_kwargs):
    """One reply (generation.Reply) to `messages` with `images` in the order of their tokens."""
    import torch

    from mothertongue.generation import Reply

    token = processor.image_token
    if count_images(messages, token) != len(images):
        raise StageError(f"{count_images(messages, token)} {token} marks in the messages but {len(images)} images")
    tok = processor.tokenizer
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    inputs = processor(text=text, images=images or None, return_tensors="pt", add_special_tokens=False)
    limit = int(getattr(model.config.text_config, "max_position_embeddings", 0) or 0)
    n = inputs["input_ids"].shape[1]
    if limit and n + gen_kwargs.get("max_new_tokens", 0) > limit:
        raise StageError(f"the prompt is {n} tokens ({len(images)} images of {model.config.image_seq_length} tokens "
                         f"each); with max_new_tokens it exceeds the model's context of {limit}")
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    pad = tok.pad_token_id if tok.pad_token_id is not None else stop_ids[0]
    with torch.no_grad():
        out = model.generate(**inputs, eos_token_id=stop_ids, pad_token_id=pad, **gen_kwargs)
    toks, ended = [], False
    for t in out[0, n:].tolist():
        if t in stop_ids:
            ended = True
            break
        toks.append(t)
    return Reply(tok.decode(toks, skip_special_tokens=True).strip(), ended, len(toks), n)
