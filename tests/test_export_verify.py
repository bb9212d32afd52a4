"""The export wing's shared parts on tiny random models: one verification (compare + require) for
every runtime, the exporter registry's door for new formats, and the one-line errors before any
slow step (unknown format or option, a model folder without a tokenizer)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mothertongue.errors import UsageError
from mothertongue.export.base import Exporter, Job
from mothertongue.runs import StageError


def _tiny_model(tokenizer, seed: int, path: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def two_models(tiny_tokenizer, tmp_path):
    return _tiny_model(tiny_tokenizer, 0, tmp_path / "a"), _tiny_model(
        tiny_tokenizer, 1, tmp_path / "b"
    )


def _hf(path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.export.verify import HFGenerator
    from mothertongue.models import stop_token_ids

    tok = AutoTokenizer.from_pretrained(path)
    return HFGenerator(
        AutoModelForCausalLM.from_pretrained(path).eval(), tok, stop_token_ids(tok, "<|im_end|>")
    )


PROMPTS = [
    [{"role": "user", "content": "Hallo Welt, wie geht es dir?"}],
    [{"role": "user", "content": "Nenne drei Farben."}],
]


@pytest.mark.slow
def test_compare_and_require_tell_a_copy_from_another_model(two_models):
    from mothertongue.export.verify import FORCED_TOKENS, Reference, compare, require

    a, b = two_models
    ref = Reference.of(_hf(a), PROMPTS, max_new_tokens=8)
    same = compare(ref, _hf(a))
    assert (
        same["token_agreement"] == 1.0 and same["same_forced_tokens"] and same["same_greedy_output"]
    )
    assert [len(i) for i in same["export_ids"]] == [FORCED_TOKENS] * len(PROMPTS)
    require(same, "a copy", exact=True)

    other = compare(ref, _hf(b))
    assert other["token_agreement"] < 0.5 and not other["same_forced_tokens"]
    with pytest.raises(StageError, match=r"another model generates differently") as e:
        require(other, "another model", exact=True)
    assert "\n" not in str(e.value)
    with pytest.raises(
        StageError, match=r"generates garbage: next-token agreement .* \(floor 0\.5\)"
    ):
        require(other, "another model", exact=False)


@pytest.mark.slow
def test_ctranslate2_generator_reports_the_same_keys(two_models, tmp_path):
    """One compare for every runtime: CTranslate2 float32 of model a equals a, token by token."""
    import ctranslate2
    from ctranslate2.converters import TransformersConverter

    from mothertongue.export.verify import CT2Generator, Reference, compare

    a, _ = two_models
    hf = _hf(a)
    TransformersConverter(str(a), copy_files=["tokenizer.json", "tokenizer_config.json"]).convert(
        str(tmp_path / "ct2"), quantization="float32"
    )
    rep = compare(
        Reference.of(hf, PROMPTS, max_new_tokens=8),
        CT2Generator(ctranslate2.Generator(str(tmp_path / "ct2")), hf.tokenizer, hf.stop_ids),
    )
    assert (
        rep["token_agreement"] == 1.0
        and rep["same_forced_tokens"]
        and rep["export_ids"] == rep["tuned_ids"]
    )
    assert rep["export"] == rep["tuned"]


def test_a_converted_model_without_a_tokenizer_is_a_one_line_error(two_models, tmp_path):
    from mothertongue.export import to_ctranslate2, to_gguf

    a, _ = two_models
    bare = tmp_path / "bare"
    shutil.copytree(
        a,
        bare,
        ignore=shutil.ignore_patterns("tokenizer*", "special_tokens_map.json", "chat_template*"),
    )
    with pytest.raises(StageError, match=r"bare: no tokenizer next to the model") as e:
        to_ctranslate2(bare, tmp_path / "ct2")
    assert "\n" not in str(e.value) and not (tmp_path / "ct2").exists()
    with pytest.raises(StageError, match=r"bare: no tokenizer next to the model"):
        to_gguf(
            bare, tmp_path / "m.gguf", "f16", llama_cpp=_fake_checkout(tmp_path), log=lambda m: None
        )
    assert not (tmp_path / "m.gguf").exists()


def _fake_checkout(tmp_path: Path) -> Path:
    """A folder find_llama_cpp accepts; the tokenizer check comes before the converter runs."""
    d = tmp_path / "llama.cpp"
    d.mkdir(exist_ok=True)
    (d / "convert_hf_to_gguf.py").write_text("raise SystemExit('not reached')\n")
    return d


class Broken(Exporter):
    """A third-party exporter that cannot run here: its check fails before the merge."""

    name = "broken"

    def check(self, job: Job) -> None:
        raise StageError("broken export needs a tool this machine lacks")


def test_a_registered_exporter_runs_through_the_same_door(quickstart_run, tmp_path, monkeypatch):
    """One registration line makes a format known to `export` (and its CLI); its options are
    strict and its check runs before the (slow) merge."""
    from mothertongue.export import EXPORTERS, export

    monkeypatch.setattr(
        EXPORTERS, "_targets", dict(EXPORTERS._targets)
    )  # registered for this test only
    EXPORTERS.register("broken", f"{__name__}:Broken")
    with pytest.raises(StageError, match="broken export needs a tool"):
        export(quickstart_run, tmp_path, ("broken",), log=lambda m: None)
    assert not (tmp_path / "merged").exists(), "failed before the merge"
    with pytest.raises(
        UsageError, match=r"export option broken\.colour: Extra inputs are not permitted"
    ):
        export(
            quickstart_run,
            tmp_path,
            ("broken",),
            options={"broken": {"colour": "red"}},
            log=lambda m: None,
        )
    with pytest.raises(
        UsageError, match=r"export option ct2\.quantization: Input should be a valid string"
    ):
        export(quickstart_run, tmp_path, ("ct2",), ct2_quantization=8, log=lambda m: None)


def test_cli_export_errors_are_one_line(quickstart_run, tmp_path):
    cmd = [sys.executable, "-m", "mothertongue", "export", str(quickstart_run), "--format", "merged,onnx",
           "--out", str(tmp_path / "x")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "unknown export format 'onnx'" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x" / "merged").exists()
