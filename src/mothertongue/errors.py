"""The errors a user sees: one base class, caught once by the CLI.

    raise StageError("train needs the output of build ...")   # -> `error: train needs ...`, exit 2

Every subclass carries a one-line message meant for the user (naming the file, line, field or
option). `mothertongue.cli.main` prints it on stderr and exits with `exit_code`, no traceback;
`MT_DEBUG=1` shows the traceback. Anything that is not a `MothertongueError` is a bug and keeps
its traceback.
"""

from __future__ import annotations


class MothertongueError(Exception):
    """Base of every user-facing error; the message is one line."""

    exit_code = 2


class RecipeError(MothertongueError, ValueError):
    """A recipe or override is wrong."""


class DataError(MothertongueError, ValueError):
    """Input data is malformed; the message names file, line and field."""


class StageError(MothertongueError, RuntimeError):
    """A stage cannot run; the message says what to do."""


class UsageError(MothertongueError, ValueError):
    """A command-line option or setting has a value that cannot work."""


class UnknownName(MothertongueError, KeyError):
    """A name that no registry knows (format, engine, exporter, stage, ...)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def os_error_line(e: OSError) -> str:
    """`path: Permission denied` instead of `[Errno 13] Permission denied: 'path'`."""
    reason = e.strerror or str(e)
    if e.filename is not None:
        where = f"{e.filename} -> {e.filename2}" if e.filename2 is not None else str(e.filename)
        return f"{where}: {reason}"
    return reason
