"""Translation throughput: the reference approach vs our `transformers` and `ctranslate2` engines.

    python benchmarks/translate.py                 # ~5-10 min on 2 CPU cores
    python benchmarks/translate.py --messages 12   # quicker, noisier

Builds a random-weight model with the real `Helsinki-NLP/opus-mt-en-de` MarianConfig (74M
parameters, 58101-token vocabulary; no hub needed) and a message set with a skewed length
distribution (many short chat turns, a tail of 300+ token ones). Random weights do not stop by
themselves, so every system is forced to produce, for each batch, exactly as many tokens as the
batch's longest source (`min = max` new tokens): only the engine and its batching differ.

Systems (messages/s and source tokens/s, ratio to the reference):
  reference        Transformers `generate`, beam 4, batches of 10 in data order (as LLaMa2lang does)
  transformers     our engine: length-sorted batches under a token budget; beam 4 and greedy
  ctranslate2      our engine: converted once, int8, length-sorted token-budget batches; beam 4 and greedy
Then the translation memory on a set with repeated segments: translating every segment vs
translating each distinct one once through the memory, and a rerun that finds everything there.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path


def build_model(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

    vocab = {"</s>": 0, "<unk>": 1}
    for i in range(2, 58100):
        vocab[f"w{i}"] = i
    vocab["<pad>"] = 58100
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    # The config of Helsinki-NLP/opus-mt-en-de.
    cfg = MarianConfig(
        vocab_size=58101, decoder_vocab_size=58101, d_model=512, encoder_layers=6, decoder_layers=6,
        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048,
        max_position_embeddings=512, activation_function="swish", scale_embedding=True,
        pad_token_id=58100, eos_token_id=0, decoder_start_token_id=58100, forced_eos_token_id=0,
        share_encoder_decoder_embeddings=True, num_beams=4, max_length=512,
    )  # fmt: skip
    torch.manual_seed(0)
    model = MarianMTModel(cfg)
    with torch.no_grad():
        model.get_input_embeddings().weight[58100].zero_()
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters", flush=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)


def messages(n: int, seed: int = 0) -> list[str]:
    """Skewed lengths: most chat turns short, a tail of 300+ tokens (like OpenAssistant)."""
    rng = random.Random(seed)
    lengths = [min(400, max(4, int(rng.lognormvariate(3.2, 0.9)))) for _ in range(n)]
    for i in rng.sample(range(n), max(1, n // 12)):
        lengths[i] = rng.randint(300, 400)
    return [" ".join(f"w{rng.randint(2, 58099)}" for _ in range(k)) for k in lengths]


def reference(model_dir: Path, msgs: list[str]) -> float:
    import torch
    from transformers import AutoTokenizer, MarianMTModel

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = MarianMTModel.from_pretrained(model_dir).eval()
    t0 = time.perf_counter()
    for i in range(0, len(msgs), 10):  # batches of 10 in data order, beam 4
        enc = tok(msgs[i : i + 10], return_tensors="pt", padding=True)
        n = enc["input_ids"].shape[1]
        with torch.inference_mode():
            model.generate(**enc, num_beams=4, min_new_tokens=n, max_new_tokens=n)
    return time.perf_counter() - t0


def ours(engine: str, model_dir: Path, msgs: list[str], beam: int, cache: Path) -> float:
    from mothertongue.engines import load_engine

    opts = {"force_length": True, "max_new_tokens" if engine == "transformers" else "max_decoding_length": 512}
    if engine == "ctranslate2":
        opts["cache_dir"] = str(cache)
    eng = load_engine(engine, str(model_dir), "cpu", opts)
    eng.translate(msgs[:2], "en", "de", beam)  # warm-up (and conversion), not timed
    t0 = time.perf_counter()
    eng.translate(msgs, "en", "de", beam)
    return time.perf_counter() - t0


def memory_effect(model_dir: Path, cache: Path, tmp: Path) -> list[tuple[str, float, int]]:
    from mothertongue.engines import load_engine
    from mothertongue.engines.memory import Memory

    rng = random.Random(1)
    distinct = [" ".join(f"w{rng.randint(2, 58099)}" for _ in range(rng.randint(5, 30))) for _ in range(60)]
    segs = [rng.choice(distinct) for _ in range(240)]  # every segment repeated ~4 times
    eng = load_engine("ctranslate2", str(model_dir), "cpu", {"force_length": True, "cache_dir": str(cache)})
    t0 = time.perf_counter()
    eng.translate(segs, "en", "de", 1)
    rows = [("every segment translated", time.perf_counter() - t0, len(segs))]
    mem = Memory(tmp / "tm.sqlite")
    for label in ("through the memory (distinct once)", "rerun: all from the memory"):
        t0 = time.perf_counter()
        have = mem.get_many("ct2", "m", "en", "de", set(segs))
        todo = sorted(set(segs) - set(have))
        mem.put_many("ct2", "m", "en", "de", zip(todo, eng.translate(todo, "en", "de", 1), ["ok"] * len(todo)))
        out = mem.get_many("ct2", "m", "en", "de", set(segs))
        assert all(s in out for s in segs)
        rows.append((label, time.perf_counter() - t0, len(todo)))
    mem.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=72)
    args = ap.parse_args()
    import os

    import torch

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        build_model(tmp / "m")
        msgs = messages(args.messages)
        ntok = sum(len(m.split()) + 1 for m in msgs)
        print(f"{len(msgs)} messages, {ntok} source tokens (max {max(len(m.split()) for m in msgs)}); "
              f"torch threads {torch.get_num_threads()}, cpus {os.cpu_count()}", flush=True)  # fmt: skip
        rows = [("reference: HF generate, beam 4, batches of 10 in data order", reference(tmp / "m", msgs))]
        print(f"  {rows[-1][0]}: {rows[-1][1]:.1f}s", flush=True)
        for engine in ("transformers", "ctranslate2"):
            for beam in (4, 1):
                label = f"ours: {engine}, beam {beam}" + (" (default)" if beam == 1 else "")
                rows.append((label, ours(engine, tmp / "m", msgs, beam, tmp / "ct2")))
                print(f"  {label}: {rows[-1][1]:.1f}s", flush=True)
        ref = rows[0][1]
        print("\n| system | messages/s | tokens/s | vs reference |\n|---|---:|---:|---:|")
        for label, secs in rows:
            print(f"| {label} | {len(msgs) / secs:.2f} | {ntok / secs:.0f} | {ref / secs:.1f}x |")
        print("\n| translation memory (240 segments, 60 distinct; ctranslate2 greedy) | seconds | translated |\n|---|---:|---:|")
        for label, secs, n in memory_effect(tmp / "m", tmp / "ct2", tmp):
            print(f"| {label} | {secs:.2f} | {n} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
