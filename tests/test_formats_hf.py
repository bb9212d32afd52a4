"""Hugging Face datasets through `datasets`: save_to_disk folders (Dataset and DatasetDict) and
parquet folders, with the row format given, detected, or a column mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from mothertongue.config import SourceConfig
from mothertongue.conversation import Conversation, DataError, PreferencePair
from mothertongue.formats import FORMATS, IngestReport, detect_format

DOLLY = {
    "instruction": ["Nenne eine Farbe.", "Wie heißt du?", "Leer"],
    "context": ["", "Ich heiße Ada.", ""],
    "response": ["Rot.", "Ada.", ""],
    "category": ["open_qa", "closed_qa", "open_qa"],
}


def read(path, options, on_error="skip"):
    rep = IngestReport(on_error)
    out = list(FORMATS.get("hf")(SourceConfig(path=str(path), format="hf"), options).read(Path(path), rep))
    return out, rep


def test_save_to_disk_dataset_dict_detected_rows(tmp_path):
    import datasets

    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(DOLLY),
                               "test": datasets.Dataset.from_dict({k: v[:1] for k, v in DOLLY.items()})})
    dd.save_to_disk(str(tmp_path / "dolly"))
    assert detect_format(tmp_path / "dolly", FORMATS)[0] == "hf"
    out, rep = read(tmp_path / "dolly", {"split": "train"})
    assert [c.messages[1].content for c in out] == ["Rot.", "Ada."]
    assert out[1].tags == ["closed_qa"] and out[1].meta == {"file": f"{tmp_path / 'dolly'}[train]", "row": 1}
    assert rep.read == 3 and rep.skipped == {"empty response": 1}
    assert rep.examples["empty response"] == [f"{tmp_path / 'dolly'}[train] row 2: field 'response' is empty"]
    assert any("detected as dolly" in n for n in rep.notes)
    with pytest.raises(DataError, match="no split 'validation'"):
        read(tmp_path / "dolly", {"split": "validation"})


def test_parquet_folder_with_column_mapping(tmp_path):
    import datasets

    folder = tmp_path / "pq" / "data"
    folder.mkdir(parents=True)
    datasets.Dataset.from_dict({"frage": ["Eins?", "Zwei?"], "antwort": ["1", "2"]}).to_parquet(str(folder / "train-0.parquet"))
    out, rep = read(tmp_path / "pq", {"split": "train", "columns": {"instruction": "frage", "output": "antwort"}, "lang": "de"})
    assert [(c.messages[0].content, c.messages[1].content, c.lang) for c in out] == [("Eins?", "1", "de"), ("Zwei?", "2", "de")]


def test_oasst_rows_from_a_dataset(tmp_path):
    import datasets

    rows = {"message_id": ["p", "a", "b"], "parent_id": [None, "p", "p"], "role": ["prompter", "assistant", "assistant"],
            "text": ["Hallo?", "Hallo!", "Was?"], "lang": ["de"] * 3, "rank": [None, 0, 1]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "oa"))
    out, rep = read(tmp_path / "oa", {"format": "oasst"})
    convs = [r for r in out if isinstance(r, Conversation)]
    pairs = [r for r in out if isinstance(r, PreferencePair)]
    assert [c.meta["message_ids"] for c in convs] == [["p", "a"]]
    assert [(p.chosen, p.rejected) for p in pairs] == [("Hallo!", "Was?")]


def test_unknown_inner_option_is_an_error(tmp_path):
    import datasets

    datasets.Dataset.from_dict(DOLLY).save_to_disk(str(tmp_path / "d"))
    with pytest.raises(DataError, match="unknown option"):
        read(tmp_path / "d", {"format": "dolly", "colums": {}})
