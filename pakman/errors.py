"""The exception tree and located diagnostics.

Three kinds of failure are kept apart (as doit does): the input is wrong
(`ConfigError`, exit 3, no traceback), a step failed (`StepFailed`, exit 1,
with the step's output), and a bug (any other exception, with a traceback).
Library code raises; the CLI prints the error and chooses the exit code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

KeyPath = tuple["str | int", ...]
Severity = Literal["error", "warning"]

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def format_path(path: KeyPath) -> str:
    """Render a key path the way users write it: `run.services[1].start.call`."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.match(part):
            out.append(f".{part}" if out else part)
        else:
            out.append(f"[{show(part)}]")
    return "".join(out)


def show(value: object, limit: int = 60) -> str:
    """A short, single-line, escaped rendering of a value for messages."""
    if isinstance(value, str):
        text = value.encode("unicode_escape").decode("ascii").replace("'", "\\'")
        if len(text) > limit:
            text = text[: limit - 3] + "..."
        return f"'{text}'"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def os_error_text(exc: OSError) -> str:
    """An OSError in one line, naming the file: `<file>: <reason>` (a full disk, a folder made read-only)."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in an input file, with its place and key path."""

    file: str
    line: int  # 1-based; 0 when the place is unknown
    column: int  # 1-based
    path: str  # formatted key path, "" for the whole file
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        level = "warning: " if self.severity == "warning" else ""
        key = f"{self.path}: " if self.path else ""
        message = self.message.replace("\n", "\n    ")
        return f"{where}: {level}{key}{message}" if where else f"{level}{key}{message}"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "severity": self.severity,
        }


class PakmanError(Exception):
    """An error the CLI reports as a message, without a traceback."""

    exit_code = 1


class UsageError(PakmanError):
    """A command was asked for something it cannot do as asked (a bad option value, no such ref): exit 2."""

    exit_code = 2


class ConfigError(PakmanError):
    """The input is invalid; carries every diagnostic found (warnings too)."""

    exit_code = 3

    def __init__(self, diagnostics: Sequence[Diagnostic] | Diagnostic | str) -> None:
        if isinstance(diagnostics, str):
            diagnostics = [Diagnostic("", 0, 0, "", diagnostics)]
        elif isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics: tuple[Diagnostic, ...] = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.errors))

    @property
    def errors(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.diagnostics if d.severity == "warning")


class StepFailed(PakmanError):
    """A build step ran and failed (exit status, log tail)."""

    exit_code = 1
