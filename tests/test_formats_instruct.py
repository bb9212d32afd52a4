"""Instruction formats (Alpaca, Dolly, Natural/Unnatural Instructions, ShareGPT, OpenAI, preference,
tabular) on the fixtures in tests/fixtures/ingest: each quirk converts or fails with file:line:field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mothertongue.config import SourceConfig
from mothertongue.conversation import DataError
from mothertongue.formats import FORMATS, IngestReport, detect_format

FIX = Path(__file__).parent / "fixtures" / "ingest"


def read(fmt, path, options=None, on_error="stop", **src):
    rep = IngestReport(on_error)
    adapter = FORMATS.get(fmt)(SourceConfig(path=str(path), **src), options or {})
    out = list(adapter.read(Path(path), rep))
    return out, rep


def test_alpaca_json_list_crlf_escapes_code():
    convs, rep = read("alpaca", FIX / "alpaca.json")
    assert rep.read == 4 and not rep.skipped
    assert [c.meta["line"] for c in convs] == [2, 7, 12, 17]
    assert convs[0].messages[1].content == "Rot, Grün und Blau."  # \u00fc escape decoded
    assert convs[1].messages[0].content == "Übersetze ins Deutsche.\n\nGood morning!"  # input appended
    code = convs[2].messages[1].content
    assert code.startswith("```python\ndef add(a, b):\n    return a + b\n```") and "\r" not in code
    assert convs[3].messages[0].content == "Erkläre kurz: Was ist ein Emoji?"  # blank input ignored
    assert convs[3].messages[1].content.endswith("\U0001F600.")
    assert convs[3].meta["extra"] == {"text": "legacy prompt"}  # unknown fields kept
    for c in convs:
        c.validate()


def test_alpaca_bad_lines_stop_with_file_line_field():
    with pytest.raises(DataError, match=r"alpaca_bad.jsonl:2: invalid JSON"):
        read("alpaca", FIX / "alpaca_bad.jsonl")


def test_alpaca_bad_lines_skipped_and_counted():
    convs, rep = read("alpaca", FIX / "alpaca_bad.jsonl", on_error="skip")
    assert [c.meta["line"] for c in convs] == [1, 6]
    assert rep.read == 6
    assert rep.skipped == {"invalid JSON": 1, "missing field output": 1, "empty output": 1, "encoding": 1}
    assert rep.examples["missing field output"][0].endswith("alpaca_bad.jsonl:3: field 'output' is missing")
    assert "alpaca_bad.jsonl:5: not UTF-8" in rep.examples["encoding"][0]


def test_encodings_utf16_and_declared_latin1(tmp_path):
    rows = [{"instruction": "Grüße?", "input": "", "output": "Grüß Gott!"}]
    p16 = tmp_path / "u16.json"
    p16.write_bytes(json.dumps(rows, ensure_ascii=False).encode("utf-16"))
    convs, _ = read("alpaca", p16)
    assert convs[0].messages[1].content == "Grüß Gott!"
    p1 = tmp_path / "l1.jsonl"
    p1.write_bytes(json.dumps(rows[0], ensure_ascii=False).encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"l1.jsonl:1: not UTF-8"):
        read("alpaca", p1)
    convs, _ = read("alpaca", p1, encoding="latin-1")
    assert convs[0].messages[0].content == "Grüße?"


def test_dolly_context_and_category_tag():
    convs, rep = read("dolly", FIX / "dolly.jsonl")
    assert [c.tags for c in convs] == [["open_qa"], ["closed_qa"], ["classification"]]
    assert convs[0].messages[0].content == "Welche Stadt ist die Hauptstadt von Österreich?"
    assert convs[1].messages[0].content.endswith("\n\nDer Verein wurde 1923 in Kiel gegründet und hat 300 Mitglieder.")
    assert convs[2].messages[0].content == "Ordne zu: Apfel oder Auto?"  # context null


@pytest.mark.parametrize("answer,expected", [("first", ["negativ", "positiv"]), ("all", ["negativ", "positiv", "sehr positiv"])])
def test_natural_instructions_one_conversation_per_instance(answer, expected):
    convs, rep = read("natural_instructions", FIX / "ni", {"answer": answer}, on_error="skip")
    assert [c.messages[-1].content for c in convs] == expected
    assert rep.read == 3 and rep.skipped == {"empty output": 1}  # instance 3 has no answer
    assert "Instances[2]" in rep.examples["empty output"][0]
    c = convs[0]
    assert c.id == "task900-a1" and c.lang == "de" and c.tags == ["Sentiment Analysis"]
    assert c.messages[0].content.startswith("In dieser Aufgabe") and c.messages[0].content.endswith("Der Film war langweilig.")


def test_natural_instructions_definition_as_system_with_examples():
    convs, _ = read("natural_instructions", FIX / "ni", {"definition": "system", "examples": 1}, on_error="skip")
    roles = [m.role for m in convs[0].messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert convs[0].messages[2].content == "positiv"  # the positive example's answer
    convs[0].validate()


def test_unnatural_core_and_full():
    core, rep = read("unnatural", FIX / "unnatural_core.jsonl")
    assert [c.messages[1].content for c in core] == ["8", "dunkel"]
    assert core[0].messages[0].content.endswith("Zahl: 4\n\nDie Ausgabe ist eine ganze Zahl.")
    assert core[1].messages[0].content == "Nenne das Gegenteil des Wortes.\nWort: hell"  # empty constraints
    full, rep = read("unnatural", FIX / "unnatural_full.jsonl")
    assert rep.read == 3 and [c.tags for c in full] == [[], ["reformulation"], ["reformulation"]]
    _, rep = read("unnatural", FIX / "unnatural_full.jsonl", {"reformulations": False})
    assert rep.skipped == {"reformulation (options.reformulations=false)": 2}


def test_sharegpt_roles_system_ids_meta_and_tools():
    convs, rep = read("sharegpt", FIX / "sharegpt.json")
    assert convs[0].id == "sharegpt-sg1" and len(convs[0].messages) == 4
    assert convs[0].meta["extra"] == {"model": "gpt-4", "lang": "de"}
    assert [m.role for m in convs[1].messages] == ["system", "user", "assistant"]
    tools, rep = read("sharegpt", FIX / "sharegpt_tools.jsonl", on_error="skip")
    t = tools[0]
    # tool use keeps its structure (issue #14): a tool call, a tool result, the schemas
    assert [m.role for m in t.messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert t.messages[2].tool_calls == [{"type": "function", "function": {"name": "wetter", "arguments": {"ort": "Kiel"}}}]
    assert t.messages[3].content == '{"temp": 12, "himmel": "bewölkt"}'
    assert t.meta["source_roles"] == ["human", "function_call", "observation", "gpt"]
    assert t.tools == [{"type": "function", "function": {"name": "wetter", "parameters": {"ort": "string"}}}]
    t.validate()
    assert rep.skipped == {"unknown role": 1}
    assert "sharegpt_tools.jsonl:2: field 'conversations[1].from' is 'robot'" in rep.examples["unknown role"][0]
    # a configurable role map fixes it
    tools, rep = read("sharegpt", FIX / "sharegpt_tools.jsonl", {"roles": {"robot": "assistant"}})
    assert tools[1].messages[1].content == "Piep"


def test_openai_messages_parts_and_null_content():
    convs, rep = read("openai", FIX / "openai.jsonl", on_error="skip")
    assert [m.role for m in convs[0].messages] == ["system", "user", "assistant"]
    assert convs[1].id == "openai-oa2" and convs[1].messages[0].content == "Beschreibe das Bild."
    assert rep.skipped == {"empty content": 1}
    assert "openai.jsonl:3: field 'messages[1].content'" in rep.examples["empty content"][0]


def test_preference_strings_lists_and_implicit_prompt():
    pairs, rep = read("preference", FIX / "preference.jsonl")
    assert [p.chosen for p in pairs] == ["Paris.", "Blau.", "Hallo!", "Ja."]
    assert pairs[2].prompt[0].content == "Gruß mich." and pairs[2].rejected == "Nein."
    with pytest.raises(DataError, match="identical"):
        pairs[3].validate()  # the ingest stage validates; chosen == rejected is a bad record there


def test_tabular_csv_with_mapping_quoted_newlines_and_rows():
    cols = {"instruction": "Frage", "input": "Kontext", "output": "Antwort", "lang": "Sprache"}
    convs, rep = read("tabular", FIX / "table.csv", {"columns": cols}, on_error="skip")
    assert [c.meta["line"] for c in convs] == [2, 3, 6]
    assert convs[1].messages[1].content == "Erste Zeile\nZweite Zeile"
    assert convs[0].lang == "de" and convs[0].meta["extra"] == {"Quelle": "faq"}
    assert rep.skipped == {"empty Antwort": 1} and "table.csv:5: field 'Antwort' is empty" in rep.examples["empty Antwort"][0]


def test_tabular_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"q": ["Eins?", "Zwei?"], "a": ["1", None]}), p)
    convs, rep = read("tabular", p, {"columns": {"instruction": "q", "output": "a"}}, on_error="skip")
    assert [c.messages[1].content for c in convs] == ["1"]
    assert rep.examples["missing field a"] == [f"{p} row 1: field 'a' is missing"]


@pytest.mark.parametrize("name,fmt", [
    ("alpaca.json", "alpaca"), ("alpaca_bad.jsonl", "alpaca"), ("dolly.jsonl", "dolly"), ("ni", "natural_instructions"),
    ("unnatural_core.jsonl", "unnatural"), ("oasst_flat.jsonl", "oasst"), ("oasst_trees.jsonl", "oasst"),
    ("sharegpt.json", "sharegpt"), ("openai.jsonl", "openai"), ("preference.jsonl", "preference"),
    ("table.csv", "tabular"),
])
def test_auto_detection_says_why(name, fmt):
    got, why = detect_format(FIX / name, FORMATS)
    assert got == fmt and why


def test_wrong_explicit_format_names_missing_fields():
    with pytest.raises(DataError) as e:
        read("alpaca", FIX / "sharegpt.json", on_error="skip")
    msg = str(e.value)
    assert "sharegpt.json:2: not in alpaca format: missing field(s) instruction, output" in msg
    assert "looks like sharegpt" in msg and "\n" not in msg


@pytest.mark.parametrize("name", FORMATS.names())
def test_every_format_imports_and_documents_a_row(name):
    import sys

    cls = FORMATS.get(name)
    doc = sys.modules[cls.__module__].__doc__
    assert FORMATS.doc(name) and "becomes" in doc and "mothertongue" in doc
