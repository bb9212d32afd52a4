"""Train stage: SFT full/LoRA, preference methods, continued pretraining, on tiny models built here.

    python -m pytest -q tests/test_train.py

Each test trains a small Llama (built from a config, tokenizer trained on the spot) on a small
synthetic task and checks the outcome: loss falls, the right weights move, the saved artefacts
load back to the same model, the task is learned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

# A tiny synthetic instruction task: name the German word for an English one.
WORDS = {
    "cat": "Katze", "dog": "Hund", "house": "Haus", "tree": "Baum", "water": "Wasser",
    "bread": "Brot", "milk": "Milch", "apple": "Apfel", "book": "Buch", "table": "Tisch",
    "chair": "Stuhl", "window": "Fenster", "door": "Tür", "sun": "Sonne", "moon": "Mond",
    "star": "Stern", "car": "Auto", "train": "Zug", "school": "Schule", "friend": "Freund",
    "mother": "Mutter", "father": "Vater", "child": "Kind", "city": "Stadt",
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: with 2 OpenMP threads each step spin-waits on a
    busy core and runs ~10x slower than with one."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_recipe(root: Path, extra: str = "") -> Path:
    data = root / "words.txt"
    data.write_text(
        "\n".join(f"Was heißt {en} auf Deutsch?#Das heißt {de}." for en, de in WORDS.items()) + "\n",
        encoding="utf-8",
    )
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"""name: words
run_dir: {root / "run"}
language: de
base_model: tiny
seed: 7
tiny_model: {{hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 400}}
ingest:
  sources: [{{path: words.txt, format: text, options: {{lang: de}}}}]
build: {{template: chatml, max_length: 64}}
train:
  adapter: full
  learning_rate: 0.005
  batch_size: 8
  epochs: 1
  logging_steps: 5
  save_steps: 1000
  warmup_ratio: 0.05
{extra}""",
        encoding="utf-8",
    )
    return recipe


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A recipe dir whose run has ingest + build done (train not yet)."""
    from helpers import run_recipe

    root = tmp_path_factory.mktemp("words")
    recipe = write_recipe(root)
    run_recipe(recipe, [], stages=["ingest", "build"])
    return root


