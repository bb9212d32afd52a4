"""The plain text format people write by hand: one example per line, `instruction#response`.

    mothertongue ingest recipes/quickstart.yaml     # sources: [{path: data/quickstart_de.txt, format: text}]

Source (a UTF-8 text file)::

    # Begrüßungen
    Sag hallo.#Hallo! Schön, dich zu sehen.
    # _EVAL_ from here on: held out for evaluation
    Sag guten Morgen.#Guten Morgen!

becomes, for the first example line::

    Conversation(id="quickstart-3f2a…", source="quickstart", lang="de", meta={"line": 2},
                 messages=[Message("user", "Sag hallo."),
                           Message("assistant", "Hallo! Schön, dich zu sehen.")])

Lines starting with `#` are comments; a comment containing `_EVAL_` starts the evaluation part
(those conversations get `meta["split"] = "test"`); blank lines are ignored. The line is split at
its first `#`; a line without one is an error naming file and line (or, with
`ingest.on_error=skip`, skipped and counted). A literal `\\n` in a response becomes a newline.
Each line is decoded on its own: a line that is not UTF-8 is one bad record named by its line,
and the good lines around it are kept. A folder reads every `.txt` file in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import Field

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import (
    Adapter,
    FormatOptions,
    IngestReport,
    decode_text,
    files_in,
    stable_id,
)


class TextOptions(FormatOptions):
    separator: str = Field("#", min_length=1, description="Splits a line into instruction and response.")
    eval_marker: str = Field("_EVAL_", min_length=1, description="A comment holding it starts the evaluation part.")


def text_lines(path: Path, encoding: str | None = None) -> Iterator[tuple[int, str | None]]:
    """(line number, text) for every line; text is None for a line that is not valid UTF-8 (or
    the declared encoding), so one bad byte costs one line, not the file."""
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if encoding and encoding.lower().replace("_", "-") not in ("utf-8", "utf8") or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        data = decode_text(path, encoding).encode("utf-8")  # whole-file codecs (UTF-16, latin-1, ...)
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            yield lineno, raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            yield lineno, None


class TextAdapter(Adapter):
    name = "text"
    Options = TextOptions
    suffixes = (".txt", ".text")

    @classmethod
    def sniff(cls, path: Path, sample) -> str | None:
        if path.suffix.lower() not in (".txt", ".text", "") or not path.is_file():
            return None
        try:
            with open(path, encoding="utf-8-sig") as f:
                lines = [ln for ln in (f.readline() for _ in range(50)) if ln.strip() and not ln.startswith("#")]
        except (OSError, UnicodeDecodeError):
            return None
        if lines and all("#" in ln for ln in lines):
            return f"{len(lines)} sampled lines all look like instruction#response"
        return None

    def read(self, path: Path, report: IngestReport) -> Iterator[Conversation]:
        for f in files_in(path, self.suffixes):
            yield from self._read_file(f, report)

    def _read_file(self, path: Path, report: IngestReport) -> Iterator[Conversation]:
        sep, marker, lang = self.opts.separator, self.opts.eval_marker, self.opts.lang
        name = self.source.name or path.stem
        in_eval = False
        for lineno, line in text_lines(path, self.source.encoding):
            if line is None:
                report.read += 1
                report.bad(f"{path}:{lineno}", "encoding", "the line is not UTF-8; re-save the file as UTF-8 "
                           "or set the source's encoding")
                continue
            stripped = line.strip()
            if not stripped:
                continue
            if stripped.startswith("#"):
                in_eval = in_eval or marker in stripped
                continue
            report.read += 1
            where = f"{path}:{lineno}"
            if sep not in stripped:
                report.bad(where, "missing separator", f"no '{sep}' between instruction and response")
                continue
            instruction, response = (s.strip() for s in stripped.split(sep, 1))
            if not instruction or not response:
                field = "instruction" if not instruction else "response"
                report.bad(where, f"empty {field}", f"the {field} is empty")
                continue
            response = response.replace("\\n", "\n")
            meta = {"line": lineno, "file": str(path)}
            if in_eval:
                meta["split"] = "test"
            yield Conversation(
                id=stable_id(name, instruction, response),
                messages=[Message("user", instruction), Message("assistant", response)],
                lang=lang,
                source=name,
                meta=meta,
            )
