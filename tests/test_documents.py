"""Document corpora: a `documents` source through ingest, translate (segmentation, protection,
memory, quality gate) and into build's native text for continued pretraining.

    python -m pytest -q tests/test_documents.py

Translation goes through the remote engine to a stub OpenAI-compatible server on loopback that
answers `[de] <segment>`, so every translated piece of prose is visible and the expected output
is the document with each sentence replaced, everything else byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import run_recipe
from stub_openai import Stub

S = [
    "Cats are small animals that live with people.",
    "They sleep for most of the day.",
    "Install the package first.",
    "Then run the script below.",
    "Feed the cat twice a day.",
    "Keep fresh water nearby.",
    "Read more on the website.",
]
DOC = (
    "# {0}\n\n"
    "{1} {2}\n\n"
    "## {3}\n\n"
    "- {4}\n"
    "- {5}\n"
    "  1. {6}\n\n"
    "```python\nimport cats\nprint(cats.feed('The cat eats.'))\n```\n\n"
    "See https://example.com/cats.html for details, or run `cats --help` now.\n"
)
# Trailing-text segments of the last line: "See", "for details, or run", "now."
LAST = ("See", "for details, or run", "now.")


def expected_doc() -> str:
    last = "{} https://example.com/cats.html {} `cats --help` {}\n".format(
        *(f"[de] {t}" for t in LAST)
    )
    body = DOC.split("See https://")[0].format(*(f"[de] {s}" for s in S))
    return body + last


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("documents")
    doc = DOC.format(*S)
    (tmp / "docs.jsonl").write_text(
        json.dumps({"text": doc, "title": "Cats"}) + "\n" + json.dumps({"text": "The dog barks at the moon."}) + "\n"
        + json.dumps({"text": doc, "title": "a copy"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    (tmp / "paras.txt").write_text(
        "One paragraph here.\n\n\nAnother paragraph there.\n", encoding="utf-8"
    )
    (tmp / "d.txt").write_text("Name a color.#Red.\nSay hello.#Hello!\n", encoding="utf-8")
    stub = Stub()
    recipe = tmp / "r.yaml"
    recipe.write_text(
        f"run_dir: {tmp / 'run'}\nlanguage: de\n"
        "ingest:\n  dev_fraction: 0\n  test_fraction: 0\n  sources:\n"
        "    - {path: d.txt, format: text, options: {lang: en}}\n"
        "    - {path: docs.jsonl, format: documents, options: {lang: en}}\n"
        "    - {path: paras.txt, format: documents, options: {lang: en}}\n"
        "translate:\n  enabled: true\n  engine: remote\n  model: tiny-mt\n  progress: false\n  quality_gate: false\n"
        f"  options: {{url: '{stub.url}'}}\n"
        "build:\n  template: chatml\n  native_as: raw\n",
        encoding="utf-8",
    )
    try:
        run_recipe(recipe, [], stages=["ingest", "translate"])
        yield tmp / "run", stub
    finally:
        stub.close()


def read(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_documents_are_ingested_and_counted(run):
    rundir, _ = run
    docs = read(rundir / "ingest" / "documents.jsonl")
    assert [d["text"] for d in docs] == [DOC.format(*S).strip("\n"), "The dog barks at the moon.",
                                         "One paragraph here.", "Another paragraph there."]  # fmt: skip
    assert docs[0]["meta"]["extra"] == {"title": "Cats"} and docs[3]["meta"]["line"] == 4
    report = json.loads((rundir / "ingest" / "report.json").read_text())
    assert report["documents"] == 4 and report["read"] == 2 + 3 + 2
    assert report["skipped"] == {"duplicate (exact)": 1}  # the copy of the first document


def test_structure_comes_back_byte_identical_around_translated_prose(run):
    rundir, stub = run
    out = read(rundir / "translate" / "documents.jsonl")
    assert out[0]["text"] == expected_doc().strip("\n")
    assert out[0]["lang"] == "de" and out[0]["meta"]["source_text"] == DOC.format(*S).strip("\n")
    assert [d["text"] for d in out[1:]] == ["[de] The dog barks at the moon.", "[de] One paragraph here.",
                                            "[de] Another paragraph there."]  # fmt: skip
    report = json.loads((rundir / "translate" / "report.json").read_text())
    assert report["written"]["documents"] == 4 and report["written"]["train"] == 2
    # the code block, the URL and the inline code never reached the server
    assert stub.requests == report["segments"]["translated"]
    sent = stub.texts
    assert not any("import cats" in t or "example.com" in t or "--help" in t for t in sent)
    # a rerun takes every segment from the memory
    run_recipe(rundir.parent / "r.yaml", [], stages=["translate"], force=True)
    assert (
        json.loads((rundir / "translate" / "report.json").read_text())["segments"]["translated"]
        == 0
    )


def test_translated_documents_feed_build_native_text(run):
    rundir, _ = run
    run_recipe(rundir.parent / "r.yaml", [], stages=["build"])
    texts = [r["text"] for r in read(rundir / "build" / "text.jsonl")]
    joined = "\n".join(texts)
    assert (
        "[de] Cats are small animals that live with people." in joined
        and "[de] The dog barks at the moon." in joined
    )
    assert "```python\nimport cats\n" in joined
    assert not any(
        "Cats are small animals" in t.replace("[de] Cats are small animals", "") for t in texts
    )


def test_text_files_split_at_a_separator_line():
    from mothertongue.formats.documents import split_documents

    text = "# A\n\nPara one.\n\nPara two.\n---\n\n# B\n\nOnly.\n  ---  \nlast\n"
    assert list(split_documents(text, "---")) == [
        (1, "# A\n\nPara one.\n\nPara two."),
        (8, "# B\n\nOnly."),
        (12, "last"),
    ]
    assert list(split_documents("a\n\n\n b\n", None)) == [(1, "a"), (4, " b")]


@pytest.mark.slow
def test_continued_pretraining_trains_on_the_translated_documents(run):
    from helpers import TINY

    rundir, _ = run
    run_recipe(rundir.parent / "r.yaml", ["train.method=cpt", "train.epochs=1", "train.batch_size=2",
                                         "evaluate.enabled=false", *TINY], stages=["build", "train"])  # fmt: skip
    summary = json.loads((rundir / "train" / "manifest.json").read_text())["summary"]
    assert summary["method"] == "cpt" and summary["steps"] >= 1 and summary["tokens"] > 100
    assert summary["counts"] == {"blank text rows skipped": 0}


def test_export_data_has_the_translated_documents(run, tmp_path):
    from datasets import load_dataset

    from mothertongue.export.data import export_data

    rundir, _ = run
    out = export_data(rundir, tmp_path / "out")["out"]
    rows = load_dataset(out, "documents", cache_dir=str(tmp_path / "cache"))["train"].to_list()
    want = read(rundir / "translate" / "documents.jsonl")
    assert [(r["id"], r["text"], r["source_text"]) for r in rows] == [
        (d["id"], d["text"], d["meta"]["source_text"]) for d in want
    ]


def test_parquet_file_and_hf_dataset_folder_sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mothertongue.config import load_recipe
    from mothertongue.formats.report import IngestReport
    from mothertongue.ingest import read_sources

    rows = [{"body": DOC.format(*S), "url": "https://example.com/a"}, {"body": "Short text.", "url": "b"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "docs.parquet")
    (tmp_path / "ds").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ds" / "train-00000-of-00001.parquet")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "ingest:\n  sources:\n"
        "    - {path: docs.parquet, format: documents, options: {field: body, lang: en}}\n"
        "    - {path: ds, format: hf, options: {format: documents, field: body, lang: en}}\n",
        encoding="utf-8",
    )
    docs: list = []
    read_sources(load_recipe(recipe), IngestReport(), documents=docs)
    assert [d.text for d in docs] == [DOC.format(*S).strip("\n"), "Short text."] * 2
    assert docs[0].meta["extra"] == {"url": "https://example.com/a"} and docs[0].meta["row"] == 0
    assert docs[3].meta["row"] == 1 and docs[3].lang == "en"
