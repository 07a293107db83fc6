"""`pakman bootstrap`: `render` as the original's GitHub Action step runs it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from pakman.cli.options import identity_options
from pakman.cli.render import render_app


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    bootstrap = commands.add_parser(
        name,
        help=summary,
        description="Compatible with the original `pakman bootstrap`: renders the app in "
        "GITHUB_WORKSPACE (default: the current folder) into "
        "$GITHUB_WORKSPACE/.apk/<org>/<name>/, naming the package after GITHUB_REPOSITORY "
        "and numbering the release with GITHUB_RUN_NUMBER. It does not set up signing keys.",
    )
    bootstrap.add_argument(
        "--config",
        metavar="FILE",
        help="the instellar.yml to read (default: $GITHUB_WORKSPACE/instellar.yml)",
    )
    identity_options(bootstrap)
    bootstrap.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman bootstrap`; return its exit code."""

    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or ".")
    config = Path(args.config) if args.config else workspace / "instellar.yml"
    return render_app(args, config, None, workspace)
