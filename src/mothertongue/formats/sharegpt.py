"""ShareGPT: `{"conversations": [{"from": ..., "value": ...}, ...]}`, JSON array or JSONL.

    mothertongue ingest recipe.yaml      # sources: [{path: sharegpt.json, format: sharegpt}]

Source (a ShareGPT row as used by Vicuna/LLaMA-Factory)::

    {"id": "QWJhYvA_0", "conversations": [
        {"from": "human", "value": "Summarize the main ideas of Jeff Walker's Product Launch Formula ..."},
        {"from": "gpt", "value": "Here are the main ideas of Jeff Walker's Product Launch Formula ..."}]}

becomes::

    Conversation(id="sharegpt-QWJhYvA_0", source="sharegpt", meta={"file": ..., "line": 1},
                 messages=[Message("user", "Summarize the main ideas of ..."),
                           Message("assistant", "Here are the main ideas of ...")])

Roles map through `options.roles` (merged over the defaults: human/user -> user, gpt/assistant/
chatgpt/bard/bing/model -> assistant, system -> system, function_call -> assistant, observation ->
user; map a role to `drop` to leave those turns out). Tool-use rows keep their original roles in
`meta["source_roles"]` and the `tools` field in `meta["tools"]`; a top-level `system` field becomes
the system message; the record's `id` is kept (else an id is derived from the content); every
other key goes to `meta["extra"]`. `options.key` names the list field when it is not `conversations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, IngestReport, clean, stable_id

DEFAULT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system",
    "function_call": "assistant", "observation": "user",
}
STANDARD = {"human", "user", "gpt", "assistant", "chatgpt", "bard", "bing", "model", "system"}


class ShareGPTAdapter(Adapter):
    name = "sharegpt"
    option_names = ("lang", "roles", "key", "keep_ids")
    required = ("conversations",)

    def __init__(self, source, options=None):
        super().__init__(source, options)
        self.roles = {**DEFAULT_ROLES, **(self.options.get("roles") or {})}
        self.key = self.options.get("key", "conversations")
        if self.key != "conversations":
            self.required = (self.key,)

    @classmethod
    def sniff(cls, path, sample) -> str | None:
        for r in sample[:5]:
            conv = r.get("conversations") if isinstance(r, dict) else None
            if not (isinstance(conv, list) and conv and isinstance(conv[0], dict) and "from" in conv[0]):
                return None
        return "records have conversations: [{from, value}]" if sample else None

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        if not isinstance(obj, dict) or not isinstance(obj.get(self.key), list):
            report.bad(loc, f"missing field {self.key}", f"field '{self.key}' is missing or not a list")
            return
        messages: list[Message] = []
        source_roles: list[str] = []
        if obj.get("system"):
            messages.append(Message("system", clean(obj["system"])))
        for i, turn in enumerate(obj[self.key]):
            field = f"{self.key}[{i}]"
            if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
                report.bad(loc, "bad turn", f"field '{field}' needs 'from' and 'value'")
                return
            role = self.roles.get(str(turn["from"]))
            if role is None:
                report.bad(loc, "unknown role", f"field '{field}.from' is {turn['from']!r}; map it in "
                           f"options.roles (known: {', '.join(sorted(self.roles))})")
                return
            if role == "drop":
                continue
            text = turn["value"]
            if not isinstance(text, str) or not text.strip():
                report.bad(loc, "empty value", f"field '{field}.value' is empty")
                return
            source_roles.append(str(turn["from"]))
            messages.append(Message(role, clean(text)))
        meta = self.meta_of(obj, loc, ("id", self.key, "system", "tools"))
        if any(r not in STANDARD for r in source_roles):
            meta["source_roles"] = source_roles
        if obj.get("tools") is not None:
            meta["tools"] = obj["tools"]
        rid = obj.get("id")
        cid = f"{self.src_name}-{rid}" if rid not in (None, "") else stable_id(
            self.src_name, *(m.content for m in messages))
        yield Conversation(id=cid, messages=messages, lang=self.options.get("lang"), source=self.src_name, meta=meta)
