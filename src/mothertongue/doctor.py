"""Check a recipe's base model before a long run: tokenizer, chat template, loss mask, stopping, GGUF.

    mothertongue doctor recipes/quickstart.yaml
    mothertongue doctor my.yaml base_model=/models/Qwen2.5-7B-Instruct --gguf   # also ask llama.cpp's converter

Renders a few conversations (the recipe's ingested ones when `ingest` has run, else built-in German
ones, with the recipe's system prompt) through the same code the build stage uses, and checks what
silently spoils a fine-tune: a vocabulary-less tokenizer, a template that fails or moves text
between turns, trained spans that do not decode back to the assistant texts, a chat-time prompt that
is not the token prefix of the training text, an end-of-turn token that is not one token, a pad
token equal to EOS/end-of-turn. Prints one table; exits 1 when a check fails (2 for a bad recipe).
GGUF convertibility (llama.cpp knows the architecture and the tokenizer's pre-tokenizer) is a
warning only: it matters for export, not for training.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mothertongue.config import Recipe

SAMPLES = [
    [("Hallo! Wie geht es dir?", "Mir geht es gut, danke.  Und dir?")],
    [("Nenne drei Farben.", "Rot, Grün und Blau."), ("Und zwei Tiere?", "Hund und Katze.\nMehr nicht.")],
    [("Was kostet ein Brötchen in München?", "Etwa 50 Cent — je nach Bäckerei: Öl, Äpfel, Übermut.")],
]


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail, skip
    detail: str


def sample_conversations(recipe: Recipe, n: int = 5) -> list[list[dict]]:
    """Up to n conversations from the run's ingest output, else the built-in samples; each with
    the system prompt build would give it."""
    from mothertongue import mix
    from mothertongue.conversation import read_conversations

    convs: list[tuple[str, list[dict]]] = []
    ingested = Path(recipe.run_dir) / "ingest" / "train.jsonl"
    if ingested.exists():
        for c in read_conversations(ingested)[:n]:
            if any(m.role == "assistant" for m in c.messages):
                convs.append((c.id, [{"role": m.role, "content": m.content} for m in c.messages]))
    if not convs:
        for k, turns in enumerate(SAMPLES):
            convs.append((f"sample-{k}", [{"role": r, "content": t} for q, a in turns
                                           for r, t in (("user", q), ("assistant", a))]))
    out = []
    for cid, msgs in convs:
        sp = mix.system_for(cid, [], recipe.build, recipe.language)
        out.append(([{"role": "system", "content": sp}] if sp and msgs[0]["role"] != "system" else []) + msgs)
    return out


def _trained_runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    from mothertongue.encoding import IGNORE

    runs, cur = [], []
    for i, lab in zip(ids, labels):
        if lab != IGNORE:
            cur.append(i)
        elif cur:
            runs.append(cur)
            cur = []
    return runs + ([cur] if cur else [])


@dataclass
class TrainedExample:
    """One training example as build makes it, and what its loss mask trains."""

    messages: list[dict]
    ids: list[int]
    labels: list[int]
    answers: list[str]  # the assistant texts this example is meant to train, in order
    trained: list[list[int]]  # the runs of trained token ids, in order
    prefix_ok: bool  # the chat-time prompt of every trained answer is the token prefix of ids


@dataclass
class MaskReport:
    examples: list[TrainedExample]
    per_turn: str | None  # build.PER_TURN or PER_TURN_TOKENS where built one example per answer
    problems: list[str]  # trained spans that are not exactly an answer and its end-of-turn token


def mask_report(tokenizer, messages: list[dict], build, eot_id: int) -> MaskReport:
    """Build one conversation the way the build stage does (one example per answer where the
    template or tokenizer needs it) and check its loss mask: every trained span decodes to its
    assistant text and ends with the end-of-turn token, once; the chat-time prompt is a token
    prefix. Raises templates.TemplateRenderError when the template rejects the conversation and
    TemplateMismatch when neither way fits."""
    from mothertongue import templates
    from mothertongue.encoding import (
        PER_TURN,
        PER_TURN_TOKENS,
        BoundaryMismatch,
        encode,
        encode_per_turn,
        generation_prefix_ok,
    )

    try:
        ids, labels, _ = encode(tokenizer, messages, build.loss_on)
        built, per_turn = [(messages, ids, labels)], None
    except templates.TemplateRenderError:
        raise
    except templates.TemplateMismatch as e:
        per_turn = PER_TURN_TOKENS if isinstance(e, BoundaryMismatch) else PER_TURN
        built = encode_per_turn(tokenizer, messages, build, Counter(), per_turn)
    last_only = per_turn is not None or build.loss_on == "last_assistant"
    examples, problems = [], []
    for m, ids, labels in built:
        answers = [x["content"] for x in m if x["role"] == "assistant"]
        answers = answers[-1:] if last_only else answers
        runs = _trained_runs(ids, labels)
        examples.append(TrainedExample(m, ids, labels, answers, runs,
                                       generation_prefix_ok(tokenizer, m, ids, only_last=last_only)))
        if build.loss_on == "all":
            continue
        got = [(r[-1] == eot_id and eot_id not in r[:-1], tokenizer.decode(r[:-1]).strip()) for r in runs]
        if got != [(True, a.strip()) for a in answers]:
            problems.append(f"trained {[g[1][:40] for g in got]} for {[a[:40] for a in answers]}")
    return MaskReport(examples, per_turn, problems)


def check_template(tokenizer, convs: list[list[dict]], recipe: Recipe) -> list[Check]:
    """Template, mask, prefix and end-of-turn checks on the sample conversations."""
    from mothertongue import templates
    from mothertongue.models import stop_token_ids

    checks = []
    eot = templates.end_of_turn_token(tokenizer)
    eot_ids = tokenizer(eot, add_special_tokens=False)["input_ids"] if eot else []
    stops = stop_token_ids(tokenizer, eot)
    if not eot or len(eot_ids) != 1 or eot_ids[0] not in stops:
        checks.append(Check("end of turn", "fail", f"{eot!r} is not one token of the vocabulary ({eot_ids}); "
                            "generation could not stop at it"))
        return checks
    checks.append(Check("end of turn", "ok", f"{eot!r} = id {eot_ids[0]}; chat stops at ids {stops}"))
    behaviour = templates.describe(tokenizer)
    has_system = any(c[0]["role"] == "system" for c in convs)
    notes = behaviour.notes(system_prompt=has_system)
    warn = behaviour.default_system and not has_system
    checks.append(Check("template", "warn" if warn else "ok",
                        f"system prompt: {behaviour.system}" + ("; " + "; ".join(notes) if notes else "")))
    bad_mask, bad_prefix, per_turn, rejected = [], [], set(), []
    for k, msgs in enumerate(convs):
        try:
            rep = mask_report(tokenizer, msgs, recipe.build, eot_ids[0])
        except templates.TemplateRenderError as e:
            rejected.append(f"conversation {k + 1}: {str(e).splitlines()[0][:80]}")
            continue
        except templates.TemplateMismatch as e:
            bad_prefix.append(f"conversation {k + 1}: {e}")
            continue
        if rep.per_turn:
            per_turn.add(rep.per_turn.split(":")[0])
        bad_mask += [f"conversation {k + 1}: {p}" for p in rep.problems]
        if not all(ex.prefix_ok for ex in rep.examples):
            bad_prefix.append(f"conversation {k + 1}: the chat-time prompt tokenizes differently")
    n = len(convs)
    if rejected:
        checks.append(Check("renders", "fail" if len(rejected) == n else "warn",
                            f"{len(rejected)}/{n} rejected by the template (" + rejected[0] + ")"))
    else:
        checks.append(Check("renders", "ok", f"{n}/{n} sample conversations"))
    how = "; ".join(sorted(per_turn))
    checks.append(Check("mask", "fail" if bad_mask else "ok", bad_mask[0] if bad_mask else
                        "trained spans decode to the assistant texts, each ending with its end-of-turn token"
                        + (f" ({how})" if how else "")))
    checks.append(Check("prefix", "fail" if bad_prefix else "ok", bad_prefix[0] if bad_prefix else
                        "the chat-time prompt is the token prefix of every trained answer"))
    return checks


def check_pad(tokenizer) -> Check:
    from mothertongue import templates
    from mothertongue.models import stop_token_ids

    stops = stop_token_ids(tokenizer, templates.end_of_turn_token(tokenizer))
    pad = tokenizer.pad_token
    if pad is not None and tokenizer.pad_token_id not in stops:
        return Check("pad token", "ok", f"{pad!r} (id {tokenizer.pad_token_id}) is not a stop token")
    why = "none set" if pad is None else f"{pad!r} is EOS/end-of-turn"
    return Check("pad token", "ok", f"{why}; training adds a dedicated <|pad|> so padding never masks the end of a turn")


def check_architecture(base: str, trust_remote_code: bool) -> list[Check]:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(base, trust_remote_code=trust_remote_code)
    arch = (getattr(cfg, "architectures", None) or [type(cfg).__name__])[0]
    try:
        from ctranslate2.converters.transformers import _MODEL_LOADERS

        ct2 = type(cfg).__name__ in _MODEL_LOADERS
    except ImportError:
        ct2 = False
    return [Check("architecture", "ok", f"{arch} ({cfg.model_type})"),
            Check("ctranslate2", "ok" if ct2 else "warn",
                  "has a converter" if ct2 else f"no CTranslate2 converter for {type(cfg).__name__}: export --format ct2 will refuse")]


# Asks llama.cpp's own converter, in a subprocess (it imports its own gguf-py): does it have a model
# class for the architecture, and which pre-tokenizer name does it give this tokenizer.
_GGUF_PROBE = r"""
import json, sys
from pathlib import Path
checkout, model = Path(sys.argv[1]), Path(sys.argv[2])
sys.path[0:0] = [str(checkout), str(checkout / "gguf-py")]
from transformers import AutoConfig
arch = (AutoConfig.from_pretrained(model).architectures or ["?"])[0]
out = {"arch": arch}
cls = None
try:
    from conversion import get_model_class
    from conversion.base import TextModel
    cls = get_model_class(arch)
