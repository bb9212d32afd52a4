"""The data contract every stage speaks: Message, Conversation, PreferencePair, the splits, and
JSONL on disk.

    from mothertongue.conversation import read_conversations, split_of, write_jsonl

A format adapter turns source rows into these; translate rewrites their text; build renders
them. `validate()` runs after every adapter and again after translation, and its messages say
what is wrong in words a user can act on. JSONL is the on-disk form (one object per line).
Splits and sampling are decided by `stable_fraction` of a record's id, the one hash bucket of
the project, so adding a source never moves existing records between splits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mothertongue.errors import DataError  # noqa: F401  (raised and re-exported here)

try:  # orjson writes 3x faster at 1M records; the stdlib writes what orjson refuses
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency, but stay usable without it
    orjson = None

ROLES = ("system", "user", "assistant", "tool")
SPLITS = ("train", "dev", "test")


def stable_fraction(key: str, salt: str = "") -> float:
    """A uniform number in [0, 1) from the first 48 bits of sha256(salt + key): the same on every
    machine and run, so splits, sampling and variants never move when other data changes."""
    return int.from_bytes(hashlib.sha256((salt + key).encode()).digest()[:6], "big") / 16**12


def stable_bucket(key: str, n: int, salt: str = "") -> int:
    """One of n buckets (0..n-1) for key, from `stable_fraction`."""
    return int(stable_fraction(key, salt) * n)


def split_of(record: Conversation | PreferencePair, dev: float, test: float) -> str:
    """train/dev/test by the record's own mark, else by a hash of its id (stable when sources are
    added); copies made by a source weight share their original's split."""
    explicit = record.meta.get("split")
    if explicit in SPLITS:
        return explicit
    if not (dev or test):
        return "train"
    u = stable_fraction(record.meta.get("copy_of", record.id))
    if u < test:
        return "test"
    if u < test + dev:
        return "dev"
    return "train"


# slots on the record classes: millions of them pass through ingest and translate, and without
# a per-instance __dict__ they are made, read and freed faster (ingest: about 5% of its CPU time)
@dataclass(slots=True)
class Message:
    role: str
    content: str
    lang: str | None = None  # per-message source language when it differs from the thread's
    tool_calls: list[dict] | None = None  # assistant calls: [{"type": "function", "function": {name, arguments}}]

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.lang:
            d["lang"] = self.lang
        if self.tool_calls:
            d["tool_calls"] = self.tool_calls
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Message:
        return cls(d["role"], d["content"], d.get("lang"), d.get("tool_calls"))


@dataclass(slots=True)
class Conversation:
    id: str
    messages: list[Message]
    lang: str | None = None
    source: str = ""
    tags: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    tools: list[dict] | None = None  # tool (function) schemas the assistant may call
    # the source records this conversation came from (ingest's accounting; never written)
    origin: tuple | None = field(default=None, repr=False, compare=False)

    def validate(self) -> None:
        """Raise DataError explaining the first broken invariant."""
        where = f"conversation {self.id!r}"
        if not self.id:
            raise DataError("conversation has an empty id")
        if not self.messages:
            raise DataError(f"{where}: has no messages")
        prev = None  # the previous non-system message (one pass: this runs per record)
        for i, m in enumerate(self.messages):
            role, content = m.role, m.content
            if role not in ROLES:
                raise DataError(f"{where}: messages[{i}].role is {role!r}, expected one of {ROLES}")
            if not isinstance(content, str):
                raise DataError(f"{where}: messages[{i}].content is not a string")
            if (not content or content.isspace()) and not (role == "assistant" and m.tool_calls):
                raise DataError(f"{where}: messages[{i}].content ({role}) is empty")
            if role == "system":
                if i != 0:
                    raise DataError(f"{where}: messages[{i}] is a system message but not the first one")
                continue
            if m.tool_calls is not None and (role != "assistant" or not isinstance(m.tool_calls, list)):
                raise DataError(f"{where}: messages[{i}].tool_calls must be a list on an assistant message")
            calling = prev is not None and prev.role == "assistant" and bool(prev.tool_calls)
            if prev is None and role != "user":
                raise DataError(f"{where}: first non-system message is {role!r}, expected 'user'")
            if role == "tool" and not (calling or prev.role == "tool"):
                raise DataError(f"{where}: messages[{i}] is a tool result without a tool call before it")
            if calling and role != "tool":
                raise DataError(f"{where}: messages[{i - 1}] calls a tool, but messages[{i}] is {role!r}, not its result")
            if prev is not None and role == prev.role and role != "tool":
                raise DataError(f"{where}: two {role!r} messages in a row; roles must alternate")
            if role == "user" and prev is not None and prev.role == "tool":
                raise DataError(f"{where}: messages[{i}] is 'user' after a tool result; expected 'assistant'")
            prev = m
        if prev is None:
            raise DataError(f"{where}: has only a system message")
        if prev.role != "assistant" or prev.tool_calls:
            last = "an assistant tool call" if prev.tool_calls else repr(prev.role)
            raise DataError(f"{where}: last message is {last}, expected an 'assistant' answer")

    def to_dict(self) -> dict:
        d = {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "lang": self.lang,
            "source": self.source,
            "tags": list(self.tags),
            "meta": self.meta,
        }
        if self.tools:
            d["tools"] = self.tools
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Conversation:
        return cls(
            id=str(d["id"]),
            messages=[Message.from_dict(m) for m in d["messages"]],
            lang=d.get("lang"),
            source=d.get("source", ""),
            tags=list(d.get("tags") or []),
            meta=dict(d.get("meta") or {}),
            tools=d.get("tools"),
        )


