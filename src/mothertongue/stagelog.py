"""The stage log file's plumbing: what `progress.stage` puts in `RUN_DIR/logs/<stage>.txt`.

    python -c "from mothertongue.stagelog import header; print(header('train'))"

`Tee` copies sys.stdout / sys.stderr into the log (escape codes and carriage returns dropped),
`library_logging` sends the libraries' python logging (INFO and up) and python warnings there
while keeping them off the screen unless verbose, `header` opens each attempt.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

# Loggers whose records go to the stage log; their console output is cut to errors unless verbose.
LIBRARIES = ("transformers", "datasets", "accelerate", "peft", "trl", "huggingface_hub", "torch",
             "ctranslate2", "lm_eval", "urllib3", "filelock", "mothertongue")  # fmt: skip
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")


class Tee(io.TextIOBase):
    """sys.stdout / sys.stderr during a stage: the console as before, and the stage log."""

    _lock = threading.Lock()  # stdout's and stderr's tee write the same log

    def __init__(self, stream: TextIO, log: TextIO, display):
        self.stream, self.log, self.display = stream, log, display  # display: progress._Display
        self._pending = ""

    def write(self, s: str) -> int:
        with self._lock:
            self.log.write(_ANSI.sub("", s).replace("\r\n", "\n").replace("\r", "\n"))
            if self.display.live and self.display.progress is not None:
                self._pending += s
                *lines, self._pending = self._pending.split("\n")
                for ln in lines:
                    self.display.echo(ln)
            else:
                self.stream.write(s)
        return len(s)

    def flush(self) -> None:
        self.log.flush()
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True

    def drain(self) -> None:
        """Show a last line that never got its newline."""
        if self._pending and self.display.progress is not None:
            self.display.echo(self._pending)
        self._pending = ""


class _Counter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.n = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.n += 1


@contextmanager
def library_logging(log: TextIO, verbose: bool) -> Iterator[_Counter]:
    """Library log records (INFO and up) into the stage log; on the console only errors unless
    verbose. Everything is put back afterwards."""
    fh = logging.StreamHandler(log)
    fh.setLevel(logging.INFO)
    fh.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    counter = _Counter()
    undo: list = []
    root = logging.getLogger()
    for h in (fh, counter):
        root.addHandler(h)
        undo.append(lambda h=h: root.removeHandler(h))
    if root.level > logging.INFO or root.level == logging.NOTSET:
        old = root.level
        root.setLevel(logging.INFO)
        undo.append(lambda: root.setLevel(old))
    for name in LIBRARIES:
        lg = logging.getLogger(name)
        shown = lg.getEffectiveLevel()
        if lg.level != logging.INFO:
            old_level = lg.level
            lg.setLevel(logging.INFO)
            undo.append(lambda lg=lg, v=old_level: lg.setLevel(v))
        if not lg.propagate:
            for h in (fh, counter):
                lg.addHandler(h)
                undo.append(lambda lg=lg, h=h: lg.removeHandler(h))
        for h in lg.handlers:
            if h in (fh, counter):
                continue
            old_h = h.level
            h.setLevel(max(old_h, shown) if verbose else max(old_h, logging.ERROR))
            undo.append(lambda h=h, v=old_h: h.setLevel(v))
    if verbose:
        # what the libraries would have shown without us: warnings on stderr
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        root.addHandler(console)
        undo.append(lambda: root.removeHandler(console))
    else:
        logging.captureWarnings(True)  # python warnings -> the log file, not the screen
        undo.append(lambda: logging.captureWarnings(False))
    try:
        yield counter
    finally:
        for u in reversed(undo):
            u()


def header(name: str) -> str:
    """The first lines of an attempt in the log: when, what was run, with which versions."""
    return (f"\n===== {name} started {time.strftime('%Y-%m-%d %H:%M:%S')} (pid {os.getpid()}) =====\n"
            f"command: {_command()}\n{_versions()}\n")  # fmt: skip


def _command() -> str:
    args = " ".join(sys.argv[1:])
    return f"mothertongue {args}" if "mothertongue" in sys.argv[0] else " ".join(sys.argv)


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = [f"python {sys.version.split()[0]}"]
    for pkg in ("mothertongue", "torch", "transformers", "trl", "peft", "datasets"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            pass
    return ", ".join(out)
