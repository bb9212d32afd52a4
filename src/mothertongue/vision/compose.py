"""Compose a vision-language model: a pretrained image encoder, a projector and the run's model,
as a standard Transformers `LlavaForConditionalGeneration` with a `LlavaProcessor` beside it.

    from mothertongue.vision.compose import compose
    model, processor, stop_ids = compose(recipe, RunDir(recipe.run_dir))

The encoder (`vision.encoder`: hub id or local path of a CLIP, SigLIP, DINOv2 or ViT model; for
CLIP/SigLIP checkpoints with a text tower only the vision tower is taken) and the run's language
model (the tuned one, a LoRA adapter merged first) keep their pretrained weights bit for bit; only
the projector is new. The saved folder loads with `LlavaForConditionalGeneration.from_pretrained`
and `AutoProcessor.from_pretrained`, and vLLM serves it, with no mothertongue code.

How the recipe maps onto Llava's config: `feature_layer` -> `vision_feature_layer`; `keep_cls` ->
`vision_feature_select_strategy` (`full` keeps every token, `default` drops the first, the CLS);
`mlp2x_gelu` -> Llava's own Linear-GELU-Linear projector; `linear` -> the same two layers with
`projector_hidden_act: linear` and the second layer fixed to the identity (never trained), which
is exactly one linear map and needs no custom code to load. The image token is added to the
tokenizer as a special token; `image_seq_length` is measured by running the encoder once.
"""

from __future__ import annotations

import copy
from pathlib import Path

from mothertongue.config import Recipe
from mothertongue.errors import StageError
from mothertongue.runs import RunDir

PROJECTOR_ACT = {"mlp2x_gelu": "gelu", "linear": "linear"}

# Messages whose content is a list of parts (the processor's and vLLM's form) become text with the
# image token where each image was, so the run's own text template renders them unchanged.
PARTS_TO_TEXT = (
    "{%- set mt_ns = namespace(msgs=[]) -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string or m['content'] is none -%}{%- set mt_ns.msgs = mt_ns.msgs + [m] -%}"
    "{%- else -%}{%- set mt_t = namespace(s='') -%}"
    "{%- for p in m['content'] -%}"
    "{%- if p['type'] in ('image', 'image_url') -%}{%- set mt_t.s = mt_t.s + 'IMAGE_TOKEN\\n' -%}"
    "{%- elif p['type'] == 'text' -%}{%- set mt_t.s = mt_t.s + p['text'] -%}{%- endif -%}"
    "{%- endfor -%}{%- set mt_ns.msgs = mt_ns.msgs + [dict(m, content=mt_t.s)] -%}{%- endif -%}"
    "{%- endfor -%}{%- set messages = mt_ns.msgs -%}"
)


def vision_template(text_template: str, image_token: str) -> str:
    """The run's chat template, also accepting OpenAI-style content parts (text and images)."""
    if PARTS_TO_TEXT.split("IMAGE_TOKEN")[0] in text_template:
        return text_template
    return PARTS_TO_TEXT.replace("IMAGE_TOKEN", image_token) + text_template


