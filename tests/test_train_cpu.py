"""Train stage, CPU kernels (`training/cpu`): each equals the stock TRL/Transformers/PEFT path it
replaces; `train.cpu_kernels=off` and the version guard give the stock path.

    python -m pytest -q tests/test_train_cpu.py

Every test builds a trainer on a tiny Llama and chats of uneven length (several examples per
padding-free row) and compares losses and gradients, or outputs, with the stock computation.
"""

from __future__ import annotations

import pytest

from helpers import WORDS

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_trainer(tmp_path, overrides: dict, n: int = 8, gqa: int | None = None):
    """A trainer on a tiny Llama and chats of uneven length (several examples per packed row)."""
    from datasets import Dataset

    from mothertongue import templates
    from mothertongue.config import Recipe, TinyModelConfig, TrainConfig
    from mothertongue.encoding import encode
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
