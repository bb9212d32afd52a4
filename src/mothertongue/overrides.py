"""Command-line overrides (`train.epochs=3`) and one-line messages for strict config errors.

    data = yaml.safe_load(text)
    for key, value in parse_overrides(["train.epochs=3", "ingest.sources.0.limit=10"]):
        set_dotted(data, key, value)
    format_validation_error(err, root=Recipe)   # "unknown key train.epochz (did you mean train.epochs?)"

Used by `config.load_recipe` and by the engines' and formats' option classes.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mothertongue.errors import RecipeError


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """Field names valid at a location inside the recipe, to suggest close matches."""
    cur: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if not (isinstance(cur, type) and issubclass(cur, BaseModel)) or part not in cur.model_fields:
            return []
        ann = cur.model_fields[part].annotation
        args = getattr(ann, "__args__", ())
        cur = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), ann)
    if isinstance(cur, type) and issubclass(cur, BaseModel):
        return list(cur.model_fields)
    return []


def format_validation_error(err: ValidationError, prefix: str = "", root: type[BaseModel] | None = None) -> str:
    """One line for all of a validation's errors, each naming its dotted field; unknown keys get
    close matches among the fields of `root` (the top-level model) at that place."""
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "recipe"
        if e["type"] == "extra_forbidden":
            names = _fields_at(root, loc) if root is not None and not prefix else []
            close = difflib.get_close_matches(str(loc[-1]), names, n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(dotted.rsplit('.', 1)[0] + '.' + c if '.' in dotted else c for c in close)}?)" if close else ""
            known = f"; known keys here: {', '.join(names)}" if names and not close else ""
            lines.append(f"unknown key {dotted}{hint}{known}")
        elif e["type"] == "value_error" and not loc:
            # A check across fields: its message names the fields itself.
            lines.append(e["msg"].removeprefix("Value error, "))
        else:
            msg = e["msg"]
            msg = msg[0].lower() + msg[1:] if msg else msg
            lines.append(f"{dotted}: {msg.replace('input should be', 'must be')}")
    return "; ".join(lines)


def set_dotted(data: dict, dotted: str, value: Any) -> None:
    """Set `a.b.0.c` inside nested dicts and lists, creating sections that are missing."""
    parts = dotted.split(".")
    cur: Any = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(cur, list):
            try:
                cur = cur[int(part)]
                continue
            except (ValueError, IndexError):
                raise RecipeError(f"override {dotted}: no list item {part!r}") from None
        if part not in cur or cur[part] is None:
            cur[part] = {}
        cur = cur[part]
        if not isinstance(cur, (dict, list)):
            raise RecipeError(f"override {dotted}: {'.'.join(parts[: i + 1])} is not a section")
    last = parts[-1]
    if isinstance(cur, list):
        try:
            cur[int(last)] = value
        except (ValueError, IndexError):
            raise RecipeError(f"override {dotted}: no list item {last!r}") from None
    else:
        cur[last] = value


def parse_overrides(overrides: list[str] | None) -> list[tuple[str, Any]]:
    """`key=value` strings as (dotted key, YAML value) pairs."""
    out = []
    for o in overrides or []:
        if "=" not in o:
            raise RecipeError(f"override {o!r} must look like stage.field=value")
        key, raw = o.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        out.append((key.strip(), value))
    return out
