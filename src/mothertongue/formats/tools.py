"""Tool use in source data: tool calls and tool schemas in the one form the chat templates read.

    parse_tool_calls('{"name": "wetter", "arguments": {"ort": "Kiel"}}')
    # [{"type": "function", "function": {"name": "wetter", "arguments": {"ort": "Kiel"}}}]

Arguments are kept as an object (templates serialise them with `tojson`); schemas are wrapped as
`{"type": "function", "function": {...}}` when given bare (glaive / LLaMA-Factory layout).
"""

from __future__ import annotations

import json
from typing import Any


def parse_tool_calls(value: Any) -> list[dict] | None:
    """Tool calls in the chat-template form, `{"type": "function", "function": {"name", "arguments":
    {...}}}` (+ the call's `id` when it has one), from glaive's `{"name": ..., "arguments": ...}`
    text, OpenAI's `tool_calls` list (arguments as a JSON string), or a list of either; None when
    the value is not one."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    calls = value if isinstance(value, list) else [value]
    out = []
    for c in calls:
        fn = c.get("function", c) if isinstance(c, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            return None
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        call = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
        if isinstance(c.get("id"), str) and c["id"]:
            call = {"id": c["id"], **call}
        out.append(call)
    return out or None


def parse_tools(value: Any) -> list[dict] | None:
    """Tool schemas from a list or a JSON string of one; each as {"type": "function", "function": ...}."""
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else []
        except json.JSONDecodeError:
            return None
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        return None
    return [t if "function" in t else {"type": "function", "function": t} for t in value]
