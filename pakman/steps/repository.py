"""The repository steps: index an architecture's packages, then sign and publish them.

The repository folder is pakman's: after a build, REPO/<arch>/ holds exactly
the packages its index lists (noarch ones in every architecture's folder)
and the signed APKINDEX.tar.gz. That is every app's packages; a build with
`--only` replaces the packages of the apps it builds and keeps the others
as they were published. The folder is updated in place, in an order that
keeps it usable throughout: new packages first, then the index, then the
removal of packages the index no longer lists.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from pakman.apk import index_bytes, index_text
from pakman.apk.index import index_filenames
from pakman.errors import StepFailed
from pakman.fsutil import write_atomic
from pakman.graph import Step
from pakman.steps import RunContext, upstream_outputs

_PACKAGE_FILE = re.compile(r"^(?P<name>.+)-[^-]+-r\d+\.apk$")


def _packages(step: Step) -> dict[str, tuple[str, int]]:
    """The .apk files of the upstream package steps: (path, inode) by file name."""
    packages: dict[str, tuple[str, int]] = {}
    for folder in upstream_outputs(step, "package"):
        with os.scandir(folder) as found:
            for entry in found:
                if entry.name.endswith(".apk") and not entry.name.startswith("."):
                    packages[entry.name] = (entry.path, entry.inode())
    return packages


def _replaces(step: Step) -> Callable[[str], bool]:
    """Which packages already there this build replaces: all, or under --only its apps' own."""
    only = step.reads.get("only")
    if only is None:
        return lambda name: True
    names = set(only)

    def ours(file_name: str) -> bool:
        match = _PACKAGE_FILE.match(file_name)
        return match is not None and match["name"] in names

    return ours


def _link_all(
    packages: dict[str, tuple[str, int]],
    folder: Path,
    remove: Callable[[str], bool] | None = None,
) -> None:
    """Put these packages ((path, inode) by name) into `folder`, hard-linked when possible.

    Each is added or replaced atomically (by rename); one already linked
    there (same inode, as its folder's entry tells without a stat) costs
    nothing. Of the packages already there and not given, those `remove`
    accepts are removed (none when it is None).
    """
    with os.scandir(folder) as found:
        present = {e.name: e.inode() for e in found if e.name.endswith(".apk")}
    for name, (package, inode) in packages.items():
        if present.get(name) == inode:
            continue
        tmp = folder / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(package, tmp)
        except OSError:
            shutil.copy2(package, tmp)
        os.replace(tmp, folder / name)
    if remove is not None:
        for name in present.keys() - packages.keys():
            if remove(name):
                (folder / name).unlink(missing_ok=True)


def index(step: Step, context: RunContext) -> None:
    """Write the APKINDEX text of the architecture's packages (gathered in the work folder)."""
    text_path = Path(step.outputs[0])
    folder = text_path.parent  # .pakman/build/_repo/<arch>/, named after the arch as apk wants
    folder.mkdir(parents=True, exist_ok=True)
    _link_all(_packages(step), folder, remove=_replaces(step))
    # Entries of unchanged packages are reused (a cache in that folder); the
    # packages are pakman's own, replaced but never edited in place.
    text, _ = index_text(folder, immutable=True)
    write_atomic(text_path, text.encode(), durable=False)


def sign(step: Step, context: RunContext) -> None:
    """Publish REPO/<arch>/: the packages the index lists and the index, signed."""
    out = Path(step.outputs[0].rstrip("/"))
    index_path = Path(upstream_outputs(step, "index")[0])
    text = index_path.read_text(encoding="utf-8")
    signed = index_bytes(text, context.signing_key(), context.source_date_epoch)
    listed = dict.fromkeys(index_filenames(text))  # in order, and quick to ask
    with os.scandir(index_path.parent) as found:
        present = {e.name: (e.path, e.inode()) for e in found if e.is_file()}
    # The packages this build made are taken from their steps, not from the
    # index's work folder: an index restored from the store brings back its
    # text alone, and the folder may still hold the packages of another build.
    # (Under --only, the other apps' packages are found there only.)
    present.update(_packages(step))
    missing = sorted(listed.keys() - present.keys())
    if missing:
        raise StepFailed(
            f"{', '.join(missing)}, which the index lists, is neither in {index_path.parent} "
            "nor made by a package step of this build; build again with --always"
        )
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        out.unlink()
    out.mkdir(parents=True, exist_ok=True)
    # In place, in the order a reader can follow: new packages first, then
    # the index that lists them, then the removal of what it does not list.
    _link_all({name: present[name] for name in listed}, out)
    write_atomic(out / "APKINDEX.tar.gz", signed)
    for entry in os.scandir(out):  # what the index does not list, and leftovers
        if entry.name not in listed and entry.name != "APKINDEX.tar.gz":
            path = Path(entry.path)
            shutil.rmtree(path) if entry.is_dir(follow_symlinks=False) else path.unlink()
