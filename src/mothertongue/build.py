"""Build stage: render conversations into token ids and a loss mask with the chat template.

    mothertongue build recipes/quickstart.yaml
    mothertongue build recipes/quickstart.yaml --show 3      # rendered examples, trained tokens marked

Writes `build/{train,dev}.jsonl` (`input_ids`, `labels` with -100 on untrained tokens, and the
source `messages`), `build/tokenizer/` (the tokenizer with the chat template used, plus any
special tokens it needed) and `build/report.json`. Only assistant turns are trained by default,
each through its end-of-turn token, so the tuned model learns to stop. Examples longer than
`build.max_length` are split at turn boundaries or dropped, and always counted once. Tool
calls, tool results and tool schemas are rendered by the chat template's own tool support; with
a template that has none, such conversations are left out and counted. Zero training examples
is an error. How one conversation becomes ids and a mask is `encoding.py`.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from mothertongue import mix, progress, templates
from mothertongue.config import Recipe
from mothertongue.conversation import (
    SPLITS,
    Conversation,
    DataError,
    read_conversations,
    read_pairs,
    split_of,
    write_jsonl,
)
from mothertongue.encoding import (
    IGNORE,
    NO_TOOL_SUPPORT,
    PER_TURN,
    PER_TURN_TOKENS,
    BoundaryMismatch,
    encode_per_turn,
    encode_with_limit,
    generation_prefix_ok,
    to_messages,
)
from mothertongue.fidelity_pairs import base_reply_pairs, fidelity_pairs
from mothertongue.metrics.fidelity import FidelityJudge
from mothertongue.mix import Item
from mothertongue.models import (
    TINY,
    load_base_model,
    load_tokenizer,
    save_tokenizer,
    stop_token_ids,
    train_tiny_tokenizer,
)
from mothertongue.prompts import base_system_prompt, system_for, with_system
from mothertongue.runs import RunDir, atomic_write_json

MIN_VOCAB = 256  # below this a "tokenizer" is special tokens only (a byte-level BPE alone has 256)


def prepare_tokenizer(recipe: Recipe, examples: list[list[dict]]):
    """The tokenizer for this run with the chat template installed; trains one for `tiny`."""
    cfg = recipe.build
    if recipe.base_model == TINY:
        spec = cfg.template or "chatml"
        probe = templates.resolve(spec, None, Path(recipe.base_dir))
        contents = [m["content"] for msgs in examples for m in msgs] or ["hallo"]
        tok = train_tiny_tokenizer(contents, recipe.tiny_model.vocab_size, probe.special_tokens)
        templates.install(probe, tok)
        # Second pass: learn merges for the template's own text too, so prompts are short.
        rendered = [templates.render(tok, msgs) for msgs in examples]
        tok = train_tiny_tokenizer(contents + rendered, recipe.tiny_model.vocab_size, probe.special_tokens)
        templates.install(probe, tok)
        return tok, probe
    from mothertongue.vocab.stage import base_model_path

    tok = load_tokenizer(base_model_path(recipe), recipe.train.trust_remote_code)
    if len(tok) < MIN_VOCAB:
        # transformers 5 "loads" a folder without vocabulary files as its special tokens alone
        raise DataError(f"base_model {recipe.base_model}: the tokenizer has only {len(tok)} tokens; the folder has no "
                        "vocabulary file (tokenizer.json, tokenizer.model or vocab.json + merges.txt)")
    tmpl = templates.resolve(cfg.template, tok, Path(recipe.base_dir))
    templates.install(tmpl, tok)
    if tok.pad_token is None or tok.pad_token_id in stop_token_ids(tok, templates.end_of_turn_token(tok)):
        # A dedicated pad token, never EOS or end-of-turn (Phi-3.5, SmolLM2 and TinyLlama ship
        # pad = EOS): padding must not mask the token that ends a turn.
        tok.add_special_tokens({"pad_token": "<|pad|>"})
    return tok, tmpl


def build_rows(tokenizer, items: list[Item], recipe: Recipe, counts: Counter,
               bar: progress.Task | None = None) -> list[dict]:
    """Encode (id, messages, tools) items into training rows; too-long ones are split or dropped,
    conversations with tools are left out when the template cannot render them; all counted."""
    rows = []
    tool_support: bool | None = None  # probed once, on the first conversation that needs it
    for item_id, msgs, tools in items:
        if bar is not None:
            bar.advance()
        if templates.uses_tools(msgs, tools):
            if tool_support is None:
                tool_support = templates.supports_tools(tokenizer)
            if not tool_support:
                counts[NO_TOOL_SUPPORT] += 1
                continue
        per_turn = False
        try:
            try:
                pieces = encode_with_limit(tokenizer, msgs, recipe.build, counts, tools)
            except templates.TemplateMismatch as e:
                reason = PER_TURN_TOKENS if isinstance(e, BoundaryMismatch) else PER_TURN
                pieces, per_turn = encode_per_turn(tokenizer, msgs, recipe.build, counts, reason, tools), True
        except templates.TemplateRenderError as e:
            # e.g. Llama-2 and Mistral refuse a conversation whose roles do not alternate
            counts[f"skipped: the chat template rejects it ({str(e).splitlines()[0][:100]})"] += 1
            continue
        except DataError as e:
            raise DataError(f"conversation {item_id}: {e}") from None
        for k, (m, ids, labels) in enumerate(pieces):
            if not generation_prefix_ok(tokenizer, m, ids, tools, only_last=per_turn):
                counts["generation prompt tokenizes differently from training prefix"] += 1
            if all(x == IGNORE for x in labels):
                counts["dropped: no trained tokens"] += 1
                continue
            row = {"id": item_id if len(pieces) == 1 else f"{item_id}#{k}", "input_ids": ids, "labels": labels, "messages": m}
            if tools:
                row["tools"] = tools
            rows.append(row)
    return rows


def conversation_items(convs: list[Conversation], recipe: Recipe) -> list[Item]:
    return [(c.id, to_messages(c, system_for(c.id, c.tags, recipe.build, recipe.language)), c.tools)
            for c in convs]


def run(recipe: Recipe, rundir: RunDir, out: Path) -> dict:
    data = rundir.data_dir(recipe, "build")
    train = read_conversations(data / "train.jsonl")
    dev = read_conversations(data / "dev.jsonl")
    test = read_conversations(data / "test.jsonl")
    if not train:
        raise DataError(f"{data / 'train.jsonl'}: no training conversations; check ingest's report")
    parts, mix_report, raw_text = mix.parts(recipe, rundir, conversation_items(train, recipe), train)
    dev_items = conversation_items(dev, recipe)
    everything = [m for items in parts.values() for _, m, _ in items] + [m for _, m, _ in dev_items]
    everything += [m for _, m, _ in conversation_items(test, recipe)]
    tokenizer, tmpl = prepare_tokenizer(recipe, everything + [[{"role": "user", "content": t}] for t in raw_text])

    counts: Counter[str] = Counter()
    train_rows, realised = [], {}
    total = sum(len(items) for items in parts.values()) + len(dev_items)
    with progress.task("build", total=total, unit="conversations") as bar:
        for part, items in parts.items():
            rows = build_rows(tokenizer, items, recipe, counts, bar)
            realised[part] = {"examples": len(rows), "tokens": sum(len(r["input_ids"]) for r in rows)}
            train_rows += rows
        random.Random(recipe.seed).shuffle(train_rows)
        if not train_rows:
            reasons = ", ".join(f"{n} x {k}" for k, n in counts.most_common(3)) or "no conversations"
            raise DataError(f"build: 0 training examples from {sum(len(v) for v in parts.values())} conversations "
                            f"({reasons}); nothing to train on")
        dev_counts: Counter[str] = Counter()
        dev_rows = build_rows(tokenizer, dev_items, recipe, dev_counts, bar)
    write_jsonl(out / "train.jsonl", train_rows)
    write_jsonl(out / "dev.jsonl", dev_rows)
    n_pref, fidelity = write_preferences(recipe, data, out, tokenizer, tmpl.end_of_turn)
    if raw_text:
        mix.write_text_rows(out / "text.jsonl", raw_text)
    tok_dir = out / "tokenizer"
    save_tokenizer(tokenizer, tok_dir)
    info = {"template": tmpl.name, "end_of_turn": tmpl.end_of_turn, "language": recipe.language,
            "system_prompt": base_system_prompt(recipe.build, recipe.language), "styles": recipe.build.styles}
    (tok_dir / RunDir.TEMPLATE_INFO).write_text(json.dumps(info, indent=2, ensure_ascii=False))
    n_tokens = sum(len(r["input_ids"]) for r in train_rows)
    n_trained = sum(sum(1 for x in r["labels"] if x != IGNORE) for r in train_rows)
    for part in realised.values():
        part["share_examples"] = part["examples"] / max(1, len(train_rows))
        part["share_tokens"] = part["tokens"] / max(1, n_tokens)
    summary = {
        "template": tmpl.name,
        "train_examples": len(train_rows),
        "dev_examples": len(dev_rows),
        "preference_pairs": n_pref,  # by split
        **({"fidelity_pairs": fidelity} if recipe.build.fidelity_pairs != "off" else {}),  # outcome per conversation
        "raw_text_pieces": len(raw_text),
        "tokens": n_tokens,
        "trained_tokens": n_trained,
        "longest": max((len(r["input_ids"]) for r in train_rows), default=0),
        "mix": {"realised": realised, **mix_report},
        "counts": dict(counts),
        "dev_counts": dict(dev_counts),
    }
    behaviour = templates.describe(tokenizer)
    notes = behaviour.notes(system_prompt=bool(base_system_prompt(recipe.build, recipe.language)))
    summary["template_behaviour"] = {**asdict(behaviour), "notes": notes}
    atomic_write_json(out / "report.json", summary)
    mix_line = ", ".join(f"{k} {v['examples']} ({v['share_examples']:.0%} of examples, {v['share_tokens']:.0%} of tokens)"
                         for k, v in realised.items())
    print(
        f"[build] {len(train_rows)} train / {len(dev_rows)} dev examples with template {tmpl.name}; "
        f"{n_tokens} tokens, {n_trained} trained\n  mix: {mix_line}"
        + (f"\n  preference pairs: {n_pref['train']} train, {n_pref['dev']} dev, {n_pref['test']} test"
           if sum(n_pref.values()) else "")
        + (f"\n  {len(raw_text)} raw native text pieces for continued pretraining" if raw_text else "")
        + "".join(f"\n  {n} x {k}" for k, n in counts.items())
        + "".join(f"\n  template: {note}" for note in notes)
    )
    return summary


def write_preferences(recipe: Recipe, data: Path, out: Path, tokenizer=None,
                      end_of_turn: str | None = None) -> tuple[dict[str, int], dict[str, int]]:
    """Preference pairs for DPO/ORPO, with the same system prompt as the SFT data, split like the
    conversations (ingest.dev_fraction / test_fraction, by a hash of the pair id):
    `preference.jsonl` trains, `preference_dev.jsonl` is evaluated during training,
    `preference_test.jsonl` is held out. With `build.fidelity_pairs`, conversations add fidelity
    pairs (fidelity_pairs.py) in their own split; the base model's replies need `tokenizer` (with
    the run's chat template). Returns the pairs per split and the fidelity-pair outcomes."""
    src = data / "pairs.jsonl"
    split_pairs = [(split_of(p, recipe.ingest.dev_fraction, recipe.ingest.test_fraction), p)
                   for p in (read_pairs(src) if src.exists() else [])]  # fmt: skip
    fidelity: Counter[str] = Counter()
    mode = recipe.build.fidelity_pairs
    convs = {s: read_conversations(data / f"{s}.jsonl") if (data / f"{s}.jsonl").exists() else [] for s in SPLITS}
    if mode in ("original", "both"):
        for split in SPLITS:
            made, counts = fidelity_pairs(convs[split], recipe.language)
            split_pairs += [(split, p) for p in made]
            fidelity.update({f"original: {k}": n for k, n in counts.items()} if mode == "both" else counts)
    if mode in ("base_model", "both"):
        replies = base_model_replies(recipe, tokenizer, end_of_turn)
        asked = 0

        def answer(prompts: list) -> list[str]:  # counts what was asked: the cap is over all splits
            nonlocal asked
            asked += len(prompts)
            return replies(prompts)

        detect = FidelityJudge(recipe.language, recipe.evaluate.fidelity_languages).detect  # evaluate's detector
        for split in SPLITS:
            left = recipe.build.fidelity_max_prompts - asked
            made, counts = base_reply_pairs(convs[split], recipe.language, answer, detect, left)
            split_pairs += [(split, p) for p in made]
            fidelity.update({f"base model: {k}": n for k, n in counts.items()} if mode == "both" else counts)
    rows: dict[str, list] = {s: [] for s in SPLITS}
    for split, p in split_pairs:
        sp = system_for(p.id, [], recipe.build, recipe.language)
        prompt = with_system([{"role": m.role, "content": m.content} for m in p.prompt], sp)
        rows[split].append({"id": p.id, "prompt": prompt, "chosen": p.chosen, "rejected": p.rejected})
    write_jsonl(out / "preference.jsonl", rows["train"])
    for split in ("dev", "test"):
        if rows[split]:
            write_jsonl(out / f"preference_{split}.jsonl", rows[split])
    return {k: len(v) for k, v in rows.items()}, dict(fidelity)


