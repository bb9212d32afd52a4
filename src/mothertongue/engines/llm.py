"""`llm` engine: an instruction-tuned causal LM used as a translator through a prompt.

    mothertongue translate recipe.yaml translate.engine=llm translate.model=Qwen/Qwen2.5-7B-Instruct

Uses vLLM when it is installed (`options.backend=auto`), Transformers `generate` otherwise. The
prompt is rendered with the model's chat template when it has one; the answer is the first
line-block the model produces, stripped. Greedy by default (beam_size is ignored by vLLM).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from mothertongue.engines import Engine, EngineOptions, check_safetensors
from mothertongue.languages import english_name
from mothertongue.precision import torch_dtype

DEFAULT_PROMPT = (
    "Translate the following text from {src_name} to {tgt_name}. Answer with the translation only, "
    "keeping line breaks and anything in backticks unchanged.\n\n{text}"
)


class LLMOptions(EngineOptions):
    backend: Literal["auto", "vllm", "transformers"] = Field("auto", description="auto: vLLM when installed.")
    prompt: str = Field(DEFAULT_PROMPT, description="Prompt with {src_name}, {tgt_name}, {src}, {tgt}, {text}.")
    max_new_tokens: int = Field(512, gt=0, description="Longest translation in tokens.")
    batch_size: int = Field(16, gt=0, description="Prompts per generate call (Transformers backend).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto", description="Model weights dtype.")
    trust_remote_code: bool = Field(False, description="Run model code from the hub.")


class LLMEngine(Engine):
    name = "llm"
    Options = LLMOptions

    def _load(self) -> None:
        from transformers import AutoTokenizer

        check_safetensors(self.model, self.allow_pickle)
        self.tok = AutoTokenizer.from_pretrained(self.model, trust_remote_code=self.opts.trust_remote_code)
        self.tok.padding_side = "left"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        backend = self.opts.backend
        if backend == "auto":
            try:
                import vllm  # noqa: F401

                backend = "vllm"
            except ImportError:
                backend = "transformers"
        self.backend = backend
        if backend == "vllm":
            from vllm import LLM

            self.llm = LLM(self.model, dtype=self.opts.dtype, trust_remote_code=self.opts.trust_remote_code)
        else:
            from transformers import AutoModelForCausalLM

            dtype = torch_dtype(self.opts.dtype, self.device)
            self.net = AutoModelForCausalLM.from_pretrained(
                self.model, dtype=dtype, trust_remote_code=self.opts.trust_remote_code,
                use_safetensors=None if self.allow_pickle else True,
            ).to(self.device).eval()

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def prompt(self, text: str, src: str, tgt: str) -> str:
        body = self.opts.prompt.format(
            src=src, tgt=tgt, text=text, src_name=english_name(src), tgt_name=english_name(tgt)
        )
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template([{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True)
        return body + "\n\n"

    def settings_key(self, beam_size: int) -> str:
        import hashlib

        return f"llm:beam{beam_size}:{hashlib.sha1(self.opts.prompt.encode()).hexdigest()[:8]}"

    def translate(self, texts: list[str], src: str, tgt: str, beam_size: int = 1) -> list[str]:
        import torch

        prompts = [self.prompt(t, src, tgt) for t in texts]
        if self.backend == "vllm":
            from vllm import SamplingParams

            outs = self.llm.generate(prompts, SamplingParams(temperature=0, max_tokens=self.opts.max_new_tokens))
            return [o.outputs[0].text.strip() for o in outs]
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        result = [""] * len(prompts)
        for k in range(0, len(order), self.opts.batch_size):
            idx = order[k : k + self.opts.batch_size]
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
            with torch.inference_mode():
                gen = self.net.generate(
                    **enc, max_new_tokens=self.opts.max_new_tokens, do_sample=False, num_beams=beam_size,
                    pad_token_id=self.tok.pad_token_id,
                )  # fmt: skip
            for i, seq in zip(idx, gen[:, enc["input_ids"].shape[1] :]):
                result[i] = self.tok.decode(seq, skip_special_tokens=True).strip()
        return result
