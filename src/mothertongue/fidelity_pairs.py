"""Fidelity preference pairs: prefer the answer in the target language over one in another.

    mothertongue build recipe.yaml build.fidelity_pairs=original     # then train.method=dpo (or orpo)
    mothertongue build recipe.yaml build.fidelity_pairs=base_model   # or both

The translate stage keeps every conversation's original messages (`meta.source_messages`). For a
translated conversation this makes a pair for free (`original`): the prompt is the translated
conversation up to its last assistant turn, *chosen* is the translated answer, *rejected* the
original answer in the source language. With `base_model`, the base model answers each prompt
itself, and where the language detector says its reply is in another language, that reply is
the rejected one: the mistake this model actually makes, on any target-language data, translated
or not. Preference tuning on such pairs teaches the model to stay in the target language, the
top complaint after fine-tuning (answers that drift back into English).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

from mothertongue.conversation import Conversation, Message, PreferencePair


def fidelity_pair(conv: Conversation, target: str) -> tuple[PreferencePair | None, str]:
    """(the pair, "made") or (None, the reason there is none)."""
    source = conv.meta.get("source_messages")
    if not source or len(source) != len(conv.messages):
        return None, "not translated"
    last = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=None)
    if last is None:
        return None, "no assistant turn"
    original = source[last]
    lang = (original.get("lang") or conv.meta.get("source_lang") or "").lower()
    if not lang or lang == target:
        return None, "original already in the target language"
    if original["content"] == conv.messages[last].content:
        return None, "answer passed through unchanged"
    prompt = [Message(m.role, m.content, m.lang) for m in conv.messages[:last]]
    if not prompt or prompt[-1].role != "user":
        return None, "no user turn before the answer"
    pair = PreferencePair(f"{conv.id}#fidelity", prompt, conv.messages[last].content, original["content"], target,
                          conv.source, {"kind": "fidelity", "rejected_lang": lang})  # fmt: skip
    return pair, "made"


def fidelity_pairs(convs: Iterable[Conversation], target: str) -> tuple[list[PreferencePair], Counter]:
    """Pairs from every conversation that has one, and a count per outcome (they add up to the
    number of conversations seen)."""
    pairs, counts = [], Counter()
    for conv in convs:
        pair, why = fidelity_pair(conv, target)
        counts[why] += 1
        if pair is not None:
            pairs.append(pair)
    return pairs, counts


def _prompt_and_answer(conv: Conversation) -> tuple[list[Message], str] | None:
    last = max((i for i, m in enumerate(conv.messages) if m.role == "assistant"), default=None)
    if last is None or last == 0 or conv.messages[last - 1].role != "user":
        return None
    return [Message(m.role, m.content, m.lang) for m in conv.messages[:last]], conv.messages[last].content


def base_reply_pairs(
    convs: Iterable[Conversation], target: str, answer: Callable[[list[list[Message]]], list[str]],
    detect: Callable[[str], str | None], max_prompts: int,
) -> tuple[list[PreferencePair], Counter]:
    """Pairs whose rejected side is the base model's own reply in another language. `answer` gives
    the base model's replies to prompts (in one call, so it can batch), `detect` a reply's language
    (None: cannot tell). Counts one outcome per conversation; they add up to the conversations seen."""
    counts: Counter = Counter()
    asked: list[tuple[Conversation, list[Message], str]] = []
    for conv in convs:
        found = _prompt_and_answer(conv)
        if found is None:
            counts["no user turn before the last answer"] += 1
        elif (conv.lang or target) != target:
            counts["conversation not in the target language"] += 1
        elif len(asked) >= max_prompts:
            counts["not asked (build.fidelity_max_prompts)"] += 1
        else:
            asked.append((conv, *found))
    pairs = []
    replies = answer([prompt for _, prompt, _ in asked]) if asked else []
    for (conv, prompt, chosen), reply in zip(asked, replies, strict=True):
        lang = detect(reply)
        if lang is None:
            counts["base reply: language undetermined"] += 1
        elif lang == target:
            counts["base reply already in the target language"] += 1
        else:
            counts["made (base model's reply)"] += 1
            pairs.append(PreferencePair(f"{conv.id}#fidelity-base", prompt, chosen, reply, target, conv.source,
                                        {"kind": "fidelity", "rejected_from": "base_model", "rejected_lang": lang}))
    return pairs, counts