def fresh(built: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the built run, so each test trains on its own."""
    root = tmp_path / "r"
    shutil.copytree(built, root)
    recipe = root / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(str(built), str(root)))
    return root, recipe


def load(recipe: Path, overrides: list[str]):
    from mothertongue.config import load_recipe

    return load_recipe(recipe, overrides)


def fit(recipe, root: Path):
    from mothertongue import train
    from mothertongue.runs import RunDir

    out = root / "run" / "train.partial"
    out.mkdir(parents=True, exist_ok=True)
    return train.fit(recipe, RunDir(root / "run"), out), out


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


@pytest.fixture(scope="module")
def warm_base(built, tmp_path_factory) -> Path:
    """A briefly fully-trained model saved to a folder: a realistic LoRA starting point (LoRA
    cannot move a random model's tied LM head), loaded back through the local-path code."""
    root, path = fresh(built, tmp_path_factory.mktemp("warm"))
    (_, summary), out = fit(load(path, ["train.epochs=10"]), root)
    return out / "model"


@pytest.mark.slow
def test_lora_moves_only_adapter_and_reloads_same_logits(built, warm_base, tmp_path):
    import torch
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, path = fresh(built, tmp_path)
    recipe = load(path, [f"base_model={warm_base}", "train.adapter=lora", "train.lora_r=8",
                         "train.use_rslora=true", "train.learning_rate=0.003", "train.epochs=8"])
    (trainer, summary), out = fit(recipe, root)
    assert summary["final_loss"] < summary["first_loss"]

    base = weights(warm_base)
    model = trainer.model
    names = dict(model.named_parameters())
    lora_b = [n for n in names if "lora_B" in n]
    assert lora_b and all(names[n].abs().sum() > 0 for n in lora_b)  # B starts at zero
    for n, p in names.items():
        if "lora_" in n:
            continue
        key = n.replace("base_model.model.", "", 1).replace(".base_layer", "")
        assert not p.requires_grad
        if key in base:
            assert torch.equal(p.detach().cpu().float(), base[key].float()), f"{n} moved"

    ids = torch.tensor([[5, 17, 33, 48, 9, 101, 7]])
    model.eval()
    with torch.no_grad():
        want = model(input_ids=ids).logits
    reloaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(warm_base, dtype=torch.float32), out / "model"
    ).eval()
    with torch.no_grad():
        got = reloaded(input_ids=ids).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)

    card = (out / "model" / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["language"] == ["de"] and meta["library_name"] == "peft"
    assert meta["base_model"] == str(warm_base)
    assert "lora" in meta["tags"] and meta["datasets"] == ["words.txt"]
    assert "rsLoRA" in card and "r=8" in card
    assert (out / "model" / "mothertongue_recipe.yaml").exists()
    assert (out / "loss.png").exists() and list((out / "tensorboard").rglob("events.out.tfevents*"))


@pytest.mark.slow
def test_full_sft_learns_the_task(built, tmp_path):
    """Default batching and precision (padding-free, bf16 autocast where the CPU has it)."""
    import torch

    from mothertongue.generation import generate
    from mothertongue.models import load_model, stop_token_ids

    root, path = fresh(built, tmp_path)
    recipe = load(path, ["train.epochs=100"])
    (trainer, summary), out = fit(recipe, root)
    assert summary["final_loss"] < 0.2 * summary["first_loss"]
    base = weights(out / "base_model")
    tuned = weights(out / "model")
    moved = [k for k in base if "layers" in k and not torch.equal(base[k], tuned[k])]
    assert len(moved) == len([k for k in base if "layers" in k])

    shutil.move(str(out), str(root / "run" / "train"))
    (root / "run" / "train" / "manifest.json").write_text("{}")
    model, tok, stops, _ = load_model(root / "run")
    assert stops == stop_token_ids(tok, "<|im_end|>")
    convs = [[{"role": "user", "content": f"Was heißt {en} auf Deutsch?"}] for en in WORDS]
    replies = generate(model, tok, convs, stops, max_new_tokens=12, do_sample=False)
    exact = sum(r.text == f"Das heißt {de}." and r.ended for r, de in zip(replies, WORDS.values()))
    assert exact / len(WORDS) >= 0.95, [r.text for r in replies]


def _margins(model, tok, pairs) -> list[float]:
    """log p(chosen) - log p(rejected) for each pair, summed over the answer tokens."""
    import torch

    from mothertongue import templates

    out = []
    model.eval()
    for p in pairs:
        prompt = templates.render(tok, p["prompt"], add_generation_prompt=True)
        lp = []
        for ans in (p["chosen"], p["rejected"]):
            full = templates.render(tok, p["prompt"] + [{"role": "assistant", "content": ans}])
            n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
            ids = torch.tensor([tok(full, add_special_tokens=False)["input_ids"]])
            with torch.no_grad():
                logits = model(input_ids=ids).logits.float()
            logp = torch.log_softmax(logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0]
            lp.append(logp[n_prompt - 1 :].sum().item())
        out.append(lp[0] - lp[1])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_margin_grows(built, warm_base, tmp_path, method):
    """DPO starts, as it is meant to, from a model that already answers (briefly SFT-trained);
    ORPO, which needs no SFT stage or reference model, from the untrained tiny model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, path = fresh(built, tmp_path)
    items = list(WORDS.items())
    pairs = [
        {"id": str(i), "prompt": [{"role": "user", "content": f"Was heißt {en} auf Deutsch?"}],
         "chosen": f"Das heißt {de}.", "rejected": f"It means {en}."}  # prefer German over English
        for i, (en, de) in enumerate(items)
    ]
    build = root / "run" / "build"
    (build / "preference.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
    (build / "preference_dev.jsonl").write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs[:4]))
    start = warm_base if method == "dpo" else root / "run" / "train.partial" / "base_model"
    base = [f"base_model={warm_base}"] if method == "dpo" else ["train.learning_rate=0.005"]
    recipe = load(path, [f"train.method={method}", "train.learning_rate=0.001", "train.max_steps=15",
                         "train.beta=0.5", "train.logging_steps=3", "train.eval_steps=5", *base])
    (trainer, summary), out = fit(recipe, root)
    dev_margins = [h["eval_rewards/margins"] for h in trainer.state.log_history if "eval_rewards/margins" in h]
    assert len(dev_margins) >= 3 and summary["eval_loss"] is not None  # the dev pairs were evaluated
    tok = AutoTokenizer.from_pretrained(out / "model")
    before = _margins(AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32), tok, pairs)
    after = _margins(AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32), tok, pairs)
    mean_b, mean_a = sum(before) / len(before), sum(after) / len(after)
    assert mean_a > mean_b + 1.0, (mean_b, mean_a)
    assert sum(a > b for a, b in zip(after, before)) >= 0.8 * len(pairs)


def test_cpt_trains_embeddings_on_their_own_rate(built, tmp_path):
    import torch

    root, path = fresh(built, tmp_path)
    text = [f"Die {de} ist hier. Ich sehe {de} und sage {de}." for de in WORDS.values()] * 3
    (root / "run" / "build" / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in text))
    recipe = load(path, ["train.method=cpt", "train.adapter=lora", "train.train_embeddings=true",
                         "train.learning_rate=0.01", "train.embedding_learning_rate=0.001", "train.max_steps=10",
                         "train.logging_steps=1"])
    (trainer, summary), out = fit(recipe, root)
    assert summary["final_loss"] < summary["first_loss"]
    rates = sorted({g["initial_lr"] for g in trainer.optimizer.param_groups})
    assert rates == [0.001, 0.01]
    emb = [p for n, p in trainer.model.named_parameters() if "embed_tokens" in n and "modules_to_save" in n]
    base = weights(out / "base_model")["model.embed_tokens.weight"]
    assert emb and emb[0].requires_grad and not torch.equal(emb[0].detach().cpu(), base)


def test_qlora_without_cuda_is_a_clear_error(built, tmp_path):
    import torch

    from mothertongue.errors import StageError

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    root, path = fresh(built, tmp_path)
    with pytest.raises(StageError, match="qlora needs a CUDA GPU"):
        fit(load(path, ["train.adapter=qlora"]), root)


@pytest.mark.gpu
@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_on_gpu(built, tmp_path, bits):
    root, path = fresh(built, tmp_path)
    recipe = load(path, ["train.adapter=qlora", f"train.qlora_bits={bits}", "train.learning_rate=0.01",
                         "train.epochs=5"])
    (trainer, summary), out = fit(recipe, root)
    assert summary["final_loss"] < summary["first_loss"]
    assert (out / "model" / "adapter_config.json").exists()


def _cli_env() -> dict:
    import os

    # One thread per process: the two DDP ranks then use the two cores without oversubscribing.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"}


def _summary(root: Path) -> dict:
    return json.loads((root / "run" / "train" / "manifest.json").read_text())["summary"]


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(built, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from helpers import run_recipe

    # 120 steps; logging every 7 so that a resume (at a multiple of 20) falls between two log lines
    args = ["train.epochs=40", "train.save_steps=20", "train.logging_steps=7"]
    root, path = fresh(built, tmp_path / "killed")
    cmd = [sys.executable, "-m", "mothertongue", "train", str(path), *args]
    proc = subprocess.Popen(cmd, env=_cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = root / "run" / "train.partial" / "checkpoints"
    deadline = time.time() + 240
    while not list(ckpts.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (root / "run" / "train").exists(), "the run finished before it was killed"

    rerun = subprocess.run(cmd, env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = _summary(root)
    assert resumed["resumed_from"] and resumed["resumed_from"].startswith("checkpoint-")

    ref_root, ref_path = fresh(built, tmp_path / "straight")
    run_recipe(ref_path, args, stages=["train"])
    straight = _summary(ref_root)
    assert straight["resumed_from"] is None
    assert resumed["steps"] == straight["steps"] == 120
    assert abs(resumed["final_loss"] - straight["final_loss"]) <= 0.05 * straight["final_loss"] + 0.01
    # The loss curve too: every log line (loss, grad norm, learning rate, token count and accuracy)
    # as the uninterrupted run wrote it, the ones right after the resume included. Timings, and the
    # closing summary (mean loss of the last process's steps), describe the process that wrote them.
    timing = ("train_runtime", "train_tokens_per_second")
    curves = [[{k: v for k, v in h.items() if k not in timing} for h in
               json.loads((r / "run" / "train" / "loss.json").read_text()) if "train_loss" not in h]
              for r in (root, ref_root)]
    assert len(curves[0]) == len(curves[1]) == 1 + 120 // 7  # step 1, then every 7th
    for got, want in zip(*curves):
        assert got == pytest.approx(want, rel=1e-5), (got, want)


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(built, tmp_path):
    import subprocess
    import sys

    from helpers import run_recipe

    # `accelerate launch` starts GPU ranks through torch.distributed.run; on CPU it would need
    # mpirun, so the same launcher is called directly here (gloo backend).
    root, path = fresh(built, tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "mothertongue", "train", str(path), "train.batch_size=4", "train.epochs=4"]
    r = subprocess.run(cmd, env=_cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = _summary(root)

    one_root, one_path = fresh(built, tmp_path / "one")
    run_recipe(one_path, ["train.batch_size=8", "train.epochs=4"], stages=["train"])
    single = _summary(one_root)
    assert ddp["world_size"] == 2 and single["world_size"] == 1 and ddp["distributed"] == "ddp"
    assert ddp["steps"] == single["steps"] == 12  # 24 examples, global batch 8, 4 epochs
    assert ddp["final_loss"] < ddp["first_loss"]
    assert (root / "run" / "train" / "model" / "model.safetensors").exists()
    assert not (root / "run" / "train.partial").exists()


def _tiny_trainer(tmp_path, overrides: dict, n: int = 8, gqa: int | None = None):
    """A trainer on a tiny Llama and chats of uneven length (several examples per packed row)."""
    from datasets import Dataset

    from mothertongue import templates
    from mothertongue.build import encode
    from mothertongue.config import Recipe, TinyModelConfig, TrainConfig
    from mothertongue.models import build_tiny_model, train_tiny_tokenizer
    from mothertongue.training.trainers import build_trainer

    chats = [[{"role": "user", "content": f"Was heißt {en}? " * (1 + i % 4)},
              {"role": "assistant", "content": f"Das heißt {de}. " * (1 + i % 3)}]
             for i, (en, de) in enumerate(list(WORDS.items())[:n])]
    t = templates.resolve("chatml", None)
    tok = train_tiny_tokenizer([m["content"] for c in chats for m in c], 300, t.special_tokens)
    templates.install(t, tok)
    rows = [encode(tok, c)[:2] for c in chats]
    model = build_tiny_model(TinyModelConfig(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=gqa, vocab_size=300), tok, 0)
    model.config.use_cache = False
    recipe = Recipe(train=TrainConfig(**{"adapter": "lora", "lora_r": 8, "batch_size": 4, "epochs": 1, **overrides}))
    ds = Dataset.from_dict({"input_ids": [r[0] for r in rows], "labels": [r[1] for r in rows]})
    return build_trainer(recipe, model, tok, ds, None, tmp_path)


@pytest.mark.parametrize("batching,gqa,adapter", [("padding_free", None, "lora"), ("padding_free", 2, "lora"),
                                                   ("packing", None, "lora"), ("padded", None, "lora"),
                                                   ("padding_free", None, "full")])
def test_cpu_loss_path_equals_trl(tmp_path, batching, gqa, adapter):
    """On CPU the SFT loss is taken on the trained positions only, with per-example attention in
    padding-free rows: same loss and gradients as TRL's own loss over stock SDPA attention."""
    import torch
    import trl

    from mothertongue.training.cpu.attention import NAME
    from mothertongue.training.trainers import after_training

    padding_free = batching != "padded"
    trainer = _tiny_trainer(tmp_path, {"padding_free": padding_free, "packing": batching == "packing",
                                       "precision": "fp32", "adapter": adapter}, gqa=gqa)
    base = trainer.model.get_base_model() if adapter == "lora" else trainer.model
    assert base.config.num_key_value_heads == (gqa or 4)
    model = trainer.model
    assert (base.config._attn_implementation == NAME) == padding_free
    assert trainer.cpu_loss  # the CPU loss is what is compared
    batch = next(iter(trainer.get_train_dataloader()))
    if padding_free:  # one row holding several examples (4, or however many a pack holds)
        assert batch["input_ids"].shape[0] == 1 and len(batch["cu_seq_lens_q"]) >= 3
    model.train()

    def loss_and_grads(compute):
        model.zero_grad()
        loss = compute(dict(batch))
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ours, g_ours = loss_and_grads(lambda b: trainer.compute_loss(model, b))
    after_training(model)  # back to stock SDPA for the reference
    ref, g_ref = loss_and_grads(lambda b: trl.SFTTrainer.compute_loss(trainer, model, b))
    assert ours == pytest.approx(ref, rel=1e-5)
    assert g_ours.keys() == g_ref.keys() and len(g_ours) > 0
    for n in g_ref:
        torch.testing.assert_close(g_ours[n], g_ref[n], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_lora_bf16_on_cpu_keeps_frozen_base_in_bf16(tmp_path):
    """bf16 autocast on CPU: frozen base stored in bf16, adapters in float32; the loss falls, and
    afterwards the model runs without autocast and the saved adapter reproduces it."""
    import torch
    from peft import PeftModel

    from mothertongue.training.trainers import after_training

    trainer = _tiny_trainer(tmp_path, {"precision": "bf16", "learning_rate": 0.01, "epochs": 30, "logging_steps": 5,
                                       "save_steps": 10**6}, n=16)
    model = trainer.model
    assert trainer.args.bf16
    dtypes = {("lora_" in n, p.dtype) for n, p in model.named_parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses[-1] < losses[0] - 0.5, losses  # a random tiny base: LoRA moves it slowly, but it moves
    assert all(torch.equal(p, base_before[n]) for n, p in model.named_parameters() if "lora_" not in n)

    after_training(model)
    model.eval()
    ids = torch.tensor([[5, 17, 33, 48, 9, 101, 7]])
    with torch.no_grad():
        want = model(input_ids=ids).logits.float()
    model.save_pretrained(tmp_path / "adapter")
    base = model.get_base_model()
    fresh_base = type(base)(base.config).to(torch.bfloat16)
    fresh_base.load_state_dict({k.replace(".base_layer", ""): v for k, v in base.state_dict().items()
                                if "lora_" not in k}, strict=True)
    reloaded = PeftModel.from_pretrained(fresh_base, tmp_path / "adapter").eval()
    # The trainer's model keeps Accelerate's autocast on its forward: under autocast, identical.
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(reloaded(input_ids=ids).logits.float(), want)
    with torch.no_grad():  # and without it (adapters in float32 again), the same up to bf16 rounding
        got = reloaded(input_ids=ids).logits.float()
        with reloaded.disable_adapter():
            untuned = reloaded(input_ids=ids).logits.float()
    # bf16's 2^-8 relative rounding, compounded through the layers, moves logits of ~1 by up to
    # ~0.15 here; what the adapter itself does is several times larger (measured 0.14 vs 1.2).
    rounding, adapter = (got - want).abs().max().item(), (untuned - want).abs().max().item()
    assert rounding < 0.25 and rounding < adapter / 4, (rounding, adapter)
    assert torch.equal(got.argmax(-1), want.argmax(-1))


@pytest.mark.parametrize("heads,kv_heads", [(4, 4), (4, 2)])
def test_varlen_attention_in_bf16_matches_float32(monkeypatch, heads, kv_heads):
    """Per-example attention over a padding-free row in bf16, short examples through the eager path
    and long ones through SDPA's kernel: output and q/k/v gradients equal float32 attention computed
    example by example, up to bf16 rounding; no position attends across an example boundary."""
    import torch
    import torch.nn.functional as F

    from mothertongue.training.cpu import attention

    monkeypatch.setattr(attention, "SHORT", 40)
    lengths = [7, 40, 41, 90, 1, 33]  # both sides of the threshold, and a one-token example
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    torch.manual_seed(0)
    q32 = torch.randn(1, heads, int(cu[-1]), 16)
    k32, v32 = torch.randn(2, 1, kv_heads, int(cu[-1]), 16).unbind(0)
    dout = torch.randn(1, int(cu[-1]), heads, 16)

    def run(q, k, v, fn):
        q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
        out = fn(q, k, v)
        out.float().backward(dout)
        return [t.float() for t in (out, q.grad, k.grad, v.grad)]

    def reference(q, k, v):  # float32, one example at a time, stock SDPA
        parts = [F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True,
                                                enable_gqa=heads != kv_heads)
                 for a, b in zip(cu.tolist(), cu[1:].tolist())]
        return torch.cat(parts, dim=2).transpose(1, 2)

    ours = run(q32.bfloat16(), k32.bfloat16(), v32.bfloat16(),
               lambda q, k, v: attention.sdpa_varlen(None, q, k, v, None, cu_seq_lens_q=cu)[0])
    want = run(q32, k32, v32, reference)
    for name, got, exp in zip(("out", "dq", "dk", "dv"), ours, want):
        assert (got - exp).abs().max() <= 0.03 * exp.abs().max(), name
    # Changing a later example leaves every earlier example's output untouched.
    k2 = k32.clone()
    k2[:, :, int(cu[3]):] += 1
    again = attention.sdpa_varlen(None, q32.bfloat16(), k2.bfloat16(), v32.bfloat16(), None, cu_seq_lens_q=cu)[0]
    assert torch.equal(again[:, :int(cu[3])].float(), ours[0][:, :int(cu[3])])


def test_fused_lora_on_cpu_equals_peft(tmp_path):
    """LoRA under CPU bf16 autocast runs each adapted layer as one fused step (scaling folded into
    B, backward written out): same loss and adapter gradients as PEFT's own forward, up to bf16
    rounding; after training every layer is PEFT's again."""
    import torch
    from peft.tuners.lora.layer import Linear

    from mothertongue.training.cpu import lora as lora_cpu
    from mothertongue.training.trainers import after_training

    trainer = _tiny_trainer(tmp_path, {"precision": "bf16", "lora_alpha": 16}, gqa=2)
    model = trainer.model
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    assert len(layers) == 2 * 7 and all("forward" in m.__dict__ for m in layers)
    torch.manual_seed(0)
    for n, p in model.named_parameters():
        if "lora_B" in n:  # B starts at zero, which would hide a wrong A gradient or scaling
            torch.nn.init.normal_(p, std=0.05)
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()

    def loss_and_grads():
        model.zero_grad()
        with trainer.accelerator.autocast():
            loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ours, g_ours = loss_and_grads()
    lora_cpu.restore(model)
    assert not any("forward" in m.__dict__ for m in layers)
    ref, g_ref = loss_and_grads()
    assert ours == pytest.approx(ref, rel=1e-3)
    assert g_ours.keys() == g_ref.keys() and len(g_ref) == 2 * len(layers)
    for n in g_ref:  # bf16 products: ~0.4% relative rounding each, measured <= 1.5% of the largest entry
        assert (g_ours[n] - g_ref[n]).abs().max() <= 0.03 * g_ref[n].abs().max(), n

    assert lora_cpu.use_fused(model)
    after_training(model)
    assert not any("forward" in m.__dict__ for m in layers)


def _assert_stock_path(trainer) -> None:
    """Nothing of training/cpu is in use: TRL's loss, stock SDPA, PEFT's own LoRA layers in float32."""
    import torch
    import trl
    from peft.tuners.lora.layer import Linear

    model = trainer.model
    assert not trainer.cpu_loss
    assert model.get_base_model().config._attn_implementation == "sdpa"
    layers = [m for m in model.modules() if isinstance(m, Linear)]
    assert layers and not any("forward" in m.__dict__ for m in layers)
    assert all(m.cast_input_dtype_enabled for m in layers)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    batch = next(iter(trainer.get_train_dataloader()))
    model.train()
    ours = trainer.compute_loss(model, dict(batch))
    assert torch.equal(ours, trl.SFTTrainer.compute_loss(trainer, model, dict(batch)))


def test_cpu_kernels_off_is_the_stock_path(tmp_path):
    trainer = _tiny_trainer(tmp_path, {"precision": "bf16", "cpu_kernels": "off"})
    assert trainer.args.bf16
    _assert_stock_path(trainer)


@pytest.mark.parametrize("change", ["private name gone", "untested version"])
def test_version_guard_falls_back_to_the_stock_path(tmp_path, monkeypatch, capsys, change):
    """When the libraries no longer have what the CPU kernels lean on, training goes the stock way
    (and says why) instead of breaking or computing something else."""
    import transformers.masking_utils

    from mothertongue.training import cpu

    if change == "private name gone":
        monkeypatch.delattr(transformers.masking_utils, "AttentionMaskInterface")
        reason = "transformers.masking_utils.AttentionMaskInterface is gone"
    else:
        monkeypatch.setitem(cpu.VERSIONS, "trl", ("0.1", "1.0"))
        reason = "outside the tested range"
    monkeypatch.setattr(cpu, "_told", set())
    trainer = _tiny_trainer(tmp_path, {"precision": "bf16"})
    assert reason in capsys.readouterr().out
    _assert_stock_path(trainer)
    trainer.train()  # and it trains
    assert trainer.state.global_step == 2


def test_half_saved_base_model_is_saved_again(built, tmp_path):
    """A kill after the base model's config but before its weights left `base_model/` broken for
    good (only config.json was checked); now a folder without complete weights is redone."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mothertongue.models import build_tiny_model

    root, path = fresh(built, tmp_path)
    recipe = load(path, ["train.max_steps=1"])
    broken = root / "run" / "train.partial" / "base_model"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))  # what the kill left
    (_, summary), out = fit(recipe, root)
    assert not (out / "base_model.tmp").exists()
    saved = AutoModelForCausalLM.from_pretrained(out / "base_model", dtype=torch.float32, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(root / "run" / "build" / "tokenizer")
    want = build_tiny_model(recipe.tiny_model, tok, recipe.seed).state_dict()
    got = saved.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def _save_small_model(folder: Path, safe: bool) -> Path:
    """A small Llama saved as safetensors, or as a pickle checkpoint the way older tools wrote them."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(config)
    if safe:
        model.save_pretrained(folder)
    else:  # transformers 5 writes safetensors only
        config.save_pretrained(folder)
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("case", ["missing folder", "empty folder", "a file", "not a model folder",
                                  "hub id while offline", "hub id without network", "pickle-only model",
                                  "pickle-only adapter"])
def test_unusable_base_model_is_a_one_line_error(built, tmp_path, monkeypatch, case):
    from huggingface_hub import constants

    from mothertongue.errors import StageError

    root, path = fresh(built, tmp_path)
    where = tmp_path / "base"
    if case == "missing folder":
        name, match = where, "base_model: no such folder"
    elif case == "empty folder":
        where.mkdir()
        name, match = where, "is an empty folder"
    elif case == "a file":
        where.write_text("x")
        name, match = where, "is a file"
    elif case == "not a model folder":
        where.mkdir()
        (where / "notes.txt").write_text("x")
        name, match = where, "has no config.json"
    elif case == "hub id while offline":  # conftest sets HF_HUB_OFFLINE=1
        name, match = "acme-nonexistent/tiny-model", "hub is offline"
    elif case == "hub id without network":  # online mode, and a hub endpoint where nothing listens
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
        name, match = "acme-nonexistent/tiny-model", "the hub cannot be reached"
    elif case == "pickle-only model":
        name, match = _save_small_model(where, safe=False), "pytorch_model.bin: the model has only pickle weights"
    else:
        from peft import LoraConfig, get_peft_model

        base = _save_small_model(tmp_path / "adapter_base", safe=True)
        from transformers import AutoModelForCausalLM

        peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=2, task_type="CAUSAL_LM"))
        peft_model.save_pretrained(where, safe_serialization=False)
        name, match = where, "adapter_model.bin: the adapter has only pickle weights"
    with pytest.raises(StageError, match=match) as e:
        fit(load(path, [f"base_model={name}", "train.max_steps=1"]), root)
    assert not list((root / "run" / "train.partial").glob("checkpoints/*"))
    assert "\n" not in str(e.value)
    if "pickle" in case:
        assert "train.allow_pickle: true" in str(e.value)


