"""`pakman run-step`: run one step of the graph, up to date or not (what exported Makefiles call)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pakman.cli import EXIT_OK
from pakman.cli.options import path_arguments, project_from_args, project_options


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    run_step = commands.add_parser(
        name,
        help=summary,
        description="Run one step, named as in `pakman graph` (e.g. pyweb:build:x86_64), "
        "whatever its state, up to date or not: it runs the step's action, unless the store "
        "(.pakman/store/) holds outputs made with the step's key, which it then restores "
        "instead (and says `restored`); then it records the step's manifest, so a build "
        "after it finds the step up to date. The steps before it must "
        "have run with the keys this graph gives them (else exit 1, naming them). Give the "
        "same paths and options as to `pakman graph` so both see the same graph; exported "
        "files call `pakman run-step OPTIONS -- STEP PATH...`. Steps share the workspace lock "
        "(any number run at once, as make -j or ninja run them); a build waits for them, "
        "and they for it.",
    )
    run_step.add_argument(
        "step", metavar="STEP", help="the step's id, as `pakman graph` lists it (app:stage:arch)"
    )
    path_arguments(run_step)
    project_options(run_step)
    run_step.add_argument("-v", "--verbose", action="store_true", help="show build output live")
    run_step.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman run-step`; return its exit code."""
    from pakman.errors import ConfigError
    from pakman.steps import execute_step, record_provisional, require_upstream
    from pakman.workspace.lock import run_lock

    project = project_from_args(args)
    if args.step not in project.graph.steps:
        import difflib

        close = difflib.get_close_matches(args.step, list(project.graph.steps), n=3)
        hint = f"; did you mean: {', '.join(close)}?" if close else " (see `pakman graph`)"
        raise ConfigError(f"no step named {args.step!r}{hint}")
    step = project.graph[args.step]
    # Steps that make or ninja run at once share the workspace lock; a build waits for them.
    with run_lock(project.layout, out=sys.stderr, shared=True):
        require_upstream(step, project.graph, project.layout)
        outcome = execute_step(step, project.context)
        if outcome.provisional:  # the mirror could not be reached: the steps after it go on
            record_provisional(step, project.layout)
    for warning in outcome.warnings:
        sys.stderr.write(f"warning: {warning}\n")
    # One write: make -j and ninja run several of these at once on one output,
    # and print() may write the text and its newline separately.
    sys.stdout.write(f"{'restored' if outcome.restored else 'ran'} {args.step}\n")
    return EXIT_OK
