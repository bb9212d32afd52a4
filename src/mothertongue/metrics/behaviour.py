"""Behaviour of replies: stopped at end of turn, length, repetition.

    from mothertongue.metrics.behaviour import repetition
    repetition("ja ja ja ja ja ja")   # 0.75: of its 4 word 3-grams, the last 3 repeat the first

`repetition` is the share of a reply's word n-grams (n=3) that already occurred earlier in the
same reply: 0 for varied text, close to 1 for a model stuck in a loop. The per-set `repetition`
is its mean over replies; `repetitive` is the share of replies above `threshold` (0.3).
"""

from __future__ import annotations


def repetition(text: str, n: int = 3) -> float:
    words = text.split()
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return 0.0
    seen, repeats = set(), 0
    for g in grams:
        repeats += g in seen
        seen.add(g)
    return repeats / len(grams)


def behaviour_scores(texts: list[str], ended: list[bool], tokens: list[int], threshold: float = 0.3) -> dict:
    if not texts:
        return {}
    reps = [repetition(t) for t in texts]
    return {
        "ended_at_eot": sum(ended) / len(ended),
        "mean_reply_tokens": sum(tokens) / len(tokens),
        "mean_reply_words": sum(len(t.split()) for t in texts) / len(texts),
        "repetition": sum(reps) / len(reps),
        "repetitive": sum(r > threshold for r in reps) / len(reps),
        "empty": sum(not t.strip() for t in texts) / len(texts),
    }
