"""`mothertongue mt-bench`: choose an MT model for your language on your own parallel data.

    mothertongue mt-bench dev.tsv --src en --tgt de -m Helsinki-NLP/opus-mt-en-de \
        -m transformers:facebook/nllb-200-distilled-600M --limit 500

The file has one `source<TAB>reference` per line (or is JSONL `{"source", "reference"}`; read by
text.parallel). Each candidate translates every source with the
engine named before its colon (default `--engine`) under the token budget `--batch-tokens` (as
`translate.batch_tokens` in a recipe), and the table shows sacreBLEU BLEU and chrF
against the references, with segments/s and target tokens/s (sacreBLEU's 13a tokens), side by side.
"""

from __future__ import annotations

import time

from mothertongue.conversation import DataError
from mothertongue.engines import DEFAULT_BATCH_TOKENS
from mothertongue.text.parallel import read_parallel


def _options(pairs: list[str] | None) -> dict:
    import yaml

    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise DataError(f"--option {p!r}: expected key=value")
        k, v = p.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def bench(data, models: list[str], src: str, tgt: str, engine: str = "ctranslate2", beam_size: int = 1,
          limit: int | None = None, options: list[str] | None = None, device: str = "auto",
          batch_tokens: int = DEFAULT_BATCH_TOKENS) -> list[dict]:  # fmt: skip
    """One row per candidate: model, engine, BLEU, chrF, segments/s, tokens/s, seconds."""
    import sacrebleu
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    from mothertongue.engines import ENGINES, load_engine

    pairs = read_parallel(data, limit=limit)
    srcs, refs = [p.source for p in pairs], [p.target for p in pairs]
    opts = _options(options)
    rows = []
    for spec in models:
        name, model = spec.split(":", 1) if spec.split(":", 1)[0] in ENGINES else (engine, spec)
        eng = load_engine(name, model, device, opts, batch_tokens=batch_tokens)
        eng.translate(srcs[:2], src, tgt, beam_size)  # warm-up, not timed
        t0 = time.perf_counter()
        hyps = eng.translate(srcs, src, tgt, beam_size)
        secs = time.perf_counter() - t0
        tok13a = Tokenizer13a()
        ntok = sum(len(tok13a(h).split()) for h in hyps)
        rows.append({
            "model": model, "engine": name,
            "bleu": round(sacrebleu.corpus_bleu(hyps, [refs]).score, 2),
            "chrf": round(sacrebleu.corpus_chrf(hyps, [refs]).score, 2),
            "segments_per_s": round(len(srcs) / secs, 2), "tokens_per_s": round(ntok / secs, 1),
            "seconds": round(secs, 2), "segments": len(srcs), "batch_tokens": eng.batch_tokens,
        })  # fmt: skip
    return rows


def format_table(rows: list[dict]) -> str:
    head = f"{'model':<48} {'engine':<13} {'BLEU':>6} {'chrF':>6} {'seg/s':>8} {'tok/s':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model'][-48:]:<48} {r['engine']:<13} {r['bleu']:>6.2f} {r['chrf']:>6.2f} "
            f"{r['segments_per_s']:>8.2f} {r['tokens_per_s']:>8.1f}"
        )
    return "\n".join(lines)
