"""The repository steps: gather an architecture's packages and index them, then sign the index."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pakman.apk import index_bytes, index_text
from pakman.fsutil import write_atomic
from pakman.graph import Step
from pakman.steps import RunContext, upstream_outputs

_VERSION_TAIL = re.compile(r"[0-9][0-9A-Za-z._~]*-r[0-9]+\.apk\Z")


def index(step: Step, context: RunContext) -> None:
    """Link the built packages into REPO/<arch>/ and write the APKINDEX text.

    Older versions of the same packages are removed from the folder; other
    files in it are left alone (and indexed, as `apk index *.apk` would).
    """
    text_path, arch_dir = Path(step.outputs[0]), Path(step.outputs[1].rstrip("/"))
    arch_dir.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}
    for folder in upstream_outputs(step, "package"):
        for package in sorted(Path(folder).glob("*.apk")):
            built[package.name] = package
    names = {_package_name(p) for p in built.values()}
    for existing in arch_dir.glob("*.apk"):
        if existing.name not in built and any(_is_version_of(existing.name, n) for n in names):
            existing.unlink()
    for name, package in built.items():
        _link(package, arch_dir / name)
    text, _ = index_text(arch_dir)
    write_atomic(text_path, text.encode())


def sign(step: Step, context: RunContext) -> None:
    """Write REPO/<arch>/APKINDEX.tar.gz: the index, signed with the repository's key."""
    text = Path(upstream_outputs(step, "index")[0]).read_text(encoding="utf-8")
    write_atomic(
        Path(step.outputs[0]), index_bytes(text, context.signing_key(), context.source_date_epoch)
    )


def _package_name(path: Path) -> str:
    from pakman.apk.pkginfo import parse_pkginfo
    from pakman.apk.reader import read_package_control

    with path.open("rb") as handle:
        pkginfo = dict(parse_pkginfo(read_package_control(handle).pkginfo_text))
    return pkginfo["pkgname"]


def _is_version_of(filename: str, name: str) -> bool:
    return filename.startswith(name + "-") and bool(_VERSION_TAIL.match(filename[len(name) + 1 :]))


def _link(source: Path, target: Path) -> None:
    """Put `source` at `target` (a hard link when possible), replacing it atomically."""
    if target.exists() and os.path.samefile(source, target):
        return
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        import shutil

        shutil.copy2(source, tmp)
    os.replace(tmp, target)
