"""The `pakman` command: argument parsing, printing and exit codes.

Exit codes: 0 success, 1 a step failed, 2 bad usage, 3 invalid input.
The command modules print results and diagnostics and choose the exit code;
library code raises. What a build says while it runs is printed by the doit
adapter (pakman.doit: the reporter, a damaged database's warning), the build
lock's wait (workspace.lock), the watcher (fastpath.watcher, fastpath.protocol)
and the commands steps run (steps.shell, their output passed through). Each
command is one module, pakman.cli.<command> (as doit's cmd_*.py), with
`add_parser`, which declares its options, and `run`, which runs it. `main`
imports only the module of the command it runs, so `pakman --help` and no-op builds
start fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn, TextIO

from pakman import __version__
from pakman.fastpath import gcpause

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INVALID = 3

# Each command: its module in pakman.cli and the one line `pakman --help` shows.
COMMANDS: dict[str, tuple[str, str]] = {
    "check": ("check", "validate instellar.yml files"),
    "schema": ("schema", "print the JSON Schema of instellar.yml"),
    "render": ("render", "write the APKBUILD, service files and install scripts"),
    "bootstrap": ("bootstrap", "`render` as the original's GitHub Action step runs it"),
    "build": ("build", "build apps into a signed local repository"),
    "graph": ("graph", "export the step graph (json, dot, mermaid, makefile, ninja, svg)"),
    "explain": ("explain", "say why steps will run"),
    "affected": (
        "affected",
        "list the apps (or steps) whose keys differ between a git revision and the working tree",
    ),
    "gc": ("gc", "prune the store of step outputs, unused build roots and cached packages"),
    "watch": ("watch", "tell builds which apps changed (inotify), so they check only those"),
    "run-step": (
        "run_step",
        "run one step of the graph, up to date or not (what exported Makefiles call)",
    ),
    "keygen": ("keygen", "create an RSA key pair for signing packages"),
    "index": ("index", "write the signed APKINDEX.tar.gz of a repository folder"),
    "verify": ("verify", "check packages and indexes"),
    "sbom": ("sbom", "print the SPDX SBOM a package carries"),
    "push": ("push", "upload the packages to the Instellar platform and create the deployment"),
    "publish": ("publish", "upload the signed repository to an S3 bucket, for apk over HTTP"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """pakman's parser: every command's options, or (given `command`) only that command's.

    Every command is listed either way; `command=""` declares no command's options.
    """
    from pakman.cli.options import Parser

    parser = Parser(
        prog="pakman",
        description="Turn an app's instellar.yml into signed Alpine Linux packages.",
        epilog="Run `pakman COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"pakman {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if command is None or command == name:
            importlib.import_module(f"pakman.cli.{module}").add_parser(commands, name, summary)
        else:  # listed in `pakman --help`; its options are not needed for this run
            commands.add_parser(name, help=summary)
    return parser


def run() -> NoReturn:
    """The `pakman` command (and `python -m pakman`): `main`, then end the process at once.

    A normal interpreter exit collects and frees every object the command
    loaded, a noticeable part of a one-file build at hundreds of apps. Every file
    pakman writes is closed by the time `main` returns (the journal, the
    records, doit's database), so only the output streams are flushed
    before `os._exit`.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a reader that went away: nothing more can reach it
            code = code or 141
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    words = sys.argv[1:] if argv is None else list(argv)
    # Only the command that runs is imported (top-level options take no value).
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else "")
    args = parser.parse_args(words)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from pakman.errors import PakmanError, os_error_text

    terminated = False

    def on_terminate(signum: int, frame: object) -> None:
        # CI cancelling a job, docker stop, systemd: stop as on Ctrl-C, so that
        # the shell of a running step is stopped too and nothing half-done is kept.
        nonlocal terminated
        terminated = True
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_terminate)
    except ValueError:  # not the main thread (pakman called as a library): leave signals be
        previous = None
    try:
        # The collector is paused until the project is loaded (see pakman.fastpath.gcpause).
        with gcpause.collector_paused():
            code: int = args.handler(args)
    except PakmanError as exc:
        _print_error(exc, sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pakman: interrupted", file=sys.stderr)
        return 143 if terminated else 130
    except BrokenPipeError:
        # The reader went away (`pakman ... | head`): stop quietly, as other tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A file or folder pakman needs is not what it should be (say .pakman/cache
        # is a file): one line naming it, not a traceback.
        print(f"pakman: {os_error_text(exc)}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _wait_for_trash()
    return code


def _wait_for_trash() -> None:
    """Let the folders this command discarded be deleted before it ends (see pakman.workspace.trash)."""
    trash = sys.modules.get("pakman.workspace.trash")
    if trash is not None:
        with contextlib.suppress(KeyboardInterrupt):  # what is left, the next build deletes
            trash.wait_all()


def _print_error(exc: Exception, out: TextIO) -> None:
    from pakman.errors import ConfigError

    if isinstance(exc, ConfigError):
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=out)
    else:
        print(f"pakman: {exc}", file=out)


if __name__ == "__main__":
    sys.exit(main())
