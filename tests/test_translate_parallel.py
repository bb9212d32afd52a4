"""The one parallel-file reader (text.parallel) behind mt-bench, evaluate's parallel files and
build's translation tasks: tabs split rows, quotes are text unless `quoting` asks.

    python -m pytest -q tests/test_translate_parallel.py
"""

from __future__ import annotations

import json

import pytest

from mothertongue.conversation import DataError
from mothertongue.text.parallel import read_parallel

QUOTED = [
    ('He said "hello" to me.', 'Er sagte „hallo“ zu mir.'),
    ('"Open quote without an end', '"Offenes Zitat ohne Ende'),
    ("The 12\" pipe.", "Das 12\"-Rohr."),
    ('Plain line.', 'Schlichte Zeile.'),
]


def _tsv(tmp_path, rows, name="p.tsv"):
    p = tmp_path / name
    p.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return p


def test_tsv_quotes_are_text_and_rows_never_merge(tmp_path):
    pairs = read_parallel(_tsv(tmp_path, QUOTED))
    assert [(p.source, p.target) for p in pairs] == QUOTED
    assert [p.line for p in pairs] == [1, 2, 3, 4]


def test_every_caller_reads_the_same_rows(tmp_path):
    from mothertongue.metrics.suites import read_parallel as suite_pairs
    from mothertongue.mix import read_parallel as mix_rows

    assert suite_pairs(_tsv(tmp_path, QUOTED)) == QUOTED
    jl = tmp_path / "parallel.jsonl"
    jl.write_text("".join(json.dumps({"src": s, "tgt": t, "src_lang": "en"}) + "\n" for s, t in QUOTED), encoding="utf-8")
    assert [(r["src"], r["tgt"], r["src_lang"]) for r in mix_rows(jl)] == [(s, t, "en") for s, t in QUOTED]
    assert mix_rows(tmp_path / "absent.jsonl") == []


def test_quoting_option_reads_csv_quotes_and_catches_rows_spanning_lines(tmp_path):
    ok = tmp_path / "q.tsv"
    ok.write_text('"a\tb"\t"c ""d"""\nplain\ttext\n', encoding="utf-8")
    assert [(p.source, p.target) for p in read_parallel(ok, quoting=True)] == [("a\tb", 'c "d"'), ("plain", "text")]
    spans = tmp_path / "spans.tsv"
    spans.write_text('"first\nsecond"\tx\nthird\ty\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"spans.tsv: 2 rows read with CSV quoting from 3 non-empty lines"):
        read_parallel(spans, quoting=True)
    with pytest.raises(DataError, match=r"bad.tsv: .*\(CSV quoting\)"):  # the open quote swallows the rest
        read_parallel(_tsv(tmp_path, QUOTED, "bad.tsv"), quoting=True)


def test_bad_rows_name_file_and_line(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_bytes(b"Good.\tGut.\n\nonly one field\n")
    with pytest.raises(DataError, match=r"x.tsv:3: expected `source<TAB>reference`"):
        read_parallel(p)
    p.write_bytes(b"Good.\tGut.\nbad \xff byte\tx\n")
    with pytest.raises(DataError, match=r"x.tsv:2: not UTF-8"):
        read_parallel(p)
    j = tmp_path / "x.jsonl"
    j.write_text('{"source": "a", "reference": "b"}\n{"source": "a", "reference": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"x.jsonl:2: field 'reference' must be a non-empty string"):
        read_parallel(j)
    (tmp_path / "empty.tsv").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="no sentence pairs"):
        read_parallel(tmp_path / "empty.tsv")


def test_limit_and_line_separators_inside_texts(tmp_path):
    p = tmp_path / "s.tsv"
    p.write_text("one\u2028two\teins\u2028zwei\r\nthree\tdrei\nfour\tvier\n", encoding="utf-8")
    pairs = read_parallel(p, limit=2)
    assert [(x.source, x.target) for x in pairs] == [("one\u2028two", "eins\u2028zwei"), ("three", "drei")]
