"""`pakman gc`: prune the store of step outputs, unused build roots and cached packages."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pakman.cli import EXIT_OK
from pakman.cli.options import days, workspace_folder

if TYPE_CHECKING:
    from pakman.workspace.layout import Layout


def add_parser(commands: Any, name: str, summary: str) -> None:
    """Declare the command's options on `commands`."""
    gc = commands.add_parser(
        name,
        help=summary,
        description="Remove entries of the step store (.pakman/store/) unused for longer than "
        "--max-age, then the least recently used ones until the rest fit in --max-size, and "
        "leftovers of interrupted builds (in the store and in .pakman/trash/); then the build "
        "roots (.pakman/roots/) and cached .apk files (.pakman/cache/apk/) that no current "
        "build lock references, unless a build is running.",
    )
    gc.add_argument(
        "--max-age", type=days, default=30.0, metavar="DAYS", help="default 30 (0: any age)"
    )
    gc.add_argument("--max-size", default="5G", metavar="SIZE", help="e.g. 500M, 5G (default 5G)")
    gc.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    gc.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run `pakman gc`; return its exit code."""
    from pakman.errors import ConfigError
    from pakman.workspace.store import Store, parse_size

    try:
        max_bytes = parse_size(args.max_size)
    except ValueError:
        raise ConfigError(
            f"--max-size {args.max_size!r}: use a size such as 500M or 5G (0 or more)"
        ) from None
    root = Path(workspace_folder())
    store = Store(root / ".pakman" / "store")
    removed, kept = store.collect_garbage(
        max_age_days=args.max_age, max_bytes=max_bytes, dry_run=args.dry_run
    )
    from pakman.workspace.layout import Layout

    layout = Layout.at(root)
    if not args.dry_run:
        from pakman.workspace.trash import workspace_trash

        workspace_trash(layout).empty()  # what a killed build did not delete
    verb = "would remove" if args.dry_run else "removed"
    for entry in removed:
        print(f"{verb} {entry.key[:16]} ({entry.size / 1e6:.1f} MB)")
    freed = sum(e.size for e in removed) / 1e6
    kept_size = sum(e.size for e in kept) / 1e6
    print(f"{verb} {len(removed)} entries ({freed:.1f} MB); {len(kept)} kept ({kept_size:.1f} MB)")
    if layout.state.is_dir():
        _gc_roots(layout, dry_run=args.dry_run)
    return EXIT_OK


def _gc_roots(layout: Layout, *, dry_run: bool) -> None:
    """Remove the build roots and cached .apk files no current lock references, unless a build runs."""
    from pakman.steps.buildroot import remove_unused, unused_roots_and_packages
    from pakman.workspace.lock import LockBusy, run_lock

    try:
        # A build holds the workspace lock while it makes or uses a root: none runs meanwhile.
        with run_lock(layout, wait=False):
            unused, kept = unused_roots_and_packages(layout.state)
            if not dry_run:
                remove_unused(unused, layout.state)
    except LockBusy:
        print(
            "build roots and cached packages left alone: a build is running in this workspace "
            "(run gc again when it is done)"
        )
        return
    verb = "would remove" if dry_run else "removed"
    for item in unused:
        print(f"{verb} {item.kind} {item.path.name} ({item.size / 1e6:.1f} MB)")
    roots = sum(item.kind == "root" for item in unused)
    packages = sum(item.kind == "package" for item in unused)
    leftovers = len(unused) - roots - packages
    freed = sum(item.size for item in unused) / 1e6
    print(
        f"{verb} {roots} build roots, {packages} cached packages and {leftovers} leftovers "
        f"({freed:.1f} MB); {kept} kept"
    )
