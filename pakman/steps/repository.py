"""The repository steps: index an architecture's packages, then sign and publish them.

The repository folder is pakman's: after a build, REPO/<arch>/ holds exactly
the packages its index lists (noarch ones in every architecture's folder)
and the signed APKINDEX.tar.gz. That is every app's packages; a build with
`--only` replaces the packages of the apps it builds and keeps the others
as they were published. Each publication is a new folder of hard links to
the packages and the index, and REPO/<arch> is switched to it at once (see
pakman.workspace.publication), so a reader never sees an index with packages that do
not belong to it, and nothing but packages and the index is ever in it.
"""

from __future__ import annotations

import filecmp
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

from pakman.apk import index_bytes, index_text
from pakman.apk.index import CACHE_FILE, INDEX_FILE, index_filenames
from pakman.compile.graph import Step
from pakman.config.identity import EARLIEST_EPOCH, uncommitted_changes
from pakman.errors import StepFailed
from pakman.fileio import read_regular, write_atomic
from pakman.steps import RunContext, upstream_outputs
from pakman.workspace.fingerprint import file_sha256

# In the index's work folder: the key of the index step that made the folder
# hold exactly the packages its text lists (see sign).
LINKED = ".linked"
_PACKAGE_FILE = re.compile(r"(?P<name>.+)-[^-]+-r\d+\.apk\Z")


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
    remove: Callable[[str], bool],
) -> None:
    """Put these packages ((path, inode) by name) into `folder`, hard-linked when possible.

    Each is added or replaced atomically (by rename); one already linked
    there (same inode, as its folder's entry tells without a stat) costs
    nothing. Of the packages already there and not given, those `remove`
    accepts are removed; the rest stay.
    """
    with os.scandir(folder) as found:
        present = {e.name: e.inode() for e in found}
    for name, (package, inode) in packages.items():
        if present.get(name) == inode:
            continue
        tmp = folder / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        _link_or_copy(package, tmp)
        os.replace(tmp, folder / name)
    for name in sorted(present.keys() - packages.keys()):
        if name.endswith(".apk") and remove(name):
            (folder / name).unlink(missing_ok=True)


def index(step: Step, context: RunContext) -> None:
    """Write the APKINDEX text of the architecture's packages (gathered in the work folder)."""
    text_path = Path(step.outputs[0])
    folder = text_path.parent  # .pakman/build/_repo/<arch>/, named after the arch as apk wants
    folder.mkdir(parents=True, exist_ok=True)
    linked = folder / LINKED
    linked.unlink(missing_ok=True)  # the folder is changing: not vouched for until done
    _link_all(_packages(step), folder, remove=_replaces(step))
    # Entries of unchanged packages are reused (a cache in that folder); the
    # packages are pakman's own, replaced but never edited in place.
    text, _ = index_text(folder, immutable=True, cache=folder / CACHE_FILE)
    write_atomic(text_path, text.encode(), durable=False)
    write_atomic(linked, step.key.encode(), durable=False)


def sign(step: Step, context: RunContext) -> list[str]:
    """Publish REPO/<arch>/: the packages the index lists and the index, signed."""
    out = Path(step.outputs[0].rstrip("/"))
    index_key = next(k for step_id, k in step.upstream_keys if step_id.split(":")[1] == "index")
    index_path = Path(upstream_outputs(step, "index")[0])
    work = index_path.parent
    text = index_path.read_text(encoding="utf-8")
    signed = index_bytes(text, context.signing_key(), index_time(text))
    listed = dict.fromkeys(index_filenames(text))  # in order, and quick to ask
    with os.scandir(work) as found:
        present = {e.name: (e.path, e.inode()) for e in found if e.is_file()}
    if _read_text(work / LINKED) != index_key:
        # An index restored from the store brings back its text alone, and
        # the work folder may hold the packages of another build: this
        # build's packages are taken from their steps. (Under --only, the
        # other apps' packages are found in the work folder only.)
        present.update(_packages(step))
    missing = sorted(listed.keys() - present.keys())
    if missing:
        raise StepFailed(
            f"{', '.join(missing)}, which the index lists, is neither in {work} "
            "nor made by a package step of this build; build again with --always"
        )
    warnings = _check_replacements(out, {name: present[name] for name in listed}, context)
    with context.repository().publish(out) as folder:
        for name in listed:
            _link_or_copy(present[name][0], folder / name)
        write_atomic(folder / INDEX_FILE, signed)
    return warnings


