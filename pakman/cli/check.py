"""`pakman check`: validate instellar.yml files."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from pakman.cli import EXIT_INVALID, EXIT_OK
from pakman.cli.options import identity_kwargs, identity_options, path_arguments

if TYPE_CHECKING:
    from pakman.errors import Diagnostic


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    check = commands.add_parser(
        name,
        help=summary,
        description="Validate instellar.yml files and print every warning and error with "
        "file:line:column and key path. Exit 0 when all are valid, 3 when any is invalid.",
        epilog="PATH is an instellar.yml, an app folder, or a folder searched for apps "
        "(default: the current folder).",
    )
    path_arguments(check)
    check.add_argument("--strict", action="store_true", help="treat unknown keys as errors")
    check.add_argument("--json", action="store_true", help="print one JSON report instead of text")
    check.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    check.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also print each app's package name, version and architectures",
    )
    identity_options(check)
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman check`; return its exit code."""
    from pakman.config.prepare import InvalidApp, prepare_app
    from pakman.workspace.discovery import find_configs

    # What build and render also refuse or warn about: names, hooks calling
    # unknown services, files the package needs. The version (git) is asked
    # only when shown: the checks need the name.
    options = identity_kwargs(args)
    if not args.verbose:
        options["version"] = options["version"] or "0.0.0"
    configs = find_configs(args.paths)
    reports: list[dict[str, Any]] = []
    invalid = errors = warnings = 0
    for config in configs:
        diagnostics: list[Diagnostic]
        summary = ""
        try:
            # A bad option (e.g. --release x) is not the file's fault: its
            # ConfigError propagates and ends the run with exit 3.
            prepared = prepare_app(config, strict=args.strict, **options)
        except InvalidApp as exc:
            diagnostics = list(exc.diagnostics)
        else:
            diagnostics = list(prepared.warnings)
            app, identity = prepared.config, prepared.identity
            if args.verbose:
                summary = (
                    f"{identity.name} {identity.full_version} ({app.type.value}, "
                    f"{app.stack}, {' '.join(app.architectures)})"
                )
        bad = [d for d in diagnostics if d.severity == "error"]
        invalid += bool(bad)
        errors += len(bad)
        warnings += len(diagnostics) - len(bad)
        reports.append(
            {
                "file": str(config),
                "valid": not bad,
                "package": summary or None,
                "diagnostics": [d.as_dict() for d in diagnostics],
            }
        )
        if args.json:
            continue
        for diagnostic in diagnostics:
            if not (args.quiet and diagnostic.severity == "warning"):
                print(diagnostic)
        if not bad and not args.quiet:
            print(f"{config}: ok" + (f": {summary}" if summary else ""))
    if args.json:
        print(json.dumps({"files": reports, "valid": invalid == 0}, indent=2))
    elif not args.quiet or invalid:
        print(
            f"checked {len(configs)} file{'s' * (len(configs) != 1)}: "
            f"{len(configs) - invalid} valid, {invalid} invalid "
            f"({errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)})"
        )
    return EXIT_INVALID if invalid else EXIT_OK
