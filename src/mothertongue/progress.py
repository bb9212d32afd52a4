"""One progress display for every long stage, the stage log file, and quiet libraries.

    from mothertongue import progress

    with progress.task("translate", total=len(todo), unit="segments") as bar:
        for chunk in batches:
            ...
            bar.advance(len(chunk))
    bar.update(loss=0.123, lr=2e-4)          # extra fields, shown after the bar, 4 significant digits

On a terminal a `rich` bar per task: stage name, bar, done/total, rate, ETA and the extra fields.
Anywhere else (a pipe, CI, a file) plain lines: one per 10 % of the work (at most one per
`PLAIN_MIN_S`) or every `PLAIN_EVERY_S`, and a closing line; no carriage returns, no escape codes.

`stage(name, log_path)` wraps one stage: everything printed, python `logging` of the libraries
(transformers, datasets, ...) and python warnings also go to the stage's log file (with the
traceback when the stage fails), so a failed overnight run can be read afterwards (the plumbing
is in `stagelog.py`). Library progress bars and chatter stay off the screen unless
`configure(verbose=True)` (`mothertongue -v ...`), which shows them as the libraries print them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from mothertongue import stagelog

__all__ = ["Task", "configure", "log_line", "num", "stage", "task", "verbose"]

PLAIN_EVERY_S = 60.0  # a plain line at least this often while work goes on
PLAIN_MIN_S = 2.0  # and at most this often (10 % steps of a fast task would flood a CI log)
PLAIN_STEP = 0.10  # a plain line each time this share of the work is done
_verbose = False
_display: _Display | None = None  # the display of the stage running now

QUIET_VARS = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")
# which of them we set (inherited by child processes, as they are)
_SET_BY_US = "MOTHERTONGUE_QUIETED"


def configure(verbose: bool) -> None:
    """Called once by the CLI. Quiet (default): the libraries' progress bars are switched off
    through environment variables, read when the libraries are imported (so this runs first).
    Variables the user set are left alone; verbose takes back only what quiet set."""
    global _verbose
    _verbose = verbose
    ours = [v for v in os.environ.get(_SET_BY_US, "").split(",") if v]
    if verbose:
        for var in ours:
            os.environ.pop(var, None)
        os.environ.pop(_SET_BY_US, None)
        return
    for var in QUIET_VARS:
        if var not in os.environ:
            os.environ[var] = "1"
            ours.append(var)
    os.environ[_SET_BY_US] = ",".join(ours)
    if "transformers" in sys.modules:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()


def verbose() -> bool:
    return _verbose


def num(v: Any) -> str:
    """A number rounded for people: 4 significant digits (7.081029891967773 -> 7.081)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    text = f"{v:.4g}"
    if "e+" in text and abs(v) < 1e15:  # 135123.4 -> 135100, not 1.351e+05
        return f"{float(text):.0f}"
    return text


def _duration(s: float) -> str:
    """2h05m, 3m07s, 42s."""
    h, rest = divmod(int(round(s)), 3600)
    if h:
        return f"{h}h{rest // 60:02d}m"
    return f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


