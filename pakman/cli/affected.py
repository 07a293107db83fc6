"""`pakman affected`: the apps (or steps) whose keys differ between a git revision and the working tree."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pakman.cli import EXIT_OK
from pakman.cli.options import path_arguments, project_options, settings_from_args


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    affected = commands.add_parser(
        name,
        help=summary,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""\
Print the apps whose steps' keys differ between REF (a git revision; default
HEAD: what the working tree changes since the last commit) and the working
tree, one a line, sorted: the apps that a build of REF would not have left
up to date. An app added or removed since REF counts.

REF's graph is compiled from its tree, read from git as data (git ls-tree and
git cat-file, no checkout: none of the repository's hooks, filters or
attributes run) into .pakman/tmp/ and removed after, with the same options
and what git says at REF (versions from its tags and each app's commits, its commit times).
Nothing is built. A pull request's CI compares with where it branched:
--since $(git merge-base origin/main HEAD).

  --json   {"since": REF, "commit": ID, "apps": [...], "added": [...],
            "removed": [...], "steps": {"app": ["app:build:x86_64", ...]}}
           (a CI matrix: fromJSON of .apps; see the README)

Exit 0 (whether or not an app is affected), 2 when REF names no commit or
the apps are not in a git repository, 3 when the working tree's apps are
invalid.""",
    )
    path_arguments(affected)
    affected.add_argument(
        "--since",
        default="HEAD",
        metavar="REF",
        help="the git revision to compare with: a branch, tag or commit (default HEAD)",
    )
    affected.add_argument(
        "--steps",
        action="store_true",
        help="print the ids of the steps whose keys differ instead (repository steps too)",
    )
    affected.add_argument("--json", action="store_true", help="print one JSON object")
    project_options(affected)
    affected.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman affected`; return its exit code."""
    from pakman.affected import find_affected

    found = find_affected(settings_from_args(args), args.since)
    for warning in found.warnings:
        sys.stderr.write(f"{warning}\n")
    if args.json:
        print(json.dumps(found.as_json(), indent=2))
    elif args.steps:
        print("".join(f"{i}\n" for ids in found.steps.values() for i in ids), end="")
    else:
        print("".join(f"{app}\n" for app in found.apps), end="")
    return EXIT_OK
