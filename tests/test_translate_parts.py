"""The translate wing's parts on their own: the per-leg memory store, record keys, the one
batching layer (engine `batch_tokens`), mt-bench's token budget.

    python -m pytest -q tests/test_translate_parts.py
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mothertongue.engines import load_engine
from mothertongue.engines.catalogue import Leg
from mothertongue.engines.memory import Memory
from mothertongue.translate.plan import RecordKey, TextKey
from test_translate_fixtures import random_sentence, tiny_marian_path, to_xx


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> Path:
    return tiny_marian_path(tmp_path_factory)


def test_leg_store_keeps_legs_and_settings_apart(tmp_path):
    mem = Memory(tmp_path / "tm.sqlite")
    en_xx, en_yy = Leg("en", "xx", "m1"), Leg("en", "yy", "m1")
    mem.for_leg("ctranslate2:beam1", en_xx).put([("cat.", "tacka.", "ok")])
    mem.for_leg("ctranslate2:beam1", en_yy).put([("cat.", "CAT.", "retried")])
    assert mem.for_leg("ctranslate2:beam1", en_xx).get({"cat.", "dog."}) == {"cat.": ("tacka.", "ok")}
    assert mem.for_leg("ctranslate2:beam1", en_yy).get(["cat."]) == {"cat.": ("CAT.", "retried")}
    assert mem.for_leg("ctranslate2:beam4", en_xx).get(["cat."]) == {}  # other settings: not the same translation
    assert mem.for_leg("ctranslate2:beam1", Leg("en", "xx", "m2")).get(["cat."]) == {}
    mem.close()


def test_text_keys_name_their_record_and_place():
    conv = TextKey(RecordKey("conv", "train", 3), "messages", 1)
    assert conv.record == ("conv", "train", 3) and conv.label == "train/3/1"
    pair = RecordKey("pair", "pairs", 5)
    assert TextKey(pair, "prompt", 0).label == "5/prompt/0" and TextKey(pair, "chosen").label == "5/chosen"
    assert {conv.record: 1}[RecordKey("conv", "train", 3)] == 1  # hashable, equal by value


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["ctranslate2", "transformers"])
def test_batch_tokens_is_the_engines_one_budget(tiny_marian, tmp_path, engine):
    opts = {"cache_dir": str(tmp_path / "ct2")} if engine == "ctranslate2" else {}
    eng = load_engine(engine, str(tiny_marian), "cpu", opts, batch_tokens=40)
    assert eng.batch_tokens == 40
    rng = random.Random(4)
    texts = [random_sentence(rng, 1, 9) for _ in range(40)]
    batches = eng.batches(texts, beam_size=2)
    assert sorted(i for b in batches for i in b) == list(range(len(texts)))
    assert len(batches) > 1
    for b in batches:
        width = max(eng.count_tokens(texts[i]) for i in b)
        assert len(b) == 1 or len(b) * width * 2 <= 40
    assert eng.translate(texts, "en", "xx") == [to_xx(t) for t in texts]
    with pytest.raises(Exception, match="translate.batch_tokens must be > 0"):
        load_engine(engine, str(tiny_marian), "cpu", opts, batch_tokens=0)


@pytest.mark.slow
def test_mt_bench_uses_the_given_batch_tokens(tiny_marian, tmp_path):
    from mothertongue.mtbench import bench

    rng = random.Random(8)
    src = [random_sentence(rng) for _ in range(10)]
    data = tmp_path / "dev.tsv"
    data.write_text("".join(f"{s}\t{to_xx(s)}\n" for s in src), encoding="utf-8")
    rows = bench(data, [str(tiny_marian)], "en", "xx", batch_tokens=64, options=[f"cache_dir={tmp_path / 'ct2'}"])
    assert rows[0]["batch_tokens"] == 64 and rows[0]["bleu"] == 100.0
