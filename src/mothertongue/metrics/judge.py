"""Optional LLM judge: which reply is better, base or tuned? Pairwise, both orders.

    mothertongue evaluate runs/myrun evaluate.judge.enabled=true \
        evaluate.judge.endpoint=http://127.0.0.1:8000/v1 evaluate.judge.model=qwen2.5-7b-instruct --force

The judge is any chat model: loaded locally (`judge.model` a path or hub id) or behind an
OpenAI-compatible endpoint (`judge.endpoint`, key read from `judge.api_key_env`). Each prompt is
asked twice with the replies swapped (A/B), because judges favour a position; a side wins only if
it wins both times, otherwise it is a tie. Answers that are not A, B or T count as unparsable.
"""

from __future__ import annotations

import json
import os
import urllib.request

TEMPLATE = (
    "You compare two assistant replies to the same user message. The user expects a reply in "
    "{language}. Judge helpfulness, correctness and fluent, natural {language}.\n\n"
    "User message:\n{prompt}\n\nReply A:\n{a}\n\nReply B:\n{b}\n\n"
    "Which reply is better? Answer with one letter only: A, B, or T for a tie."
)


def parse_verdict(text: str) -> str | None:
    t = text.strip().lstrip("*#:([ \"'").upper()
    return t[0] if t[:1] in ("A", "B", "T") else None


class EndpointJudge:
    def __init__(self, endpoint: str, model: str, api_key: str | None):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model, self.key = model, api_key
        self.name = f"{model} at {endpoint}"

    def ask(self, prompts: list[str]) -> list[str]:
        out = []
        for p in prompts:
            body = json.dumps({"model": self.model, "messages": [{"role": "user", "content": p}],
                               "temperature": 0, "max_tokens": 4}).encode()
            req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
            if self.key:
                req.add_header("Authorization", f"Bearer {self.key}")
            with urllib.request.urlopen(req, timeout=120) as r:
                out.append(json.loads(r.read())["choices"][0]["message"]["content"] or "")
        return out


class LocalJudge:
    def __init__(self, name: str, trust_remote_code: bool = False):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mothertongue.models import stop_token_ids

        self.tok = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        self.model = AutoModelForCausalLM.from_pretrained(name, trust_remote_code=trust_remote_code, use_safetensors=True).eval()
        self.stop = stop_token_ids(self.tok)
        self.name = name

    def ask(self, prompts: list[str]) -> list[str]:
        from mothertongue.generation import generate

        return [r.text for r in generate(self.model, self.tok, [[{"role": "user", "content": p}] for p in prompts],
                                         self.stop, do_sample=False, max_new_tokens=4)]


def judge_pairwise(gens: list[dict], recipe, judge=None) -> dict:
    """Counts of tuned wins, base wins, ties and unparsable verdicts over the suite prompts."""
    from mothertongue.metrics.fidelity import language_name

    cfg = recipe.evaluate.judge
    try:
        if judge is None:
            if cfg.endpoint:
                judge = EndpointJudge(cfg.endpoint, cfg.model or "default", os.environ.get(cfg.api_key_env))
            elif cfg.model:
                judge = LocalJudge(cfg.model, recipe.train.trust_remote_code)
            else:
                return {"error": "evaluate.judge.enabled needs judge.model (local) or judge.endpoint"}
    except OSError as e:
        return {"error": f"judge could not be loaded: {str(e).splitlines()[0]}"}
    base = {(g["set"], g["id"]): g for g in gens if g["model"] == "base"}
    pairs = [(g, base[(g["set"], g["id"])]) for g in gens if g["model"] == "tuned" and (g["set"], g["id"]) in base]
    pairs = [p for p in pairs if p[0]["set"].startswith("prompts-")] or pairs  # open prompts first: no reference to copy
    pairs = pairs[: cfg.max_prompts]
    lang = language_name(recipe.language)
    asks = []
    for t, b in pairs:
        asks.append(TEMPLATE.format(language=lang, prompt=t["prompt"], a=t["reply"], b=b["reply"]))  # tuned is A
        asks.append(TEMPLATE.format(language=lang, prompt=t["prompt"], a=b["reply"], b=t["reply"]))  # tuned is B
    try:
        answers = judge.ask(asks)
    except OSError as e:  # endpoint down, refused, timed out
        return {"error": f"judge request failed: {e}"}
    counts = {"judge": judge.name, "n": len(pairs), "tuned": 0, "base": 0, "tie": 0, "invalid": 0}
    for i in range(len(pairs)):
        first, second = parse_verdict(answers[2 * i]), parse_verdict(answers[2 * i + 1])
        if first is None or second is None:
            counts["invalid"] += 1
        elif first == "A" and second == "B":
            counts["tuned"] += 1
        elif first == "B" and second == "A":
            counts["base"] += 1
        else:
            counts["tie"] += 1
    return counts
