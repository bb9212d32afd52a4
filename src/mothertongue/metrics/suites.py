"""Prompt suites and evaluation files: what the evaluate stage asks the models.

    from mothertongue.metrics.suites import load_suite
    name, items = load_suite("de", Path("."))          # the shipped German suite (64 prompts)
    name, items = load_suite("my_prompts.jsonl", Path("."))

Shipped suites (`src/mothertongue/data/prompts_<name>.jsonl`, written for this project): `de`
(64 German prompts: open questions, explanations, advice, writing, lists, short maths, code
questions, multi-turn follow-ups), `en` (26 English ones) and `xling` (36 cross-lingual prompts:
English instructions that ask for the answer in the run's language, the request at the start, in
the middle or at the end, as in the Language Confusion Benchmark; `{language}` is filled with the
run's language name, so it works for any target). Bring your own as

- JSONL, one object per line: `{"prompt": "..."}` or `{"messages": [{"role": "user", ...}, ...]}`
  (ending with a user turn), optional `id`, `lang`, `category`, `reference`, and `expect`: the
  language the reply must be in (`target`, `prompt`, or a language code);
- the text format: `prompt#reference` or just `prompt` per line, `#` comments;
- the Language Confusion Benchmark's own CSV files (`test_sets/{monolingual,crosslingual}/<source>/
  <lang>.csv`, columns `prompt`, `language`, `source`, ...): the reply must be in `language`.

A bad line is a one-line DataError naming file, line and field. Parallel files (translation) are
`.tsv` (`source<TAB>reference`) or JSONL `{"source", "reference"}`; perplexity files are `.txt`
(one text per line) or JSONL `{"text"}`.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mothertongue.conversation import DataError, iter_jsonl
from mothertongue.text import parallel as text_parallel


@dataclass
class Item:
    """One thing to ask: messages ending with a user turn, and maybe a reference answer."""

    id: str
    messages: list[dict]
    reference: str | None = None
    lang: str | None = None  # language of the prompt (None: detect)
    category: str = ""
    meta: dict = field(default_factory=dict)
    expect: str | None = None  # language the reply must be in: "target", "prompt" or a code (None: the recipe's rule)


def shipped_suites() -> list[str]:
    data = resources.files("mothertongue") / "data"
    return sorted(p.name[len("prompts_") : -len(".jsonl")] for p in data.iterdir() if p.name.startswith("prompts_") and p.name.endswith(".jsonl"))


def find_file(spec: str, base_dir: Path) -> Path:
    """A path from a recipe: relative to the recipe's folder, else to the working directory."""
    p = Path(spec).expanduser()
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path(base_dir) / p, Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return c
    raise DataError(f"file not found: {spec} (looked in {', '.join(str(c.parent) for c in candidates)})")


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (byte {e.start}); re-save the file as UTF-8") from None


def _str_field(obj: dict, key: str, where: str, required: bool = True) -> str | None:
    v = obj.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        raise DataError(f"{where}: field {key!r} must be a non-empty string")
    return v


def _messages(obj: dict, where: str) -> list[dict]:
    if "messages" not in obj:
        return [{"role": "user", "content": _str_field(obj, "prompt", where)}]
    msgs = obj["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: field 'messages' must be a non-empty list")
    out = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise DataError(f"{where}: messages[{i}].role must be system, user or assistant")
        out.append({"role": m["role"], "content": _str_field(m, "content", f"{where}: messages[{i}]")})
    if out[-1]["role"] != "user":
        raise DataError(f"{where}: field 'messages' must end with a user turn (the prompt to answer)")
    return out


def read_lcb_csv(path: Path, prefix: str) -> list[Item]:
    """A Language Confusion Benchmark test-set CSV: `prompt` and `language` (the reply's language)."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 (byte {e.start}); re-save the file as UTF-8") from None
    reader = csv.DictReader(text.splitlines(keepends=True))
    missing = {"prompt", "language"} - set(reader.fieldnames or [])
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(sorted(missing))} (a Language Confusion Benchmark CSV has prompt, language, source)")
    items = []
    for n, row in enumerate(reader, 1):
        where = f"{path}: row {n}"
        prompt, lang = _str_field(row, "prompt", where), _str_field(row, "language", where)
        meta = {k: row[k] for k in ("source", "location", "phrasing") if row.get(k)}
        items.append(Item(id=f"{prefix}-{n}", messages=[{"role": "user", "content": prompt}], category=row.get("source") or "",
                          meta=meta, expect=lang.strip().lower()))  # fmt: skip
    return items


def read_prompts(path: Path, prefix: str) -> list[Item]:
    items = []
    if path.suffix.lower() == ".csv":
        items = read_lcb_csv(path, prefix)
    elif path.suffix.lower() == ".jsonl":
        for lineno, obj in iter_jsonl(path):
            where = f"{path}:{lineno}"
            items.append(Item(
                id=str(obj.get("id") or f"{prefix}-{lineno}"),
                messages=_messages(obj, where),
                reference=_str_field(obj, "reference", where, required=False),
                lang=_str_field(obj, "lang", where, required=False),
                category=str(obj.get("category") or ""),
                meta={k: obj[k] for k in ("location",) if k in obj},
                expect=_str_field(obj, "expect", where, required=False),
            ))
    else:  # the text format: prompt#reference, or a bare prompt
        for lineno, line in enumerate(_read_lines(path), 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            prompt, _, ref = (x.strip() for x in s.partition("#"))
            items.append(Item(id=f"{prefix}-{lineno}", messages=[{"role": "user", "content": prompt}],
                              reference=ref.replace("\\n", "\n") or None))
    if not items:
        raise DataError(f"{path}: no prompts in this file")
    return items


def load_suite(spec: str, base_dir: Path, language: str | None = None) -> tuple[str, list[Item]]:
    """(set name, items) for a shipped suite name or a file; `{language}` in a prompt becomes the
    name of `language` (the run's target), e.g. "Reply in German."."""
    if spec in shipped_suites():
        ref = resources.files("mothertongue") / "data" / f"prompts_{spec}.jsonl"
        with resources.as_file(ref) as p:
            name, items = f"prompts-{spec}", read_prompts(Path(p), spec)
    elif "/" not in spec and "." not in spec:
        raise DataError(f"unknown prompt suite {spec!r}; shipped: {', '.join(shipped_suites())}, or give a .jsonl/.txt/.csv file")
    else:
        path = find_file(spec, base_dir)
        name, items = f"prompts-{path.stem}", read_prompts(path, path.stem)
    if language:
        from mothertongue.metrics.fidelity import language_name

        lang_name = language_name(language)
        for it in items:
            for m in it.messages:
                if "{language}" in m["content"]:
                    m["content"] = m["content"].replace("{language}", lang_name)
    return name, items


def read_parallel(path: Path) -> list[tuple[str, str]]:
    """(source, reference) pairs of a `.tsv` or `.jsonl` parallel file (text.parallel reads it)."""
    return [(p.source, p.target) for p in text_parallel.read_parallel(path)]


def read_texts(path: Path) -> list[str]:
    if path.suffix.lower() == ".jsonl":
        return [_str_field(obj, "text", f"{path}:{n}") for n, obj in iter_jsonl(path)]
    texts = [ln.strip() for ln in _read_lines(path) if ln.strip()]
    if not texts:
        raise DataError(f"{path}: no text in this file")
    return texts
