"""Format adapters on the inputs that used to lose or corrupt data silently (issue #14): TSV with
quotes, OpenAssistant's nested message export, column mappings, per-message languages, values
that are not text, one bad byte in a text file; and strict format options (issue #13)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mothertongue.config import SourceConfig
from mothertongue.conversation import Conversation, DataError, PreferencePair
from mothertongue.formats import FORMATS, IngestReport, detect_format

FIX = Path(__file__).parent / "fixtures" / "ingest"
REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.exists(), reason=f"absent: {REAL}")


def read(fmt, path, options=None, on_error="stop", **src):
    rep = IngestReport(on_error)
    out = list(FORMATS.get(fmt)(SourceConfig(path=str(path), **src), options or {}).read(Path(path), rep))
    for r in out:
        r.validate()
    return out, rep


# ------------------------------------------------------------------ strict options (#13)
def test_unknown_or_bad_option_names_the_recipe_path():
    with pytest.raises(DataError, match=r"^ingest.sources.2.options.threadz: unknown option for format oasst "
                                        r"\(it takes: lang, threads, k, synthetic, pairs, langs\)$"):
        FORMATS.get("oasst")(SourceConfig(path="x"), {"threadz": "all"}, "ingest.sources.2")
    with pytest.raises(DataError, match=r"^source.options.threads: must be 'best', 'all' or 'topk'"):
        FORMATS.get("oasst")(SourceConfig(path="x"), {"threads": "most"})
    with pytest.raises(DataError, match=r"options.examples: must be greater than or equal to 0"):
        FORMATS.get("natural_instructions")(SourceConfig(path="x"), {"examples": -1})


def test_hf_passes_other_options_to_the_row_format_which_checks_them():
    a = FORMATS.get("hf")(SourceConfig(path="x"), {"split": "test", "threads": "all"})
    assert a.opts.split == "test" and a.inner_options == {"threads": "all"}


# ------------------------------------------------------------------------- TSV (#14)
def _tsv(tmp_path, n=600):
    rows = ["instruction\toutput"]
    for i in range(n):
        # cells that open with a quote: CSV rules strip it, and an unclosed one swallows rows
        q = f'"Zitat {i}' if i % 3 == 0 else f'"Hallo" sagte er {i}'
        rows.append(f'{q}\t"Antwort" {i}')
    p = tmp_path / "q.tsv"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return p


def test_tsv_quotes_are_text_and_every_line_is_a_row(tmp_path):
    p = _tsv(tmp_path)
    convs, rep = read("tabular", p)
    assert rep.read == 600 and len(convs) == 600 and not rep.skipped
    assert convs[0].messages[0].content == '"Zitat 0' and convs[1].messages[0].content == '"Hallo" sagte er 1'
    assert convs[0].messages[1].content == '"Antwort" 0'
    assert [c.meta["line"] for c in convs[:3]] == [2, 3, 4]


def test_tsv_with_csv_quoting_asked_cannot_merge_rows_silently(tmp_path):
    p = _tsv(tmp_path, 30)
    convs, rep = read("tabular", p, {"quoting": "csv"}, on_error="skip")
    # the quote rules merge lines: each merge is a counted bad row or a note, never silence
    merged = sum(rep.skipped.values())
    assert len(convs) < 30 and (merged or any("span several lines" in n for n in rep.notes))
    assert rep.read == len(convs) + merged


def test_tsv_row_with_extra_cell_names_its_line(tmp_path):
    p = tmp_path / "x.tsv"
    p.write_text("instruction\toutput\nA\tB\nC\tD\tE\n")
    with pytest.raises(DataError, match=r"x.tsv:3: 3 cells, more than the header's 2"):
        read("tabular", p)


# ------------------------------------------------------------------ column mapping (#14)
def test_defaults_apply_only_to_fields_the_user_did_not_map(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("input,output\nWie spät ist es?,Drei Uhr.\n")
    (c,), _ = read("tabular", p, {"columns": {"instruction": "input", "output": "output"}})
    assert c.messages[0].content == "Wie spät ist es?"  # not "X\n\nX"


def test_a_column_feeding_two_fields_is_an_error_naming_both():
    with pytest.raises(DataError, match=r"column 'frage' feeds both instruction and input"):
        FORMATS.get("tabular")(SourceConfig(path="x"), {"columns": {"instruction": "frage", "input": "frage",
                                                                    "output": "a"}})


# ------------------------------------------------------------- OASST nested messages (#14)
def _nested_messages(tmp_path) -> Path:
    """The real tree export rewritten as OASST's nested message export: the root message per
    line, no {message_tree_id, prompt} wrapper, every key present (null when unknown)."""
    keys = ["message_id", "parent_id", "user_id", "created_date", "text", "role", "lang", "review_count",
            "review_result", "deleted", "rank", "synthetic", "model_name", "detoxify", "message_tree_id",
            "tree_state", "emojis", "labels", "replies"]

    def full(m, tree):
        out = {k: m.get(k) for k in keys}
        out["message_tree_id"] = tree
        out["replies"] = [full(r, tree) for r in m.get("replies") or []]
        return out

    lines = [json.loads(x) for x in (REAL / "oa_repo_en_100_tree_first25.jsonl").read_text().splitlines()]
    p = tmp_path / "2023-04-12_oasst_ready.messages.jsonl"
    p.write_text("".join(json.dumps(full(t["prompt"], t["message_tree_id"])) + "\n" for t in lines))
    return p


@pytest.mark.real_data
@needs_real
@pytest.mark.parametrize("threads", ["best", "all"])
def test_oasst_nested_message_export_reads_like_the_tree_export(tmp_path, threads):
    trees, rep_t = read("oasst", REAL / "oa_repo_en_100_tree_first25.jsonl", {"threads": threads}, "skip")
    nested = _nested_messages(tmp_path)
    assert detect_format(nested, FORMATS)[0] == "oasst"
    msgs, rep_m = read("oasst", nested, {"threads": threads}, "skip")
    key = lambda rs: sorted(json.dumps(r.to_dict()["messages" if isinstance(r, Conversation) else "prompt"]  # noqa: E731
                                       + [getattr(r, "chosen", ""), getattr(r, "rejected", "")]) for r in rs)
    assert len(trees) > 25 and key(msgs) == key(trees)
    assert sum(isinstance(r, PreferencePair) for r in msgs) > 0
    assert rep_m.read == rep_t.read == 272 and rep_m.skipped == rep_t.skipped


def test_oasst_rank_strings_and_bad_ids(tmp_path):
    rows = [{"message_id": "p", "parent_id": None, "role": "prompter", "text": "Frage?"},
            {"message_id": "a", "parent_id": "p", "role": "assistant", "text": "Gut.", "rank": "0"},
            {"message_id": "b", "parent_id": "p", "role": "assistant", "text": "Schlecht.", "rank": "1"},
            {"message_id": "c", "parent_id": "p", "role": "assistant", "text": "Hm.", "rank": "zwei"},
            {"message_id": ["x"], "parent_id": "p", "role": "assistant", "text": "Liste"},
            {"message_id": "d", "parent_id": {"id": "p"}, "role": "assistant", "text": "Objekt"}]
    p = tmp_path / "o.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, rep = read("oasst", p, on_error="skip")
    pairs = [r for r in out if isinstance(r, PreferencePair)]
    assert [(x.chosen, x.rejected) for x in pairs] == [("Gut.", "Schlecht.")]  # digit strings are ranks
    assert rep.skipped == {"bad field rank": 1, "bad field message_id": 1, "bad field parent_id": 1}
    assert "o.jsonl:4 message c: field 'rank' is 'zwei', expected a number" in rep.examples["bad field rank"][0]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows[:2] + rows[4:5]))
    with pytest.raises(DataError, match=r"o.jsonl:3: field 'message_id' is list, expected a string"):
        read("oasst", p)


def test_oasst_nested_duplicate_is_named_once(tmp_path):
    tree = {"message_id": "p", "role": "prompter", "text": "Hallo?", "replies": [
        {"message_id": "a", "role": "assistant", "text": "Hi.", "replies": []},
        {"message_id": "a", "role": "assistant", "text": "Hallo.", "replies": [
            {"message_id": "q", "role": "prompter", "text": "Und?", "replies": []}]}]}
    p = tmp_path / "n.jsonl"
    p.write_text(json.dumps(tree) + "\n")
    out, rep = read("oasst", p, on_error="skip")
    (example,) = rep.examples["duplicate message_id"]
    assert example.count("message a") == 1, example
    assert rep.read == 4 and rep.skipped == {"duplicate message_id": 1, "below a bad message": 1}


# ------------------------------------------------------------ per-message language (#14)
def _task(tmp_path, **langs) -> Path:
    task = {"Definition": ["Translate the German sentence into English."],
            "Positive Examples": [{"input": "Guten Morgen.", "output": "Good morning."}],
            "Instances": [{"id": "t1-0", "input": "Wie geht es dir?", "output": ["How are you?"]},
                          {"id": "t1-1", "input": "Danke.", "output": [""]}], **langs}
    d = tmp_path / "tasks"
    d.mkdir(exist_ok=True)
    p = d / "task9999_de_en_translation.json"
    p.write_text(json.dumps(task, indent=2))
    return p


def test_translation_task_messages_carry_their_own_language(tmp_path):
    p = _task(tmp_path, Input_language=["German"], Output_language=["English"], Instruction_language=["English"])
    (c,), _ = read("natural_instructions", p, {"definition": "system", "examples": 1}, on_error="skip")
    assert c.lang == "de"
    assert [(m.role, m.lang) for m in c.messages] == [
        ("system", "en"), ("user", "de"), ("assistant", "en"), ("user", "de"), ("assistant", "en")]
    assert all(d.get("lang") for d in c.to_dict()["messages"])
    # the definition (English) and the input (German) in one user turn: no single language to claim
    (c,), _ = read("natural_instructions", p, on_error="skip")
    assert [m.lang for m in c.messages] == [None, "en"]
    # a task in one language: the conversation's language is enough
    (c,), _ = read("natural_instructions", _task(tmp_path, Input_language=["German"], Output_language=["German"]),
                   on_error="skip")
    assert c.lang == "de" and [m.lang for m in c.messages] == [None, None]


def test_natural_instructions_errors_point_at_the_instance_line(tmp_path):
    p = _task(tmp_path)
    line = next(i for i, ln in enumerate(p.read_text().splitlines(), 1) if '"t1-1"' in ln) - 1
    with pytest.raises(DataError, match=rf"task9999_de_en_translation.json:{line} Instances\[1\]: field "
                                        r"'Instances\[1\].output' has no answer"):
        read("natural_instructions", p)


@pytest.mark.real_data
@needs_real
def test_real_natural_instructions_lines_are_real():
    p = REAL / "task1564_triviaqa_answer_generation.first100.json"
    convs, rep = read("natural_instructions", p, on_error="skip")
    lines = p.read_text().splitlines()
    assert rep.read == 100 and len(convs) + sum(rep.skipped.values()) == 100
    for c in convs[:20]:
        assert lines[c.meta["line"] - 1].strip() == "{" and c.id in lines[c.meta["line"]]
    (bad,) = rep.examples["empty output"]
    n = int(bad.split(":")[1].split()[0])
    assert n > 1 and lines[n - 1].strip() == "{"


# ---------------------------------------------------------------- silent changes (#14)
def test_alpaca_input_object_is_an_error_and_a_number_is_its_text(tmp_path):
    p = tmp_path / "a.jsonl"
    rows = [{"instruction": "Rechne.", "input": {"a": 1}, "output": "2"},
            {"instruction": "Verdopple.", "input": 21, "output": "42"}]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"a.jsonl:1: field 'input' is dict, expected text"):
        read("alpaca", p)
    (c,), rep = read("alpaca", p, on_error="skip")
    assert c.messages[0].content == "Verdopple.\n\n21" and rep.skipped == {"bad field input": 1}


# ------------------------------------------------------------------- one bad byte (#14)
def test_text_file_with_one_bad_byte_loses_one_line(tmp_path):
    p = tmp_path / "d.txt"
    good = [f"Frage {i}?#Antwort {i}.".encode() for i in range(40)]
    p.write_bytes(b"\n".join(good[:20] + [b"Kaputt \xff hier#Antwort."] + good[20:]) + b"\n")
    with pytest.raises(DataError, match=r"d.txt:21: the line is not UTF-8"):
        read("text", p)
    convs, rep = read("text", p, on_error="skip")
    assert len(convs) == 40 and rep.read == 41 and rep.skipped == {"encoding": 1}
    assert rep.examples["encoding"][0].startswith(f"{p}:21:") and "byte" not in rep.examples["encoding"][0]


@pytest.mark.real_data
@needs_real
def test_real_text_sample_with_a_bad_byte(tmp_path):
    data = (REAL / "srogmann_instruct_ger_bsp_1.txt").read_bytes()
    lines = data.split(b"\n")
    k = next(i for i, ln in enumerate(lines) if b"#" in ln and not ln.startswith(b"#"))
    lines[k] = lines[k].replace(b"#", b"\xe4#", 1)  # a latin-1 umlaut in a UTF-8 file
    p = tmp_path / "bsp.txt"
    p.write_bytes(b"\n".join(lines))
    clean_convs, _ = read("text", REAL / "srogmann_instruct_ger_bsp_1.txt")
    convs, rep = read("text", p, on_error="skip")
    assert len(convs) == len(clean_convs) - 1 and rep.skipped == {"encoding": 1}
    assert rep.examples["encoding"][0].startswith(f"{p}:{k + 1}:")


# ----------------------------------------------------------------------------- tool use (#14)
def test_openai_tool_calls_results_and_schemas_are_kept(tmp_path):
    row = {"messages": [
        {"role": "user", "content": "Wie ist das Wetter in Kiel?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "wetter", "arguments": "{\"ort\": \"Kiel\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 12}"},
        {"role": "assistant", "content": "12 Grad."}],
        "tools": [{"type": "function", "function": {"name": "wetter", "parameters": {"type": "object"}}}]}
    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(row) + "\n")
    (c,), rep = read("openai", p)
    assert [m.role for m in c.messages] == ["user", "assistant", "tool", "assistant"]
    assert c.messages[1].tool_calls == [{"id": "call_1", "type": "function",
                                         "function": {"name": "wetter", "arguments": {"ort": "Kiel"}}}]
    assert c.tools == row["tools"] and "extra" not in c.meta
    assert Conversation.from_dict(json.loads(json.dumps(c.to_dict()))) == c  # survives JSONL
