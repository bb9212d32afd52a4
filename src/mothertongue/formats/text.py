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
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from mothertongue.conversation import Conversation, Message
from mothertongue.formats.base import Adapter, IngestReport, stable_id


class TextAdapter(Adapter):
    name = "text"
    option_names = ("separator", "eval_marker", "lang")

    @classmethod
    def sniff(cls, path: Path, sample) -> str | None:
        if path.suffix.lower() not in (".txt", ".text", ""):
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
        sep = self.options.get("separator", "#")
        marker = self.options.get("eval_marker", "_EVAL_")
        lang = self.options.get("lang")
        name = self.source.name or path.stem
        in_eval = False
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            report.bad(f"{path}", "encoding", f"not UTF-8 (byte {e.start}); re-save the file as UTF-8")
            return
        for lineno, line in enumerate(text.splitlines(), 1):
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
