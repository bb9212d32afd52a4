"""4-bit GPTQ and AWQ exports for GPU servers (vLLM, SGLang, TGI, Transformers), calibrated on the
run's own target-language data, loaded back and verified like every export.

    pip install "mothertongue[quant]"
    mothertongue export runs/quickstart --format gptq                  # -> export/gptq-w4g128
    mothertongue export runs/quickstart --format awq -o awq.group_size=64 -o awq.calibration_samples=512

Quantization is GPTQModel's (GPTQ and AWQ, on CUDA or on the CPU; it writes the `gptq` / `awq`
checkpoint formats that Transformers, vLLM and SGLang load). Calibration examples are the run's
training conversations in the target language (the translated ones when the run translated),
rendered with the model's chat template: calibrating on English text would fit the 4-bit grid
to the wrong language. The folder is loaded back with Transformers (CPU kernels where there is
no GPU), answers the probe prompts next to the merged model (verify.compare), and both models'
perplexity on the run's held-out target-language conversations goes into the report and the
model card (README.md in the folder).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mothertongue.errors import UsageError
from mothertongue.export.base import Exporter, Job, load_tokenizer
from mothertongue.export.verify import HFGenerator, Reference, compare, require
from mothertongue.runs import StageError

INSTALL = 'pip install "mothertongue[quant]"'
SPLIT_FILES = {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"}


class QuantOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bits: Literal[2, 3, 4, 8] = 4
    group_size: int = Field(
        128,
        description="Weights per scale; must divide every layer's input width (-1: per channel).",
    )
    calibration_samples: int = Field(
        256, gt=0, description="Target-language conversations to calibrate on."
    )
    calibration_split: Literal["train", "dev", "test"] = "train"
    perplexity_samples: int = Field(
        64, ge=0, description="Held-out conversations for the perplexity pair (0: none)."
    )
    device: str = "auto"  # where to quantize: cuda when there is one, else cpu
    push_to_hub: str | None = None  # a hub repo; only ever uploaded when given


class QuantExporter(Exporter):
    """Base of the GPTQModel exports; subclasses name the method."""

    method = "gptq"
    Options = QuantOptions

    def target(self, out: Path) -> Path:
        return out / f"{self.name}-w{self.opts.bits}g{self.opts.group_size}"

    def check(self, job: Job) -> None:
        if self.opts.group_size != -1 and self.opts.group_size <= 0:
            raise UsageError(
                f"export option {self.name}.group_size must be > 0 or -1, got {self.opts.group_size}"
            )
        cfg_file = job.run_dir / "train" / "model" / "config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
        widths = {
            k: cfg[k] for k in ("hidden_size", "intermediate_size") if isinstance(cfg.get(k), int)
        }
        bad = {
            k: v for k, v in widths.items() if self.opts.group_size > 0 and v % self.opts.group_size
        }
        if bad:
            # vLLM's GPTQ/AWQ kernels refuse layers whose input width is not a multiple of the group.
            k, v = next(iter(bad.items()))
            fits = [g for g in (128, 64, 32) if all(w % g == 0 for w in widths.values())]
            raise UsageError(
                f"export option {self.name}.group_size={self.opts.group_size} does not divide the model's "
                f"{k} ({v}); use -o {self.name}.group_size={fits[0] if fits else -1}"
            )
        self.calibration = conversations(
            job.run_dir, job.language, self.opts.calibration_split, self.opts.calibration_samples
        )
        if not self.calibration[0]:
            raise StageError(
                f"{job.run_dir}: no {job.language!r} conversations in the {self.opts.calibration_split} split "
                f"({self.calibration[1]}) to calibrate the {self.name} export on"
            )
        require_quant_libraries(self.name)

    def export(self, job: Job) -> dict:
        import torch
        from transformers import AutoModelForCausalLM

        from mothertongue.models import read_template_info, save_tokenizer, stop_token_ids

        out_dir = self.target(job.out)
        tok = load_tokenizer(job.merged_dir)
        convs, source = self.calibration
        texts = [tok.apply_chat_template(c["messages"], tokenize=False) for c in convs]
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        info = quantize(job.merged_dir, tmp, tok, texts, self.method, self.opts)
        save_tokenizer(tok, tmp)
        for f in ("mothertongue_template.json", "generation_config.json"):
            if (job.merged_dir / f).exists():
                shutil.copy(job.merged_dir / f, tmp / f)
        with open(tmp / "calibration.jsonl", "w", encoding="utf-8") as f:
            for c, t in zip(convs, texts, strict=True):
                f.write(
                    json.dumps(
                        {"id": c.get("id"), "lang": c.get("lang"), "text": t}, ensure_ascii=False
                    )
                    + "\n"
                )

        stop_ids = stop_token_ids(tok, read_template_info(job.merged_dir).get("end_of_turn"))
        ref_model = AutoModelForCausalLM.from_pretrained(
            job.merged_dir, dtype=torch.float32, use_safetensors=True
        ).eval()
        ref = Reference.of(HFGenerator(ref_model, tok, stop_ids), job.prompts)
        back = load_quantized(tmp)
        report = {
            "format": self.name,
            "path": str(out_dir),
            "method": self.method,
            "bits": self.opts.bits,
            "group_size": self.opts.group_size,
            "library": info["library"],
            "quantize_s": info["seconds"],
            "calibration": {"examples": len(texts), "source": source, "lang": job.language},
            **compare(ref, HFGenerator(back, tok, stop_ids)),
        }
        held_out, held_source = heldout_conversations(
            job.run_dir, job.language, self.opts.perplexity_samples
        )
        if held_out:
            ppl_texts = [tok.apply_chat_template(c["messages"], tokenize=False) for c in held_out]
            report["perplexity"] = {
                "merged": perplexity(ref_model, tok, ppl_texts),
                "export": perplexity(back, tok, ppl_texts),
                "texts": len(ppl_texts),
                "source": held_source,
            }
        require(report, f"the {self.name} export at {out_dir}, loaded back,", exact=False)
        (tmp / "README.md").write_text(model_card(report, job), encoding="utf-8")
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)
        if self.opts.push_to_hub:
            from huggingface_hub import HfApi

            HfApi().create_repo(self.opts.push_to_hub, private=True, exist_ok=True)
            HfApi().upload_folder(folder_path=str(out_dir), repo_id=self.opts.push_to_hub)
            report["pushed_to"] = self.opts.push_to_hub
        return report

    def summary(self, report: dict) -> str:
        ppl = report.get("perplexity")
        ppl_s = f", held-out perplexity {ppl['merged']:.2f} -> {ppl['export']:.2f}" if ppl else ""
        n = len(report["prompts"])
        return (
            f"{self.name} -> {report['path']} ({report['bits']}-bit, group {report['group_size']}, calibrated on "
            f"{report['calibration']['examples']} {report['calibration']['lang']} conversations in "
            f"{report['quantize_s']:.0f} s); greedy replies same as merged {report['prompts_matching']}/{n}, "
            f"next-token agreement {report['token_agreement']:.1%}{ppl_s}"
        )


class GPTQExporter(QuantExporter):
    """4-bit GPTQ (group 128 by default) through GPTQModel; vLLM, SGLang, TGI and Transformers load it."""

    name = "gptq"
    method = "gptq"


class AWQExporter(QuantExporter):
    """4-bit AWQ (GEMM kernels, group 128 by default) through GPTQModel; vLLM, SGLang and Transformers load it."""

    name = "awq"
    method = "awq"


def require_quant_libraries(name: str) -> None:
    """GPTQModel quantizes; Transformers loads the result back through optimum (GPTQ) and GPTQModel."""
    missing = []
    for module in ("gptqmodel", "optimum"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
        except (
            Exception
        ) as e:  # a build for another torch or platform fails on import with anything
            raise StageError(
                f"the {name} export needs GPTQModel, which does not load here ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); reinstall with {INSTALL}"
            ) from None
    if missing:
        raise StageError(f"the {name} export needs {' and '.join(missing)}: {INSTALL}")


def _read_conversations(path: Path, language: str, n: int) -> list[dict]:
    out = []
    if not path.exists():
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            msgs = c.get("messages") or []
            if c.get("lang") == language and any(m.get("role") == "assistant" for m in msgs):
                out.append(c)
                if len(out) >= n:
                    break
    return out


def conversations(run_dir: Path, language: str, split: str, n: int) -> tuple[list[dict], str]:
    """Up to `n` conversations of `split` in `language`: translated ones when the run translated,
    else the ingested ones. Returns them and the file they came from."""
    stage = "translate" if (run_dir / "translate" / "manifest.json").exists() else "ingest"
    path = run_dir / stage / SPLIT_FILES[split]
    return _read_conversations(path, language, n), f"{stage}/{SPLIT_FILES[split]}"


def heldout_conversations(run_dir: Path, language: str, n: int) -> tuple[list[dict], str]:
    """Held-out target-language conversations for perplexity: the test split, else dev."""
    for split in ("test", "dev"):
        convs, source = conversations(run_dir, language, split, n)
        if convs:
            return convs, source
    return [], ""


@contextmanager
def _working_dir(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def quantize(
    merged_dir: Path,
    out_dir: Path,
    tokenizer: Any,
    texts: list[str],
    method: str,
    opts: QuantOptions,
) -> dict:
    """GPTQModel on the merged folder, calibrated on `texts`; writes the quantized checkpoint."""
    import time

    import torch

    # GPTQModel sizes its CPU worker pool as half the cores but asks two loader workers of it,
    # which fails on 2- and 3-core machines unless the pool size is given.
    if (os.cpu_count() or 1) < 4:
        os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    import gptqmodel
    from gptqmodel import BACKEND, AWQConfig, GPTQConfig, GPTQModel

    device = (
        opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    cls = AWQConfig if method == "awq" else GPTQConfig
    # Layers go back to memory, not to a temporary offload folder: exports are single-GPU sized.
    qcfg = cls(bits=opts.bits, group_size=opts.group_size, offload_to_disk=False)
    t0 = time.monotonic()
    calib = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        calib.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    # For AWQ GPTQModel picks the CUDA GEMM kernel unless told; its portable torch kernel writes
    # the same GEMM format.
    backend = BACKEND.AWQ_TORCH if method == "awq" and device == "cpu" else BACKEND.AUTO
    # GPTQModel writes its quantization logs to ./logs: in the export folder, not wherever the
    # user ran the command from.
    merged_dir, out_dir = Path(merged_dir).resolve(), Path(out_dir).resolve()
    with _working_dir(out_dir.parent):
        model = GPTQModel.load(str(merged_dir), qcfg, device=device)
        model.quantize(calib, batch_size=1, calibration_data_min_length=1, backend=backend)
        model.save(str(out_dir))
    return {
        "library": f"gptqmodel {gptqmodel.__version__}",
        "seconds": round(time.monotonic() - t0, 1),
    }


def load_quantized(path: Path) -> Any:
    """The quantized folder as Transformers loads it (GPU when there is one, else CPU kernels)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        path, device_map="cuda" if torch.cuda.is_available() else "cpu"
    ).eval()


