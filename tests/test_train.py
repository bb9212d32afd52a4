"""Train stage: SFT full/LoRA, preference methods, continued pretraining, on tiny models built_words here.

    python -m pytest -q tests/test_train.py

Each test trains a small Llama (built_words from a config, tokenizer trained on the spot) on a small
synthetic task and checks the outcome: loss falls, the right weights move, the saved artefacts
load back to the same model, the task is learned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import WORDS, cli_env, copy_run, fit_train

pytestmark = pytest.mark.usefixtures("one_thread")


def load(recipe: Path, overrides: list[str]):
    from mothertongue.config import load_recipe

    return load_recipe(recipe, overrides)


def weights(path: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(path.glob("*.safetensors"))
    out = {}
    for f in files:
        out.update(load_file(f))
    return out


@pytest.fixture(scope="module")
def warm_base(built_words, tmp_path_factory) -> Path:
    """A briefly fully-trained model saved to a folder: a realistic LoRA starting point (LoRA
    cannot move a random model's tied LM head), loaded back through the local-path code."""
    root, path = copy_run(built_words, tmp_path_factory.mktemp("warm"))
    (_, summary), out = fit_train(load(path, ["train.epochs=10"]), root)
    return out / "model"


@pytest.mark.slow
def test_lora_moves_only_adapter_and_reloads_same_logits(built_words, warm_base, tmp_path):
    import torch
    import yaml
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, path = copy_run(built_words, tmp_path)
    recipe = load(path, [f"base_model={warm_base}", "train.adapter=lora", "train.lora_r=8",
                         "train.use_rslora=true", "train.learning_rate=0.003", "train.epochs=8"])
    (trainer, summary), out = fit_train(recipe, root)
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
def test_full_sft_learns_the_task(built_words, tmp_path):
    """Default batching and precision (padding-free, bf16 autocast where the CPU has it)."""
    import torch

    from mothertongue.generation import generate
    from mothertongue.models import load_model, stop_token_ids

    root, path = copy_run(built_words, tmp_path)
    recipe = load(path, ["train.epochs=100"])
    (trainer, summary), out = fit_train(recipe, root)
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
def test_preference_margin_grows(built_words, warm_base, tmp_path, method):
    """DPO starts, as it is meant to, from a model that already answers (briefly SFT-trained);
    ORPO, which needs no SFT stage or reference model, from the untrained tiny model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, path = copy_run(built_words, tmp_path)
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
    (trainer, summary), out = fit_train(recipe, root)
    dev_margins = [h["eval_rewards/margins"] for h in trainer.state.log_history if "eval_rewards/margins" in h]
    assert len(dev_margins) >= 3 and summary["eval_loss"] is not None  # the dev pairs were evaluated
    tok = AutoTokenizer.from_pretrained(out / "model")
    before = _margins(AutoModelForCausalLM.from_pretrained(start, dtype=torch.float32), tok, pairs)
    after = _margins(AutoModelForCausalLM.from_pretrained(out / "model", dtype=torch.float32), tok, pairs)
    mean_b, mean_a = sum(before) / len(before), sum(after) / len(after)
    assert mean_a > mean_b + 1.0, (mean_b, mean_a)
    assert sum(a > b for a, b in zip(after, before)) >= 0.8 * len(pairs)


def test_cpt_trains_embeddings_on_their_own_rate(built_words, tmp_path):
    import torch

    root, path = copy_run(built_words, tmp_path)
    text = [f"Die {de} ist hier. Ich sehe {de} und sage {de}." for de in WORDS.values()] * 3
    (root / "run" / "build" / "text.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in text))
    recipe = load(path, ["train.method=cpt", "train.adapter=lora", "train.train_embeddings=true",
                         "train.learning_rate=0.01", "train.embedding_learning_rate=0.001", "train.max_steps=10",
                         "train.logging_steps=1"])
    (trainer, summary), out = fit_train(recipe, root)
    assert summary["final_loss"] < summary["first_loss"]
    rates = sorted({g["initial_lr"] for g in trainer.optimizer.param_groups})
    assert rates == [0.001, 0.01]
    emb = [p for n, p in trainer.model.named_parameters() if "embed_tokens" in n and "modules_to_save" in n]
    base = weights(out / "base_model")["model.embed_tokens.weight"]
    assert emb and emb[0].requires_grad and not torch.equal(emb[0].detach().cpu(), base)


def test_qlora_without_cuda_is_a_clear_error(built_words, tmp_path):
    import torch

    from mothertongue.errors import StageError

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    root, path = copy_run(built_words, tmp_path)
    with pytest.raises(StageError, match="qlora needs a CUDA GPU"):
        fit_train(load(path, ["train.adapter=qlora"]), root)


@pytest.mark.gpu
@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_on_gpu(built_words, tmp_path, bits):
    root, path = copy_run(built_words, tmp_path)
    recipe = load(path, ["train.adapter=qlora", f"train.qlora_bits={bits}", "train.learning_rate=0.01",
                         "train.epochs=5"])
    (trainer, summary), out = fit_train(recipe, root)
    assert summary["final_loss"] < summary["first_loss"]
    assert (out / "model" / "adapter_config.json").exists()


def _summary(root: Path) -> dict:
    return json.loads((root / "run" / "train" / "manifest.json").read_text())["summary"]


@pytest.mark.slow
def test_kill_and_resume_matches_uninterrupted(built_words, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from helpers import run_recipe

    # 120 steps; logging every 7 so that a resume (at a multiple of 20) falls between two log lines
    args = ["train.epochs=40", "train.save_steps=20", "train.logging_steps=7"]
    root, path = copy_run(built_words, tmp_path / "killed")
    cmd = [sys.executable, "-m", "mothertongue", "train", str(path), *args]
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpts = root / "run" / "train.partial" / "checkpoints"
    deadline = time.time() + 240
    while not list(ckpts.glob("checkpoint-*/trainer_state.json")) and time.time() < deadline:
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (root / "run" / "train").exists(), "the run finished before it was killed"

    rerun = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    resumed = _summary(root)
    assert resumed["resumed_from"] and resumed["resumed_from"].startswith("checkpoint-")

    ref_root, ref_path = copy_run(built_words, tmp_path / "straight")
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
def test_two_process_ddp_matches_single_process(built_words, tmp_path):
    import subprocess
    import sys

    from helpers import run_recipe

    # `accelerate launch` starts GPU ranks through torch.distributed.run; on CPU it would need
    # mpirun, so the same launcher is called directly here (gloo backend).
    root, path = copy_run(built_words, tmp_path / "ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "mothertongue", "train", str(path), "train.batch_size=4", "train.epochs=4"]
    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = _summary(root)

    one_root, one_path = copy_run(built_words, tmp_path / "one")
    run_recipe(one_path, ["train.batch_size=8", "train.epochs=4"], stages=["train"])
    single = _summary(one_root)
    assert ddp["world_size"] == 2 and single["world_size"] == 1 and ddp["distributed"] == "ddp"
    assert ddp["steps"] == single["steps"] == 12  # 24 examples, global batch 8, 4 epochs
    assert ddp["final_loss"] < ddp["first_loss"]
    assert (root / "run" / "train" / "model" / "model.safetensors").exists()
    assert not (root / "run" / "train.partial").exists()
