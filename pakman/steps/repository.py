"""The repository steps: index an architecture's packages, then sign and publish them.

The repository folder is pakman's: after a build, REPO/<arch>/ holds exactly
the packages of that build (noarch ones in every architecture's folder) and
their signed APKINDEX.tar.gz. It is updated in place, in an order that keeps
it usable throughout: new packages first, then the index, then the removal
of packages the index no longer lists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pakman.apk import index_bytes, index_text
from pakman.fsutil import write_atomic
from pakman.graph import Step
from pakman.steps import RunContext, upstream_outputs


def _packages(step: Step) -> dict[str, Path]:
    """The .apk files of the upstream package steps, by file name."""
    packages: dict[str, Path] = {}
    for folder in upstream_outputs(step, "package"):
        for name in sorted(os.listdir(folder)):
            if name.endswith(".apk") and not name.startswith("."):
                packages[name] = Path(folder, name)
    return packages


def _link_all(packages: dict[str, Path], folder: Path, keep: set[str] | None = None) -> None:
    """Make `folder` hold these packages, hard-linked when possible.

    Each is added or replaced atomically (by rename); one already linked
    there (same inode) costs a stat. Other packages are then removed, except
    those named in `keep` (the caller removes them later).
    """
    present = {e.name: e.inode() for e in os.scandir(folder) if e.name.endswith(".apk")}
    for name, package in packages.items():
        if present.get(name) == os.stat(package).st_ino:
            continue
        tmp = folder / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(package, tmp)
        except OSError:
            shutil.copy2(package, tmp)
        os.replace(tmp, folder / name)
    for name in present.keys() - packages.keys() - (keep or set()):
        (folder / name).unlink(missing_ok=True)


def index(step: Step, context: RunContext) -> None:
    """Write the APKINDEX text of the architecture's packages (gathered in the work folder)."""
    text_path = Path(step.outputs[0])
    folder = text_path.parent  # .pakman/build/_repo/<arch>/, named after the arch as apk wants
    folder.mkdir(parents=True, exist_ok=True)
    _link_all(_packages(step), folder)
    # Entries of unchanged packages are reused (a cache in that folder); the
    # packages are pakman's own, replaced but never edited in place.
    text, _ = index_text(folder, immutable=True)
    write_atomic(text_path, text.encode(), durable=False)


def sign(step: Step, context: RunContext) -> None:
    """Publish REPO/<arch>/: the packages and their index, signed with the repository's key."""
    out = Path(step.outputs[0].rstrip("/"))
    text = Path(upstream_outputs(step, "index")[0]).read_text(encoding="utf-8")
    signed = index_bytes(text, context.signing_key(), context.source_date_epoch)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    # In place, in the order a reader can follow: new packages first, then
    # the index that lists them, then the removal of packages it no longer lists.
    packages = _packages(step)
    present = {e.name for e in os.scandir(out) if e.name.endswith(".apk")}
    _link_all(packages, out, keep=present)
    write_atomic(out / "APKINDEX.tar.gz", signed)
    for entry in os.scandir(out):  # what the index does not list, and leftovers
        if entry.name not in packages and entry.name != "APKINDEX.tar.gz":
            path = Path(entry.path)
            shutil.rmtree(path) if entry.is_dir(follow_symlinks=False) else path.unlink()