def load_encoder(spec: str, trust_remote_code: bool = False, allow_pickle: bool = False):
    """(vision model, its config, image processor) of a hub id or local folder."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    try:
        cfg = AutoConfig.from_pretrained(spec, trust_remote_code=trust_remote_code)
        vcfg = getattr(cfg, "vision_config", None) or cfg
        cls = AutoModel._model_mapping[type(vcfg)]
        enc, info = cls.from_pretrained(spec, config=vcfg, output_loading_info=True, trust_remote_code=trust_remote_code,
                                        use_safetensors=None if allow_pickle else True)
        image_processor = AutoImageProcessor.from_pretrained(spec, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise StageError(f"vision.encoder: cannot load {spec}: {first}") from None
    if info.get("missing_keys"):
        raise StageError(f"vision.encoder: {spec} lacks {len(info['missing_keys'])} of the vision model's weights "
                         f"(e.g. {info['missing_keys'][0]}); is it a CLIP/SigLIP/DINOv2/ViT checkpoint?")
    return enc, vcfg, image_processor


def _set_image_size(image_processor, size: int) -> None:
    crop = getattr(image_processor, "crop_size", None)
    if crop:
        image_processor.crop_size = {"height": size, "width": size}
    if "shortest_edge" in (image_processor.size or {}):
        image_processor.size = {"shortest_edge": size}
    else:
        image_processor.size = {"height": size, "width": size}


def image_side(image_processor) -> int:
    crop = getattr(image_processor, "crop_size", None) if getattr(image_processor, "do_center_crop", False) else None
    size = crop or image_processor.size
    return int(size.get("height") or size.get("shortest_edge"))


def measure_tokens(enc, image_processor, feature_layer: int) -> tuple[int, int]:
    """(tokens the encoder gives per image at `feature_layer`, patches) from one forward pass."""
    import torch
    from PIL import Image

    side = image_side(image_processor)
    pixels = image_processor(images=[Image.new("RGB", (side, side))], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = enc(pixels.to(enc.dtype), output_hidden_states=True, return_dict=True)
    try:
        tokens = out.hidden_states[feature_layer].shape[1]
    except IndexError:
        raise StageError(f"vision.feature_layer: {feature_layer} is out of range; the encoder has "
                         f"{len(out.hidden_states)} hidden states (use -1 for the last, -2 for the one before)") from None
    patch = enc.config.patch_size
    return tokens, (pixels.shape[-2] // patch) * (pixels.shape[-1] // patch)


def compose(recipe: Recipe, run: RunDir):
    """(LlavaForConditionalGeneration, LlavaProcessor, stop ids) for the recipe, in fp32 on CPU."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    from mothertongue.models import load_model

    v = recipe.vision
    tr = recipe.train
    local = recipe.resolve_path(v.encoder)  # a folder relative to the recipe, else a hub id
    enc, vcfg, image_processor = load_encoder(str(local) if local.exists() else v.encoder, tr.trust_remote_code,
                                              tr.allow_pickle)
    if v.image_size:
        if v.image_size != getattr(vcfg, "image_size", v.image_size) and vcfg.model_type != "dinov2":
            raise StageError(f"vision.image_size: {v.image_size} differs from the encoder's {vcfg.image_size}; "
                             "this encoder's position embeddings need its own size (leave image_size unset)")
        _set_image_size(image_processor, v.image_size)
    tokens, patches = measure_tokens(enc, image_processor, v.feature_layer)
    extra = tokens - patches
    keep_cls = v.keep_cls if v.keep_cls is not None else extra == 0
    if not keep_cls and extra == 0:
        raise StageError(f"vision.keep_cls: false, but {v.encoder} has no CLS token (SigLIP); set keep_cls: true")

    lm, tokenizer, stop_ids, _ = load_model(run.root, "merged", tr.trust_remote_code, tr.allow_pickle)
    lm = lm.float().to("cpu")
    if v.image_token not in tokenizer.get_vocab():
        tokenizer.add_tokens([v.image_token], special_tokens=True)
    torch.manual_seed(recipe.seed)  # the image token's new row (and the projector below): the seed decides
    if len(tokenizer) > lm.get_input_embeddings().weight.shape[0]:
        lm.resize_token_embeddings(len(tokenizer))
    text_cfg = copy.deepcopy(lm.config)
    text_cfg.use_cache = True
    config = LlavaConfig(
        vision_config=copy.deepcopy(vcfg),
        text_config=text_cfg,
        image_token_index=tokenizer.convert_tokens_to_ids(v.image_token),
        image_seq_length=tokens - (0 if keep_cls else 1),
        projector_hidden_act=PROJECTOR_ACT[v.projector],
        vision_feature_select_strategy="full" if keep_cls else "default",
        vision_feature_layer=v.feature_layer,
        tie_word_embeddings=bool(getattr(text_cfg, "tie_word_embeddings", False)),
    )
    torch.manual_seed(recipe.seed)
    model = LlavaForConditionalGeneration(config)
    body = getattr(lm, lm.base_model_prefix)
    model.model.language_model.load_state_dict(body.state_dict())
    model.lm_head.load_state_dict(lm.get_output_embeddings().state_dict())
    model.model.vision_tower.load_state_dict(enc.state_dict())
    if v.projector == "linear":
        with torch.no_grad():
            proj = model.model.multi_modal_projector.linear_2
            proj.weight.copy_(torch.eye(proj.weight.shape[0]))
            proj.bias.zero_()
    model.generation_config.eos_token_id = stop_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id  # batched generation pads with it

    template = vision_template(tokenizer.chat_template or "", v.image_token)
    tokenizer.chat_template = template
    processor = LlavaProcessor(
        image_processor=image_processor, tokenizer=tokenizer, patch_size=enc.config.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy, chat_template=template,
        image_token=v.image_token, num_additional_image_tokens=extra,
    )
    return model.eval(), processor, stop_ids


def fixed_parameters(model) -> list[str]:
    """Parameters that stay as composed in both stages: the encoder, and the identity second
    layer of a `linear` projector."""
    names = [n for n, _ in model.named_parameters() if n.startswith("model.vision_tower.")]
    if model.config.projector_hidden_act == "linear":
        names += [n for n, _ in model.named_parameters() if ".multi_modal_projector.linear_2." in n]
    return names


def save(model, processor, folder: Path, template_info: dict | None = None) -> None:
    """The model, processor (tokenizer, image processor, chat template) and template info."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor.save_pretrained(folder)
    if template_info is not None:
        (folder / RunDir.TEMPLATE_INFO).write_text(json.dumps(template_info, ensure_ascii=False, indent=2) + "\n",
                                                   encoding="utf-8")