def test_pickle_base_model_loads_when_allowed(built, tmp_path):
    from mothertongue.errors import StageError
    from mothertongue.models import load_base_model

    root, path = fresh(built, tmp_path)
    folder = _save_small_model(tmp_path / "pickled", safe=False)
    tok = __import__("transformers").AutoTokenizer.from_pretrained(root / "run" / "build" / "tokenizer")
    with pytest.raises(StageError, match="pickle"):
        load_base_model(load(path, [f"base_model={folder}"]), tok)
    model = load_base_model(load(path, [f"base_model={folder}", "train.allow_pickle=true"]), tok)
    assert model.config.hidden_size == 32


def test_pickle_adapter_in_a_run_is_refused_unless_allowed(built, tmp_path):
    """PEFT loads `adapter_model.bin` through pickle when no safetensors file is there: loading a
    run's tuned model refuses that in one line unless asked to allow it."""
    import torch
    from safetensors.torch import load_file

    from mothertongue.errors import StageError
    from mothertongue.models import load_model

    root, path = fresh(built, tmp_path)
    (_, summary), out = fit(load(path, ["train.adapter=lora", "train.max_steps=1"]), root)
    shutil.move(str(out), str(root / "run" / "train"))
    (root / "run" / "train" / "manifest.json").write_text("{}")
    adapter = root / "run" / "train" / "model"
    torch.save(load_file(adapter / "adapter_model.safetensors"), adapter / "adapter_model.bin")
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(StageError, match="adapter_model.bin: the adapter has only pickle weights"):
        load_model(root / "run")
    model, _, _, _ = load_model(root / "run", allow_pickle=True)
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_build_with_a_missing_base_model_is_one_line(tmp_path):
    """build loads the base model's tokenizer before train loads its weights: the same one line."""
    import subprocess
    import sys

    recipe = write_recipe(tmp_path)
    r = subprocess.run([sys.executable, "-m", "mothertongue", "run", str(recipe), f"base_model={tmp_path / 'nope'}"],
                       env=_cli_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "base_model: no such folder" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