def _rate(done: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or done <= 0:
        return ""
    per_s = done / seconds
    # a step of a big model can take seconds: "12.5 s/step" reads better than "0.08 steps/s"
    return (
        f"{num(per_s)} {unit}/s" if per_s >= 1 else f"{num(1 / per_s)} s/{unit.rstrip('s') or unit}"
    )


class Task:
    """One bar of the display. `advance(n)` / `update(completed=, **fields)`; `close()` (or the
    `with` block) ends it with a closing line."""

    def __init__(self, display: _Display | None, name: str, total: float | None, unit: str):
        self.display, self.name, self.total, self.unit = display, name, total, unit
        self.completed = 0.0
        self.fields: dict[str, Any] = {}
        self.started = time.monotonic()
        self._start_done = 0.0  # work done before this process started it (a resumed run)
        self._last_line, self._last_bucket, self._lines = self.started, 0, 0
        self._rich_id = None
        self._last_shown = 0.0
        self.closed = False

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def advance(self, n: float = 1) -> None:
        self.update(completed=self.completed + n)

    def update(
        self, completed: float | None = None, total: float | None = None, **fields: Any
    ) -> None:
        """Set progress and extra fields (shown after the bar in the order first named; None: not shown)."""
        if self.closed:
            return
        if total is not None:
            self.total = total
        if completed is not None:
            self.completed = completed
        self.fields.update(fields)
        if self.display is not None:
            self.display.changed(self)

    def skip(self, n: float) -> None:
        """Work found done (a resumed run, segments already in the memory): counted, not in the rate."""
        self._start_done += n
        self.completed += n
        self.update()

    def info(self) -> str:
        return ", ".join(f"{k} {num(v)}" for k, v in self.fields.items() if v is not None)

    def count(self) -> str:
        if self.total:
            return f"{num(self.completed)}/{num(self.total)} {self.unit}"
        return f"{num(self.completed)} {self.unit}"

    def rate(self) -> str:
        return _rate(self.completed - self._start_done, time.monotonic() - self.started, self.unit)

    def eta(self) -> str:
        done = self.completed - self._start_done
        if not self.total or done <= 0 or self.completed >= self.total:
            return ""
        return _duration((self.total - self.completed) * (time.monotonic() - self.started) / done)

    def line(self, closing: bool = False) -> str:
        """The plain-text form: `[train] 120/400 steps (30%), 2.1 steps/s, ETA 2m13s; loss 1.234`."""
        parts = [self.count() + (f" ({self.completed / self.total:.0%})" if self.total else "")]
        if self.rate():
            parts.append(self.rate())
        if closing:
            parts.append(f"took {_duration(time.monotonic() - self.started)}")
        elif self.eta():
            parts.append(f"ETA {self.eta()}")
        info = self.info()
        return f"[{self.name}] " + ", ".join(parts) + (f"; {info}" if info else "")

    def _bucket(self) -> int:
        """How many PLAIN_STEP shares of the work are done (rounding kept out of the comparison)."""
        return int(self.completed / self.total / PLAIN_STEP + 1e-9) if self.total else 0

    def due(self) -> bool:
        """Whether a plain line is due (10 % more done, or a minute since the last line)."""
        since = time.monotonic() - self._last_line
        return since >= PLAIN_EVERY_S or (
            self._bucket() > self._last_bucket and since >= PLAIN_MIN_S
        )

    def mark_line(self) -> None:
        self._last_line = time.monotonic()
        self._last_bucket = self._bucket()
        self._lines += 1

    def close(self) -> None:
        if self.closed:
            return
        if self.display is not None:
            self.display.finish(self)
        self.closed = True


class _Display:
    """The tasks of one stage: a live `rich` display on a terminal, plain lines elsewhere; the
    plain lines always go to the stage log too."""

    def __init__(self, out: TextIO, log: TextIO | None):
        self.out, self.log = out, log
        self.tasks: list[Task] = []
        self.progress = None
        isatty = getattr(out, "isatty", None)
        self.live = (not _verbose and bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
                     and int(os.environ.get("RANK", "0")) == 0)  # fmt: skip

    def _rich(self):
        if self.progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn

            fields = [TextColumn(f"{{task.fields[{k}]}}") for k in ("count", "rate", "eta", "info")]
            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=30), *fields,
                                     console=Console(file=self.out), redirect_stdout=False,
                                     redirect_stderr=False, refresh_per_second=4)  # fmt: skip
            self.progress.start()
        return self.progress

    def add(self, t: Task) -> None:
        self.tasks.append(t)
        if self.live:
            t._rich_id = self._rich().add_task(
                t.name, total=t.total, count="", rate="", eta="", info=""
            )
            self._show(t)

    def _show(self, t: Task, closing: bool = False) -> None:
        eta = (
            f"took {_duration(time.monotonic() - t.started)}"
            if closing
            else f"ETA {t.eta()}"
            if t.eta()
            else ""
        )
        self.progress.update(t._rich_id, completed=t.completed, total=t.total, count=t.count(), rate=t.rate(),
                             eta=eta, info=t.info())  # fmt: skip

    def changed(self, t: Task) -> None:
        if self.live and t._rich_id is not None:
            now = time.monotonic()
            if now - t._last_shown >= 0.1:  # the screen is redrawn 4 times a second anyway
                t._last_shown = now
                self._show(t)
        if t.due() and not (t.total and t.completed >= t.total):  # the closing line says 100 %
            self.plain(t.line())
            t.mark_line()

    def finish(self, t: Task) -> None:
        # a task of a second or two printed nothing on the way: its closing line goes to the log only
        if t._lines or time.monotonic() - t.started >= PLAIN_MIN_S:
            self.plain(t.line(closing=True))
        elif self.log is not None:
            self.log.write(t.line(closing=True) + "\n")
        if self.live and t._rich_id is not None:
            self._show(t, closing=True)
            self.progress.refresh()
        if t in self.tasks:
            self.tasks.remove(t)

    def plain(self, line: str) -> None:
        if self.live:
            if self.log is not None:
                self.log.write(line + "\n")
        else:
            # through sys.stdout, which (inside a stage) also writes the stage log
            print(line, flush=True)

    def echo(self, text: str) -> None:
        """A printed line while the live display runs: shown above the bars."""
        self.progress.console.print(
            text, markup=False, highlight=False, emoji=False, soft_wrap=True
        )

    def close(self) -> None:
        for t in list(self.tasks):
            t.close()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


