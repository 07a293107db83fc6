"""How uploads show their progress: a bar on a terminal, plain lines elsewhere (CI logs).

`TransferProgress` is the progress callback of pakman.ship.s3.upload for
`pakman publish` and `pakman push`. On a terminal (the stream is a tty) it
redraws one line, `[=====>     ] 5/14 files  1.2/3.4 MB  2 unchanged`, at
most ten times a second, and prints retries and failures above it. Elsewhere
it prints one line per file when its outcome is known (`uploaded NAME (12.3
kB)`, `unchanged NAME`, `retrying NAME: reason`, `FAILED NAME: reason`): a
log then says what happened to each file, without control characters. Events
come from the upload's worker threads; a lock keeps lines whole.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

from pakman.ship.s3 import Progress, format_size

BAR_WIDTH = 24
REDRAW_EVERY = 0.1  # seconds


class TransferProgress:
    """A progress callback that draws a bar (terminal) or prints lines (anything else)."""

    def __init__(self, stream: TextIO, files: int, total: int, bar: bool | None = None) -> None:
        self.stream = stream
        self.files = files
        self.total = total
        self.bar = stream.isatty() if bar is None else bar
        self.done = 0
        self.unchanged = 0
        self.sent = 0
        self.lock = threading.Lock()
        self.drawn = 0.0
        self.shown = False

    def __call__(self, event: Progress) -> None:
        with self.lock:
            if event.event == "sent":
                self.sent += event.sent
            elif event.event in ("uploaded", "skipped", "failed"):
                self.done += 1
                if event.event == "skipped":
                    self.unchanged += 1
                    self.sent += event.size
            line = self._line(event)
            if self.bar:
                if line is not None and event.event in ("retrying", "failed"):
                    self._clear()
                    self.stream.write(line + "\n")
                    self._draw(force=True)
                else:
                    self._draw(force=event.event != "sent")
            elif line is not None:
                self.stream.write(line + "\n")
                self.stream.flush()

    @staticmethod
    def _line(event: Progress) -> str | None:
        if event.event == "uploaded":
            note = f", {event.reason}" if event.reason else ""
            return f"uploaded {event.name} ({format_size(event.size)}{note})"
        if event.event == "skipped":
            return f"unchanged {event.name}"
        if event.event == "retrying":
            return f"retrying {event.name}: {event.reason}"
        if event.event == "failed":
            return f"FAILED {event.name}: {event.reason}"
        return None

    def _draw(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self.drawn < REDRAW_EVERY:
            return
        self.drawn = now
        share = min(1.0, self.sent / self.total) if self.total else 1.0
        filled = int(share * BAR_WIDTH)
        arrow = ">" if filled < BAR_WIDTH else ""
        bar = "=" * filled + arrow + " " * (BAR_WIDTH - filled - len(arrow))
        text = (
            f"[{bar}] {self.done}/{self.files} files  "
            f"{format_size(self.sent)}/{format_size(self.total)}"
        )
        if self.unchanged:
            text += f"  {self.unchanged} unchanged"
        width = shutil.get_terminal_size((80, 24)).columns - 1
        self.stream.write("\r" + text[:width] + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def _clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")

    def close(self) -> None:
        """End the bar's line (nothing to do for lines)."""
        with self.lock:
            if self.bar and self.shown:
                self._draw(force=True)
                self.stream.write("\n")
                self.stream.flush()
                self.shown = False
