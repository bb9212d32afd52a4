"""`export-data`: a run's translated (and built) data as datasets other tools load, with a card.

    mothertongue export-data runs/quickstart                        # -> runs/quickstart/export-data/
    mothertongue export-data runs/quickstart --push-to-hub me/quickstart-de   # private unless --public

From the translate stage's output (ingest's when the run did not translate) and, when the run
has one, the build stage's, it writes:
- `data/<split>-00000-of-00001.parquet`: the Hugging Face dataset, one row per conversation
  (`id`, `messages`, `lang`, `source`, `tags`, `source_lang`, `source_messages`). The card's YAML
  names the files per split, so `datasets.load_dataset(OUT)` reads it (as does
  `load_dataset("parquet", data_files=...)`);
- `messages/<split>.jsonl` (OpenAI messages) and `sharegpt/<split>.jsonl` (`conversations` of
  `from`/`value`, the system prompt in `system`), plus `dataset_info.json` for LLaMA-Factory;
- `preference/<split>.jsonl` and `.parquet` when the run has preference pairs, in TRL's
  conversational format (`prompt` messages; `chosen`/`rejected`, one assistant message each);
- `documents/train-....parquet` (config `documents`): translated documents (`text`, `source_text`);
- `built/<split>.parquet` (config `built`): the build stage's training mix as messages, system
  prompts, translation tasks and native text included; `text/train.parquet` (config `text`):
  its raw native text for continued pretraining;
- `README.md`: the dataset card (sources and licenses, language pairs, translation models,
  engine and decoding settings, quality-gate counts, what was flagged and kept out).
The folder is written beside and swapped in whole, so a failed export leaves the last one as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from mothertongue.conversation import (
    SPLITS,
    Conversation,
    iter_jsonl,
    read_conversations,
    read_pairs,
    write_jsonl,
)
from mothertongue.errors import UsageError
from mothertongue.export.datacard import card
from mothertongue.runs import RunDir

SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt", "tool": "observation"}
HUB_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def message_rows(msgs: list[dict], with_tool_calls: bool) -> list[dict]:
    """role/content per message; tool calls as a JSON string (Parquet wants one type per column)."""
    rows = []
    for m in msgs:
        row = {"role": m["role"], "content": m["content"]}
        if with_tool_calls:
            row["tool_calls"] = (
                json.dumps(m["tool_calls"], ensure_ascii=False) if m.get("tool_calls") else None
            )
        rows.append(row)
    return rows


def conversation_rows(convs: list[Conversation], with_tools: bool) -> list[dict]:
    """One dataset row per conversation (the columns the card documents)."""
    rows = []
    for c in convs:
        src = c.meta.get("source_messages", [])
        row = {
            "id": c.id,
            "messages": message_rows([m.to_dict() for m in c.messages], with_tools),
            "lang": c.lang or "",
            "source": c.source,
            "tags": list(c.tags),
            "source_lang": c.meta.get("source_lang") or "",
            "source_messages": message_rows(src, with_tools),
        }
        if with_tools:
            row["tools"] = json.dumps(c.tools, ensure_ascii=False) if c.tools else None
        rows.append(row)
    return rows


def openai_message(m: dict) -> dict:
    """An OpenAI chat message: role, content and tool calls only (no per-message language)."""
    return {k: m[k] for k in ("role", "content", "tool_calls") if k in m}


def sharegpt_row(msgs: list[dict], ident: str) -> dict:
    """LLaMA-Factory/Axolotl ShareGPT: the system prompt apart, turns as from/value."""
    system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else ""
    turns = []
    for m in msgs[1 if system else 0 :]:
        if m.get("tool_calls"):
            turns.append(
                {"from": "function_call", "value": json.dumps(m["tool_calls"], ensure_ascii=False)}
            )
        else:
            turns.append({"from": SHAREGPT_FROM[m["role"]], "value": m["content"]})
    return {"id": ident, "system": system, "conversations": turns}


def trl_preference(p: dict) -> dict:
    """TRL's conversational preference row."""
    return {
        "id": p["id"],
        "prompt": [{"role": m["role"], "content": m["content"]} for m in p["prompt"]],
        "chosen": [{"role": "assistant", "content": p["chosen"]}],
        "rejected": [{"role": "assistant", "content": p["rejected"]}],
    }


def preference_rows(run: RunDir, data: Path) -> dict[str, list[dict]]:
    """The build's pairs per split (system prompts as trained), else the translated pairs as train."""
    build = run.stage("build")
    if run.complete("build"):
        names = {
            "train": "preference.jsonl",
            "dev": "preference_dev.jsonl",
            "test": "preference_test.jsonl",
        }
        return {
            s: [trl_preference(p) for p in read_jsonl(build / n)]
            for s, n in names.items()
            if (build / n).exists()
        }
    pairs = read_pairs(data / "pairs.jsonl") if (data / "pairs.jsonl").exists() else []
    rows = [trl_preference({"id": p.id, "prompt": [m.to_dict() for m in p.prompt], "chosen": p.chosen,
                            "rejected": p.rejected}) for p in pairs]  # fmt: skip
    return {"train": rows}


def read_jsonl(path: Path) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


def write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, rows)


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def parquet_name(split: str) -> str:
    return f"{split}-00000-of-00001.parquet"


