"""Vision training throughput on the tiny model: the feature cache against re-encoding every step.

    python benchmarks/vision.py                      # 100 steps per stage, batch 16, one thread
    python benchmarks/vision.py --steps 200 --threads 2

Builds everything offline in a temporary folder: the synthetic shapes and tiny CLIP encoder
(`mothertongue.vision.synthetic`), a tiny German text run (ingest, build, train) and the composed
Llava model. Then each configuration trains in its own process (so its peak memory is its own):
stage 1 (projector only) and stage 2 (projector + language model, full), each with the encoder's
features cached (`cache_features: true`, the default: encoded once per image, then read from a
file) and with the images decoded, processed and encoded every step. images/s counts training
images per second of the whole `fit_stage` call, building the cache included; the cache's own
time and size are listed beside it. Memory: the process's RSS before training and its peak while
training (sampled every 5 ms), and the GPU's peak allocation where there is one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TINY = [
    "tiny_model.hidden_size=64",
    "tiny_model.intermediate_size=128",
    "tiny_model.num_hidden_layers=2",
    "tiny_model.num_attention_heads=4",
    "tiny_model.vocab_size=400",
]
RECIPE = """name: shapes
run_dir: {run}
language: de
ingest:
  sources:
    - path: shapes/text.txt
      format: text
build:
  system_prompt: none
train: {{max_steps: 20, adapter: full, learning_rate: 0.003, batch_size: 8}}
evaluate: {{enabled: false}}
vision:
  encoder: shapes/encoder
  captions:
    - path: shapes/captions.csv
  adapter: full
  text_mix: 0
  stage1: {{max_steps: {steps}, learning_rate: 0.003, batch_size: {batch}, save_steps: 100000}}
  stage2: {{max_steps: {steps}, learning_rate: 0.001, batch_size: {batch}, save_steps: 100000}}
"""
CONFIGS = [("1", False), ("1", True), ("2", False), ("2", True)]


class PeakRSS:
    """Samples this process's resident memory every 5 ms while in the `with` block (MB)."""

    def __enter__(self):
        import threading

        self.start = self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> float:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def prepare(folder: Path, steps: int, batch: int) -> Path:
    """Synthetic data and encoder, and a tiny text run up to train; returns the recipe."""
    from mothertongue.config import load_recipe
    from mothertongue.runs import run_stage
    from mothertongue.vision.synthetic import make

    make(folder / "shapes")
    recipe = folder / "shapes.yaml"
    recipe.write_text(RECIPE.format(run=folder / "run", steps=steps, batch=batch), encoding="utf-8")
    r = load_recipe(recipe, TINY)
    with contextlib.redirect_stdout(sys.stderr):  # stdout is the table
        for stage in ("ingest", "build", "train"):
            run_stage(r, stage, log=lambda m: None)
    return recipe


def one(recipe_path: Path, stage: str, cached: bool, out: Path) -> dict:
    """Train one stage in this process; its throughput and peak memory."""
    import torch

    from mothertongue.config import load_recipe
    from mothertongue.runs import RunDir
    from mothertongue.vision.compose import compose
    from mothertongue.vision.data import read_sources
    from mothertongue.vision.train import (
        encode_examples,
        fit_stage,
        freeze_for_stage1,
        unfreeze_for_stage2,
    )

    recipe = load_recipe(recipe_path, TINY)
    model, processor, _ = compose(recipe, RunDir(recipe.run_dir))
    records, _ = read_sources(recipe, recipe.vision.captions)
    examples = encode_examples(records, processor.tokenizer, model.config, None, 512, {})
    (freeze_for_stage1 if stage == "1" else unfreeze_for_stage2)(model)
    cfg = getattr(recipe.vision, f"stage{stage}").model_copy(update={"cache_features": cached})
    built = {}
    with PeakRSS() as watch:
        t = time.perf_counter()
        if cached:  # timed on its own too; fit_stage then finds it (same images, same key)
            from mothertongue.vision.features import build_cache

            refs = [ref for e in examples for ref in e["images"]]
            cache = build_cache(
                model, processor, recipe, refs, out / "features", batch_size=cfg.batch_size
            )
            built = {
                "cache_s": time.perf_counter() - t,
                "cache_mb": (out / "features" / "features.bin").stat().st_size / 1e6,
                "images": len(cache.index),
            }
        _, _, summary = fit_stage(
            recipe, cfg, model, processor, examples, out / "stage", out / "features"
        )
        wall = time.perf_counter() - t
    gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {
        "stage": stage,
        "cached": cached,
        "steps": summary["steps"],
        "images_per_s": summary["steps"] * cfg.batch_size / wall,
        "wall_s": wall,
        "rss_before_mb": watch.start,
        "peak_rss_mb": watch.peak,
        "peak_gpu_mb": gpu,
        "final_loss": summary["final_loss"],
        **built,
    }


def table(rows: list[dict]) -> str:
    base = {r["stage"]: r["images_per_s"] for r in rows if not r["cached"]}
    lines = [
        "| stage | encoder features | images/s | speed-up | wall s | RSS MB: before -> peak | cache (build s, MB) | final loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cache = (
            f"{r['cache_s']:.2f} s, {r['cache_mb']:.2f} MB ({r['images']} images)"
            if r["cached"]
            else "-"
        )
        gpu = f" (GPU {r['peak_gpu_mb']:.0f})" if r["peak_gpu_mb"] is not None else ""
        lines.append(
            f"| {r['stage']} | {'cached' if r['cached'] else 'encoded every step'} | {r['images_per_s']:.0f} | "
            f"{r['images_per_s'] / base[r['stage']]:.2f}x | {r['wall_s']:.1f} | "
            f"{r['rss_before_mb']:.0f} -> {r['peak_rss_mb']:.0f}{gpu} | "
            f"{cache} | {r['final_loss']:.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per stage")
    ap.add_argument("--batch", type=int, default=16, help="images per step")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--one", nargs=3, metavar=("RECIPE", "STAGE", "CACHED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        recipe, stage, cached = args.one
        with tempfile.TemporaryDirectory() as out:
            print(json.dumps(one(Path(recipe), stage, cached == "1", Path(out))))
        return
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        recipe = prepare(Path(tmp), args.steps, args.batch)
        print(
            f"prepared data, encoder and text run in {time.perf_counter() - t:.0f} s",
            file=sys.stderr,
        )
        rows = []
        for stage, cached in CONFIGS:
            cmd = [
                sys.executable,
                __file__,
                "--threads",
                str(args.threads),
                "--one",
                str(recipe),
                stage,
                str(int(cached)),
            ]
            res = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"}
            )
            if res.returncode:
                sys.exit(res.stderr[-3000:])
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(
                f"stage {stage} {'cached' if cached else 'encoded'}: {rows[-1]['images_per_s']:.0f} images/s",
                file=sys.stderr,
            )
    print(
        f"{args.steps} steps x {args.batch} images per configuration, {args.threads} thread(s), "
        f"load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
