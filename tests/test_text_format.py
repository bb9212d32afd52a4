"""The instruction#response text format: comments, _EVAL_, errors with file and line."""

from __future__ import annotations

import pytest

from mothertongue.config import SourceConfig
from mothertongue.conversation import DataError
from mothertongue.formats import IngestReport
from mothertongue.formats.text import TextAdapter

SAMPLE = (
    "\ufeff# Kommentar\r\n"
    "Sag hallo.#Hallo!\r\n"
    "\r\n"
    "Nenne # Zeichen.#Ein # steht hier.\n"
    "Zwei Zeilen.#Erste\\nZweite\n"
    "# _EVAL_ ab hier\n"
    "Sag tschüss.#Tschüss!\n"
)


def _read(tmp_path, text, on_error="stop"):
    p = tmp_path / "d.txt"
    p.write_text(text, encoding="utf-8", newline="")
    rep = IngestReport(on_error)
    convs = list(TextAdapter(SourceConfig(path=str(p)), {}).read(p, rep))
    return p, rep, convs


def test_parses_comments_eval_and_bom(tmp_path):
    _, rep, convs = _read(tmp_path, SAMPLE)
    assert [c.messages[0].content for c in convs] == ["Sag hallo.", "Nenne", "Zwei Zeilen.", "Sag tschüss."]
    assert convs[1].messages[1].content == "Zeichen.#Ein # steht hier."
    assert convs[2].messages[1].content == "Erste\nZweite"
    assert [c.meta.get("split") for c in convs] == [None, None, None, "test"]
    assert [c.meta["line"] for c in convs] == [2, 4, 5, 7]
    assert rep.read == 4
    for c in convs:
        c.validate()
    assert len({c.id for c in convs}) == 4


def test_ids_are_stable_across_edits(tmp_path):
    _, _, a = _read(tmp_path, "A.#B\nC.#D\n")
    _, _, b = _read(tmp_path, "# neu\nX.#Y\nC.#D\nA.#B\n")
    assert {c.id for c in a} <= {c.id for c in b}


def test_missing_separator_is_an_error_with_file_and_line(tmp_path):
    with pytest.raises(DataError) as e:
        _read(tmp_path, "A.#B\nkein trenner hier\n")
    assert "d.txt:2:" in str(e.value) and "'#'" in str(e.value)


def test_skip_mode_counts_and_keeps_good_lines(tmp_path):
    _, rep, convs = _read(tmp_path, "A.#B\nkaputt\nFrage.#   \nC.#D\n", on_error="skip")
    assert [c.messages[0].content for c in convs] == ["A.", "C."]
    assert rep.skipped["missing separator"] == 1
    assert rep.skipped["empty response"] == 1
    assert "d.txt:2" in rep.examples["missing separator"][0]


def test_not_utf8_is_reported(tmp_path):
    p = tmp_path / "d.txt"
    p.write_bytes("Grüß dich.#Hallo\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        list(TextAdapter(SourceConfig(path=str(p)), {}).read(p, IngestReport()))
