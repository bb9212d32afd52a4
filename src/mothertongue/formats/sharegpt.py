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
chatgpt/bard/bing/model -> assistant, system -> system, function_call -> tool_call, observation ->
tool; map a role to `drop` to leave those turns out). Tool use (glaive / LLaMA-Factory layout)::

    {"conversations": [{"from": "human", "value": "Wie ist das Wetter in Kiel?"},
                       {"from": "function_call", "value": "{\\"name\\": \\"wetter\\", \\"arguments\\": {\\"ort\\": \\"Kiel\\"}}"},
                       {"from": "observation", "value": "{\\"temp\\": 12}"},
                       {"from": "gpt", "value": "In Kiel sind es 12 Grad."}],
     "tools": "[{\\"name\\": \\"wetter\\", \\"parameters\\": {...}}]"}

becomes an assistant message with `tool_calls=[{"type": "function", "function": {"name": "wetter",
"arguments": {"ort": "Kiel"}}}]` (a call right after an assistant turn joins it), a `tool`
message with the result, and `Conversation.tools` with the schemas (parsed when given as a JSON
string, each wrapped as `{"type": "function", "function": ...}`); build renders them through the
chat template's own tool support. A call or schema that is not JSON is a bad record. The
original roles are kept in `meta["source_roles"]`; a top-level `system` field becomes the system
message; the record's `id` is kept (else an id is derived from the content); every other key goes
to `meta["extra"]`. `options.key` names the list field when it is not `conversations`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from pydantic import Field

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, FormatOptions, IngestReport, clean, stable_id
from mothertongue.formats.tools import parse_tool_calls, parse_tools

DEFAULT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant",
    "bard": "assistant", "bing": "assistant", "model": "assistant", "system": "system",
    "function_call": "tool_call", "observation": "tool", "tool": "tool",
}
STANDARD = {"human", "user", "gpt", "assistant", "chatgpt", "bard", "bing", "model", "system"}


class ShareGPTOptions(FormatOptions):
    roles: dict[str, Literal["user", "assistant", "system", "tool", "tool_call", "drop"]] = Field(
        default_factory=dict, description="Source role -> user, assistant, system, tool, tool_call or drop."
    )
    key: str = Field("conversations", description="The field holding the list of turns.")


class ShareGPTAdapter(Adapter):
    name = "sharegpt"
    Options = ShareGPTOptions
    required = ("conversations",)

    def __init__(self, source, options=None, where: str = "source"):
        super().__init__(source, options, where)
        self.roles = {**DEFAULT_ROLES, **self.opts.roles}
        self.key = self.opts.key
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
        system = self.optional_text(obj, "system", loc, report)
        if system is False:
            return
        if system and system.strip():
            messages.append(Message("system", system))
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
            if role == "tool_call":
                calls = parse_tool_calls(text)
                if calls is None:
                    report.bad(loc, "bad tool call", f"field '{field}.value' is not a JSON tool call "
                               '({"name": ..., "arguments": {...}})')
                    return
                if messages and messages[-1].role == "assistant":  # text, then a call: one turn
                    messages[-1].tool_calls = (messages[-1].tool_calls or []) + calls
                else:
                    messages.append(Message("assistant", "", tool_calls=calls))
                continue
            messages.append(Message(role, clean(text)))
        tools = None
        if obj.get("tools") is not None:
            tools = parse_tools(obj["tools"])
            if tools is None:
                report.bad(loc, "bad field tools", "field 'tools' is not a JSON list of tool schemas")
                return
        meta = self.meta_of(obj, loc, ("id", self.key, "system", "tools"))
        if any(r not in STANDARD for r in source_roles):
            meta["source_roles"] = source_roles
        rid = obj.get("id")
        cid = f"{self.src_name}-{rid}" if rid not in (None, "") else stable_id(
            self.src_name, *(m.content for m in messages))
        yield Conversation(id=cid, messages=messages, lang=self.opts.lang, source=self.src_name, meta=meta,
                           tools=tools or None)
