"""`pakman explain`: say why steps will run."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pakman.cli import EXIT_OK
from pakman.cli.options import project_from_args, project_options


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    explain = commands.add_parser(
        name,
        help=summary,
        description="For each step that a build would run, say which input changed since it "
        "last ran: a source file, a config key, a template, an upstream step, the release, "
        "the key. TARGET is an app (pyweb), an app's stage (pyweb:build) or a step "
        "(pyweb:build:x86_64); without one, every step that will run.",
    )
    explain.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET|PATH",
        help="a word naming an existing file or folder is a PATH (where the apps are), "
        "any other a TARGET",
    )
    explain.add_argument(
        "-p",
        "--path",
        dest="path_options",
        action="append",
        default=[],
        metavar="PATH",
        help="where the apps are (repeatable; default: the current folder); with -p, "
        "every word is a TARGET",
    )
    explain.add_argument("--all", action="store_true", help="list up-to-date steps too")
    explain.add_argument("--json", action="store_true", help="print JSON instead of text")
    project_options(explain)
    explain.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman explain`; return its exit code."""
    from pakman.compile.explain import explain_steps, select
    from pakman.errors import ConfigError

    project = project_from_args(args)
    steps = select(project.graph, args.targets)
    if args.targets and not steps:
        raise ConfigError(f"no app or step named {', '.join(args.targets)} (see `pakman graph`)")
    explanations = explain_steps(
        project.graph, project.layout, steps, build_on=project.settings.build_on
    )
    shown = [e for e in explanations if args.all or e.will_run]
    if args.json:
        print(json.dumps([e.as_dict() for e in shown], indent=2))
    else:
        for explanation in shown:
            print(explanation.text())
        running = sum(e.will_run for e in explanations)
        print(f"{running} of {len(explanations)} steps will run")
    return EXIT_OK
