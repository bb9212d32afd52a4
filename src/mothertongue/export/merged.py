"""The merged export: the LoRA adapter merged into the base (or the fully tuned model) as
safetensors, with the tokenizer, its chat template and a generation config that stops at the end
of turn, so `vllm serve RUN/export/merged` answers with the run's template.

    mothertongue export runs/quickstart                           # -> runs/quickstart/export/merged
    mothertongue export runs/quickstart --push-to-hub you/model-de   # only then is anything uploaded

Every other export is made from this folder. It is loaded back and must generate exactly like
the tuned model (adapter on base) did.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mothertongue.export.base import Exporter, Job
from mothertongue.export.verify import HFGenerator, Reference, compare, require
from mothertongue.runs import RunDir


class MergedOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    push_to_hub: str | None = None  # a hub repo; only ever uploaded when given


class MergedExporter(Exporter):
    """Adapter merged into the base, saved as safetensors next to tokenizer and template."""

    name = "merged"
    Options = MergedOptions

    def target(self, out: Path) -> Path:
        return out / "merged"

    def export(self, job: Job) -> dict:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mothertongue.models import load_model, save_tokenizer, stop_token_ids
        from mothertongue.vision.infer import run_model_dir

        out_dir = self.target(job.out)
        if run_model_dir(job.run_dir) is not None:  # a vision run exports its vision-language model
            from mothertongue.vision.export import export_vision

            return export_vision(job.run_dir, out_dir)
        model, tokenizer, stop_ids, info = load_model(job.run_dir, "tuned")
        # Measured on the adapter model before merging changes its weights in place.
        ref = Reference.of(HFGenerator(model, tokenizer, stop_ids), job.prompts)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        model = model.to("cpu")
        # The exported generation config stops at the end-of-turn token, so servers that read it
        # (vLLM, TGI, transformers pipelines) stop where chat does.
        model.generation_config.eos_token_id = stop_ids
        if tokenizer.pad_token_id is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        tmp = out_dir.with_name(out_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        model.save_pretrained(tmp, safe_serialization=True)
        save_tokenizer(tokenizer, tmp)
        src_info = RunDir(job.run_dir).tuned_dir / RunDir.TEMPLATE_INFO
        if src_info.exists():
            shutil.copy(src_info, tmp / RunDir.TEMPLATE_INFO)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(tmp, out_dir)

        back_tok = AutoTokenizer.from_pretrained(out_dir)
        back = AutoModelForCausalLM.from_pretrained(out_dir, use_safetensors=True).eval()
        back_stop = stop_token_ids(back_tok, info.end_of_turn)
        report = {
            "format": "merged",
            "path": str(out_dir),
            **compare(ref, HFGenerator(back, back_tok, back_stop)),
            "chat_template": bool(back_tok.chat_template),
            "stop_ids": back_stop,
        }
        require(report, f"the merged model at {out_dir}", exact=True)
        if self.opts.push_to_hub:
            back.push_to_hub(self.opts.push_to_hub, private=True)
            back_tok.push_to_hub(self.opts.push_to_hub, private=True)
            report["pushed_to"] = self.opts.push_to_hub
        return report

    def summary(self, report: dict) -> str:
        return f"merged -> {report['path']} (greedy output same as tuned: {report['same_greedy_output']})"
