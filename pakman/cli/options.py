"""How commands read their arguments: PATHs, the build options, and the Settings they name.

The build and identity options are declared once, in pakman.compile.options;
this module adds them to argparse and turns the parsed arguments back into
Settings (and, for `pakman graph`, into the arguments run-step is given).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.fastpath import gcpause

if TYPE_CHECKING:
    from pakman.compile.settings import Settings
    from pakman.project import Project


def identity_options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The identity options of pakman.compile.options, as one argparse group."""
    from pakman.compile.options import IDENTITY_OPTIONS

    group = parser.add_argument_group(
        "package identity",
        "By default the name comes from GITHUB_REPOSITORY, else run.name, else the app's "
        "folder; the version from `git describe --tags`; the release from GITHUB_RUN_NUMBER.",
    )
    return [add_option(group, option) for option in IDENTITY_OPTIONS]


def add_option(group: Any, option: Any) -> argparse.Action:
    """One option of pakman.compile.options.OPTIONS as an argparse argument."""
    if option.kind == "flag":
        action: argparse.Action = group.add_argument(
            option.flag, action="store_true", help=option.help
        )
    elif option.kind == "list":
        action = group.add_argument(
            option.flag, action="append", default=[], metavar=option.metavar, help=option.help
        )
    elif option.kind == "choice":
        action = group.add_argument(option.flag, choices=option.choices, help=option.help)
    elif option.check is not None:
        action = group.add_argument(
            option.flag, metavar=option.metavar, help=option.help, type=_checked(option.check)
        )
    else:
        action = group.add_argument(option.flag, metavar=option.metavar, help=option.help)
    return action


def _checked(check: Any) -> Any:
    """An argparse type: the text itself once `check` accepts it (exit 2 with its message if not)."""

    def parse(text: str) -> str:
        from pakman.errors import UsageError

        try:
            check(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    return parse


class Parser(argparse.ArgumentParser):
    """argparse, plus one rule for where the apps are (see `settle_paths`)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        found, rest = super().parse_known_args(args, namespace)
        if not settle_paths(found):
            self.error("render takes one app: give one PATH")
        return found, rest


def path_arguments(parser: argparse.ArgumentParser) -> None:
    """PATH arguments and -p/--path PATH: where the apps are, the same for every command."""
    parser.add_argument(
        "paths",
        nargs="*",
        default=[],
        metavar="PATH",
        help="an instellar.yml, an app folder or a folder searched for apps "
        "(default: the current folder)",
    )
    parser.add_argument(
        "-p",
        "--path",
        dest="path_options",
        action="append",
        default=[],
        metavar="PATH",
        help="the same as a PATH argument (repeatable)",
    )


def settle_paths(args: argparse.Namespace) -> bool:
    """Merge -p/--path into `args.paths` (default: the current folder); False if unusable.

    explain's words name targets and paths alike: without -p, a word that
    names an existing file or folder is a PATH, any other a TARGET.
    """
    given = getattr(args, "path_options", None)
    if given is None:
        return True
    args.path_options = None
    if hasattr(args, "targets"):
        if given:
            args.paths = list(given)
        else:
            args.paths = [t for t in args.targets if os.path.exists(t)]
            args.targets = [t for t in args.targets if not os.path.exists(t)]
    elif hasattr(args, "path"):  # render: one app
        words = ([args.path] if args.path else []) + list(given)
        args.path = words[0] if words else "."
        return len(words) <= 1
    else:
        args.paths = [*args.paths, *given]
    args.paths = args.paths or ["."]
    return True


def project_options(parser: argparse.ArgumentParser) -> None:
    """The build and identity options: those of the commands that compile the step graph."""
    from pakman.compile.options import OPTIONS

    group = parser.add_argument_group("build options")
    actions = [add_option(group, o) for o in OPTIONS if o.group == "build"]
    actions += identity_options(parser)
    # Remembered so that `pakman graph` can hand exactly these on to `run-step`.
    parser.set_defaults(project_actions=tuple(actions))


def remote_options(parser: argparse.ArgumentParser) -> None:
    """The remote cache's options (pakman build's alone)."""
    from pakman.compile.options import REMOTE_OPTIONS

    group = parser.add_argument_group("remote cache (see the README's Remote cache)")
    for option in REMOTE_OPTIONS:
        add_option(group, option)


def trust_arguments(parser: argparse.ArgumentParser, *, purpose: str = "") -> None:
    """--key, --keys-dir and --no-workspace-key: the keys verify (and publish) trust."""
    parser.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        metavar="FILE",
        help=f"a trusted public key file{purpose}, named as in /etc/apk/keys (repeatable)",
    )
    parser.add_argument(
        "--keys-dir",
        action="append",
        default=[],
        metavar="DIR",
        help=f"a folder of trusted public keys{purpose}, like /etc/apk/keys (repeatable)",
    )
    parser.add_argument(
        "--no-workspace-key",
        dest="workspace_key",
        action="store_false",
        help="do not trust the workspace's own keys (.pakman/keys/*.pub of the workspace, "
        "found as build finds it), which are trusted by default",
    )


def progress_argument(parser: argparse.ArgumentParser) -> None:
    """--progress for commands that upload files (push, publish)."""
    parser.add_argument(
        "--progress",
        choices=("auto", "bar", "lines"),
        default="auto",
        help="a progress bar, or one line per file (default: a bar when standard error is "
        "a terminal)",
    )


def project_argv(args: argparse.Namespace) -> list[str]:
    """The build and identity options in `args`, as arguments again (`--name=value`, `--flag`).

    `pakman graph` writes them into the run-step commands of an exported
    Makefile or build.ninja, so each step compiles the graph that was exported.
    """
    argv: list[str] = []
    for action in args.project_actions:
        option = next(o for o in action.option_strings if o.startswith("--"))
        value = getattr(args, action.dest)
        if action.nargs == 0:  # a flag (store_true)
            argv += [option] if value else []
        elif isinstance(value, list):
            argv += [f"{option}={v}" for v in value]
        elif value is not None:
            argv.append(f"{option}={value}")
    return argv


def identity_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The identity options given, by Settings field (prepare_app's keywords)."""
    from pakman.compile.options import IDENTITY_OPTIONS

    return {option.field: getattr(args, option.dest) for option in IDENTITY_OPTIONS}


def at_least(minimum: int) -> Any:
    """An argparse type: a whole number >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    return parse


def days(text: str) -> float:
    """An argparse type: a number of days, >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"{text} days: give a number from 0 to 999999")
    return value


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The Settings the arguments name, in the workspace found from the current folder."""
    from pakman.compile.options import settings_from_arguments

    return settings_from_arguments(vars(args), args.paths, os.environ, root=workspace_folder())


def workspace_folder() -> str:
    """The workspace (see layout.find_workspace), from the current folder; said when not `.`."""
    from pakman.workspace.layout import find_workspace

    found = find_workspace()
    if found == Path.cwd():
        return "."
    relative = os.path.relpath(found)
    # One write: several pakman (make -j) may share stderr.
    sys.stderr.write(f"pakman: workspace {relative} ({found}): the nearest folder with .pakman/\n")
    return relative


def project_from_args(args: argparse.Namespace) -> Project:
    """The project (apps, graph) the arguments name; its warnings and notes printed."""
    from pakman.project import load_project

    project = load_project(settings_from_args(args))
    gcpause.loaded()
    show_project_messages(project)
    return project


def show_project_messages(project: Project) -> None:
    """Print the project's warnings and notes on standard error."""
    for message in [*project.warnings, *project.notes]:
        sys.stderr.write(f"{message}\n")  # one write each: several pakman may share stderr
