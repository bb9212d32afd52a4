"""Translation models of real families: Marian (opus-mt-en-mg, opus-mt-zh-en) and M2M100, each with
its real tokenizer and a random-weight model of its real (shrunk) config.

    pytest -q tests/test_families_translate.py

Checks segment sizes counted by the real tokenizer, CTranslate2 conversion (token for token the
same greedy output as Transformers), M2M100's source-language token and forced target BOS with
its real tokenizer and config, NLLB's config and language codes, and routing/pivoting with the
real model ids mapped to these local folders.
"""

from __future__ import annotations

import shutil

import pytest

from family_models import TOKENIZERS, one_thread

pytestmark = pytest.mark.real_models
MT = {"en-mg": "opus-mt-en-mg", "zh-en": "opus-mt-zh-en", "m2m100": "m2m100-418m"}
FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
         "source.spm", "target.spm", "sentencepiece.bpe.model", "added_tokens.json")
TEXT = ("The weather in Munich is nice today. We walk to the old town and drink coffee; "
        "then we take the train home at 5 p.m. because it gets cold.")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_thread()


def _shrink(cfg):
    for k, v in {"d_model": 64, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
                 "decoder_attention_heads": 4, "encoder_ffn_dim": 128, "decoder_ffn_dim": 128}.items():
        setattr(cfg, k, v)
    return cfg


@pytest.fixture(scope="module")
def mt_models(tmp_path_factory):
    """Local folders named like the hub ids, each: real tokenizer + shrunk real config + random weights."""
    import torch
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    root = tmp_path_factory.mktemp("mt")
    out = {}
    for key, folder in MT.items():
        dest = root / folder
        dest.mkdir()
        for f in FILES:
            if (TOKENIZERS / folder / f).exists():
                shutil.copy(TOKENIZERS / folder / f, dest / f)
        torch.manual_seed(0)
        model = AutoModelForSeq2SeqLM.from_config(_shrink(AutoConfig.from_pretrained(TOKENIZERS / folder)))
        model.save_pretrained(dest, safe_serialization=True)
        out[key] = dest
    return out


@pytest.fixture(scope="module")
def ct2_cache(tmp_path_factory):
    """One CTranslate2 conversion per model for the module (M2M100's 128k vocabulary takes a few
    seconds), and none left in the user's ~/.cache."""
    return str(tmp_path_factory.mktemp("ct2"))


@pytest.mark.slow  # the mt_models fixture builds three models (~10 s) for whoever uses it first
@pytest.mark.parametrize("key", list(MT))
def test_segments_are_sized_by_the_real_tokenizer(mt_models, key):
    from transformers import AutoTokenizer

    from mothertongue.engines import load_engine
    from mothertongue.text.segment import segment

    eng = load_engine("transformers", str(mt_models[key]), device="cpu")
    eng._load()
    tok = AutoTokenizer.from_pretrained(mt_models[key])
    assert len(tok) > 1000
    text = TEXT if not key.startswith("zh") else "今天慕尼黑的天气很好。我们走到老城去喝咖啡，然后下午五点坐火车回家，因为天气变冷了。"
    assert eng.count_tokens(text) == len(tok(text)["input_ids"]) > 10
    doc = segment(text, key[:2], max_tokens=16, count=eng.count_tokens)
    segs = [s for is_seg, s in doc.parts if is_seg]
    assert len(segs) > 1 and all(eng.count_tokens(s) <= 16 for s in segs), segs
    assert "".join(s for _, s in doc.parts) == text


@pytest.mark.slow
@pytest.mark.parametrize("key,src,tgt", [("en-mg", "en", "mg"), ("zh-en", "zh", "en"), ("m2m100", "en", "de")])
def test_ctranslate2_translates_like_transformers(mt_models, ct2_cache, key, src, tgt):
    from mothertongue.engines import load_engine

    opts = {"cache_dir": ct2_cache, "compute_type": "float32", "max_decoding_length": 12}
    ct2 = load_engine("ctranslate2", str(mt_models[key]), device="cpu", options=opts)
    ct2._load()
    # compute_type float32 converts float32 weights (it used to convert int8 whatever was asked:
    # log-probabilities 1e-3 off, and random weights' near-ties then picked other tokens).
    assert "-float32-" in ct2.ct2_path.name and (ct2.ct2_path / "model.bin").exists()
    # Random weights never say EOS, so both stop at the length limit, where Marian's generation
    # config forces EOS as Transformers' last token (CTranslate2 has no such rule): one more
    # token for Transformers gives both 12 tokens of translation.
    hf = load_engine("transformers", str(mt_models[key]), device="cpu", options={"max_new_tokens": 12})
    hf._load()
    hf.opts.max_new_tokens += hf.net.generation_config.forced_eos_token_id is not None
    texts = ["Hello world.", TEXT] if src == "en" else ["你好，世界。"]
    a, b = ct2.translate(texts, src, tgt), hf.translate(texts, src, tgt)
    assert a == b and all(a), (a, b)


