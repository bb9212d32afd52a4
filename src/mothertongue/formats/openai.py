"""OpenAI chat fine-tuning JSONL: `{"messages": [{"role": ..., "content": ...}, ...]}`.

    mothertongue ingest recipe.yaml      # sources: [{path: train.jsonl, format: openai}]

Source (the example line of OpenAI's fine-tuning guide)::

    {"messages": [{"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."},
                  {"role": "user", "content": "What's the capital of France?"},
                  {"role": "assistant", "content": "Paris, as if everyone doesn't know that already."}]}

becomes::

    Conversation(id="train-9d1c…", source="train", meta={"file": "train.jsonl", "line": 1},
                 messages=[Message("system", "Marv is a factual chatbot that is also sarcastic."),
                           Message("user", "What's the capital of France?"),
                           Message("assistant", "Paris, as if everyone doesn't know that already.")])

`content` given as a list of parts keeps its text parts, joined. Tool use is kept: an assistant
message with `tool_calls` (content may be null; arguments given as a JSON string become an
object), `tool` messages with the results, and the record's `tools` schemas
(`Conversation.tools`); build renders them through the chat template's tool support. The legacy
`function` role, and `null` content without tool calls, are bad records naming the field; a
record's `id` is kept; other keys go to `meta["extra"]`. A `"weight": 0` on an assistant message
is not modelled: the message is kept and the weight noted in meta.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mothertongue.conversation import ROLES, Conversation, Message
from mothertongue.formats.base import Adapter, IngestReport, clean, stable_id
from mothertongue.formats.tools import parse_tool_calls, parse_tools

CHAT_ROLES = ("system", "user", "assistant")


def content_text(content: Any) -> str | None:
    """Plain text of an OpenAI message content (a string, or a list of {type: text, text} parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type", "text") == "text"]
        return "\n".join(p for p in parts if p) if parts else None
    return None


def parse_messages(
    msgs: Any, field: str, loc: str, report: IngestReport, tools: bool = False
) -> list[Message] | None:
    """OpenAI-style messages; with `tools`, also assistant tool calls and `tool` results."""
    if not isinstance(msgs, list) or not msgs:
        report.bad(loc, f"missing field {field}", f"field '{field}' is missing, empty or not a list")
        return None
    out = []
    for i, m in enumerate(msgs):
        f = f"{field}[{i}]"
        if not isinstance(m, dict) or "role" not in m:
            report.bad(loc, "bad message", f"field '{f}' needs 'role' and 'content'")
            return None
        allowed = ROLES if tools else CHAT_ROLES
        if m["role"] not in allowed:
            report.bad(loc, "unsupported role", f"field '{f}.role' is {m['role']!r}; supported: {', '.join(allowed)}")
            return None
        calls = None
        if tools and m["role"] == "assistant" and m.get("tool_calls"):
            calls = parse_tool_calls(m["tool_calls"])
            if calls is None:
                report.bad(loc, "bad tool call", f"field '{f}.tool_calls' must be a list of "
                           "{type: function, function: {name, arguments}}")
                return None
        text = content_text(m.get("content"))
        if calls and text is None:
            text = ""
        elif text is None or not text.strip():
            report.bad(loc, "empty content", f"field '{f}.content' is empty or not text")
            return None
        lang = m.get("lang")
        out.append(Message(m["role"], clean(text), lang if isinstance(lang, str) else None, calls))
    return out


class OpenAIAdapter(Adapter):
    name = "openai"
    required = ("messages",)

    @classmethod
    def sniff(cls, path, sample) -> str | None:
        for r in sample[:5]:
            ms = r.get("messages") if isinstance(r, dict) else None
            if not (isinstance(ms, list) and ms and isinstance(ms[0], dict) and "role" in ms[0]):
                return None
        return "records have messages: [{role, content}]" if sample else None

    def convert(self, obj: Any, loc: str, report: IngestReport) -> Iterator[Conversation]:
        if not isinstance(obj, dict):
            report.bad(loc, "not an object", f"expected a JSON object, got {type(obj).__name__}")
            return
        messages = parse_messages(obj.get("messages"), "messages", loc, report, tools=True)
        if messages is None:
            return
        tools = None
        if obj.get("tools") is not None:
            tools = parse_tools(obj["tools"])
            if tools is None:
                report.bad(loc, "bad field tools", "field 'tools' is not a list of tool schemas")
                return
        meta = self.meta_of(obj, loc, ("id", "messages", "tools"))
        weights = [m.get("weight") for m in obj["messages"] if isinstance(m, dict)]
        if any(w is not None for w in weights):
            meta["weights"] = weights
        rid = obj.get("id")
        cid = f"{self.src_name}-{rid}" if rid not in (None, "") else stable_id(
            self.src_name, *(f"{m.role}:{m.content}" for m in messages))
        yield Conversation(id=cid, messages=messages, lang=self.opts.lang, source=self.src_name, meta=meta,
                           tools=tools or None)
