"""`pakman schema`: print the JSON Schema of instellar.yml."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pakman.cli import EXIT_OK


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    schema = commands.add_parser(
        name,
        help=summary,
        description="Print a JSON Schema (draft-07) of instellar.yml, for editors and YAML "
        "language servers (e.g. `# yaml-language-server: $schema=instellar.schema.json`).",
    )
    schema.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead of standard output"
    )
    schema.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman schema`; return its exit code."""
    from pakman.config.schema import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if args.output:
        from pakman.fileio import write_atomic

        write_atomic(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return EXIT_OK