def _check_replacements(
    out: Path, packages: dict[str, tuple[str, int]], context: RunContext
) -> list[str]:
    """Refuse to publish other bytes under a package file name REPO/<arch>/ already has.

    apk never installs other bytes under a name and version it has
    installed, and a reader holding the old index finds a package that no
    longer matches it. Versions move with every commit that changes an app
    (`pakman.config.identity.app_version`), so a clean work tree only meets
    this when the same commit built differently (another pakman, key,
    option or SOURCE_DATE_EPOCH): refused unless --allow-rebuild. With
    uncommitted changes (the edit-build loop) or outside git, the package is
    replaced with a warning, and the digest of what it replaced is kept in
    .pakman/cache/replaced-<arch>.json, so that the clean tree, back (edit,
    build, revert, build), may publish those bytes again. Costs nothing
    unless a package step ran: an unchanged package is the published file
    itself (same inode); git is asked only when bytes differ.
    """
    try:
        with os.scandir(out) as found:
            published = {e.name: (e.path, e.inode()) for e in found if e.name.endswith(".apk")}
    except OSError:
        return []  # nothing published yet
    changed = sorted(
        name
        for name, (path, inode) in packages.items()
        if name in published
        and published[name][1] != inode
        and not filecmp.cmp(published[name][0], path, shallow=False)
    )
    if not changed:
        return []
    arch = out.name
    named = ", ".join(f"{arch}/{name}" for name in changed)
    if context.allow_rebuild:
        return [f"replaced {named} with other bytes under the same version (--allow-rebuild)"]
    layout = context.layout
    # What development builds replaced: a clean tree may bring those bytes back.
    record = layout.state / "cache" / f"replaced-{arch}.json"
    replaced = _read_replaced(record)
    dirty = uncommitted_changes(layout.root, (layout.state, layout.repo))
    if dirty is None or dirty:
        for name in changed:
            replaced.setdefault(name, file_sha256(published[name][0]))
        _write_replaced(record, replaced)
        why = "outside git" if dirty is None else "uncommitted changes"
        return [
            f"replaced {named} with other bytes under the same version ({why}: a "
            "development build; apk does not reinstall a version it has)"
        ]
    refused = [n for n in changed if replaced.get(n) != file_sha256(packages[n][0])]
    if refused:
        raise StepFailed(
            f"{', '.join(f'{arch}/{name}' for name in refused)}: the repository already has "
            "this package with other bytes under the same name, version and release, and the "
            "work tree is clean, so this commit built differently than it did before (another "
            "pakman, key, option or SOURCE_DATE_EPOCH?); apk never installs other bytes under "
            "a version it has. Set a new --release, or replace it with --allow-rebuild"
        )
    # Back to what was published before development builds replaced it.
    _write_replaced(record, {n: d for n, d in replaced.items() if n not in changed})
    return []


def _read_replaced(path: Path) -> dict[str, str]:
    """The digests of packages development builds replaced, by file name (data only)."""
    try:
        data = json.loads(read_regular(path, 1 << 20))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_replaced(path: Path, replaced: dict[str, str]) -> None:
    write_atomic(path, json.dumps(replaced, sort_keys=True).encode(), durable=False)


def _link_or_copy(source: str, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def index_time(text: str) -> int:
    """The index's time stamp: the newest build date (`t:`) of its packages.

    So it follows from what it lists, as reproducible as they are.
    """
    dates = [line[2:] for line in text.splitlines() if line.startswith("t:")]
    return max((int(d) for d in dates if d.isascii() and d.isdigit()), default=EARLIEST_EPOCH)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return None
