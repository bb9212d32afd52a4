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
is an error.
"""

from __future__ import annotations

import hashlib
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
from mothertongue.fidelity_pairs import fidelity_pairs
from mothertongue.mix import Item
from mothertongue.models import (
    TINY,
    load_tokenizer,
    save_tokenizer,
    stop_token_ids,
    train_tiny_tokenizer,
)
from mothertongue.prompts import base_system_prompt, system_for, with_system
from mothertongue.runs import RunDir, atomic_write_json

IGNORE = -100
MIN_VOCAB = 256  # below this a "tokenizer" is special tokens only (a byte-level BPE alone has 256)


NO_TOOL_SUPPORT = "dropped: uses tools, and the chat template has no tool support"


def to_messages(conv: Conversation, system_prompt: str | None) -> list[dict]:
    """Chat-template messages. Tool calls get ids where the data has none (some templates,
    Mistral's, require them) and each tool result the id of the call it answers."""
    msgs = []
    pending: list[str] = []
    for k, m in enumerate(conv.messages):
        d = {"role": m.role, "content": m.content}
        if m.tool_calls:
            d["tool_calls"] = [c if c.get("id") else {**c, "id": _call_id(conv.id, k, j)}
                               for j, c in enumerate(m.tool_calls)]
            pending = [c["id"] for c in d["tool_calls"]]
        elif m.role == "tool" and pending:
            d["tool_call_id"] = pending.pop(0)
        msgs.append(d)
    return with_system(msgs, system_prompt)


def _call_id(conv_id: str, message: int, call: int) -> str:
    """A stable 9-character alphanumeric call id (the shape Mistral's template demands)."""
    return hashlib.sha1(f"{conv_id}\x1f{message}\x1f{call}".encode()).hexdigest()[:9]


def encode(
    tokenizer, messages: list[dict], loss_on: str = "assistant", tools: list[dict] | None = None
) -> tuple[list[int], list[int], list[int]]:
    """Token ids, labels (-100 where not trained) and a 0/1 trained mask, built side by side.

    loss_on `chat_time_last`: the last answer only, after exactly the prompt chat shows
    (templates.chat_time_span), for templates that render a turn differently once more follow."""
    if loss_on == "chat_time_last":
        text, span = templates.chat_time_span(tokenizer, messages, tools)
        spans = [span]
    else:
        text, spans = templates.assistant_spans(tokenizer, messages, tools, "last" if loss_on == "last_assistant" else "all")
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if spans and not all(_starts_with(ids, tokenizer(text[:s], add_special_tokens=False)["input_ids"]) for s, _ in spans):
        # The tokenizer merges the end of a chat-time prompt with the answer after it (a BPE whose
        # regex joins "\n\n" + word differently from "\n\n" alone): cut the tokens where chat cuts.
        if len(spans) > 1:
            raise BoundaryMismatch("the tokenizer merges the end of a generation prompt with the answer")
        ids, offsets = _tokenize_cut(tokenizer, text, spans[0][0])
    mask = []
    for start, end in offsets:
        trained = loss_on == "all" or any(s <= start < e or (start == end == s) for s, e in spans)
        mask.append(1 if trained else 0)
    labels = [t if m else IGNORE for t, m in zip(ids, mask)]
    return ids, labels, mask


class BoundaryMismatch(templates.TemplateMismatch):
    pass


def _starts_with(ids: list[int], prefix: list[int]) -> bool:
    return ids[: len(prefix)] == prefix


def _tokenize_cut(tokenizer, text: str, cut: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of `text` with a token boundary at `cut`: the prompt tokenized alone, as chat does."""
    a = tokenizer(text[:cut], add_special_tokens=False, return_offsets_mapping=True)
    b = tokenizer(text[cut:], add_special_tokens=False, return_offsets_mapping=True)
    return a["input_ids"] + b["input_ids"], list(a["offset_mapping"]) + [(x + cut, y + cut) for x, y in b["offset_mapping"]]


def generation_prefix_ok(
    tokenizer, messages: list[dict], ids: list[int], tools: list[dict] | None = None, only_last: bool = False
) -> bool:
    """True when, for every assistant turn (or the last one), the tokens of the chat-time prompt are
    exactly the first tokens of the training example (otherwise the tuned model sees a prompt it
    never saw)."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    for i in turns[-1:] if only_last else turns:
        prompt = templates.render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if ids[: len(p_ids)] != p_ids:
            return False
    return True


def _exchanges(messages: list[dict]) -> tuple[list[dict], list[list[dict]]]:
    """(system part, exchanges): each exchange is a user turn and everything up to the next one
    (the answer, and any tool calls and results on the way)."""
    system = messages[:1] if messages[0]["role"] == "system" else []
    out: list[list[dict]] = []
    for m in messages[len(system):]:
        if m["role"] == "user" or not out:
            out.append([])
        out[-1].append(m)
    return system, out


def encode_with_limit(
    tokenizer, messages: list[dict], cfg, counts: Counter, tools: list[dict] | None = None
) -> list[tuple[list[dict], list[int], list[int]]]:
    """The example, or its pieces cut at turn boundaries (each keeping the system message) when
    it is longer than build.max_length. A conversation is counted once: split, or dropped."""
    ids, labels, _ = encode(tokenizer, messages, cfg.loss_on, tools)
    if len(ids) <= cfg.max_length:
        return [(messages, ids, labels)]
    if cfg.on_too_long == "drop":
        counts["dropped: longer than build.max_length"] += 1
        return []

    def fits(msgs: list[dict]) -> bool:
        return len(encode(tokenizer, msgs, cfg.loss_on, tools)[0]) <= cfg.max_length

    system, exchanges = _exchanges(messages)
    out: list[list[dict]] = []
    current: list[dict] = []
    lost = 0
    for ex in exchanges:
        candidate = current + ex if current else system + ex
        if fits(candidate):
            current = candidate
            continue
        if current:
            out.append(current)
        current = system + ex if fits(system + ex) else []
        lost += not current
    if current:
        out.append(current)
    if not out:
        counts["dropped: a single turn longer than build.max_length"] += 1
        return []
    counts["split at turn boundaries"] += 1
    if lost:
        counts["turns left out of split conversations (a single turn longer than build.max_length)"] += lost
    result = []
    for msgs in out:
        c_ids, c_labels, _ = encode(tokenizer, msgs, cfg.loss_on, tools)
        result.append((msgs, c_ids, c_labels))
    return result


PER_TURN = ("built as one example per answer, each after exactly its chat-time prompt: the template renders "
            "a turn differently once more follow (Mistral v0.3 writes the system prompt into the last user turn only)")
PER_TURN_TOKENS = ("built as one example per answer: the tokenizer merges the end of the chat-time prompt with "
                   "the answer after it, so each answer follows exactly the prompt tokens chat gives")


def encode_per_turn(
    tokenizer, messages, cfg, counts: Counter, reason: str = PER_TURN, tools: list[dict] | None = None
) -> list[tuple[list[dict], list[int], list[int]]]:
    """One example per assistant turn, each the conversation up to that turn with only that turn
    trained: for templates whose rendering of a turn depends on the turns after it, this is
    exactly the prompt chat shows the model before each answer."""
    out = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        ids, labels, _ = encode(tokenizer, messages[: i + 1], "chat_time_last", tools)
        if len(ids) > cfg.max_length:
            counts["dropped: a single turn longer than build.max_length"] += 1
            continue
        out.append((messages[: i + 1], ids, labels))
    counts[reason] += 1
    return out


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
    n_pref, fidelity = write_preferences(recipe, data, out)
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
        **({"fidelity_pairs": fidelity} if recipe.build.fidelity_pairs else {}),  # outcome per conversation
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


def write_preferences(recipe: Recipe, data: Path, out: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Preference pairs for DPO/ORPO, with the same system prompt as the SFT data, split like the
    conversations (ingest.dev_fraction / test_fraction, by a hash of the pair id):
    `preference.jsonl` trains, `preference_dev.jsonl` is evaluated during training,
    `preference_test.jsonl` is held out. With `build.fidelity_pairs`, each translated conversation
    adds a pair (its translated answer over the original one) in the conversation's own split.
    Returns the pairs per split and the fidelity-pair outcomes."""
    src = data / "pairs.jsonl"
    split_pairs = [(split_of(p, recipe.ingest.dev_fraction, recipe.ingest.test_fraction), p)
                   for p in (read_pairs(src) if src.exists() else [])]  # fmt: skip
    fidelity: Counter[str] = Counter()
    if recipe.build.fidelity_pairs:
        for split in SPLITS:
            path = data / f"{split}.jsonl"
            made, counts = fidelity_pairs(read_conversations(path) if path.exists() else [], recipe.language)
            split_pairs += [(split, p) for p in made]
            fidelity.update(counts)
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