def check_hub(repo: str) -> None:
    """Refuse a push now, before any work, when it cannot happen (no network is used here)."""
    if not HUB_REPO.match(repo):
        raise UsageError(f"--push-to-hub {repo!r}: expected a dataset repository id like user/name")
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise UsageError(
            f"--push-to-hub {repo}: the hub is offline (HF_HUB_OFFLINE=1); nothing was pushed"
        )
    if not get_token():
        raise UsageError(f"--push-to-hub {repo}: no Hugging Face token (set HF_TOKEN or run `hf auth login`); "
                         "nothing was pushed")  # fmt: skip


def push(out: Path, repo: str, private: bool) -> str:
    """Upload the folder as a dataset repository (created private unless `private` is False)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(out), repo_id=repo, repo_type="dataset",
                      commit_message="mothertongue export-data")  # fmt: skip
    return f"https://huggingface.co/datasets/{repo}"


def export_data(
    run_dir: Path, out: Path | None = None, push_to_hub: str | None = None, public: bool = False
) -> dict:
    """Write the datasets and the card into `out` (default RUN_DIR/export-data); returns counts."""
    run = RunDir(Path(run_dir))
    recipe = run.recipe_or_none()
    if recipe is None:
        raise UsageError(f"{run_dir}: not a run folder (no resolved recipe); run a recipe first")
    if push_to_hub:
        check_hub(push_to_hub)
    stage = (
        "translate" if run.complete("translate") else "ingest" if run.complete("ingest") else None
    )
    if stage is None:
        raise UsageError(f"{run_dir}: neither translate nor ingest has finished; nothing to export")
    data = run.stage(stage)
    out = Path(out) if out else run.root / "export-data"
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    convs = {
        s: read_conversations(data / f"{s}.jsonl") if (data / f"{s}.jsonl").exists() else []
        for s in SPLITS
    }
    with_tools = any(
        c.tools or any(m.tool_calls for m in c.messages) for cs in convs.values() for c in cs
    )
    counts: dict = {
        "stage": stage,
        "conversations": {},
        "preference": {},
        "built": {},
        "text": 0,
        "documents": 0,
    }
    for split, cs in convs.items():
        if not cs:
            continue
        rows = conversation_rows(cs, with_tools)
        write_parquet(tmp / "data" / parquet_name(split), rows)
        msgs = [[openai_message(m.to_dict()) for m in c.messages] for c in cs]
        write_rows(
            tmp / "messages" / f"{split}.jsonl",
            [{"id": c.id, "messages": m} for c, m in zip(cs, msgs)],
        )
        write_rows(
            tmp / "sharegpt" / f"{split}.jsonl", [sharegpt_row(m, c.id) for c, m in zip(cs, msgs)]
        )
        counts["conversations"][split] = len(rows)
    if not counts["conversations"]:
        raise UsageError(f"{data}: no conversations to export")
    for split, rows in preference_rows(run, data).items():
        if rows:
            write_parquet(tmp / "preference" / parquet_name(split), rows)
            write_rows(tmp / "preference" / f"{split}.jsonl", rows)
            counts["preference"][split] = len(rows)
    if (data / "documents.jsonl").exists():
        docs = [{"id": d["id"], "text": d["text"], "lang": d.get("lang") or "", "source": d.get("source", ""),
                 "source_text": (d.get("meta") or {}).get("source_text", "")} for d in read_jsonl(data / "documents.jsonl")]  # fmt: skip
        if docs:
            write_parquet(tmp / "documents" / parquet_name("train"), docs)
            counts["documents"] = len(docs)
    if run.complete("build"):
        build = run.stage("build")
        for split in ("train", "dev"):
            rows = [
                {"id": r["id"], "messages": r["messages"]}
                for r in read_jsonl(build / f"{split}.jsonl")
            ]
            tools = any(m.get("tool_calls") for r in rows for m in r["messages"])
            rows = [{"id": r["id"], "messages": message_rows(r["messages"], tools)} for r in rows]
            if rows:
                write_parquet(tmp / "built" / parquet_name(split), rows)
                counts["built"][split] = len(rows)
        if (build / "text.jsonl").exists():
            texts = [{"text": r["text"]} for r in read_jsonl(build / "text.jsonl")]
            write_parquet(tmp / "text" / parquet_name("train"), texts)
            counts["text"] = len(texts)
    write_llama_factory_info(tmp, counts)
    reports = {s: _report(run, s) for s in ("ingest", "translate", "build")}
    (tmp / "README.md").write_text(card(recipe, counts, reports), encoding="utf-8")
    swap(tmp, out)
    result = {"out": str(out), **counts}
    if push_to_hub:
        result["pushed"] = push(out, push_to_hub, private=not public)
    return result


def write_llama_factory_info(tmp: Path, counts: dict) -> None:
    """LLaMA-Factory reads datasets through a dataset_info.json in the dataset folder."""
    tags = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
            "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}  # fmt: skip
    info = {
        f"mothertongue_{split}": {
            "file_name": f"sharegpt/{split}.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system"},
            "tags": tags,
        }  # fmt: skip
        for split in counts["conversations"]
    }
    (tmp / "dataset_info.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _report(run: RunDir, stage: str) -> dict | None:
    p = run.stage(stage) / "report.json"
    return json.loads(p.read_text(encoding="utf-8")) if run.complete(stage) and p.exists() else None


def swap(tmp: Path, out: Path) -> None:
    """Replace `out` with `tmp` by renames (the previous export stays whole until the last step)."""
    old = out.with_name(out.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