except ImportError:
    import convert_hf_to_gguf as m
    TextModel = getattr(m, "TextModel", None) or m.Model
    try:
        cls = TextModel.from_model_architecture(arch)
    except NotImplementedError:
        pass
except NotImplementedError:
    pass
out["arch_ok"] = cls is not None
if cls is not None:
    import gguf
    out["gguf_arch"] = gguf.MODEL_ARCH_NAMES.get(getattr(cls, "model_arch", None))
if (model / "tokenizer.model").exists():
    out["pre"] = "sentencepiece"
else:
    try:
        from mothertongue.models import load_tokenizer  # OLMo-2's folder needs its declared class
        out["pre"] = TextModel.get_vocab_base_pre(None, load_tokenizer(str(model)))
    except NotImplementedError:
        out["pre"] = None
print(json.dumps(out))
"""


def stripping_tokens(tokenizer) -> list[str]:
    """Special tokens of the chat template that swallow the whitespace next to them (rstrip/lstrip,
    as Phi-3's <|end|>): Transformers does, a GGUF's tokenizer does not, so the prompts differ."""
    tmpl = getattr(tokenizer, "chat_template", None) or ""
    return [t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
            if (getattr(t, "rstrip", False) or getattr(t, "lstrip", False)) and t.content in tmpl]


def check_gguf(base: str, fetch: bool, log=print, tokenizer=None) -> Check:
    """Whether llama.cpp's converter knows the architecture and the pre-tokenizer, and whether
    the GGUF's tokenizer can reproduce the prompts (no whitespace-stripping special tokens)."""
    from mothertongue.export import find_llama_cpp, gguf_pre_tokenizer
    from mothertongue.models import load_tokenizer

    if not fetch:
        return Check("gguf", "skip", "pass --gguf to ask llama.cpp's converter (fetched once, ~77 MB, if not cached)")
    stripping = stripping_tokens(tokenizer or load_tokenizer(base))
    if stripping:
        return Check("gguf", "warn", f"{', '.join(stripping[:3])} strip the whitespace next to them in Transformers, "
                     "not in a GGUF tokenizer: its prompts would differ from training (export refuses)")
    if not Path(base).is_dir():
        from huggingface_hub import snapshot_download

        base = snapshot_download(base, allow_patterns=["*.json", "*.model", "*.txt", "*.jinja"])
    checkout = find_llama_cpp(None, log=log)
    proc = subprocess.run([sys.executable, "-c", _GGUF_PROBE, str(checkout), str(base)], capture_output=True, text=True)
    if proc.returncode != 0:
        return Check("gguf", "warn", f"could not ask llama.cpp's converter: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if not res["arch_ok"]:
        return Check("gguf", "warn", f"llama.cpp's converter has no model class for {res['arch']}")
    from mothertongue.export.gguf import transformers_reads_gguf

    if res.get("gguf_arch") and not transformers_reads_gguf(res["gguf_arch"]):
        return Check("gguf", "warn", f"llama.cpp converts {res['arch']}, but Transformers cannot load a "
                     f"{res['gguf_arch']} GGUF back, so export cannot check the file and refuses")
    if res["pre"] is None:
        named = gguf_pre_tokenizer(Path(base))
        if named:
            return Check("gguf", "ok", f"{res['arch']}; pre-tokenizer hash unknown to llama.cpp, written as {named!r}")
        return Check("gguf", "warn", "llama.cpp does not know this tokenizer's pre-tokenizer (hash not in its list); "
                     "GGUF export would refuse")
    return Check("gguf", "ok", f"{res['arch']}, pre-tokenizer {res['pre']!r}")


def run_checks(recipe: Recipe, gguf: bool = False, log=print) -> list[Check]:
    from mothertongue.build import prepare_tokenizer
    from mothertongue.conversation import DataError
    from mothertongue.models import TINY

    convs = sample_conversations(recipe)
    checks = []
    try:
        tokenizer, tmpl = prepare_tokenizer(recipe, convs)
    except (DataError, OSError, ValueError) as e:
        return [Check("tokenizer", "fail", str(e).splitlines()[0])]
    n = len(tokenizer)
    tiny = recipe.base_model == TINY
    checks.append(Check("tokenizer", "ok" if tiny or n > 1000 else "fail",
                        f"{type(tokenizer).__name__}, {n} tokens, template {tmpl.name}" + (
                            "" if tiny or n > 1000 else ": a folder without vocabulary files loads like this; "
                            "training on it would learn nothing")))
    if checks[-1].status == "fail":
        return checks
    checks += check_template(tokenizer, convs, recipe)
    checks.append(check_pad(tokenizer))
    if not tiny:
        checks += check_architecture(recipe.base_model, recipe.train.trust_remote_code)
        checks.append(check_gguf(recipe.base_model, gguf, log, tokenizer))
    return checks


def table(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}
    return "\n".join(f"{c.name:<{width}}  {mark[c.status]}  {c.detail}" for c in checks)


def doctor(recipe: Recipe, gguf: bool = False, log=print) -> int:
    """Run the checks, print the table; 1 when a check failed, else 0."""
    checks = run_checks(recipe, gguf, log)
    log(f"doctor: {recipe.base_model}\n" + table(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    log(f"\n{len(failed)} check(s) failed: {', '.join(failed)}; fix these before training" if failed
        else "\nready to train" + (" (see the warnings)" if any(c.status == "warn" for c in checks) else ""))
    return 1 if failed else 0
