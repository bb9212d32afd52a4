"""The CPU LM-head loss: ours against TRL's own chunked loss, head only, forward + backward.

    python benchmarks/train_loss.py                  # 700 positions x 16k vocab, hidden 512, bf16 autocast
    python benchmarks/train_loss.py --positions 1400 --trained 0.5 --precision fp32

TRL (>= 1.x) computes the SFT loss through `ChunkedLogProbFunction` (`loss_type="nll"`, of which
`"chunked_nll"` is now an alias): on CUDA/XPU a Triton kernel on the trained positions only; on CPU
torch tiles over every position, with entropy and top-1 on the side. Each variant runs in its own
subprocess so peak memory (max RSS above the process's baseline after setup) is its own:

  trl_sft       what SFTTrainer runs on CPU: every position, log_probs + entropy + is_top1
  trl_compact   TRL's function given only the trained positions, log_probs + is_top1
  ours          `training.cpu.loss.chunked_loss` (trained positions, gradient taken in the forward)
  autograd      plain cross-entropy on the trained positions' full logits, for reference

Printed: the best of --repeats timed steps per variant, the loss, and the largest gradient difference
from `autograd`.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VARIANTS = ("trl_sft", "trl_compact", "ours", "autograd")


def one(variant: str, a: argparse.Namespace) -> dict:
    import torch

    torch.manual_seed(0)
    hidden = torch.randn(a.positions, a.hidden) * 0.5
    weight = torch.randn(a.vocab, a.hidden) * 0.02
    target = torch.randint(0, a.vocab, (a.positions,))
    trained = torch.rand(a.positions) < a.trained
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def step():
        h = hidden.clone().requires_grad_()
        w = weight.clone().requires_grad_(a.train_head)
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            if variant == "trl_sft":
                from trl.kernels import ChunkedLogProbFunction

                lp = ChunkedLogProbFunction.apply(h, w, None, target.masked_fill(~trained, 0), 1.0, 32768, None, 1.0,
                                                  ("log_probs", "entropy", "is_top1"))[0]
                loss = -(lp * trained).sum()
            elif variant == "trl_compact":
                from trl.kernels import ChunkedLogProbFunction

                lp = ChunkedLogProbFunction.apply(h[trained], w, None, target[trained], 1.0, 32768, None, 1.0,
                                                  ("log_probs", "is_top1"))[0]
                loss = -lp.sum()
            elif variant == "ours":
                from mothertongue.training.cpu.loss import fused_head_loss

                loss = fused_head_loss(h[trained], w, None, target[trained])[0]
            else:
                z = torch.nn.functional.linear(h[trained], w).float()
                loss = torch.nn.functional.cross_entropy(z, target[trained], reduction="sum")
        loss.backward()
        return loss.item(), h.grad, w.grad

    times = []
    for _ in range(a.repeats):
        t = time.perf_counter()
        loss, gh, gw = step()
        times.append(time.perf_counter() - t)
    torch.save({"gh": gh, "gw": gw}, f"{a.tmp}/{variant}.pt")
    return {"variant": variant, "best_s": round(min(times), 4), "loss": round(loss, 3),
            "peak_mem_above_setup_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--positions", type=int, default=700)
    ap.add_argument("--trained", type=float, default=0.6, help="share of positions whose label counts")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=16000)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--train-head", action="store_true", help="the head's weight trains too (full fine-tuning)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", default="/tmp")
    a = ap.parse_args()
    if a.one:
        import torch

        torch.set_num_threads(1)
        print("RESULT " + json.dumps(one(a.one, a)))
        return
    rows = []
    for v in VARIANTS:
        r = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", v], capture_output=True, text=True)
        line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
        if r.returncode or not line:
            sys.exit(f"{v} failed:\n{r.stderr[-3000:]}")
        rows.append(json.loads(line[0][7:]))
    import torch

    ref = torch.load(f"{a.tmp}/autograd.pt")
    print("| variant | best s/step | loss | peak MiB above setup | max abs grad diff vs autograd (hidden) |")
    print("|---|---|---|---|---|")
    for r in rows:
        g = torch.load(f"{a.tmp}/{r['variant']}.pt")
        diff = (g["gh"].float() - ref["gh"].float()).abs().max().item()
        print(f"| {r['variant']} | {r['best_s']} | {r['loss']} | {r['peak_mem_above_setup_mib']} | {diff:.2e} |")


if __name__ == "__main__":
    main()
