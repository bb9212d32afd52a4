"""The training mix for a language: instructions, translation tasks, native text, English.

As planned for German in the project's origins: (a) the translated instruction conversations,
(b) translation tasks in both directions made from the translate stage's source/target pairs,
phrased as instructions in the target language or in English, and (c) native target-language
text, either wrapped as "continue this text" tasks or kept raw for continued pretraining, and
(d) the original English conversations the translate stage keeps, with an English system prompt,
so the model does not lose the language it started from (`build.mix.english`, off by default).
The instruction conversations are the anchor (all of them are used); the other parts are sampled
to the requested ratio, repeating only when a part has too little data (counted in the report).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from mothertongue import languages
from mothertongue.config import NativeSourceConfig, Recipe
from mothertongue.conversation import (
    Conversation,
    DataError,
    iter_jsonl,
    read_documents,
    write_jsonl,
)

# System prompts and style tags live in prompts.py (chat, serve and evaluate need them without
# the mix); re-exported here for callers that still import them from mix.
from mothertongue.prompts import (  # noqa: F401
    STYLE_PREFIX,
    base_system_prompt,
    style_system_prompt,
    style_tags,
    system_for,
    with_system,
)
from mothertongue.runs import RunDir
from mothertongue.text import parallel as text_parallel

Item = tuple[str, list[dict], list[dict] | None]  # (id, chat messages, tool schemas)


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


# --------------------------------------------------------------------------- English
def english_items(convs: list[Conversation], recipe: Recipe) -> list[Item]:
    """The original (untranslated) conversations the translate stage kept, where the original is
    in another language than the target, each with a system prompt in its own language."""
    out = []
    for c in convs:
        source = c.meta.get("source_messages")
        lang = (c.meta.get("source_lang") or "").lower()
        if not source or not lang or lang == recipe.language.lower():
            continue
        msgs = [{"role": m["role"], "content": m["content"]} for m in source]
        if not any(m["role"] == "assistant" for m in msgs):
            continue
        # The language's own prompt ("... always answers in English"); a custom prompt is written
        # for the target language, so English examples go without one rather than contradict it.
        sp = base_system_prompt(recipe.build, lang, f"en-{c.id}") if recipe.build.system_prompt == "auto" else None
        out.append((f"english-{c.id}", with_system(msgs, sp), c.tools))
    return out


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


def parts(recipe: Recipe, run: RunDir, instr: list[Item], convs: list[Conversation]) -> tuple[dict[str, list[Item]], dict, list[str]]:
    """The parts of the training mix, sampled to the configured ratio; also raw native text.
    `instr` are the training conversations `convs` as items."""
    cfg, lang = recipe.build, recipe.language
    rng = random.Random(recipe.seed)
    pools: dict[str, list[Item]] = {"instructions": instr}
    parallel_path = run.stage("translate") / "parallel.jsonl"
    if cfg.translation_tasks and recipe.translate.enabled and parallel_path.exists():
        tasks = []
        for i, row in enumerate(read_parallel(parallel_path)):
            for d, msgs in enumerate(translation_tasks(row, lang, rng)):
                sp = base_system_prompt(cfg, lang, f"tr{i}-{d}")
                tasks.append((f"translation-{i}-{d}", with_system(msgs, sp), None))
        pools["translation"] = tasks
    raw_text: list[str] = []
    chunks = native_chunks(recipe, run)  # build.native and the run's documents
    if chunks and cfg.native_as == "raw":
        raw_text = chunks
    elif chunks:
        tasks = []
        for i, piece in enumerate(chunks):
            msgs = continue_task(piece, lang)
            if msgs:
                sp = base_system_prompt(cfg, lang, f"nat{i}")
                tasks.append((f"native-{i}", with_system(msgs, sp), None))
        pools["native"] = tasks
    if cfg.mix.english:
        pools["english"] = english_items(convs, recipe)
    weights = cfg.mix.model_dump()
    sizes = plan({k: len(v) for k, v in pools.items()}, weights)
    chosen, repeated = {}, {}
    for part, n in sizes.items():
        chosen[part], repeated[part] = (pools[part], 0) if part == "instructions" else sample(pools[part], n, rng)
    report = {"requested": {k: weights[k] / sum(weights[p] for p in sizes) for k in sizes},
              "available": {k: len(v) for k, v in pools.items()}, "repeated": repeated}
    return chosen, report, raw_text


def write_text_rows(path: Path, texts: list[str]) -> None:
    write_jsonl(path, ({"text": t} for t in texts))
