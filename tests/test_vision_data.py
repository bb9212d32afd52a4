"""Vision data: the three formats read into one record shape, bad images counted by reason with
file:line, malformed records as ingest.on_error says, and the recipe section's checks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from mothertongue.config import load_recipe
from mothertongue.errors import DataError, RecipeError


def _png(path: Path, size=(16, 16), colour=(200, 0, 0)) -> Path:
    from PIL import Image

    Image.new("RGB", size, colour).save(path)
    return path


def _recipe(folder: Path, sources: str, extra: str = "") -> object:
    p = folder / "r.yaml"
    p.write_text(f"run_dir: {folder / 'run'}\nvision:\n  encoder: enc\n  max_image_pixels: 10000\n{extra}  captions:\n{sources}",
                 encoding="utf-8")
    return load_recipe(p)


def test_three_formats_become_one_record_shape(tmp_path):
    from mothertongue.vision.data import read_sources

    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png", colour=(0, 0, 200))
    (tmp_path / "c.csv").write_text("image,caption\na.png,Ein roter Kreis auf blauem Grund.\n", encoding="utf-8")
    (tmp_path / "l.json").write_text(json.dumps([{"id": "1", "image": "a.png", "conversations": [
        {"from": "human", "value": "Was siehst du?"}, {"from": "gpt", "value": "Rot."}]}]), encoding="utf-8")
    data_url = "data:image/png;base64," + base64.b64encode((tmp_path / "b.png").read_bytes()).decode()
    (tmp_path / "o.jsonl").write_text(json.dumps({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Erst das: "}, {"type": "image_url", "image_url": {"url": "a.png"}},
                                     {"type": "text", "text": "dann das: "}, {"type": "image_url", "image_url": {"url": data_url}},
                                     {"type": "text", "text": "Was ist anders?"}]},
        {"role": "assistant", "content": "Die Farbe."}]}) + "\n", encoding="utf-8")
    recipe = _recipe(tmp_path, "    - path: c.csv\n    - path: l.json\n    - path: o.jsonl\n")
    records, report = read_sources(recipe, recipe.vision.captions)
    assert report.converted == 3 and report.read == 3 and not report.skipped
    cap, llava, oai = records
    assert cap["messages"][0]["content"] == "<image>\nBeschreibe das Bild kurz."
    assert cap["messages"][1]["content"] == "Ein roter Kreis auf blauem Grund."
    assert cap["images"] == [str((tmp_path / "a.png").resolve())] and cap["loc"].endswith("c.csv:2")
    assert llava["messages"][0]["content"] == "<image>\nWas siehst du?"  # no <image> in the text: image first
    assert oai["messages"][0]["content"] == "Erst das: <image>\ndann das: <image>\nWas ist anders?"
    assert oai["images"][1] == data_url and len(oai["images"]) == 2


def test_bad_images_are_skipped_and_counted_with_location(tmp_path):
    from mothertongue.vision.data import read_sources

    _png(tmp_path / "ok.png")
    _png(tmp_path / "huge.png", size=(200, 200))  # 40000 pixels, over max_image_pixels 10000
    (tmp_path / "text.png").write_text("not an image", encoding="utf-8")
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(_png(tmp_path / "big_ok.png", size=(90, 90), colour=(1, 2, 3)).read_bytes()[:60])
    rows = ["ok.png", "missing.png", "text.png", "cut.png", "huge.png", "ok.png"]
    (tmp_path / "c.csv").write_text("image,caption\n" + "".join(f"{r},Bild {i}.\n" for i, r in enumerate(rows)),
                                    encoding="utf-8")
    assert good
    recipe = _recipe(tmp_path, "    - path: c.csv\n")
    records, report = read_sources(recipe, recipe.vision.captions)
    assert len(records) == 2 and report.read == 6
    assert dict(report.skipped) == {"missing image": 1, "not an image": 1, "truncated image": 1, "image too big": 1}
    assert report.examples["missing image"][0].startswith(f"{tmp_path / 'c.csv'}:3")
    assert report.examples["image too big"][0].startswith(f"{tmp_path / 'c.csv'}:6")


def test_malformed_records_follow_on_error(tmp_path):
    from mothertongue.vision.data import read_sources

    _png(tmp_path / "a.png")
    (tmp_path / "l.jsonl").write_text(
        json.dumps({"image": "a.png", "conversations": [{"from": "gpt", "value": "Hallo"}]}) + "\n"
        + json.dumps({"image": ["a.png"], "conversations": [{"from": "human", "value": "<image> und <image>?"},
                                                           {"from": "gpt", "value": "Ja."}]}) + "\n", encoding="utf-8")
    recipe = _recipe(tmp_path, "    - path: l.jsonl\n")
    with pytest.raises(DataError, match=r"l\.jsonl:1: .*user turn first"):
        read_sources(recipe, recipe.vision.captions)
    records, report = read_sources(recipe, recipe.vision.captions, on_error="skip")
    assert not records and sum(report.skipped.values()) == 2
    assert "2 <image> marks in the text but 1 images" in report.examples["malformed llava record"][1]


def test_recipe_section_is_strict(tmp_path):
    with pytest.raises(RecipeError, match="vision.projector"):
        _recipe(tmp_path, "    - path: c.csv\n", "  projector: mlp3x\n")
    with pytest.raises(RecipeError, match="vision.text_mix"):
        _recipe(tmp_path, "    - path: c.csv\n", "  text_mix: 1.5\n")
    r = _recipe(tmp_path, "    - path: c.csv\n")
    from mothertongue.runs import stages_for

    assert stages_for(r)[-1] == "vision"
    assert "vision" not in stages_for(load_recipe(_write(tmp_path / "plain.yaml", "run_dir: x\n")))


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


def test_image_urls_open_only_what_is_allowed(tmp_path):
    from mothertongue.vision.images import ImageProblem, open_image_url

    url = "data:image/png;base64," + base64.b64encode(_png(tmp_path / "a.png").read_bytes()).decode()
    assert open_image_url(url).size == (16, 16)
    for bad, reason in (("https://x.org/a.png", "bad image URL"), (str(tmp_path / "a.png"), "bad image URL"),
                        ("data:image/png;base64,!!!", "bad image URL")):
        with pytest.raises(ImageProblem) as e:
            open_image_url(bad)
        assert e.value.reason == reason and "\n" not in str(e.value)
    assert open_image_url(f"file://{tmp_path / 'a.png'}", allow_local=True).size == (16, 16)


def test_an_image_replaced_in_place_makes_the_stage_stale(tmp_path):
    """The data file is unchanged, the image behind one of its paths is not: the vision stage's
    fingerprint changes (a finished stage is redone, a partial one starts over)."""
    import os

    from mothertongue.runs import RunDir, fingerprint

    _png(tmp_path / "a.png")
    (tmp_path / "c.csv").write_text("image,caption\na.png,Ein roter Kreis.\n", encoding="utf-8")
    recipe = _recipe(tmp_path, "    - path: c.csv\n")
    run = RunDir(tmp_path / "run")
    before = fingerprint(recipe, run, "vision")
    assert fingerprint(recipe, run, "vision") == before  # nothing changed: current
    stat = os.stat(tmp_path / "a.png")
    _png(tmp_path / "a.png", colour=(0, 200, 0))
    os.utime(tmp_path / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # a coarse clock
    assert fingerprint(recipe, run, "vision") != before


def test_a_checkpoint_whose_state_was_cut_short_is_not_resumed(tmp_path):
    """A kill while transformers writes trainer_state.json (in place) leaves it empty: that
    checkpoint is incomplete, and the one before is resumed (seen in the vision kill test)."""
    from mothertongue.train import last_complete_checkpoint

    for step, state in ((4, '{"global_step": 4}'), (8, "")):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(state, encoding="utf-8")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert not (tmp_path / "checkpoint-8").exists()


def test_hf_dataset_with_an_image_column(tmp_path):
    """A `save_to_disk` dataset (as a hub dataset arrives) with an Image column: captions and LLaVA
    rows become records whose images are local files named by content, written once; a row whose
    bytes are no image is skipped and counted like a bad file; an unknown option is one line."""
    import datasets

    from mothertongue.vision import hub
    from mothertongue.vision.data import images_signature, read_sources

    red, blue = (_png(tmp_path / n, colour=c).read_bytes() for n, c in (("r.png", (200, 0, 0)), ("b.png", (0, 0, 200))))
    feats = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": [{"bytes": red, "path": None}, {"bytes": blue, "path": None},
                                          {"bytes": b"no image at all", "path": None}],
                                "caption": ["Ein rotes Bild.", "Ein blaues Bild.", "Kaputt."]},
                               features=feats).save_to_disk(str(tmp_path / "caps"))
    conv = [{"from": "human", "value": "<image>\nWelche Farbe?"}, {"from": "gpt", "value": "Rot."}]
    datasets.Dataset.from_dict({"image": [{"bytes": red, "path": "r.png"}], "conversations": [conv]},
                               features=datasets.Features({"image": datasets.Image(), "conversations": [
                                   {"from": datasets.Value("string"), "value": datasets.Value("string")}]})
                               ).save_to_disk(str(tmp_path / "talk"))
    recipe = _recipe(tmp_path, f"    - {{path: {tmp_path / 'caps'}, format: hf}}\n"
                               f"    - {{path: {tmp_path / 'talk'}, format: hf}}\n")
    records, report = read_sources(recipe, recipe.vision.captions)
    assert report.read == 4 and report.converted == 3 and sum(report.skipped.values()) == 1, report.skipped
    assert [r["messages"][-1]["content"] for r in records] == ["Ein rotes Bild.", "Ein blaues Bild.", "Rot."]
    assert records[0]["messages"][0]["content"] == "<image>\nBeschreibe das Bild kurz."
    assert records[2]["messages"][0]["content"] == "<image>\nWelche Farbe?"
    assert records[2]["loc"] == f"{tmp_path / 'talk'}[train] row 0"
    files = [Path(r["images"][0]) for r in records]
    assert files[0].read_bytes() == red and files[1].read_bytes() == blue and files[2].read_bytes() == red
    assert files[0].is_relative_to(tmp_path / "run" / "vision-images")
    mtimes = [f.stat().st_mtime_ns for f in files]
    again, _ = read_sources(recipe, recipe.vision.captions)  # a rerun writes nothing again
    assert [r["images"] for r in again] == [r["images"] for r in records]
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    signature = images_signature(recipe)
    loads = hub._fingerprint.cache_info().misses
    assert images_signature(recipe) == signature
    assert hub._fingerprint.cache_info().misses == loads  # each dataset's fingerprint read once
    datasets.Dataset.from_dict({"image": [{"bytes": blue, "path": None}], "caption": ["Blau."]},
                               features=feats).save_to_disk(str(tmp_path / "caps"))
    assert images_signature(recipe) != signature  # a local dataset written again is read again

    # options are checked when the recipe loads, naming the field (was: when the stage read them)
    with pytest.raises(RecipeError, match=r"unknown key vision\.captions\.0\.options\.colum"):
        _recipe(tmp_path, f"    - {{path: {tmp_path / 'caps'}, format: hf, options: {{colum: x}}}}\n")


def test_hf_options_bad_on_the_command_line_are_one_line(tmp_path):
    """An unknown and a wrongly typed option of an hf vision source: exit 2, one line naming the
    recipe file and the field, before any stage runs."""
    import subprocess
    import sys

    from helpers import one_line_error

    for options, needle in (("{colum: x}", "unknown key vision.captions.0.options.colum"),
                            ("{split: [a, b]}", "vision.captions.0.options.split: must be a valid string")):
        p = tmp_path / "r.yaml"
        p.write_text(f"run_dir: {tmp_path / 'run'}\nvision:\n  encoder: enc\n  captions:\n"
                     f"    - {{path: data, format: hf, options: {options}}}\n", encoding="utf-8")
        res = subprocess.run([sys.executable, "-m", "mothertongue", "validate", str(p)], capture_output=True,
                             text=True, timeout=120)
        one_line_error(res, str(p), needle)
