"""Image-text data for the vision stage: three source formats read into one record shape.

    from mothertongue.vision.data import read_sources
    records, report = read_sources(recipe, recipe.vision.captions, "de")

A record is a conversation whose text marks each image's place with the image token, plus the
images in order:

    {"id": "shapes-3f2a...", "messages": [{"role": "user", "content": "<image>\\nBeschreibe das Bild kurz."},
     {"role": "assistant", "content": "Ein roter Kreis auf blauem Grund."}],
     "images": ["/data/shapes/0001.png"], "source": "shapes", "loc": "shapes.csv:2"}

Formats (`vision.captions[].format`, or auto by file suffix and fields):

- llava: LLaVA's JSON, `{"id": "1", "image": "0001.png", "conversations": [{"from": "human",
  "value": "<image>\\nWas siehst du?"}, {"from": "gpt", "value": "Einen roten Kreis."}]}`; `image`
  may be a list (several images, one `<image>` each); without `<image>` the image goes first.
- openai: `{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url":
  "0001.png"}}, {"type": "text", "text": "Was siehst du?"}]}, {"role": "assistant", "content":
  "Einen roten Kreis."}]}` (data URLs, local paths and file:// URLs; `{"type": "image", "image": PATH}`
  too); text and images keep their order, so interleaved conversations stay interleaved.
- captions: CSV with the columns `image,caption`, or JSON/JSONL rows `{"image": ..., "caption": ...}`;
  each becomes "describe the image" (in the target language) -> caption.

Image paths are relative to the data file. Every image is opened and decoded once here: a
missing, non-image, truncated or too large image skips its record, counted by reason with
file:line (`vision/data_report.json`); a malformed record is handled as `ingest.on_error` says.
The text is ordinary conversation text (the image token is markup that translation keeps), so
image data can be machine-translated like any other; images never enter a translation memory.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mothertongue.config import Recipe, VisionSourceConfig
from mothertongue.conversation import DataError
from mothertongue.formats.base import stable_id
from mothertongue.formats.jsonio import JSON_SUFFIXES, decode_text, files_in, iter_json_records
from mothertongue.formats.report import IngestReport
from mothertongue.vision.images import ImageProblem, open_image, open_image_url

# The stage-1 question for a caption, in the target language (English for languages not listed).
DESCRIBE = {
    "de": "Beschreibe das Bild kurz.", "en": "Describe the image briefly.", "fr": "Décris brièvement l'image.",
    "es": "Describe brevemente la imagen.", "it": "Descrivi brevemente l'immagine.", "nl": "Beschrijf de afbeelding kort.",
    "pt": "Descreva a imagem brevemente.", "pl": "Opisz krótko obraz.",
}
LLAVA_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def describe_prompt(language: str) -> str:
    return DESCRIBE.get(language, DESCRIBE["en"])


def _detect(path: Path, first: Any) -> str:
    if path.suffix.lower() == ".csv":
        return "captions"
    if isinstance(first, dict):
        if "conversations" in first:
            return "llava"
        if "messages" in first:
            return "openai"
        if "caption" in first:
            return "captions"
    raise DataError(f"{path}: cannot tell the vision data format (rows need conversations, messages or "
                    "image+caption); set vision.*.format")


def _rows(path: Path, report: IngestReport) -> Iterator[tuple[int, Any]]:
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(decode_text(path)))
        for n, row in enumerate(reader, 2):  # line 1 is the header
            report.read += 1
            yield n, row
        return
    yield from iter_json_records(path, report)


def _llava(obj: dict, image_token: str) -> tuple[list[dict], list[str]]:
    images = obj.get("image")
    images = [] if images is None else [images] if isinstance(images, str) else images
    turns = obj.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise ValueError("field conversations must be a non-empty list")
    msgs = []
    for k, t in enumerate(turns):
        role = LLAVA_ROLES.get(str(t.get("from")) if isinstance(t, dict) else "")
        if role is None or not isinstance(t.get("value"), str):
            raise ValueError(f"conversations[{k}] must be {{from: human|gpt, value: text}}")
        msgs.append({"role": role, "content": t["value"].replace("<image>", image_token)})
    marks = sum(m["content"].count(image_token) for m in msgs)
    if images and marks == 0:
        first = next((m for m in msgs if m["role"] == "user"), None)
        if first is not None:  # else the conversation check names what is wrong
            first["content"] = f"{image_token}\n" + first["content"].lstrip()
    return msgs, [str(i) for i in images]


def _openai(obj: dict, image_token: str) -> tuple[list[dict], list[str]]:
    msgs, images = [], []
    raw = obj.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ValueError("field messages must be a non-empty list")
    for k, m in enumerate(raw):
        if not isinstance(m, dict) or "content" not in m:
            raise ValueError(f"messages[{k}] must be {{role, content}}")
        content = m["content"]
        if isinstance(content, list):
            text = ""
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    text += str(part.get("text", ""))
                elif kind == "image_url":
                    url = part.get("image_url")
                    images.append(url.get("url") if isinstance(url, dict) else url)
                    text += f"{image_token}\n"
                elif kind == "image":
                    images.append(part.get("image") or part.get("path") or part.get("url"))
                    text += f"{image_token}\n"
                else:
                    raise ValueError(f"messages[{k}].content: unknown part type {kind!r}")
            content = text
        if not isinstance(content, str):
            raise ValueError(f"messages[{k}].content must be text or a list of parts")
        msgs.append({"role": m.get("role"), "content": content})
    if any(not isinstance(i, str) or not i for i in images):
        raise ValueError("an image part has no url or path")
    return msgs, images


def _captions(obj: dict, image_token: str, language: str) -> tuple[list[dict], list[str]]:
    image, caption = obj.get("image"), obj.get("caption")
    if not isinstance(image, str) or not image.strip():
        raise ValueError("field image is missing or empty")
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError("field caption is missing or empty")
    return ([{"role": "user", "content": f"{image_token}\n{describe_prompt(language)}"},
             {"role": "assistant", "content": caption.strip()}], [image.strip()])


def _check_conversation(msgs: list[dict], images: list[str], image_token: str) -> None:
    roles = [m["role"] for m in msgs if m["role"] != "system"]
    if not roles or roles[0] != "user" or "assistant" not in roles:
        raise ValueError("a conversation needs a user turn first and at least one assistant turn")
    if any(r not in ("user", "assistant") for r in roles):
        raise ValueError(f"roles must be system, user or assistant, got {sorted(set(roles))}")
    marks = sum(m["content"].count(image_token) for m in msgs)
    if marks != len(images):
        raise ValueError(f"{marks} {image_token} marks in the text but {len(images)} images")
    if any(image_token in m["content"] for m in msgs if m["role"] == "assistant"):
        raise ValueError(f"an assistant turn holds {image_token}; images belong in user turns")


def resolve_image(ref: str, base: Path) -> str:
    """A data URL as it is; a path (or file:// URL) made absolute against the data file's folder."""
    if ref.startswith("data:"):
        return ref
    p = Path(ref.removeprefix("file://")).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def load_image(ref: str, recipe: Recipe):
    """A record's image (absolute path or data URL) as a PIL RGB image, or ImageProblem."""
    v = recipe.vision
    if ref.startswith("data:"):
        return open_image_url(ref, False, v.max_image_pixels, v.max_image_bytes)
    return open_image(ref, v.max_image_pixels, v.max_image_bytes)


def _file_rows(recipe: Recipe, src: VisionSourceConfig, report: IngestReport) -> Iterator[tuple[str, str, Any, Path]]:
    """(where, format, record, folder its image paths are relative to) for every row of the files."""
    root = recipe.resolve_path(src.path)
    if not root.exists():
        raise DataError(f"vision data not found: {src.path}")
    for path in files_in(root, (*JSON_SUFFIXES, ".csv")) if root.is_dir() else [root]:
        fmt = src.format
        for n, obj in _rows(path, report):
            where = f"{path}:{n}"
            if fmt == "auto":
                fmt = _detect(path, obj)
            yield where, fmt, obj, path.parent


def read_source(recipe: Recipe, src: VisionSourceConfig, report: IngestReport, open_images: bool = True) -> list[dict]:
    """The records of one source; `open_images=False` lists them without opening their images."""
    from mothertongue.vision import hub

    v = recipe.vision
    if src.format == "hf":
        name = Path(src.path).name or src.path
        rows = ((where, fmt, obj, Path(recipe.run_dir)) for where, fmt, obj in hub.rows(recipe, src, report))
    else:
        name = recipe.resolve_path(src.path).stem
        rows = _file_rows(recipe, src, report)
    out: list[dict] = []
    for where, fmt, obj, base in rows:
        if src.limit and len(out) >= src.limit:
            break
        try:
            if not isinstance(obj, dict):
                raise ValueError("a record must be an object")
            if fmt == "llava":
                msgs, images = _llava(obj, v.image_token)
            elif fmt == "openai":
                msgs, images = _openai(obj, v.image_token)
            else:
                msgs, images = _captions(obj, v.image_token, recipe.language)
            _check_conversation(msgs, images, v.image_token)
        except ValueError as e:
            report.bad(where, f"malformed {fmt} record", str(e))
            continue
        refs = [resolve_image(i, base) for i in images]
        try:
            for ref in refs if open_images else ():
                load_image(ref, recipe)
        except ImageProblem as e:
            report.skip(where, e.reason, str(e))
            continue
        text = "\x1f".join(m["content"] for m in msgs)
        rec = {"id": stable_id(name, text, *refs), "messages": msgs, "images": refs, "source": name, "loc": where,
               "lang": src.lang}
        if fmt == "captions":  # the question is ours, already in the target language
            rec["in_target"] = [0]
        out.append(rec)
        report.converted += 1
    return out


def read_sources(recipe: Recipe, sources: list[VisionSourceConfig], on_error: str | None = None) -> tuple[list[dict], IngestReport]:
    """Every record of `sources` and the report of what was read, converted and skipped."""
    report = IngestReport(on_error or recipe.ingest.on_error)
    records: list[dict] = []
    for src in sources:
        records += read_source(recipe, src, report)
    return records, report


def images_signature(recipe: Recipe) -> str:
    """A digest of every local image the vision data names: path, size and modification time (not
    the bytes: a stat per image, so checking whether the stage is current stays cheap). An image
    replaced in place changes it, and so the stage's fingerprint."""
    import hashlib
    import os

    v = recipe.vision
    h = hashlib.sha256()
    for src in [*v.captions, *v.instructions, *v.heldout]:
        if src.format == "hf":  # the dataset's own fingerprint stands for its images
            from mothertongue.vision import hub

            try:
                h.update(f"{src.path}\0{hub.signature(src)}\n".encode())
            except DataError as e:
                h.update(f"{src.path}: {e}".encode())
            continue
        try:
            records = read_source(recipe, src, IngestReport("skip"), open_images=False)
        except (DataError, OSError, ValueError) as e:  # the stage itself reports it
            h.update(f"{src.path}: {e}".encode())
            continue
        for ref in sorted({ref for r in records for ref in r["images"] if not ref.startswith("data:")}):
            try:
                st = os.stat(ref)
                h.update(f"{ref}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                h.update(f"{ref}\0missing\n".encode())
    return h.hexdigest()[:16]
