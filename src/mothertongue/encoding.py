"""Encoding one conversation: token ids and a loss mask from the chat template.

    ids, labels, spans = encode(tokenizer, messages)            # every assistant turn trained
    rows = encode_with_limit(tokenizer, messages, cfg, counts)  # split at turns past max_length

The build stage (`build.py`) calls these per conversation; doctor, vision training and the train
benchmark call `encode` directly. Only assistant turns are trained by default, each through its
end-of-turn token, so the tuned model learns to stop.
"""

from __future__ import annotations

import hashlib
from collections import Counter

from mothertongue import templates
from mothertongue.conversation import Conversation
from mothertongue.prompts import with_system

IGNORE = -100

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