@pytest.mark.slow
def test_m2m100_source_token_and_forced_target_bos(mt_models, ct2_cache):
    """With M2M100's real tokenizer the source starts with __en__, and the first generated token is
    the target's __de__ (forced BOS), in both engines."""
    import torch

    from mothertongue.engines import load_engine

    hf = load_engine("transformers", str(mt_models["m2m100"]), device="cpu", options={"max_new_tokens": 6})
    hf._load()
    assert hf.family == "m2m100"
    texts, kw = hf._prepare(["Hello world."], "en", "de")
    ids = hf.tok(texts)["input_ids"][0]
    assert hf.tok.convert_ids_to_tokens(ids)[0] == "__en__" and ids[-1] == hf.tok.eos_token_id
    assert kw["forced_bos_token_id"] == hf.tok.convert_tokens_to_ids("__de__") == hf.tok.get_lang_id("de")
    with torch.no_grad():
        out = hf.net.generate(torch.tensor([ids]), max_new_tokens=4, **kw)
    assert out[0, 1].item() == hf.tok.get_lang_id("de")  # decoder_start, then the forced language token
    ct2 = load_engine("ctranslate2", str(mt_models["m2m100"]), device="cpu", options={"compute_type": "float32", "cache_dir": ct2_cache})
    ct2._load()
    assert ct2.tokenize("Hello world.")[0] == "__en__"
    res = ct2.translator.translate_batch([ct2.tokenize("Hello world.")], target_prefix=[["__de__"]], max_decoding_length=4)
    assert res[0].hypotheses[0][0] == "__de__"


def test_nllb_config_and_codes():
    """NLLB's tokenizer is not in the shared folder (too big); its real config builds and its
    FLORES codes are the special tokens the real special_tokens_map lists."""
    import json

    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    from mothertongue.engines.catalogue import FAMILIES, family_of

    folder = TOKENIZERS / "nllb-200-distilled-600m"
    cfg = AutoConfig.from_pretrained(folder)
    assert family_of("facebook/nllb-200-distilled-600M", cfg.model_type) == "nllb"
    AutoModelForSeq2SeqLM.from_config(_shrink(cfg))
    specials = set(json.loads((folder / "special_tokens_map.json").read_text())["additional_special_tokens"])
    for lang in ("de", "en", "fr", "zh", "uk"):
        assert FAMILIES["nllb"].code(lang) in specials


@pytest.mark.slow
def test_routing_and_pivot_with_real_ids_mapped_to_local_folders(mt_models):
    from mothertongue.engines.catalogue import Leg, family_of, route

    models = {"zh-en": str(mt_models["zh-en"]), "en-mg": str(mt_models["en-mg"])}
    assert family_of("Helsinki-NLP/opus-mt-zh-en") == "opus-mt"
    # The catalogue knows zh-en by its hub id; the recipe maps it (and en-mg) to local folders.
    assert route("zh", "en", "opus-mt", None, {}) == [Leg("zh", "en", "Helsinki-NLP/opus-mt-zh-en")]
    assert route("zh", "mg", "opus-mt", None, models) == [Leg("zh", "en", models["zh-en"]),
                                                        Leg("en", "mg", models["en-mg"])]
    assert route("sw", "mg", "opus-mt", None, models) is None  # no sw->en model known or mapped: no route
    m2m = str(mt_models["m2m100"])
    assert family_of(m2m, "m2m_100") == "m2m100"
    assert route("zh", "de", "m2m100", m2m, {}) == [Leg("zh", "de", m2m)]  # many-to-many: direct


@pytest.mark.slow
def test_translate_stage_pivots_through_english(mt_models, tmp_path):
    """The translate stage, zh -> mg through en with both real Marian tokenizers: every segment is
    translated by both legs and the output has one conversation per input."""
    import json

    from conftest import run_recipe

    data = tmp_path / "zh.jsonl"
    rows = [{"messages": [{"role": "user", "content": "你好，世界。"}, {"role": "assistant", "content": "今天天气很好。"}]}]
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rec = tmp_path / "r.yaml"
    rec.write_text(f"""name: pivot
language: mg
base_model: tiny
ingest:
  sources: [{{path: {data}, format: openai, options: {{lang: zh}}}}]
translate:
  enabled: true
  engine: transformers
  family: opus-mt
  models: {{zh-en: {mt_models['zh-en']}, en-mg: {mt_models['en-mg']}}}
  quality_gate: false
  options: {{max_new_tokens: 8}}
""")
    run_recipe(rec, [f"run_dir={tmp_path / 'run'}"], ["ingest", "translate"])
    out = [json.loads(x) for x in (tmp_path / "run" / "translate" / "train.jsonl").read_text().splitlines()]
    assert len(out) == 1 and out[0]["lang"] == "mg"
    report = json.loads((tmp_path / "run" / "translate" / "report.json").read_text())
    assert "zh-en" in json.dumps(report) and "en-mg" in json.dumps(report), report
