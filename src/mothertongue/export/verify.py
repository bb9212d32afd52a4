"""One verification for every export: the exported model generates next to the model it was made
from, and the report says how alike they are.

    ref = Reference.of(HFGenerator(merged, tok, stop_ids), prompts)
    report = compare(ref, CT2Generator(ct2_generator, tok, stop_ids))
    require(report, "ct2-int8 export", exact=False)

Three measurements on the probe prompts: greedy replies (up to `max_new_tokens`, stopping at the
end of turn), FORCED_TOKENS greedy tokens with the end of turn masked (a reply that stops at once
would hide any difference between two models, forced tokens do not), and how often both models
pick the same next token at every position along the reference's forced tokens (teacher-forced,
so one early flip does not count as many). A generator is any object with `greedy`, `forced` and
`next_token_choices`; Transformers, CTranslate2 and llama.cpp are implemented here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

from mothertongue.generation import generate, prompt_ids
from mothertongue.runs import StageError

FORCED_TOKENS = 16
MAX_NEW_TOKENS = 32
# Below this share of same next-token choices an export is garbage, not a lossy copy: the lossy
# exports measured (CTranslate2 int8, GGUF q8_0, GPTQ/AWQ 4-bit of the tiny test models) agree on
# 90-100 %, a broken conversion (wrong weights or vocabulary) picks the reference's token about
# as often as an unrelated model does, far below half.
AGREEMENT_FLOOR = 0.5

Prompts = list[list[dict]]
Seqs = list[tuple[list[int], list[int]]]


class Generator(Protocol):
    """What verification needs of a model: greedy replies, forced greedy ids, next-token choices."""

    def greedy(self, prompts: Prompts, max_new_tokens: int) -> list[str]: ...

    def forced(self, prompts: Prompts, n: int) -> list[list[int]]: ...

    def next_token_choices(self, seqs: Seqs) -> list[list[int]] | None:
        """The token the model picks next at every position of each continuation, teacher-forced
        along prompt + continuation; None where the runtime cannot say."""


class HFGenerator:
    """A Transformers causal LM (merged safetensors, or a GGUF/GPTQ file loaded back)."""

    def __init__(self, model: Any, tokenizer: Any, stop_ids: list[int]):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids

    def greedy(self, prompts: Prompts, max_new_tokens: int) -> list[str]:
        reps = generate(
            self.model,
            self.tokenizer,
            prompts,
            self.stop_ids,
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
        )
        return [r.text for r in reps]

    def forced(self, prompts: Prompts, n: int) -> list[list[int]]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        for p in prompts:
            ids = torch.tensor([prompt_ids(self.tokenizer, p)], device=device)
            # min_new_tokens masks the stop tokens until n tokens are out.
            with torch.no_grad():
                g = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    do_sample=False,
                    num_beams=1,
                    max_new_tokens=n,
                    min_new_tokens=n,
                    eos_token_id=self.stop_ids,
                    pad_token_id=self.tokenizer.pad_token_id or 0,
                )
            out.append(g[0, ids.shape[1] :].tolist())
        return out

    def next_token_choices(self, seqs: Seqs) -> list[list[int]]:
        import torch

        out = []
        device = next(self.model.parameters()).device
        for p, c in seqs:
            with torch.no_grad():
                logits = self.model(input_ids=torch.tensor([p + c], device=device)).logits
            out.append(logits[0, len(p) - 1 : len(p) + len(c) - 1].argmax(-1).tolist())
        return out


class CT2Generator:
    """A CTranslate2 Generator with the tokenizer saved next to it."""

    def __init__(self, generator: Any, tokenizer: Any, stop_ids: list[int]):
        self.gen, self.tokenizer, self.stop_ids = generator, tokenizer, stop_ids
        self.end_tokens = [tokenizer.convert_ids_to_tokens(i) for i in stop_ids]

    def _batch(self, prompts: Prompts) -> list[list[str]]:
        return [
            self.tokenizer.convert_ids_to_tokens(prompt_ids(self.tokenizer, p)) for p in prompts
        ]

    def greedy(self, prompts: Prompts, max_new_tokens: int) -> list[str]:
        results = self.gen.generate_batch(
            self._batch(prompts),
            max_length=max_new_tokens,
            sampling_topk=1,
            beam_size=1,
            include_prompt_in_result=False,
            end_token=self.end_tokens,
        )
        return [
            self.tokenizer.decode(
                [i for i in r.sequences_ids[0] if i not in self.stop_ids], skip_special_tokens=True
            ).strip()
            for r in results
        ]

    def forced(self, prompts: Prompts, n: int) -> list[list[int]]:
        results = self.gen.generate_batch(
            self._batch(prompts),
            max_length=n,
            min_length=n,
            sampling_topk=1,
            beam_size=1,
            include_prompt_in_result=False,
            end_token=self.end_tokens,
        )
        return [r.sequences_ids[0][:n] for r in results]

    def next_token_choices(self, seqs: Seqs) -> list[list[int]]:
        import numpy as np

        out = []
        for p, c in seqs:
            logits = np.asarray(self.gen.forward_batch([p + c]))
            out.append(logits[0, len(p) - 1 : len(p) + len(c) - 1].argmax(-1).tolist())
        return out


class LlamaCppGenerator:
    """llama.cpp itself (llama-cpp-python) on a GGUF file: greedy decoding is the argmax of its
    logits, from prompt ids rendered by the given (reference) tokenizer."""

    def __init__(self, path: str, tokenizer: Any, stop_ids: list[int], n_ctx: int):
        from llama_cpp import Llama

        self.tokenizer, self.stop_ids = tokenizer, stop_ids
        self.llm = Llama(
            model_path=path,
            n_ctx=n_ctx,
            n_batch=n_ctx,
            logits_all=True,
            verbose=False,
            n_threads=max(1, min(4, os.cpu_count() or 1)),
        )

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def _decode(self, prompt: list[int], n: int, allow_stop: bool) -> list[int]:
        import numpy as np

        self.llm.reset()
        self.llm.eval(prompt)
        out: list[int] = []
        while len(out) < n:
            logits = np.array(self.llm.scores[self.llm.n_tokens - 1], dtype=np.float32)
            if not allow_stop:
                logits[self.stop_ids] = -np.inf
            t = int(logits.argmax())
            if allow_stop and t in self.stop_ids:
                break
            out.append(t)
            self.llm.eval([t])
        return out

    def greedy(self, prompts: Prompts, max_new_tokens: int) -> list[str]:
        return [
            self.tokenizer.decode(
                self._decode(prompt_ids(self.tokenizer, p), max_new_tokens, True),
                skip_special_tokens=True,
            ).strip()
            for p in prompts
        ]

    def forced(self, prompts: Prompts, n: int) -> list[list[int]]:
        return [self._decode(prompt_ids(self.tokenizer, p), n, False) for p in prompts]

    def next_token_choices(self, seqs: Seqs) -> list[list[int]]:
        import numpy as np

        out = []
        for p, c in seqs:
            self.llm.reset()
            self.llm.eval(p + c)
            out.append(
                np.asarray(self.llm.scores[len(p) - 1 : len(p) + len(c) - 1]).argmax(-1).tolist()
            )
        return out


@dataclass
class Reference:
    """The model an export is compared with, measured once on the probe prompts."""

    generator: Generator
    prompts: Prompts
    texts: list[str]
    ids: list[list[int]]
    seqs: Seqs  # (prompt ids, forced ids) per prompt: where next-token choices are compared
    choices: list[list[int]] | None
    max_new_tokens: int
    n_forced: int

    @classmethod
    def of(
        cls,
        generator: Any,
        prompts: Prompts,
        max_new_tokens: int = MAX_NEW_TOKENS,
        n_forced: int = FORCED_TOKENS,
    ) -> Reference:
        """Measure `generator` (its `tokenizer` renders the prompts) as the reference."""
        texts = generator.greedy(prompts, max_new_tokens)
        ids = generator.forced(prompts, n_forced)
        seqs = [(prompt_ids(generator.tokenizer, p), c) for p, c in zip(prompts, ids, strict=True)]
        return cls(
            generator,
            prompts,
            texts,
            ids,
            seqs,
            generator.next_token_choices(seqs),
            max_new_tokens,
            n_forced,
        )


def agreement(a: list[list[int]], b: list[list[int]]) -> tuple[int, int]:
    """(positions where both pick the same token, positions)."""
    same = sum(x == y for ra, rb in zip(a, b, strict=True) for x, y in zip(ra, rb, strict=True))
    return same, sum(map(len, a))


def compare(ref: Reference, candidate: Any) -> dict:
    """The export's measurements next to the reference's: the report keys every export shares."""
    texts = candidate.greedy(ref.prompts, ref.max_new_tokens)
    ids = candidate.forced(ref.prompts, ref.n_forced)
    choices = candidate.next_token_choices(ref.seqs)
    share = None
    if choices is not None and ref.choices is not None:
        same, total = agreement(ref.choices, choices)
        share = round(same / total, 4) if total else None
    return {
        "prompts": [p[-1]["content"] for p in ref.prompts],
        "tuned": ref.texts,
        "export": texts,
        "tuned_ids": ref.ids,
        "export_ids": ids,
        "same_greedy_output": texts == ref.texts,
        "same_forced_tokens": ids == ref.ids,
        "prompts_matching": sum(a == b for a, b in zip(texts, ref.texts, strict=True)),
        "token_agreement": share,
    }


def require(report: dict, what: str, exact: bool, floor: float = AGREEMENT_FLOOR) -> None:
    """Fail with one line when an export that must be exact is not, or when a lossy one is garbage
    (next-token agreement under `floor`, or empty replies where the reference answers)."""
    if exact and not (report["same_greedy_output"] and report["same_forced_tokens"]):
        raise StageError(
            f"{what} generates differently from the model it was made from: "
            f"{report['export']} vs {report['tuned']}"
        )
    share = report.get("token_agreement")
    if (share is not None and share < floor) or (
        any(report["tuned"]) and not any(report["export"])
    ):
        raise StageError(
            f"{what} generates garbage: next-token agreement with the merged model {share} "
            f"(floor {floor}), replies {report['export']} vs {report['tuned']}"
        )
