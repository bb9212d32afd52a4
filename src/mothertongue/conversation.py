"""The data contract every stage speaks: Message, Conversation, PreferencePair.

A format adapter turns source rows into these; translate rewrites their text; build renders
them. `validate()` runs after every adapter and again after translation, and its messages say
what is wrong in words a user can act on. JSONL is the on-disk form (one object per line).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mothertongue.errors import DataError  # noqa: F401  (raised and re-exported here)

ROLES = ("system", "user", "assistant")


@dataclass
class Message:
    role: str
    content: str
    lang: str | None = None  # per-message source language when it differs from the thread's

    def to_dict(self) -> dict:
        d = {"role": self.role, "content": self.content}
        if self.lang:
            d["lang"] = self.lang
        return d


@dataclass
class Conversation:
    id: str
    messages: list[Message]
    lang: str | None = None
    source: str = ""
    tags: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise DataError explaining the first broken invariant."""
        where = f"conversation {self.id!r}"
        if not self.id:
            raise DataError("conversation has an empty id")
        if not self.messages:
            raise DataError(f"{where}: has no messages")
        prev = None  # role of the previous non-system message (one pass: this runs per record)
        for i, m in enumerate(self.messages):
            role, content = m.role, m.content
            if role not in ROLES:
                raise DataError(f"{where}: messages[{i}].role is {role!r}, expected one of {ROLES}")
            if not isinstance(content, str):
                raise DataError(f"{where}: messages[{i}].content is not a string")
            if not content or content.isspace():
                raise DataError(f"{where}: messages[{i}].content ({role}) is empty")
            if role == "system":
                if i != 0:
                    raise DataError(f"{where}: messages[{i}] is a system message but not the first one")
                continue
            if prev is None and role != "user":
                raise DataError(f"{where}: first non-system message is {role!r}, expected 'user'")
            if role == prev:
                raise DataError(f"{where}: two {role!r} messages in a row; roles must alternate")
            prev = role
        if prev is None:
            raise DataError(f"{where}: has only a system message")
        if prev != "assistant":
            raise DataError(f"{where}: last message is {prev!r}, expected 'assistant'")

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "messages": [m.to_dict() for m in self.messages],
            "lang": self.lang,
            "source": self.source,
            "tags": list(self.tags),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Conversation:
        return cls(
            id=str(d["id"]),
            messages=[Message(m["role"], m["content"], m.get("lang")) for m in d["messages"]],
            lang=d.get("lang"),
            source=d.get("source", ""),
            tags=list(d.get("tags") or []),
            meta=dict(d.get("meta") or {}),
        )


@dataclass
class PreferencePair:
    id: str
    prompt: list[Message]
    chosen: str
    rejected: str
    lang: str | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)

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
        d = asdict(self)
        d["prompt"] = [m.to_dict() for m in self.prompt]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreferencePair:
        return cls(
            id=str(d["id"]),
            prompt=[Message(m["role"], m["content"], m.get("lang")) for m in d["prompt"]],
            chosen=d["chosen"],
            rejected=d["rejected"],
            lang=d.get("lang"),
            source=d.get("source", ""),
            meta=dict(d.get("meta") or {}),
        )


def write_jsonl(path: Path, records: Iterable) -> int:
    """Write records (objects with to_dict, or dicts) as JSONL; returns the count.

    Callers write into a staging directory; atomicity comes from runs.StageDir."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            d = r.to_dict() if hasattr(r, "to_dict") else r
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            n += 1
    return n


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line of a JSONL file.

    Bad JSON, a line that is not an object, or bytes that are not UTF-8 raise DataError naming
    the file and line."""
    lineno = 0
    try:
        with open(path, encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
                yield lineno, obj
    except UnicodeDecodeError:
        raise DataError(f"{path}:{lineno + 1}: not UTF-8; re-save the file as UTF-8") from None


def read_conversations(path: Path) -> list[Conversation]:
    out = []
    for lineno, d in iter_jsonl(path):
        try:
            out.append(Conversation.from_dict(d))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{lineno}: not a conversation record (field {e})") from None
    return out


def read_pairs(path: Path) -> list[PreferencePair]:
    out = []
    for lineno, d in iter_jsonl(path):
        try:
            out.append(PreferencePair.from_dict(d))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}:{lineno}: not a preference record (field {e})") from None
    return out
