"""`pakman sbom`: print the SPDX SBOM a package carries."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pakman.cli import EXIT_INVALID, EXIT_OK


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    sbom = commands.add_parser(
        name,
        help=summary,
        description="Print the SPDX 2.3 JSON document a package built by pakman carries at "
        "/var/lib/db/sbom/<name>-<version>-r<release>.spdx.json: the package, its files with "
        "their checksums, its runtime dependencies and, for a build on alpine, the packages of "
        "its build root. Exit 0 when printed, 3 when the file is not a package or has no SBOM.",
    )
    sbom.add_argument("package", metavar="PACKAGE.apk", help="a package (.apk)")
    sbom.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman sbom`; return its exit code."""
    from pakman.apk import ArchiveError
    from pakman.apk.reader import NotRegularFileError, open_regular_file
    from pakman.apk.sbom import read_sbom

    try:
        with open_regular_file(args.package) as handle:
            found = read_sbom(handle)
    except NotRegularFileError as exc:
        print(f"pakman: {args.package}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except ArchiveError as exc:
        print(f"pakman: {args.package}: not a package ({exc})", file=sys.stderr)
        return EXIT_INVALID
    except FileNotFoundError:
        print(f"pakman: {args.package}: no such file", file=sys.stderr)
        return EXIT_INVALID
    if found is None:
        print(
            f"pakman: {args.package}: the package has no SBOM (no /var/lib/db/sbom/*.spdx.json; "
            "pakman puts one in every package it builds)",
            file=sys.stderr,
        )
        return EXIT_INVALID
    sys.stdout.write(found[1].decode("utf-8", "replace"))
    return EXIT_OK
