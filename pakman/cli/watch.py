"""`pakman watch`: tell builds which apps changed (inotify), so they check only those."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pakman.cli.options import workspace_folder
from pakman.fastpath import gcpause


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    watch = commands.add_parser(
        name,
        help=summary,
        description="Run in the foreground, watching (with inotify) every folder the apps of "
        "this workspace were last prepared from. Builds in the workspace ask it, through "
        ".pakman/watch.sock, which apps had any change since the build before, and look at "
        "only those files instead of every file of every app; whenever it cannot be sure "
        "(just started, events lost, a folder it cannot watch) they look at everything, as "
        "without it. It follows the folders of each new build. Ctrl-C or SIGTERM stops it.",
    )
    watch.add_argument("-v", "--verbose", action="store_true", help="say what each build was told")
    watch.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman watch`; return its exit code."""
    from pakman.fastpath.watcher import serve
    from pakman.workspace.layout import Layout

    gcpause.loaded()  # it runs for days: the collector runs as usual
    return serve(Layout.at(Path(workspace_folder())), sys.stdout, verbose=args.verbose)