def perplexity(model: Any, tokenizer: Any, texts: list[str]) -> float:
    """exp(mean next-token loss) over all tokens of `texts`, one text at a time."""
    import torch

    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for t in texts:
        ids = torch.tensor([tokenizer(t, add_special_tokens=False)["input_ids"]], device=device)
        if ids.shape[1] < 2:
            continue
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").item()
        count += ids.shape[1] - 1
    return round(math.exp(nll / count), 4) if count else float("nan")


def model_card(report: dict, job: Job) -> str:
    """README.md of the quantized folder: what it is, how it was quantized, how it was checked."""
    ppl = report.get("perplexity")
    cal = report["calibration"]
    lines = [
        f"# {report['format'].upper()} {report['bits']}-bit export of `{job.run_dir.name}` ({job.language})",
        "",
        f"Quantized by mothertongue with {report['library']}: method {report['method']}, {report['bits']}-bit weights, "
        f"group size {report['group_size']}, from the merged model (`{job.merged_dir.name}/`).",
        "",
        f"Calibration: {cal['examples']} `{cal['lang']}` conversations of the run ({cal['source']}), rendered with "
        "the model's chat template; they are in `calibration.jsonl` next to this file.",
        "",
        f"Verification (loaded back with Transformers): greedy replies equal to the merged model's on "
        f"{report['prompts_matching']}/{len(report['prompts'])} probe prompts, next-token agreement "
        f"{report['token_agreement']:.1%}.",
    ]
    if ppl:
        lines += [
            "",
            f"Perplexity on {ppl['texts']} held-out `{job.language}` conversations ({ppl['source']}): "
            f"merged {ppl['merged']:.3f}, {report['format']} {ppl['export']:.3f}.",
        ]
    lines += [
        "",
        "Serve: `vllm serve THIS_FOLDER` or load with `AutoModelForCausalLM.from_pretrained`.",
        "",
    ]
    return "\n".join(lines)
