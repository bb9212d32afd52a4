"""Fertility: how many tokens a tokenizer spends per word of a language.

    from mothertongue.vocab.fertility import fertility
    fertility(tokenizer, ["Der Hund schläft im Garten."])
    # {'words': 5, 'tokens': 9, 'fertility': 1.8, 'chars_per_token': 3.0, 'split_3plus': 0.2}

A word is a whitespace-separated piece of text (punctuation stays with its word, as users count
words). Tokens are counted on whole texts without special tokens, so the numbers are what a
training example or a reply really costs. `split_3plus` is the share of words the tokenizer cuts
into three or more tokens in running text (a token counts for the word its last character is in):
the words where a vocabulary for the language helps most.
"""

from __future__ import annotations


def fertility(tokenizer, texts: list[str]) -> dict:
    import bisect
    import re

    texts = [t for t in texts if t.strip()]
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True) if texts else {"input_ids": []}
    n_tokens = sum(len(ids) for ids in enc["input_ids"])
    n_words = long = 0
    for text, offsets in zip(texts, enc.get("offset_mapping", [])):
        spans = [m.span() for m in re.finditer(r"\S+", text)]
        starts = [a for a, _ in spans]
        per_word = [0] * len(spans)
        for start, end in offsets:
            # A token belongs to the word its last character is in (a leading space marker is not).
            k = bisect.bisect_right(starts, max(start, end - 1)) - 1
            if end > start and k >= 0 and spans[k][0] <= end - 1 < spans[k][1]:
                per_word[k] += 1
        n_words += len(spans)
        long += sum(1 for n in per_word if n >= 3)
    n_chars = sum(len(t) for t in texts)
    return {
        "texts": len(texts),
        "words": n_words,
        "tokens": n_tokens,
        "fertility": round(n_tokens / n_words, 4) if n_words else None,
        "chars_per_token": round(n_chars / n_tokens, 4) if n_tokens else None,
        "split_3plus": round(long / n_words, 4) if n_words else None,
    }


def recommend(target: dict, english: dict | None, ratio: float) -> tuple[bool, str]:
    """Whether extending the vocabulary is worth it: the target language needs `ratio` times the
    tokens per word that English needs (or, without English text, `ratio` times 1.3, a typical
    English fertility of the common byte-level and SentencePiece tokenizers)."""
    t = target.get("fertility")
    if not t:
        return False, "no target-language words to measure"
    e = (english or {}).get("fertility") or 1.3
    measured = "English" if english and english.get("fertility") else "a typical English 1.3"
    if t >= ratio * e:
        return True, (f"extend: {t:.2f} tokens per word vs {e:.2f} ({measured}), {t / e:.2f}x >= "
                      f"vocab.recommend_ratio {ratio}; set vocab.enabled: true")
    return False, (f"no need: {t:.2f} tokens per word vs {e:.2f} ({measured}), {t / e:.2f}x < "
                   f"vocab.recommend_ratio {ratio}")


def table(rows: dict[str, dict]) -> str:
    """Markdown table of fertility rows keyed by label."""
    head = "| text | words | tokens | tokens/word | chars/token | words in 3+ tokens |\n|---|---:|---:|---:|---:|---:|"
    lines = [head]
    for label, r in rows.items():
        if not r or not r.get("words"):
            continue
        lines.append(f"| {label} | {r['words']} | {r['tokens']} | {r['fertility']:.3f} | {r['chars_per_token']:.2f} | {r['split_3plus']:.1%} |")
    return "\n".join(lines)
