"""`pakman watch`: tell builds which apps changed, so that they look at only those.

Without a watcher a build learns that nothing changed with an lstat of every
folder and file its apps were prepared from, which at hundreds of apps is most
of a no-op build's time. `pakman watch`, left running in the workspace,
holds an inotify watch on each of those folders. A build asks it, over the
socket `.pakman/watch.sock`, which apps had any event since the build that
wrote the plan, checks those apps with lstat exactly as before, and takes the
others as they were.

It watches the folders of the apps' step outputs too, and says which apps
had an event there ("touched"). A build trusts that an app found with all
its steps done, and neither changed nor touched since, is still done: it
skips that app's lstat of each output against the journal, as long as the
journal is the file it read then, only appended to since.

The answer only ever narrows what is checked, and every doubt widens it back
to everything: no watcher, another watcher since (its instance differs), an
event queue that overflowed, a folder it could not watch or began watching
late, a plan other than the one it loaded, no answer within two seconds.

The token. A build asks before it looks at anything, and keeps the answer's
clock in the plan it writes. What it then records was read after that clock,
so any later change to it is an event after the clock, which the next build,
asking "since that clock", hears of. The kernel queues an event before the
call that caused it returns, and the watcher reads its queue before it
answers, so no change made before the question is missed.

Limits, as for any inotify watcher: changes that make no event on this
machine (a network file system changed from another host, a write through a
hard link kept outside the app) are not seen. Stop the watcher and builds go
back to checking everything.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.workspace.layout import Layout

if TYPE_CHECKING:
    import _socket

SOCKET = "watch.sock"
ASK_TIMEOUT = 2.0  # seconds a build waits for the watcher before checking everything
PROTOCOL = 2

Token = list[Any]  # [watcher instance, clock]


@dataclass(frozen=True)
class Answer:
    token: Token  # what the plan written next keeps, to ask "since" next time
    dirty: frozenset[int] | None  # the plan's apps to check; None: check every app
    why: str = ""  # when every app is to be checked, the reason
    touched: frozenset[int] | None = None  # apps with events in their outputs' folders


def socket_address(path: Path) -> tuple[str, int | None]:
    """A socket address for `path`; long paths go through /proc/self/fd (108 bytes at most)."""
    text = str(path)
    if len(text.encode()) < 100:
        return text, None
    folder = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{folder}/{path.name}", folder


def ask(layout: Layout, plan: list[int] | None, since: Token | None) -> Answer | None:
    """The watcher's answer for the plan with this signature, or None when none answers."""
    path = layout.state / SOCKET
    if not os.path.exists(path):
        return None
    # The C module: `socket` is slow to import (its enums), a build with a
    # watcher pays it on every run, and a plain connection needs none of it.
    import _socket
    import json

    address, folder = socket_address(path)
    request = {"protocol": PROTOCOL, "plan": plan, "since": since}
    try:
        connection = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            connection.settimeout(ASK_TIMEOUT)
            connection.connect(address)
            connection.sendall(json.dumps(request).encode() + b"\n")
            reply = json.loads(read_line(connection))
        finally:
            connection.close()
    except TimeoutError:
        print(
            f"pakman: the watcher did not answer within {ASK_TIMEOUT:g} s; checking every file",
            file=sys.stderr,
        )
        return None
    except (OSError, ValueError):
        return None  # no watcher (a socket left by one that was killed), or a garbled reply
    finally:
        if folder is not None:
            os.close(folder)
    try:
        token = [str(reply["instance"]), int(reply["clock"])]
        dirty, touched = reply.get("dirty"), reply.get("touched")
        return Answer(
            token,
            None if dirty is None else frozenset(int(i) for i in dirty),
            str(reply.get("why", "")),
            None if dirty is None or touched is None else frozenset(int(i) for i in touched),
        )
    except (KeyError, TypeError, ValueError):
        return None


def read_line(connection: _socket.socket, limit: int = 1 << 20) -> bytes:
    """One message: bytes up to a newline, the peer closing, or `limit`."""
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
