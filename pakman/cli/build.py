"""`pakman build`: build apps into a signed local repository."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Any

from pakman.cli import EXIT_OK
from pakman.cli.options import (
    at_least,
    path_arguments,
    project_options,
    remote_options,
    settings_from_args,
    show_project_messages,
)
from pakman.fastpath import gcpause

if TYPE_CHECKING:
    from pakman.workspace.layout import Layout


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    build = commands.add_parser(
        name,
        help=summary,
        description="Build every app under PATH (default: the current folder) into a signed "
        "Alpine repository, REPO/<arch>/ with the .apk files and a signed APKINDEX.tar.gz "
        "(default REPO: .pakman/repo). Steps run through doit on .pakman/doit.sqlite3: a "
        "step runs again only when something it reads changed, so a second build with "
        "nothing changed runs nothing. Exit 0 when built, 1 when a step failed (its log "
        "tail is shown), 3 when the input is invalid.",
        epilog="Keys: --key FILE, else ABUILD_PRIVATE_KEY (PEM text), else a project key made "
        "once under .pakman/keys/. Dependencies are checked against the stack's index on "
        "the Alpine mirror (--mirror or PAKMAN_MIRROR); --offline skips that. Builds run in "
        "the stack's Alpine by default (--build-on alpine), which needs the mirror or, with "
        "--offline, the indexes and packages an earlier build cached in .pakman/cache/. "
        "CI shards: --shard I/N (or PAKMAN_SHARD=I/N) on N machines builds each app once, "
        "writing no repository; then one `pakman build` without --shard publishes it, "
        "restoring what the shards built (this workspace's store, or a shared remote cache). "
        "With --remote-cache URL (a Bazel HTTP cache: nginx with WebDAV PUT, bazel-remote), "
        "steps about to run are restored from it when another machine built them, and what "
        "ran is uploaded (never with --remote-cache-readonly, for untrusted branches); "
        "the signing key is never uploaded, packages are signed again here.",
    )
    path_arguments(build)
    project_options(build)
    remote_options(build)
    build.add_argument(
        "-j", "--jobs", type=at_least(1), default=1, metavar="N", help="run N steps at once"
    )
    build.add_argument("-v", "--verbose", action="store_true", help="show build output live")
    build.add_argument("--json", action="store_true", help="print one JSON event per step")
    build.add_argument(
        "--no-wait",
        action="store_true",
        help="fail instead of waiting when another build holds the workspace",
    )
    build.add_argument(
        "--always",
        action="store_true",
        help="run every step, up to date or not (none is restored from the store)",
    )
    build.add_argument(
        "--explain", action="store_true", help="first say why each step that will run runs"
    )
    build.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman build`; return its exit code."""
    from pakman.fastpath.plan import inspect

    settings = settings_from_args(args)
    if settings.remote_cache:
        # A string check: a wrong value is refused (exit 3) on a no-op build too.
        from pakman.workspace.remote_options import check_remote_cache

        check_remote_cache(settings.remote_cache, settings.remote_cache_timeout, os.environ)
    inspection = inspect(settings)
    _delete_leftovers(inspection.layout)
    # A shard's graph is not the plan's (no repository steps): it is loaded.
    if inspection.nothing_to_do and not (args.explain or args.always or settings.shard):
        # Nothing changed since the last build: say so without preparing it.
        from pakman.doit.reporter import PakmanReporter

        for text in inspection.warnings():
            print(text, file=sys.stderr)
        repository = inspection.layout.relative(inspection.layout.repo)
        reporter = PakmanReporter(sys.stdout, json_events=args.json, repository=repository)
        reporter.up_to_date_without_doit(inspection.step_ids())
        reporter.complete_run()
        return EXIT_OK

    from pakman.doit.tasks import run_build
    from pakman.project import load_project

    project = load_project(settings, lazy=not args.always, inspection=inspection)
    gcpause.loaded()
    show_project_messages(project)
    if args.explain:
        from pakman.compile.explain import explain_steps

        explanations = explain_steps(
            project.graph, project.layout, project.graph.order(), build_on=settings.build_on
        )
        for explanation in explanations:
            if explanation.will_run:
                print(explanation.text())
    code, _ = run_build(
        project, jobs=args.jobs, json_events=args.json, wait=not args.no_wait, always=args.always
    )
    return code


def _delete_leftovers(layout: Layout) -> None:
    """Delete, while the build goes on, what a killed build left in `.pakman/trash/`.

    One scandir when there is nothing to delete; the command waits for the
    deletion before it ends (see `_wait_for_trash`).
    """
    try:
        with os.scandir(layout.state / "trash") as entries:
            if next(entries, None) is None:
                return
    except OSError:  # no trash folder: nothing was ever discarded
        return
    from pakman.workspace.trash import workspace_trash

    workspace_trash(layout).delete_leftovers()
