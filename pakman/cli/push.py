"""`pakman push`: the original's push, to the Instellar platform (see pakman.ship.push)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.cli import EXIT_OK
from pakman.cli.options import at_least, progress_argument

if TYPE_CHECKING:
    from pakman.ship.instellar import Storage
    from pakman.ship.push import Report, Upload


def positive_seconds(text: str) -> float:
    """An argparse type: a number of seconds more than 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not more than 0 seconds")
    return value


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    from pakman.ship.instellar import DEFAULT_TIMEOUT
    from pakman.ship.push import DEFAULT_CONCURRENCY, VARIABLES

    width = max(len(variable) for variable, _ in VARIABLES)
    listed = "\n".join(f"  {variable:<{width}}  {what}" for variable, what in VARIABLES)
    push = commands.add_parser(
        name,
        help=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compatible with the original `pakman push`: authenticate with the "
        "Instellar platform; when the commit's deployment exists, create the deployment "
        "from its archive without uploading; else upload every file of the packages folder "
        "to deployments/<org>/<name>/<sha>/<arch>/<file> and the archive to "
        "archives/<id>/<file> in the platform's bucket, then create the deployment (with "
        "instellar.yml's stack); then post the kits configuration (kits, sizes, plans, page) "
        "when instellar.yml has kits.",
        epilog=f"environment variables:\n{listed}\n\n"
        "Tokens are never printed. Exit codes: 0 pushed, 1 a request or an upload failed, "
        "2 bad usage, 3 a variable, instellar.yml, the packages or the archive is wrong "
        "(nothing was sent).",
    )
    push.add_argument(
        "--config",
        metavar="FILE",
        type=Path,
        help="the instellar.yml to read (default: $GITHUB_WORKSPACE/instellar.yml)",
    )
    push.add_argument(
        "--packages",
        metavar="DIR",
        type=Path,
        help="the repository to upload: a pakman repository or abuild's packages folder "
        "(default: $HOME/packages when it exists, else the workspace's .pakman/repo)",
    )
    push.add_argument(
        "--archive",
        metavar="FILE",
        type=Path,
        help="the zip of the packages, a relative path being in $HOME like the original's "
        "(default: $HOME/packages.zip when it exists, else pakman makes one)",
    )
    push.add_argument(
        "--concurrency",
        metavar="N",
        type=at_least(1),
        default=DEFAULT_CONCURRENCY,
        help=f"files uploaded at once (default {DEFAULT_CONCURRENCY})",
    )
    push.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=DEFAULT_TIMEOUT,
        help=f"how long to wait for each answer of the platform (default {DEFAULT_TIMEOUT:g})",
    )
    progress_argument(push)
    push.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman push`; return its exit code."""
    from pakman.ship.push import push, read_request

    request = read_request(
        os.environ,
        config=args.config,
        packages=args.packages,
        archive=args.archive,
        concurrency=args.concurrency,
        timeout=args.timeout,
    )
    outcome = push(request, functools.partial(upload_with_progress, args.progress), say)
    copied = " (the existing deployment copied, nothing uploaded)" if outcome.copied else ""
    say(f"pushed {request.sha}{copied}")
    return EXIT_OK


def upload_with_progress(
    shown: str, storage: Storage, files: Sequence[Upload], concurrency: int, report: Report
) -> None:
    """pakman.ship.push's uploader, drawing the uploads' progress on standard error."""
    from pakman.cli.progress import TransferProgress
    from pakman.ship.push import upload_to_storage

    progress = TransferProgress(
        sys.stderr,
        len(files),
        sum(f.path.stat().st_size for f in files),
        bar=None if shown == "auto" else shown == "bar",
    )
    try:
        upload_to_storage(storage, files, concurrency, report, progress)
    finally:
        progress.close()


def say(line: str) -> None:
    """Print one line of progress."""
    print(f"pakman: {line}", file=sys.stdout, flush=True)
