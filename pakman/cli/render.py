"""`pakman render`: write the APKBUILD, service files and install scripts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pakman.cli import EXIT_OK
from pakman.cli.options import identity_kwargs, identity_options


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    render = commands.add_parser(
        name,
        help=summary,
        description="Generate the files the original PAKman generates: the APKBUILD that "
        "Alpine's abuild builds, the OpenRC init script, the s6 run/finish/log scripts, the "
        "environment loader, env-exec, the profile script, pre-install and one script per "
        "hook. They go into <app>/.apk/<org>/<name>/, where `abuild snapshot && abuild -r` "
        "builds them on Alpine. Files whose content is unchanged are not rewritten; files "
        "it rendered there before and no longer generates are removed (it keeps their list "
        "in .pakman-rendered, and touches nothing else).",
        epilog="PATH is an app folder or its instellar.yml (default: the current folder).",
    )
    render.add_argument(
        "path", nargs="?", metavar="PATH", help="the app: its folder or its instellar.yml"
    )
    render.add_argument(
        "-p", "--path", dest="path_options", action="append", default=[], help=argparse.SUPPRESS
    )
    render.add_argument(
        "-o",
        "--output",
        metavar="DIR",
        help="write the files into DIR instead of <app>/.apk/<org>/<name>/",
    )
    identity_options(render)
    render.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman render`; return its exit code."""
    base = Path(args.path)
    config = base if base.is_file() else base / "instellar.yml"
    if base.is_dir() and not config.is_file():
        from pakman.errors import ConfigError

        raise ConfigError(f"{base}: no instellar.yml in this folder (render takes one app)")
    return render_app(args, config, Path(args.output) if args.output else None, config.parent)


def render_app(args: argparse.Namespace, config: Path, output: Path | None, workdir: Path) -> int:
    """Render one app into `output`, else `<workdir>/.apk/<org>/<name>/`."""
    from pakman.config.prepare import prepare_app
    from pakman.render.engine import prune_rendered, render_all, write_rendered

    prepared = prepare_app(config, **identity_kwargs(args))
    for warning in prepared.warnings:
        print(warning, file=sys.stderr)
    app, identity = prepared.config, prepared.identity
    files = render_all(app, identity)
    out_dir = output or workdir / ".apk" / identity.organization / identity.name
    if output is None:
        from pakman.fileio import refuse_links

        refuse_links(workdir, out_dir)  # a checkout's `.apk` may be a link to anywhere
    results = write_rendered(files, out_dir)
    # Files rendered there before and no longer generated (a hook or service removed).
    removed = prune_rendered(files, out_dir)
    for path, written in results:
        print(f"{'wrote' if written else 'unchanged'} {path}")
    for path in removed:
        print(f"removed {path}")
    count = sum(written for _, written in results)
    print(
        f"{identity.name} {identity.full_version}: {len(results)} files in {out_dir}, "
        f"{count} written, {len(results) - count} unchanged"
        + (f", {len(removed)} removed" if removed else "")
    )
    return EXIT_OK
