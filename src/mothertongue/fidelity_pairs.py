"""Fidelity preference pairs: prefer the answer in the target language over the original.

    mothertongue build recipe.yaml build.fidelity_pairs=true    # then train.method=dpo (or orpo)

The translate stage keeps every conversation's original messages (`meta.source_messages`). For a
translated conversation this makes a pair for free: the prompt is the translated conversation up
to its last assistant turn, *chosen* is the translated answer, *rejected* the original answer in
the source language. Preference tuning on such pairs teaches the model to stay in the target
language, the top complaint after fine-tuning (answers that drift back into English).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

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
