"""Vocabulary extension: training and generation speed per German word, with and without it.

    python benchmarks/vocab.py                          # TinyLlama's tokenizer, ~20M-param random Llama
    python benchmarks/vocab.py --tokenizer ../shared/models/tokenizers/gpt2 --extension-size 1000

Both runs start from the same locally built Llama-architecture model (random weights, the real
tokenizer of a published family) and run the real pipeline: `ingest -> [vocab] -> build -> train`
(method cpt, full fine-tuning, embeddings trained) for the same number of epochs over the same
German text (tests/fixtures/vocab/de.txt plus the real German sample in ../shared/data/real), then
greedy generation of a fixed number of new tokens. Printed per run: training tokens/s (from the
train stage's summary) and words/s (words of the training text times epochs, over the training
time), generation tokens/s and words/s (tokens/s divided by the tokenizer's fertility on the same
German text, the words a German reply of that many tokens holds), bits per byte of each tuned model
on the held-out German (same epochs, so the extended run took fewer steps), and the ratios. Speed per token
barely changes (a slightly larger embedding matrix); speed per word is where the gain shows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def german_text() -> list[str]:
    texts = [ln for ln in (REPO / "tests/fixtures/vocab/de.txt").read_text(encoding="utf-8").splitlines()
             if ln.strip() and not ln.startswith("#")]
    real = SHARED / "data/real/srogmann_instruct_ger_bsp_1.txt"
    if real.exists():
        texts += [ln.replace("#", " ") for ln in real.read_text(encoding="utf-8").splitlines() if "#" in ln and not ln.startswith("#")]
    return texts


def make_base(tokenizer_dir: Path, out: Path, hidden: int, layers: int) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 3, num_hidden_layers=layers,
                      num_attention_heads=max(1, hidden // 64), max_position_embeddings=1024,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)


def one_run(base: Path, texts_file: Path, held_file: Path, run_dir: Path, extend: bool, args) -> dict:
    from mothertongue.config import load_recipe
    from mothertongue.models import load_model
    from mothertongue.runs import run_stage, stages_for
    from mothertongue.vocab.fertility import fertility

    overrides = [
        f"run_dir={run_dir}", f"base_model={base}", "language=de",
        f"ingest.sources=[{{path: {REPO / 'recipes/data/quickstart_de.txt'}, format: text, options: {{lang: de}}}}]",
        f"build.native=[{{path: {texts_file}}}]", "build.native_as=raw", "build.template=null", "build.max_length=256",
        "build.native_chunk_chars=600", "train.method=cpt", "train.adapter=full", "train.train_embeddings=true",
        f"train.epochs={args.epochs}", "train.batch_size=4", "train.save_steps=100000", "train.logging_steps=50",
        "train.learning_rate=0.001", "evaluate.enabled=false",
        f"vocab.enabled={str(extend).lower()}", f"vocab.extension_size={args.extension_size}",
        f"evaluate.perplexity_file={held_file}",
    ]
    recipe = load_recipe(REPO / "recipes/quickstart.yaml", overrides)
    for s in stages_for(recipe):
        run_stage(recipe, s, log=lambda m: None)
    summary = json.loads((run_dir / "train/manifest.json").read_text())["summary"]
    model, tok, _, _ = load_model(run_dir, "tuned")
    docs = [d for d in texts_file.read_text(encoding="utf-8").split("\n\n") if d.strip()]
    n_words = sum(len(d.split()) for d in docs)
    held = [t for t in held_file.read_text(encoding="utf-8").splitlines() if t.strip()]
    fert = fertility(tok, held)["fertility"]
    gen = time_generation(model, tok, held, args.new_tokens)
    return {
        "run": "extended" if extend else "base tokenizer",
        "vocab": len(tok),
        "fertility": fert,
        "train_tokens": summary["tokens"],
        "train_s": summary["train_runtime_s"],
        "train_tok_s": summary["tokens_per_s"],
        "train_words_s": round(n_words * args.epochs / summary["train_runtime_s"], 1),
        "gen_tok_s": gen,
        "gen_words_s": round(gen / fert, 1),
        "final_loss": summary["final_loss"],
        "run_dir": str(run_dir),
    }


def time_generation(model, tok, prompts: list[str], new_tokens: int, rounds: int = 3) -> float:
    """Greedy tokens/s for batch-1 generation of exactly `new_tokens` tokens; best of `rounds`."""
    import torch

    ids = tok(prompts[0][:120], return_tensors="pt")
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)
        n = out.shape[1] - ids["input_ids"].shape[1]
        best = max(best, n / (time.perf_counter() - t0))
    return round(best, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default=str(SHARED / "models/tokenizers/tinyllama-1.1b-chat-v1.0"))
    ap.add_argument("--extension-size", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--json", help="Also write the results here.")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    texts = german_text()
    held, train = texts[3::8], [t for i, t in enumerate(texts) if i % 8 != 3]
    from mothertongue.vocab.stage import compare, verdict

    rows = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "de_train.txt").write_text("\n\n".join(train) + "\n", encoding="utf-8")
        (root / "de_held.txt").write_text("\n".join(held) + "\n", encoding="utf-8")
        make_base(Path(args.tokenizer), root / "base", args.hidden, args.layers)
        for extend in (False, True):
            rows.append(one_run(root / "base", root / "de_train.txt", root / "de_held.txt", root / f"run-{extend}", extend, args))
            print(rows[-1], file=sys.stderr)
        quality = compare({r["run"]: Path(r["run_dir"]) for r in rows}, held)
        for r in rows:
            r["heldout_bpb"] = quality[r["run"]]["bits_per_byte"]
        line = verdict(quality, rows[1]["run"], rows[0]["run"])
    cols = ["run", "vocab", "fertility", "train_tokens", "train_tok_s", "train_words_s", "gen_tok_s", "gen_words_s", "heldout_bpb"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    a, b = rows
    print(f"\nextended / base: training words/s {b['train_words_s'] / a['train_words_s']:.2f}x, "
          f"generation words/s {b['gen_words_s'] / a['gen_words_s']:.2f}x, training tokens/s "
          f"{b['train_tok_s'] / a['train_tok_s']:.2f}x, generation tokens/s {b['gen_tok_s'] / a['gen_tok_s']:.2f}x\n{line}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
