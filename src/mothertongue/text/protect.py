"""Spans of text that must never reach a translation model and come back byte-for-byte.

    python -c "from mothertongue.text.protect import protected_spans as p; print(p('see {name} at https://x.org'))"

Block level (whole lines): fenced code blocks (``` or ~~~) and indented code blocks (4 spaces or a
tab after a blank line). Inline: inline code, URLs, e-mail addresses, markup/HTML tags and
placeholders (`#NAME#`, `{name}`, `{{var}}`, `date_0`, `%s`, `%(name)s`, `$VAR`, `${var}`).
`strip_protected` removes all of them before language identification (translate and evaluate);
with `quotes=True` (evaluation) it also removes quoted lines (`> ...`) and text in quotation marks.
"""

from __future__ import annotations

import re

# Order matters only for readability; overlapping matches are merged.
INLINE_PATTERNS: dict[str, str] = {
    "inline_code": r"`[^`\n]+`",
    "url": r"(?:https?|ftp)://[^\s<>\"'`\)\]]+[^\s<>\"'`\)\].,;:!?]|www\.[^\s<>\"'`\)\]]+[^\s<>\"'`\)\].,;:!?]",
    "email": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+",
    "tag": r"</?[A-Za-z][\w:-]*(?:\s[^<>]*)?/?>|<!--.*?-->",
    "double_brace": r"\{\{[^{}\n]*\}\}",
    "brace": r"\{[A-Za-z_][\w.\-]*\}|\{\d*\}",
    "dollar": r"\$\{[^}\n]+\}|\$[A-Z_][A-Z0-9_]+\b",
    "hash_name": r"#[A-Za-z_][\w]*#",
    "printf": r"%(?:\([\w]+\))?[-+0#]*\d*(?:\.\d+)?[sdifgexXrcuo](?![A-Za-z])",
    "indexed": r"\b[A-Za-z]+_\d+\b",
    "latex": r"\$\$[^$]+\$\$|\\\([^)]*\\\)",
}
_INLINE = re.compile("|".join(f"(?P<{k}>{v})" for k, v in INLINE_PATTERNS.items()), re.DOTALL)
_FENCE = re.compile(r"^[ \t]*(```|~~~)")


def protected_spans(text: str) -> list[tuple[int, int, str]]:
    """Inline protected spans of one line of text as (start, end, kind), sorted, non-overlapping."""
    out: list[tuple[int, int, str]] = []
    for m in _INLINE.finditer(text):
        s, e = m.span()
        if s == e:
            continue
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]), out[-1][2])
        else:
            out.append((s, e, m.lastgroup or "?"))
    return out


def code_block_lines(lines: list[str]) -> list[bool]:
    """For each line (with its newline), whether it belongs to a fenced or indented code block."""
    flags = [False] * len(lines)
    fence: str | None = None
    prev_blank = True
    in_indented = False
    for i, line in enumerate(lines):
        bare = line.rstrip("\r\n")
        if fence is not None:
            flags[i] = True
            if bare.strip().startswith(fence):
                fence = None
            continue
        m = _FENCE.match(bare)
        if m:
            fence = m.group(1)
            flags[i] = True
            in_indented = False
            continue
        blank = not bare.strip()
        indented = bare.startswith(("    ", "\t")) and not blank
        if indented and (prev_blank or in_indented):
            flags[i] = True
            in_indented = True
        elif not blank:
            in_indented = False
        elif in_indented:
            flags[i] = True  # blank line inside an indented block: literal either way
        prev_blank = blank
    return flags


# „…“ (German), “…” and "…" (English), «…» / »…« (French, German books), '…' kept out on purpose:
# apostrophes (it's, geht's) would pair up across whole sentences.
_QUOTED = re.compile(r"„[^“”\"\n]{0,300}[“”\"]|“[^”\n]{0,300}”|\"[^\"\n]{0,300}\"|«[^»\n]{0,300}»|»[^«\n]{0,300}«")
_QUOTE_LINE = re.compile(r"^\s*>")


def strip_protected(text: str, quotes: bool = False) -> str:
    """The text with code blocks and protected spans removed (for language id and checks).

    quotes: also drop quoted lines and text in quotation marks (quoted source text, e.g. the
    phrase a user asked to translate, is not the reply's language), and squeeze spaces."""
    lines = text.splitlines(keepends=True)
    flags = code_block_lines(lines)
    kept = []
    for line, code in zip(lines, flags):
        if code or (quotes and _QUOTE_LINE.match(line)):
            continue
        pos, parts = 0, []
        for s, e, _ in protected_spans(line):
            parts.append(line[pos:s])
            pos = e
        parts.append(line[pos:])
        kept.append(" ".join(parts))
    out = "".join(kept)
    if quotes:
        out = re.sub(r"[ \t]+", " ", _QUOTED.sub(" ", out)).strip()
    return out
