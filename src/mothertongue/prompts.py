"""System prompts and style tags: what build trains with, and what chat, serve and evaluate ask with.

    from mothertongue.prompts import base_system_prompt, system_for, style_system_prompt, with_system

`base_system_prompt` resolves `build.system_prompt` (none, the user's text, or the language's own,
varied per example with `build.system_prompt_variants`); `system_for` adds the style instructions
of a conversation's style tags; `style_system_prompt` is the same wording for `/style` in chat and
the `style` field of the server. `with_system` puts a system prompt first, the one rule every
consumer shares. Light: imports no ML library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mothertongue import languages
from mothertongue.conversation import stable_bucket

if TYPE_CHECKING:
    from mothertongue.config import BuildConfig

STYLE_PREFIX = "style:"


def base_system_prompt(cfg: BuildConfig, language: str, key: str = "") -> str | None:
    """The system prompt for one example: none, the user's text, or the language's own (varied by key)."""
    sp = cfg.system_prompt
    if sp is None or sp.strip().lower() == "none":
        return None
    if sp != "auto":
        return sp
    options = languages.system_prompts(language)
    return options[stable_bucket(key, len(options), "system")] if cfg.system_prompt_variants and key else options[0]


def style_tags(tags: list[str], cfg: BuildConfig, language: str) -> list[str]:
    """Tags that name a style: `style:NAME`, or a bare built-in/custom style name."""
    known = set(languages.known_styles(language)) | set(cfg.styles)
    out = []
    for t in tags:
        name = t[len(STYLE_PREFIX) :] if t.startswith(STYLE_PREFIX) else t
        if t.startswith(STYLE_PREFIX) or name in known:
            out.append(name)
    return out


def style_system_prompt(
    language: str, style: str | None, base_system: str | None, custom: dict | None = None
) -> str | None:
    """System prompt with a style instruction in the target language (build, chat and serve)."""
    if not style:
        return base_system
    instr = languages.style_instruction(language, style, custom)
    return f"{base_system} {instr}" if base_system else instr


def system_for(conv_id: str, tags: list[str], cfg: BuildConfig, language: str) -> str | None:
    """The system prompt one training conversation gets: the base prompt plus its styles."""
    sp = base_system_prompt(cfg, language, conv_id)
    for style in style_tags(tags, cfg, language):
        sp = style_system_prompt(language, style, sp, cfg.styles)
    return sp


def split_system(messages: list[dict]) -> tuple[str | None, list[dict]]:
    """(the leading system message's text or None, the other messages)."""
    if messages and messages[0]["role"] == "system":
        return messages[0]["content"], list(messages[1:])
    return None, list(messages)


def with_system(messages: list[dict], system: str | None) -> list[dict]:
    """`messages` with `system` as the first message; a conversation that starts with its own
    system message keeps it (the data's or client's own prompt wins over a default).
    Returns a new list; no system prompt (None or "") adds nothing."""
    if not system or (messages and messages[0]["role"] == "system"):
        return list(messages)
    return [{"role": "system", "content": system}, *messages]
