"""The training mix for a language: instructions, translation tasks, native text.

As planned for German in the project's origins: (a) the translated instruction conversations,
(b) translation tasks in both directions made from the translate stage's source/target pairs,
phrased as instructions in the target language or in English, and (c) native target-language
text, either wrapped as "continue this text" tasks or kept raw for continued pretraining.
The instruction conversations are the anchor (all of them are used); the other parts are sampled
to the requested ratio, repeating only when a part has too little data (counted in the report).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from mothertongue import languages
from mothertongue.config import NativeSourceConfig, Recipe
from mothertongue.conversation import DataError, iter_jsonl, read_documents, write_jsonl

# System prompts and style tags live in prompts.py (chat, serve and evaluate need them without
# the mix); re-exported here for callers that still import them from mix.
from mothertongue.prompts import (  # noqa: F401
    STYLE_PREFIX,
    base_system_prompt,
    style_system_prompt,
    style_tags,
    system_for,
)
from mothertongue.runs import RunDir
from mothertongue.text import parallel as text_parallel


# ------------------------------------------------------------------------- native text
def _read_native_docs(src: NativeSourceConfig, recipe: Recipe) -> list[str]:
    path = recipe.resolve_path(src.path)
    docs: list[str] = []
    if path.is_file() and path.suffix.lower() in (".txt", ".text", ".md"):
        text = path.read_text(encoding="utf-8-sig").replace("\r\n", "\n")
        docs = [d.strip() for d in re.split(r"\n\s*\n", text) if d.strip()]
    elif path.is_file() and path.suffix.lower() in (".jsonl", ".json"):
        for lineno, row in iter_jsonl(path):
            value = row.get(src.field) if isinstance(row, dict) else None
            if not isinstance(value, str):
                raise DataError(f"{path}:{lineno}: field {src.field!r} missing or not text (build.native.field)")
            if value.strip():
                docs.append(value.strip())
    else:
        import datasets

        if path.is_dir() and (path / "dataset_info.json").exists():
            ds = datasets.load_from_disk(str(path))
            ds = ds[src.split] if isinstance(ds, datasets.DatasetDict) else ds
        elif path.is_dir():
            ds = datasets.load_dataset(str(path), split=src.split)
        else:
            ds = datasets.load_dataset(src.path, src.config, split=src.split)
        if src.field not in ds.column_names:
            raise DataError(f"{src.path}: no column {src.field!r}; columns: {', '.join(ds.column_names)} (build.native.field)")
        docs = [t.strip() for t in ds[src.field] if isinstance(t, str) and t.strip()]
    return docs[: src.limit] if src.limit else docs


def chunk_text(doc: str, size: int) -> list[str]:
    """Cut a document into pieces of about `size` characters at paragraph, then sentence ends."""
    pieces, cur = [], ""
    units = []
    for para in doc.split("\n"):
        if len(para) <= size:
            units.append(para)
        else:
            units += re.split(r"(?<=[.!?。！？])\s+", para)
    for u in units:
        if cur and len(cur) + len(u) + 1 > size:
            pieces.append(cur.strip())
            cur = ""
        cur = f"{cur}\n{u}" if cur else u
    if cur.strip():
        pieces.append(cur.strip())
    return pieces


def run_documents(recipe: Recipe, run: RunDir | None) -> list[str]:
    """The run's own documents in the target language: translated ones (translate/documents.jsonl),
    or, without translation, ingested ones that are already in the target language."""
    if run is None:
        return []
    path = run.stage("translate" if recipe.translate.enabled else "ingest") / "documents.jsonl"
    if not path.exists():
        return []
    lang = recipe.language
    return [d.text for d in read_documents(path) if (d.lang or lang).replace("_", "-").split("-")[0].lower() == lang]


def native_chunks(recipe: Recipe, run: RunDir | None = None) -> list[str]:
    """Native text cut into pieces: build.native sources, then the run's own documents."""
    docs = [doc for src in recipe.build.native for doc in _read_native_docs(src, recipe)]
    return [piece for doc in docs + run_documents(recipe, run) for piece in chunk_text(doc, recipe.build.native_chunk_chars)]


def continue_task(piece: str, language: str) -> list[dict] | None:
    """'Continue this text': the first part as the prompt, the rest as the answer (cut at a sentence)."""
    mid = len(piece) // 2
    cut = max(piece.rfind(". ", 0, mid + 1), piece.rfind("\n", 0, mid + 1))
    cut = cut + 1 if cut > len(piece) // 5 else piece.find(" ", mid)
    if cut <= 0 or cut >= len(piece) - 1:
        return None
    head, tail = piece[:cut].strip(), piece[cut:].strip()
    if not head or not tail:
        return None
    return [{"role": "user", "content": f"{languages.phrase(language, 'continue_text')}\n\n{head}"},
            {"role": "assistant", "content": tail}]


# ------------------------------------------------------------------- translation tasks
def read_parallel(path: Path) -> list[dict]:
    """The translate stage's parallel.jsonl rows ({src, tgt, src_lang, ...}); none if it is absent."""
    return [p.row for p in text_parallel.read_parallel(path, keys=("src", "tgt"), required=False)]


def translation_tasks(row: dict, language: str, rng: random.Random) -> list[list[dict]]:
    """Both directions of one source/target pair, each phrased in the target language or English."""
    src_lang = (row.get("src_lang") or "en").split("-")[0]
    src_name, tgt_name = languages.english_name(src_lang), languages.english_name(language)
    to_target = [languages.phrase(language, "to_target"), f"Translate the following text into {tgt_name}:"]
    to_source = [f"Translate the following text into {src_name}:"]
    if src_lang == "en":
        to_source.append(languages.phrase(language, "to_english"))
    return [
        [{"role": "user", "content": f"{rng.choice(to_target)}\n\n{row['src']}"}, {"role": "assistant", "content": row["tgt"]}],
        [{"role": "user", "content": f"{rng.choice(to_source)}\n\n{row['tgt']}"}, {"role": "assistant", "content": row["src"]}],
    ]


# --------------------------------------------------------------------------- sizing
def plan(available: dict[str, int], weights: dict[str, float]) -> dict[str, int]:
    """How many examples of each part: instructions anchor the mix; others follow the ratio."""
    parts = {k: w for k, w in weights.items() if w > 0 and available.get(k, 0) > 0}
    if not parts:
        return {}
    if "instructions" in parts:
        unit = available["instructions"] / parts["instructions"]
    else:
        unit = min(available[k] / w for k, w in parts.items())
    return {k: max(1, round(unit * w)) for k, w in parts.items()}


def sample(pool: list, n: int, rng: random.Random) -> tuple[list, int]:
    """n items from pool: without repetition when it is big enough; returns (items, repeated)."""
    if n <= len(pool):
        return rng.sample(pool, n), 0
    out = list(pool) * (n // len(pool)) + rng.sample(pool, n % len(pool))
    rng.shuffle(out)
    return out, n - len(pool)


def write_text_rows(path: Path, texts: list[str]) -> None:
    write_jsonl(path, ({"text": t} for t in texts))
