"""The vision path on tiny models built here: a random CLIP vision encoder (32 px, 8 px patches),
the tiny text model of a short German text run, and synthetic shapes with German captions.

One module fixture runs ingest, build, train and the vision stage once; the tests assert on it.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import TINY, mt, one_line_error, run_recipe

pytestmark = pytest.mark.slow

VISION = """
vision:
  encoder: shapes/encoder
  captions:
    - path: shapes/captions.csv
  heldout: {heldout}
  text_mix: 0.1
  adapter: full
  max_image_pixels: 5000
  stage1: {{max_steps: {s1}, learning_rate: 0.003, batch_size: 16, save_steps: {save}}}
  stage2: {{max_steps: {s2}, learning_rate: 0.001, projector_learning_rate: 0.005, batch_size: 16, save_steps: {save}}}
"""


def write_recipe(folder: Path, run_dir: Path, s1: int = 300, s2: int = 600, save: int = 200, scored: bool = True) -> Path:
    p = folder / f"{run_dir.name}.yaml"
    p.write_text(
        f"name: shapes\nrun_dir: {run_dir}\nlanguage: de\n"
        "ingest:\n  sources:\n    - path: shapes/text.txt\n      format: text\n"
        "build:\n  system_prompt: none\n"
        "train:\n  max_steps: 20\n  adapter: full\n  learning_rate: 0.003\n  batch_size: 8\n"
        "evaluate:\n  enabled: false\n" + VISION.format(s1=s1, s2=s2, save=save, heldout="[{path: shapes/heldout.csv}]" if scored else "[]"), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from mothertongue.vision.synthetic import make

    folder = tmp_path_factory.mktemp("vision")
    make(folder / "shapes")
    return folder


@contextmanager
def one_thread():
    """Models this small train faster on one thread than on two that wait for each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vision_run(shapes) -> tuple[Path, Path]:
    recipe = write_recipe(shapes, shapes / "run")
    with one_thread():
        run_recipe(recipe, TINY)
    return recipe, shapes / "run"