@contextmanager
def task(
    name: str, total: float | None = None, unit: str = "items", enabled: bool = True
) -> Iterator[Task]:
    """A bar for `name` in the current stage's display (or a display of its own outside a stage)."""
    own = None
    display = _display
    if enabled and display is None:
        display = own = _Display(sys.stdout, None)
    t = Task(display if enabled else None, name, total, unit)
    if t.display is not None:
        t.display.add(t)
    try:
        yield t
    finally:
        t.close()
        if own is not None:
            own.close()


def open_task(name: str, total: float | None = None, unit: str = "items") -> Task:
    """A task closed by `close()` rather than a `with` block (for callbacks); the stage's display
    closes it at the latest."""
    display = _display
    t = Task(display, name, total, unit)
    if display is not None:
        display.add(t)
    return t


def log_line(text: str) -> None:
    """A line for the stage log only (e.g. the trainer's full metrics at each logging step)."""
    display = _display
    if display is not None and display.log is not None:
        display.log.write(text.rstrip("\n") + "\n")


@contextmanager
def stage(name: str, log_path: Path | None, models: bool = True) -> Iterator[None]:
    """Run a stage with its display and its log file (appended to: each attempt has a header, and
    a failed one its traceback). Without a log path only the display. `models`: the stage uses
    transformers, whose logger is set up (on import) before ours is put on it."""
    global _display
    if models and "transformers" not in sys.modules and importlib.util.find_spec("transformers"):
        # transformers resets its logger's level when first imported: import it before adjusting it
        importlib.import_module("transformers.utils.logging")
    if (
        _display is not None
    ):  # a stage inside a stage (export runs evaluate-like steps): one display
        yield
        return
    log: TextIO | None = None
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115  (closed below)
        except OSError as e:  # a read-only run folder: the stage still runs, without its log
            print(f"[{name}] no log file: cannot write {log_path} ({e.strerror or e})")
            log_path = None
    if log is None:
        log = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    started = time.time()
    log.write(stagelog.header(name))
    display = _Display(sys.stdout, log)
    out, err = sys.stdout, sys.stderr
    tees = stagelog.Tee(out, log, display), stagelog.Tee(err, log, display)
    sys.stdout, sys.stderr = tees
    _display = display
    outcome = "failed"
    warnings = None
    try:
        with stagelog.library_logging(log, _verbose) as counter:
            warnings = counter
            yield
        outcome = "finished"
    except BaseException as e:
        if isinstance(e, SystemExit) and not e.code:
            outcome = "finished"  # a non-main rank of a multi-process run stops here, successfully
        else:
            log.write(traceback.format_exc())
        raise
    finally:
        _display = None
        for tee in tees:
            tee.drain()
        display.close()
        sys.stdout, sys.stderr = out, err
        log.write(f"===== {name} {outcome} after {_duration(time.time() - started)} =====\n")
        log.close()
        if (
            warnings is not None
            and warnings.n
            and log_path is not None
            and not _verbose
            and outcome == "finished"
        ):
            print(f"[{name}] {warnings.n} library warning(s) in {log_path}")
