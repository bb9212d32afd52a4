"""GPTQ and AWQ exports (GPTQModel, `pip install "mothertongue[quant]"`): one-line errors without the
library or with a group size the model cannot take; on the tiny LoRA model of the export tests,
4-bit folders that Transformers loads on the CPU, agree with the merged model at the reported
rate, carry the perplexity pair, and were calibrated on the run's German conversations.

GPTQModel 7.6 pins numpy 2.2.6, so CI keeps it out of the main environment: `.ci/quant-venv.sh`
installs the [quant] extra into .venv-quant, and the quantize + load-back half of these tests runs
in that interpreter (a subprocess) when this one has no gptqmodel; the checks stay here."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from mothertongue.errors import UsageError

NO_QUANT = "import sys; sys.modules['gptqmodel'] = None; from mothertongue.cli import main; main()"


def _cli_without_gptqmodel(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a process where `import gptqmodel` fails, as on a machine without the extra."""
    return subprocess.run([sys.executable, "-c", NO_QUANT, *args], capture_output=True, text=True)


def test_missing_library_is_one_line_naming_the_extra(quickstart_run, tmp_path):
    proc = _cli_without_gptqmodel(
        "export",
        str(quickstart_run),
        "--format",
        "gptq",
        "-o",
        "gptq.group_size=64",
        "--out",
        str(tmp_path / "x"),
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert re.search(
        r'error: the gptq export needs gptqmodel( and optimum)?: pip install "mothertongue\[quant\]"',
        proc.stderr,
    )
    assert not (tmp_path / "x").exists(), "failed before the merge, nothing written"


def test_option_errors_are_one_line(quickstart_run, tmp_path):
    from mothertongue.export import export, parse_options

    # hidden_size 192 of the tiny model is no multiple of the default group of 128.
    with pytest.raises(
        UsageError,
        match=r"awq\.group_size=128 does not divide the model's hidden_size \(192\); "
        r"use -o awq\.group_size=64",
    ):
        export(quickstart_run, tmp_path, ("awq",), log=lambda m: None)
    with pytest.raises(UsageError, match=r"export option gptq\.bits: Input should be 2, 3, 4 or 8"):
        export(
            quickstart_run,
            tmp_path,
            ("gptq",),
            options=parse_options(["gptq.bits=5"]),
            log=lambda m: None,
        )
    with pytest.raises(
        UsageError,
        match=r"export options for 'gptq', which is not among the formats \(merged, ct2\)",
    ):
        export(
            quickstart_run,
            tmp_path,
            ("ct2",),
            options=parse_options(["gptq.bits=8"]),
            log=lambda m: None,
        )
    with pytest.raises(UsageError, match=r"--option 'gptq\.bits': expected FORMAT\.KEY=VALUE"):
        parse_options(["gptq.bits"])
    assert parse_options(["gptq.bits=8", "gptq.device=cpu"]) == {
        "gptq": {"bits": 8, "device": "cpu"}
    }
    assert not (tmp_path / "merged").exists()


QUANT_PYTHON = Path(os.environ.get("MT_QUANT_PYTHON", REPO / ".venv-quant" / "bin" / "python"))


def _quant_python() -> str:
    """An interpreter with GPTQModel: this one, else the side venv that .ci/quant-venv.sh builds."""
    try:
        import gptqmodel  # noqa: F401

        return sys.executable
    except ImportError:
        if QUANT_PYTHON.exists():
            return str(QUANT_PYTHON)
    pytest.skip(f"no gptqmodel here and no {QUANT_PYTHON} (bash .ci/quant-venv.sh builds it)")


def quantize_and_load_back(run_dir: str, out: str) -> None:
    """(Runs in the GPTQModel interpreter.) `export --format merged,gptq,awq` with group 64, then
    each quantized folder loaded back with Transformers on the CPU and asked the report's probe
    prompts greedily; everything goes to OUT/child.json for the tests to check."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.export import export
    from mothertongue.generation import generate
    from mothertongue.models import read_template_info, stop_token_ids

    opts = {"gptq": {"group_size": 64}, "awq": {"group_size": 64}}
    result = export(
        Path(run_dir), Path(out), ("merged", "gptq", "awq"), options=opts, log=lambda m: None
    )
    loaded = {}
    for rep in result["exports"][1:]:
        d = Path(rep["path"])
        tok = AutoTokenizer.from_pretrained(d)
        model = AutoModelForCausalLM.from_pretrained(d, device_map="cpu").eval()
        stop = stop_token_ids(tok, read_template_info(d).get("end_of_turn"))
        prompts = [[{"role": "user", "content": p}] for p in rep["prompts"]]
        replies = generate(model, tok, prompts, stop, do_sample=False, max_new_tokens=32)
        loaded[rep["format"]] = {
            "plain_linear": [
                n
                for n, m in model.named_modules()
                if "layers." in n and isinstance(m, torch.nn.Linear)
            ],
            "replies": [r.text for r in replies],
        }
    Path(out, "child.json").write_text(json.dumps({"result": result, "loaded": loaded}))


@pytest.fixture(scope="module")
def quantized(request, tmp_path_factory):
    """`export --format merged,gptq,awq -o gptq.group_size=64 -o awq.group_size=64` of the tiny LoRA
    run and the folders loaded back, in an interpreter with GPTQModel: (out, result, loaded)."""
    python = _quant_python()  # skips before the LoRA run is trained for nothing
    lora_run = request.getfixturevalue("lora_run")
    out = tmp_path_factory.mktemp("quant")
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        "from test_export_quant import quantize_and_load_back as f; f(*sys.argv[1:])"
    )
    elsewhere = tmp_path_factory.mktemp("cwd")  # where the user runs the command from
    proc = subprocess.run(
        [python, "-c", code, str(lora_run), str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=elsewhere,
    )
    assert proc.returncode == 0, f"{python}: {proc.stderr[-3000:]}"
    # GPTQModel writes its quantization logs to ./logs: the export puts them in its own folder.
    assert not any(elsewhere.iterdir()), list(elsewhere.iterdir())
    child = json.loads((out / "child.json").read_text())
    return out, child["result"], child["loaded"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_quantized_folder_loads_and_agrees_with_the_merged_model(quantized, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.generation import generate
    from mothertongue.models import read_template_info, stop_token_ids

    out, result, loaded = quantized
    merged_rep = result["exports"][0]
    rep = next(r for r in result["exports"] if r["format"] == method)
    d = Path(rep["path"])
    assert (
        d.name == f"{method}-w4g64"
        and json.loads((out / "report.json").read_text())["exports"][1:] == result["exports"][1:]
    )
    cfg = json.loads((d / "config.json").read_text())["quantization_config"]
    assert cfg["bits"] == 4 and cfg["group_size"] == 64 and cfg["quant_method"] == method
    assert rep["tuned"] == merged_rep["export"] and any(rep["tuned"])

    # Independently of the report: Transformers loaded the folder (4-bit layers, CPU kernels, in the
    # GPTQModel interpreter) and its greedy replies agree with the merged model's as often as the
    # report says; the merged model answers here.
    tok = AutoTokenizer.from_pretrained(d)
    assert not loaded[method]["plain_linear"], loaded[method]["plain_linear"]
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    stop = stop_token_ids(tok, read_template_info(d).get("end_of_turn"))
    prompts = [[{"role": "user", "content": p}] for p in rep["prompts"]]
    mine = loaded[method]["replies"]
    ref = [r.text for r in generate(merged, tok, prompts, stop, do_sample=False, max_new_tokens=32)]
    assert ref == rep["tuned"] and mine == rep["export"]
    assert rep["prompts_matching"] == sum(a == b for a, b in zip(mine, ref, strict=True))
    assert rep["token_agreement"] >= 0.5 and rep["prompts_matching"] >= 1, rep

    # The perplexity pair on held-out German conversations, and a model card saying all this.
    ppl = rep["perplexity"]
    assert ppl["texts"] > 0 and ppl["source"].endswith("test.jsonl")
    assert (
        math.isfinite(ppl["merged"])
        and math.isfinite(ppl["export"])
        and ppl["export"] != ppl["merged"]
    )
    card = (d / "README.md").read_text()
    assert (
        f"{rep['calibration']['examples']} `de` conversations" in card
        and f"{ppl['export']:.3f}" in card
    )


@pytest.mark.slow
def test_calibration_is_the_runs_target_language(quantized, request):
    from mothertongue.text.langid import LangId

    _, result, _ = quantized
    lora_run = request.getfixturevalue("lora_run")  # after `quantized`, which may skip
    rep = next(r for r in result["exports"] if r["format"] == "gptq")
    rows = [
        json.loads(line)
        for line in (Path(rep["path"]) / "calibration.jsonl").read_text().splitlines()
    ]
    assert len(rows) == rep["calibration"]["examples"] > 0 and rep["calibration"]["lang"] == "de"
    assert {r["lang"] for r in rows} == {"de"}
    train_ids = {
        json.loads(line)["id"]
        for line in (lora_run / "ingest" / "train.jsonl").read_text().splitlines()
    }
    assert {r["id"] for r in rows} <= train_ids, (
        "calibrated on training conversations, not held-out ones"
    )
    langid = LangId(["de", "en", "fr", "es", "it", "nl"])
    detected = [langid.detect(r["text"])[0] for r in rows]
    assert detected.count("de") >= 0.9 * len(rows), detected


@pytest.mark.gpu
@pytest.mark.slow
def test_vllm_serves_the_quantized_folders(quantized):
    vllm = pytest.importorskip("vllm")
    _, result, _ = quantized
    for rep in result["exports"][1:]:
        llm = vllm.LLM(model=rep["path"], max_model_len=256)
        got = llm.chat(
            [[{"role": "user", "content": p}] for p in rep["prompts"]],
            vllm.SamplingParams(temperature=0, max_tokens=32),
        )
        replies = [g.outputs[0].text.strip() for g in got]
        assert (
            any(replies) and sum(a == b for a, b in zip(replies, rep["export"], strict=True)) >= 1
        ), replies