def _heldout(shapes: Path) -> list[dict]:
    with open(shapes / "shapes" / "heldout.csv", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _caption(model, processor, stops, image_path: Path) -> str:
    from PIL import Image

    from mothertongue.vision.data import describe_prompt
    from mothertongue.vision.infer import answer

    msgs = [{"role": "user", "content": f"{processor.image_token}\n{describe_prompt('de')}"}]
    img = Image.open(image_path).convert("RGB")
    return answer(model, processor, msgs, [img], stops, max_new_tokens=24, do_sample=False).text


def _trained(shapes: Path) -> list[dict]:
    """One training image per colour/shape/background combination."""
    with open(shapes / "shapes" / "captions.csv", encoding="utf-8") as f:
        return list({r["caption"]: r for r in csv.DictReader(f)}.values())


def test_trained_images_are_captioned_right(vision_run, shapes):
    from mothertongue.models import load_model

    _, run = vision_run
    model, _, stops, info = load_model(run, vision=True)
    assert info.processor is not None
    rows = _trained(shapes)
    with one_thread():
        got = [_caption(model, info.processor, stops, shapes / "shapes" / r["image"]) for r in rows]
    right = sum(g == r["caption"] for g, r in zip(got, rows, strict=True))
    assert right / len(rows) >= 0.9, list(zip(got, [r["caption"] for r in rows], strict=True))
    assert len(set(got)) >= 0.9 * len(rows)  # a different image, a different answer


def test_heldout_combinations(vision_run, shapes):
    """Colour/shape/background combinations never trained on: at least 90% exactly right. Measured
    with four seeds (synthetic.make seed 0-3, recipe seed 42, 1, 2, 3): 19, 20, 19 and 20 of 20;
    with 20 stage-1 steps instead of 300, seeds 0 and 1: 18 and 20 of 20."""
    from mothertongue.models import load_model

    _, run = vision_run
    model, _, stops, info = load_model(run, vision=True)
    rows = _heldout(shapes)
    with one_thread():
        got = [_caption(model, info.processor, stops, shapes / "shapes" / r["image"]) for r in rows]
    right = sum(g == r["caption"] for g, r in zip(got, rows, strict=True))
    assert right / len(rows) >= 0.9, list(zip(got, [r["caption"] for r in rows], strict=True))
    # the stage's own scorecard on the same images agrees, and another image changes the caption
    card = json.loads((run / "vision" / "scorecard.json").read_text(encoding="utf-8"))
    assert card["examples"] == len(rows) and card["exact_match"] == pytest.approx(right / len(rows))
    assert card["chrf"] > 90 and card["image_swaps"] == len(rows) and card["image_dependence"] >= 0.9
    assert card["fidelity"] == 1.0 and card["fidelity_judged"] == len(rows)  # German captions
    assert "Held-out scorecard" in (run / "vision" / "model" / "README.md").read_text(encoding="utf-8")


def test_saved_model_reloads_with_from_pretrained_and_card(vision_run):
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    _, run = vision_run
    folder = run / "vision" / "model"
    model = LlavaForConditionalGeneration.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    from PIL import Image

    img = Image.new("RGB", (32, 32), (220, 30, 30))
    # the processor's own chat template takes OpenAI-style parts (what vLLM and transformers send)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Beschreibe das Bild kurz."}]}]
    text = processor.apply_chat_template(msgs, add_generation_prompt=True)
    assert processor.image_token in text
    inputs = processor(text=text, images=[img], return_tensors="pt", add_special_tokens=False)
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == model.config.image_seq_length
    with torch.no_grad():
        a = model(**inputs).logits
        b = LlavaForConditionalGeneration.from_pretrained(folder).eval()(**inputs).logits
    assert torch.equal(a, b)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "pipeline_tag: image-text-to-text" in card and "projector" in card
    loss = json.loads((run / "vision" / "loss.json").read_text(encoding="utf-8"))
    assert loss["stage1"] and loss["stage2"] and (run / "vision" / "loss.png").exists()
    assert not (run / "vision" / "stage2" / "checkpoints").exists()
    summary = json.loads((run / "vision" / "manifest.json").read_text(encoding="utf-8"))["summary"]
    assert summary["stage1"]["cached_features"] and summary["stage2"]["cached_features"]
    assert not (run / "vision" / "features").exists()  # the cache lives only while the stage runs


def test_stage1_trains_only_the_projector(vision_run, tmp_path):
    """Stage 1 from the feature cache (the default) and re-encoding every batch train the same
    projector; the cached run encodes each image once; all other weights stay bit-equal."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from mothertongue.config import load_recipe
    from mothertongue.runs import RunDir
    from mothertongue.vision.compose import compose, save
    from mothertongue.vision.data import read_sources
    from mothertongue.vision.train import encode_examples, fit_stage, freeze_for_stage1

    recipe_path, run = vision_run
    recipe = load_recipe(recipe_path, [*TINY, "vision.stage1.max_steps=6"])
    records, _ = read_sources(recipe, recipe.vision.captions)
    runs = {}
    for cached in (False, True):
        model, processor, _ = compose(recipe, RunDir(run))
        if not cached:  # composed: the saved folder reloads with the same logits (tied weights, image token, projector)
            save(model, processor, tmp_path / "composed")
            back = LlavaForConditionalGeneration.from_pretrained(tmp_path / "composed").eval()
            ids = torch.tensor([[1, 2, 3] + [model.config.image_token_id] * 16 + [5]])
            pixels = torch.randn(1, 3, 32, 32)
            with torch.no_grad():
                assert torch.equal(model(input_ids=ids, pixel_values=pixels).logits,
                                   back(input_ids=ids, pixel_values=pixels).logits)
        encoded = []
        model.model.vision_tower.register_forward_hook(lambda m, args, out, seen=encoded: seen.append(args[0].shape[0]))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        examples = encode_examples(records[:48], processor.tokenizer, model.config, None, 512, {})
        freeze_for_stage1(model)
        stage = recipe.vision.stage1.model_copy(update={"cache_features": cached})
        _, history, summary = fit_stage(recipe, stage, model, processor, examples, tmp_path / f"stage1_{cached}")
        after = model.state_dict()
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        assert changed and all(".multi_modal_projector." in k for k in changed), changed
        assert {k for k in before if ".multi_modal_projector." in k} == changed
        assert summary["cached_features"] is cached
        runs[cached] = after, [h["loss"] for h in history if "loss" in h], sum(encoded)

    (fresh, fresh_losses, fresh_encoded), (from_cache, cache_losses, cache_encoded) = runs[False], runs[True]
    assert (fresh_encoded, cache_encoded) == (6 * 16, len({r["images"][0] for r in records[:48]}))
    assert cache_losses == pytest.approx(fresh_losses, rel=1e-5)
    for k in fresh:
        torch.testing.assert_close(from_cache[k], fresh[k], rtol=1e-5, atol=1e-6)


def test_chat_image_flag_and_bad_images(vision_run, shapes, tmp_path):
    _, run = vision_run
    row = next(r for r in csv.DictReader(open(shapes / "shapes" / "captions.csv", encoding="utf-8")))
    res = mt("chat", run, "--image", shapes / "shapes" / row["image"], "-p", "Beschreibe das Bild kurz.", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == row["caption"]

    one_line_error(mt("chat", run, "--image", tmp_path / "nope.png", "-p", "x"), "nope.png", "not found")
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    one_line_error(mt("chat", run, "--image", tmp_path / "bad.png", "-p", "x"), "bad.png", "not an image")
    from PIL import Image

    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")  # over the recipe's max_image_pixels (5000)
    one_line_error(mt("chat", run, "--image", tmp_path / "big.png", "-p", "x", timeout=300), "big.png", "over the limit")


def test_chat_repl_image_command(vision_run, shapes):
    from mothertongue.chat import ChatSession, repl

    _, run = vision_run
    rows = _trained(shapes)[:1]
    session = ChatSession(run)
    out = io.StringIO()
    lines = f"/image {shapes / 'shapes' / rows[0]['image']}\nBeschreibe das Bild kurz.\n"
    repl(session, io.StringIO(lines), out)
    assert out.getvalue().strip() == rows[0]["caption"]
    assert len(session.history_images) == 1


def _data_url(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_server_takes_image_url_data_urls(vision_run, shapes):
    import threading
    import time

    try:  # the HTTP library the installed openai client uses (httpx, or its successor httpx2)
        import httpx2 as httpx
    except ImportError:
        httpx = pytest.importorskip("httpx")
    from mothertongue.serve import bind, build_engine, create_app, uvicorn_server

    _, run = vision_run
    engine = build_engine(run)
    sock = bind("127.0.0.1", 0)
    server = uvicorn_server(create_app(engine), engine.cfg)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1/chat/completions"
    rows = _heldout(shapes)[:2]

    def ask(image_url: str):
        body = {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": image_url}}, {"type": "text", "text": "Beschreibe das Bild kurz."}]}]}
        return httpx.post(url, json=body, timeout=120)

    try:
        for r in _trained(shapes)[:2]:
            res = ask(_data_url(shapes / "shapes" / r["image"]))
            assert res.status_code == 200, res.text
            assert res.json()["choices"][0]["message"]["content"] == r["caption"]
        for image_url, needle in (("https://example.org/cat.png", "remote URLs are not fetched"),
                                  (str(shapes / "shapes" / rows[0]["image"]), "local files are not accepted"),
                                  ("data:image/png;base64," + base64.b64encode(b"garbage").decode(), "not an image")):
            res = ask(image_url)
            assert res.status_code == 400, res.text
            assert needle in res.json()["error"]["message"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_export_writes_a_verified_vision_model(vision_run):
    from mothertongue.export import export

    _, run = vision_run
    result = export(run, log=lambda m: None)
    rep = result["exports"][0]
    assert rep["vision"] and rep["same_greedy_output"] and rep["probe_reply"]
    folder = Path(rep["path"])
    assert (folder / "processor_config.json").exists() or (folder / "preprocessor_config.json").exists()
    assert json.loads((folder / "config.json").read_text())["model_type"] == "llava"


def test_stage2_resumes_after_a_kill(vision_run, shapes):
    """Killed during stage 2 and rerun: same steps and losses as an uninterrupted run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from mothertongue.runs import RunDir

    _, run = vision_run
    runs = {name: _copy_run(shapes, run, name, s1=4, s2=40, save=4) for name in ("whole", "killed")}
    recipe, dest = runs["killed"]
    proc = subprocess.Popen([sys.executable, "-m", "mothertongue", "vision", str(recipe), *TINY],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = dest / "vision.partial" / "stage2" / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    deadline = time.time() + 600
    while not _whole_json(marker) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not RunDir(dest).complete("vision")  # killed before it finished
    with one_thread():
        killed = run_recipe(recipe, TINY, ["vision"])
        whole = run_recipe(runs["whole"][0], TINY, ["vision"])
    assert killed and whole
    a = json.loads((dest / "vision" / "loss.json").read_text(encoding="utf-8"))["stage2"]
    b = json.loads((runs["whole"][1] / "vision" / "loss.json").read_text(encoding="utf-8"))["stage2"]
    summary = json.loads((dest / "vision" / "manifest.json").read_text(encoding="utf-8"))["summary"]
    assert summary["stage2"]["resumed_from"]
    losses = [(h["step"], round(h["loss"], 4)) for h in a if "loss" in h]
    assert losses == [(h["step"], round(h["loss"], 4)) for h in b if "loss" in h] and losses[-1][0] == 40


def _whole_json(path: Path) -> bool:
    """Written to the end (a checkpoint marks itself complete with this file)."""
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return True


def _copy_run(shapes: Path, run: Path, name: str, **kw) -> tuple[Path, Path]:
    """A new run folder with the trained text stages of `run`, and its recipe."""
    import shutil

    dest = shapes / f"run_{name}"
    for stage in ("ingest", "build", "train"):
        shutil.copytree(run / stage, dest / stage)
    return write_recipe(shapes, dest, scored=False, **kw), dest


def test_stage2_with_lora_saves_a_merged_model(vision_run, shapes):
    """The default stage 2 (LoRA): merged into a plain Llava, encoder untouched, language model and
    projector moved."""
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPVisionModel, LlavaForConditionalGeneration

    _, run = vision_run
    recipe, dest = _copy_run(shapes, run, "lora", s1=2, s2=6)
    run_recipe(recipe, [*TINY, "vision.adapter=lora"], ["vision"])
    model = LlavaForConditionalGeneration.from_pretrained(dest / "vision" / "model")
    assert not [n for n, _ in model.named_parameters() if "lora" in n or "modules_to_save" in n]
    encoder = CLIPVisionModel.from_pretrained(shapes / "shapes" / "encoder").state_dict()
    tower = model.model.vision_tower.state_dict()
    assert all(torch.equal(tower[k], v) for k, v in encoder.items())
    text = load_file(dest / "train" / "model" / "model.safetensors")
    q = next(k for k in text if k.endswith("layers.0.self_attn.q_proj.weight"))
    assert not torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight, text[q])
    # the projector trained on in stage 2 too: from the cached features, through PEFT's copy of it
    stage1 = load_file(dest / "vision" / "stage1" / "projector.safetensors")
    assert json.loads((dest / "vision" / "manifest.json").read_text(encoding="utf-8"))["summary"]["stage2"]["cached_features"]
    assert not torch.equal(model.model.multi_modal_projector.linear_1.weight, stage1["linear_1.weight"])
