"""Training throughput: the reference setup (as LLaMa2lang runs it on CPU) against our default.

    python benchmarks/train.py                   # ~40M-param Llama, 96 examples per run
    python benchmarks/train.py --examples 200 --json out.json

Both runs train the same locally built ~40M-parameter Llama-architecture model (LoRA r=64 on all
linear layers) for one epoch on the same synthetic chat data with a skewed length distribution
(log-normal, median ~150 tokens, a tail past 512):

  reference  TRL SFT, float32, batch 4 padded to the longest with length grouping, loss on all tokens
  ours       `mothertongue train` defaults for the hardware found: bf16 autocast where the CPU/GPU
             has native bf16, padding-free batches of 4, loss on assistant tokens only

Each run is its own subprocess so peak memory (max RSS, or CUDA peak) is its own. The two setups
alternate for --rounds rounds (default 2) and each is judged by its fastest run: a shared machine's
speed drifts over minutes (the same 2048^2 bf16 matmul measured 410 and 210 GFLOP/s ten minutes
apart here), and contention only ever slows a run down. Printed: every run, then the ratio of the
best runs and of each round's pair. Per run: real
(non-padding) tokens/s, model-FLOPs utilisation against a matrix-multiply peak measured in the same
run for the precision used, peak memory, last training loss and a dev loss both runs share
(assistant tokens of 16 held-out examples, evaluated in fp32), and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

SYLLABLES = "ba be bi bo da de di do ka ke ki ko la le li lo ma me mi mo na ne ni no ra re ri ro sa se si so ta te ti to".split()
ARCH = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=10, num_attention_heads=8, vocab=16000)


def words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3))) for _ in range(n))


def make_data(n: int, seed: int) -> list[list[dict]]:
    """Chats whose token lengths are log-normal (median ~150, tail past 512)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        total = min(900, max(24, int(rng.lognormvariate(math.log(150), 0.6))))
        q = max(4, int(total * rng.uniform(0.2, 0.5)) // 2)  # ~2 tokens per word
        a = max(4, (total - 2 * q) // 2)
        out.append([{"role": "user", "content": words(rng, q)}, {"role": "assistant", "content": words(rng, a)}])
    return out


def setup(n: int, seed: int = 0):
    from mothertongue import templates
    from mothertongue.config import TinyModelConfig
    from mothertongue.encoding import encode
    from mothertongue.models import build_tiny_model, train_tiny_tokenizer

    chats = make_data(n + 16, seed)
    t = templates.resolve("chatml", None)
    tok = train_tiny_tokenizer([m["content"] for c in chats for m in c], ARCH["vocab"], t.special_tokens)
    templates.install(t, tok)
    rows = []
    for c in chats:
        ids, labels, _ = encode(tok, c)
        rows.append((ids[:1024], labels[:1024]))
    cfg = TinyModelConfig(
        hidden_size=ARCH["hidden_size"], intermediate_size=ARCH["intermediate_size"],
        num_hidden_layers=ARCH["num_hidden_layers"], num_attention_heads=ARCH["num_attention_heads"],
        vocab_size=ARCH["vocab"], max_position_embeddings=1024,
    )
    model = build_tiny_model(cfg, tok, seed)
    return tok, model, rows[:n], rows[n:]


def matmul_peak(dtype_name: str) -> float:
    """GFLOP/s of a 2048^2 matrix multiply in this process (best of 5), the MFU denominator."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    a = torch.randn(2048, 2048, dtype=dtype, device=dev)
    b = torch.randn(2048, 2048, dtype=dtype, device=dev)
    best = 0.0
    for _ in range(5):
        a @ b
        if dev == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(3):
            a @ b
        if dev == "cuda":
            torch.cuda.synchronize()
        best = max(best, 3 * 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
    return best


def dev_loss(model, dev_rows) -> float:
    """Mean loss on assistant tokens of held-out examples, fp32, identical for both runs."""
    import torch

    model.eval()
    tot, n = 0.0, 0
    with torch.no_grad():
        for ids, labels in dev_rows:
            x = torch.tensor([ids], device=model.device)
            y = torch.tensor([labels], device=model.device)
            logits = model(input_ids=x, use_cache=False).logits.float()
            lp = torch.nn.functional.cross_entropy(logits[0, :-1], y[0, 1:], ignore_index=-100, reduction="sum")
            tot += lp.item()
            n += int((y[0, 1:] != -100).sum())
    return tot / max(n, 1)


def one_run(which: str, n: int, out_dir: Path) -> dict:
    import torch
    from datasets import Dataset

    from mothertongue.config import Recipe

    tok, model, rows, dev_rows = setup(n)
    n_params = sum(p.numel() for p in model.parameters())
    if which == "reference":
        from peft import LoraConfig
        from trl import SFTConfig, SFTTrainer

        # LLaMa2lang: text rows, loss on every token, fp32, padded batches grouped by length.
        ds = Dataset.from_dict({"input_ids": [r[0] for r in rows]})
        args = SFTConfig(
            output_dir=str(out_dir / which), num_train_epochs=1, per_device_train_batch_size=4,
            learning_rate=2e-4, lr_scheduler_type="cosine", warmup_steps=0.03, logging_steps=5,
            save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(),
            train_sampling_strategy="group_by_length", max_length=1024, disable_tqdm=True, seed=0,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                             peft_config=LoraConfig(r=64, lora_alpha=128, lora_dropout=0.05,
                                                    target_modules="all-linear", task_type="CAUSAL_LM"))
        precision = "fp32"
    else:
        from mothertongue.config import TrainConfig
        from mothertongue.training.trainers import build_trainer

        recipe = Recipe(train=TrainConfig(adapter="lora", lora_r=64, lora_alpha=128, epochs=1, batch_size=4,
                                          learning_rate=2e-4, logging_steps=5, save_steps=10**6))
        recipe.build.max_length = 1024
        model.config.use_cache = False
        ds = Dataset.from_dict({"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]})
        trainer = build_trainer(recipe, model, tok, ds, None, out_dir / which)
        trainer.args.report_to = []
        precision = "bf16" if trainer.args.bf16 else "fp32"
    peak = matmul_peak(precision)
    mem_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # setup: data, tokenizer, model
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    if which == "ours":
        from mothertongue.training.trainers import after_training

        after_training(trainer.model)
    real_tokens = sum(len(r[0]) for r in rows)
    padded = None
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # Frozen base + LoRA: forward 2N and input-gradient 2N FLOPs per token (no weight gradients
    # for frozen weights); the adapters themselves are <5% and left out, as is attention.
    flops = 4 * n_params * real_tokens
    if torch.cuda.is_available():
        mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = trainer.model.float()
    return {
        "run": which,
        "params_M": round(n_params / 1e6, 1),
        "precision": precision,
        "examples": len(rows),
        "real_tokens": real_tokens,
        "padded": padded,
        "seconds": round(elapsed, 1),
        "tokens_per_s": round(real_tokens / elapsed, 1),
        "matmul_peak_gflops": round(peak, 1),
        "mfu": round(flops / elapsed / (peak * 1e9), 3),
        "peak_mem_mib": round(mem),
        "mem_before_train_mib": round(mem_before) if not torch.cuda.is_available() else None,
        "final_train_loss": round(losses[-1], 3) if losses else None,
        "dev_loss": round(dev_loss(model, dev_rows), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=2, help="reference/ours pairs to run, alternating")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--one", choices=["reference", "ours"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path("/tmp/mt_bench_train"))
    a = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if a.one:
        print("RESULT " + json.dumps(one_run(a.one, a.examples, a.out)))
        return
    results = []
    for round_no in range(1, a.rounds + 1):
        for which in ("reference", "ours"):
            r = subprocess.run([sys.executable, __file__, "--one", which, "--examples", str(a.examples),
                                "--out", str(a.out)], capture_output=True, text=True)
            line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
            if r.returncode or not line:
                sys.exit(f"{which} run failed:\n{r.stderr[-3000:]}")
            results.append({"round": round_no, **json.loads(line[0][7:])})
    cols = ["round", "run", "precision", "tokens_per_s", "mfu", "matmul_peak_gflops", "peak_mem_mib",
            "final_train_loss", "dev_loss", "seconds"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    best = {w: max((r for r in results if r["run"] == w), key=lambda r: r["tokens_per_s"]) for w in ("reference", "ours")}
    ref, ours = best["reference"], best["ours"]
    ratio = ours["tokens_per_s"] / ref["tokens_per_s"]
    pairs = [o["tokens_per_s"] / f["tokens_per_s"] for f, o in zip(results[::2], results[1::2])]
    mem = max(r["peak_mem_mib"] for r in results if r["run"] == "ours") / min(
        r["peak_mem_mib"] for r in results if r["run"] == "reference")
    print(f"\n{ref['params_M']}M params, {ref['examples']} examples, {ref['real_tokens']} real tokens per run; "
          f"speed-up {ratio:.2f}x (best run against best run; per round: "
          f"{', '.join(f'{p:.2f}x' for p in pairs)}), peak memory at most {mem:.2f}x of the reference's lowest")
    if a.json:
        a.json.write_text(json.dumps({"results": results, "ratio": ratio, "round_ratios": pairs}, indent=2))


if __name__ == "__main__":
    main()
