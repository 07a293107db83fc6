"""pakman.cli.progress: a bar on a terminal, plain lines in logs."""

from __future__ import annotations

import io

from pakman.cli.progress import TransferProgress
from pakman.ship.s3 import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


EVENTS = [
    Progress("started", "x86_64/a.apk", 2000),
    Progress("sent", "x86_64/a.apk", 2000, sent=1500),
    Progress("retrying", "x86_64/a.apk", 2000, reason="SlowDown (HTTP 503): slow down"),
    Progress("sent", "x86_64/a.apk", 2000, sent=-1500),
    Progress("sent", "x86_64/a.apk", 2000, sent=2000),
    Progress("uploaded", "x86_64/a.apk", 2000),
    Progress("skipped", "x86_64/b.apk", 1000, reason="unchanged"),
    Progress("failed", "x86_64/c.apk", 500, reason="InternalError (HTTP 500): oops"),
]


def test_lines_where_standard_error_is_no_terminal() -> None:
    log = io.StringIO()
    progress = TransferProgress(log, files=3, total=3500)
    for event in EVENTS:
        progress(event)
    progress.close()
    assert log.getvalue().splitlines() == [
        "retrying x86_64/a.apk: SlowDown (HTTP 503): slow down",
        "uploaded x86_64/a.apk (2.0 kB)",
        "unchanged x86_64/b.apk",
        "FAILED x86_64/c.apk: InternalError (HTTP 500): oops",
    ]
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def test_a_bar_on_a_terminal() -> None:
    terminal = Terminal()
    progress = TransferProgress(terminal, files=3, total=3500)
    assert progress.bar
    for event in EVENTS:
        progress(event)
    progress.close()
    text = terminal.getvalue()
    assert text.endswith("\n") and text.count("\n") == 3  # two messages, the bar's end
    frames = [f.rstrip("\n").removesuffix("\x1b[K") for f in text.split("\r") if f.startswith("[")]
    assert frames[0] == "[>                       ] 0/3 files  0 B/3.5 kB"
    # Bytes retried are not counted twice; skipped files count as done, failed ones do not.
    assert frames[-1] == "[====================>   ] 3/3 files  3.0 kB/3.5 kB  1 unchanged"
    assert "\r\x1b[Kretrying x86_64/a.apk: SlowDown (HTTP 503): slow down\n" in text
    assert "\r\x1b[KFAILED x86_64/c.apk: InternalError (HTTP 500): oops\n" in text
    assert "uploaded x86_64/a.apk" not in text


def test_the_choice_can_be_forced() -> None:
    assert TransferProgress(Terminal(), 1, 1, bar=False).bar is False
    assert TransferProgress(io.StringIO(), 1, 1, bar=True).bar is True