@dataclass(slots=True)
class PreferencePair:
    id: str
    prompt: list[Message]
    chosen: str
    rejected: str
    lang: str | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    origin: tuple | None = field(default=None, repr=False, compare=False)

    def validate(self) -> None:
        where = f"preference pair {self.id!r}"
        if not self.prompt or self.prompt[-1].role != "user":
            raise DataError(f"{where}: prompt must end with a user message")
        for name in ("chosen", "rejected"):
            if not str(getattr(self, name)).strip():
                raise DataError(f"{where}: {name} is empty")
        if self.chosen == self.rejected:
            raise DataError(f"{where}: chosen and rejected are identical")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "prompt": [m.to_dict() for m in self.prompt],
            "chosen": self.chosen,
            "rejected": self.rejected,
            "lang": self.lang,
            "source": self.source,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> PreferencePair:
        return cls(
            id=str(d["id"]),
            prompt=[Message.from_dict(m) for m in d["prompt"]],
            chosen=d["chosen"],
            rejected=d["rejected"],
            lang=d.get("lang"),
            source=d.get("source", ""),
            meta=dict(d.get("meta") or {}),
        )


def write_jsonl(path: Path, records: Iterable, append: bool = False) -> int:
    """Write records (objects with to_dict, or dicts) as JSONL; returns the count. The one JSONL
    writer of the project: orjson when it can, the stdlib for what orjson refuses (ints over
    64 bits, lone surrogates). Callers write into a staging directory; atomicity comes from
    the stage runner. `append` adds to the file (a stage writing its output in chunks)."""
    encode = json.JSONEncoder(ensure_ascii=False).encode

    def line(r: Any) -> bytes:
        d = r.to_dict() if hasattr(r, "to_dict") else r
        if orjson is not None:
            try:
                return orjson.dumps(d) + b"\n"
            except TypeError:
                pass
        return (encode(d) + "\n").encode("utf-8", "surrogatepass")

    n = 0
    with open(path, "ab" if append else "wb") as f:
        for r in records:
            f.write(line(r))
            n += 1
    return n


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line of a JSONL file.

    Bad JSON, a line that is not an object, or bytes that are not UTF-8 raise DataError naming
    the file and line (each line is decoded alone, so the line number is the real one)."""
    loads = orjson.loads if orjson is not None else json.loads
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = loads(raw)
            except ValueError:
                try:  # the slow path says exactly what is wrong
                    obj = json.loads(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise DataError(f"{path}:{lineno}: not UTF-8; re-save the file as UTF-8") from None
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def read_conversations(path: Path) -> list[Conversation]:
    out = []
    for lineno, d in iter_jsonl(path):
        try:
            out.append(Conversation.from_dict(d))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{lineno}: not a conversation record (field {e})") from None
    return out


@dataclass(slots=True)
class Document:
    """Plain text to translate and to train on as native text (continued pretraining)."""

    id: str
    text: str
    lang: str | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    origin: tuple | None = field(default=None, repr=False, compare=False)

    def validate(self) -> None:
        if not self.id:
            raise DataError("document has an empty id")
        if not isinstance(self.text, str) or not self.text.strip():
            raise DataError(f"document {self.id!r}: text is empty")

    def to_dict(self) -> dict:
        return {"id": self.id, "text": self.text, "lang": self.lang, "source": self.source, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> Document:
        return cls(id=str(d["id"]), text=d["text"], lang=d.get("lang"), source=d.get("source", ""),
                   meta=dict(d.get("meta") or {}))  # fmt: skip


def read_documents(path: Path) -> list[Document]:
    out = []
    for lineno, d in iter_jsonl(path):
        try:
            out.append(Document.from_dict(d))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{lineno}: not a document record (field {e})") from None
    return out


def read_pairs(path: Path) -> list[PreferencePair]:
    out = []
    for lineno, d in iter_jsonl(path):
        try:
            out.append(PreferencePair.from_dict(d))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{lineno}: not a preference record (field {e})") from None
    return out