def base_model_replies(recipe: Recipe, tokenizer, end_of_turn: str | None):
    """prompts -> the base model's greedy replies, as chat shows it the prompts (the run's system
    prompt first); the model is loaded on the first call."""
    from mothertongue.generation import generate

    loaded: list = []

    def answer(prompts: list[list]) -> list[str]:
        if not loaded:
            loaded.append(load_base_model(recipe, tokenizer).eval())
        model = loaded[0]
        sp = base_system_prompt(recipe.build, recipe.language)
        convs = [with_system([{"role": m.role, "content": m.content} for m in p], sp) for p in prompts]
        with progress.task("build: base-model replies", total=len(convs), unit="prompts") as bar:
            replies = generate(model, tokenizer, convs, stop_token_ids(tokenizer, end_of_turn), batch_size=8,
                               on_batch=bar.advance, max_new_tokens=recipe.build.fidelity_max_new_tokens,
                               do_sample=False)
        return [r.text for r in replies]

    return answer


def show(run_dir: Path, n: int, color: bool) -> str:
    """Render n built examples with the trained tokens marked (green, or ⟦…⟧ without colour)."""
    from transformers import AutoTokenizer

    build_dir = RunDir(run_dir).require("build", "build --show")
    tok = AutoTokenizer.from_pretrained(build_dir / "tokenizer")
    out = []
    with open(build_dir / "train.jsonl", encoding="utf-8") as f:
        for i, line in zip(range(n), f):
            row = json.loads(line)
            parts, cur, cur_trained = [], [], None
            for t, lab in zip(row["input_ids"], row["labels"]):
                trained = lab != IGNORE
                if cur_trained is not None and trained != cur_trained:
                    parts.append((cur_trained, tok.decode(cur)))
                    cur = []
                cur.append(t)
                cur_trained = trained
            if cur:
                parts.append((cur_trained, tok.decode(cur)))
            text = "".join(
                (f"\x1b[42;30m{s}\x1b[0m" if color else f"⟦{s}⟧") if tr else s for tr, s in parts
            )
            n_tr = sum(1 for x in row["labels"] if x != IGNORE)
            out.append(f"── example {i + 1}: {row['id']}  ({len(row['input_ids'])} tokens, {n_tr} trained)\n{text}")
    legend = "trained tokens are " + ("highlighted in green" if color else "inside ⟦ ⟧")
    return "\n\n".join(out + [legend])
