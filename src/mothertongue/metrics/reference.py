"""Reference-based scores with sacreBLEU: exact match, chrF and BLEU.

    from mothertongue.metrics.reference import exact_match, chrf, bleu
    chrf(["Rot, Grün und Blau."], ["Rot, Grün und Blau."])   # 100.0

Corpus-level chrF and BLEU as sacreBLEU computes them (its default tokenizer, `13a`), so numbers
are comparable with published ones; exact match compares with whitespace normalised.
"""

from __future__ import annotations


def exact_match(hyp: str, ref: str) -> bool:
    return " ".join(hyp.split()) == " ".join(ref.split())


def exact_match_rate(hyps: list[str], refs: list[str]) -> float:
    return sum(exact_match(h, r) for h, r in zip(hyps, refs)) / len(refs) if refs else 0.0


def chrf(hyps: list[str], refs: list[str]) -> float:
    from sacrebleu.metrics import CHRF

    if not hyps:
        return 0.0
    return CHRF().corpus_score(hyps, [refs]).score


def bleu(hyps: list[str], refs: list[str]) -> float:
    from sacrebleu.metrics import BLEU

    if not hyps:
        return 0.0
    return BLEU().corpus_score(hyps, [refs]).score
