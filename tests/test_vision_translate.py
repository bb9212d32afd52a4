"""Vision data through the translate machinery: English captions and conversations become "xx"
(the tiny en->xx Marian model the translate tests train), image tokens stay where they were,
images never reach the translation memory, and a rerun is answered from the memory."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest

from test_translate_fixtures import random_sentence, tiny_marian_path, to_xx

pytestmark = pytest.mark.slow


def _sentence(rng: random.Random) -> str:
    return random_sentence(rng, 2, 6).rstrip(".!?") + "."


def _setup(tmp_path: Path, model: Path):
    from PIL import Image

    rng = random.Random(3)
    for k in range(3):
        Image.new("RGB", (16, 16), (80 * k, 0, 0)).save(tmp_path / f"{k}.png")
    captions = [_sentence(rng) for _ in range(3)]
    (tmp_path / "caps.csv").write_text(
        "image,caption\n" + "".join(f"{k}.png,{c}\n" for k, c in enumerate(captions)),
        encoding="utf-8",
    )
    question, after, answer = _sentence(rng), _sentence(rng), _sentence(rng)
    convo = {"image": ["0.png", "1.png"], "conversations": [
        {"from": "human", "value": f"{question}\n<image>\n{after} <image>"}, {"from": "gpt", "value": answer}]}  # fmt: skip
    (tmp_path / "llava.json").write_text(json.dumps([convo]), encoding="utf-8")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"name: t\nrun_dir: {tmp_path / 'run'}\nlanguage: xx\n"
        f"translate:\n  enabled: true\n  model: {model}\n  progress: false\n"
        "vision:\n  encoder: enc\n"
        "  captions:\n    - {path: caps.csv, lang: en}\n"
        "  instructions:\n    - {path: llava.json, lang: en}\n",
        encoding="utf-8",
    )
    return recipe, captions, (question, after, answer)


def test_captions_and_conversations_are_translated_images_stay_out_of_the_memory(
    tmp_path, tmp_path_factory
):
    from mothertongue.config import load_recipe
    from mothertongue.runs import RunDir
    from mothertongue.translate import memory_path
    from mothertongue.vision.stage import read_data

    recipe_path, captions, (question, after, answer) = _setup(
        tmp_path, tiny_marian_path(tmp_path_factory)
    )
    recipe = load_recipe(recipe_path)
    out = tmp_path / "run" / "vision.partial"
    out.mkdir(parents=True)
    caps, instr, _, _, _ = read_data(recipe, RunDir(tmp_path / "run"), out)

    assert [c["messages"][1]["content"] for c in caps] == [to_xx(c) for c in captions]
    # the question the captions format wrote is in the target language already: not translated
    assert all(c["messages"][0]["content"] == "<image>\nDescribe the image briefly." for c in caps)
    assert [c["images"] for c in caps] == [
        [str((tmp_path / f"{k}.png").resolve())] for k in range(3)
    ]
    (conv,) = instr
    assert conv["messages"][0]["content"] == f"{to_xx(question)}\n<image>\n{to_xx(after)} <image>"
    assert conv["messages"][1]["content"] == to_xx(answer)
    assert conv["source_messages"][1]["content"] == answer and len(conv["images"]) == 2

    report = json.loads((out / "data_report.json").read_text(encoding="utf-8"))["translation"]
    assert report["kept"] == report["records"] == 4 and report["flagged_count"] == 0
    assert report["segments"]["translated"] > 0
    with sqlite3.connect(memory_path(recipe)) as db:
        rows = [str(v) for t, in db.execute("select name from sqlite_master where type='table'")
                for row in db.execute(f"select * from {t}") for v in row]  # fmt: skip
    assert any(to_xx(answer).rstrip(".") in v for v in rows)  # the memory holds the text...
    assert not [
        v for v in rows if ".png" in v or "<image>" in v or "image/" in v
    ]  # ...and nothing of the images

    again, *_ = read_data(recipe, RunDir(tmp_path / "run"), out)
    assert [c["messages"] for c in again] == [c["messages"] for c in caps]
    rerun = json.loads((out / "data_report.json").read_text(encoding="utf-8"))["translation"]
    assert rerun["segments"].get("translated", 0) == 0  # every segment from the memory
