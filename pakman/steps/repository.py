"""The repository steps: index an architecture's packages, then sign and publish them.

The repository folder is pakman's: after a build, REPO/<arch>/ holds exactly
the packages of that build (noarch ones in every architecture's folder) and
their signed APKINDEX.tar.gz.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pakman.apk import index_bytes, index_text
from pakman.fsutil import write_atomic
from pakman.graph import Step
from pakman.steps import RunContext, fresh_dir, replace_dir, upstream_outputs


def _packages(step: Step) -> dict[str, Path]:
    """The .apk files of the upstream package steps, by file name."""
    return {
        package.name: package
        for folder in upstream_outputs(step, "package")
        for package in sorted(Path(folder).glob("*.apk"))
    }


def _link_all(packages: dict[str, Path], folder: Path) -> None:
    """Make `folder` hold exactly these packages (hard links when possible)."""
    for existing in folder.glob("*.apk"):
        if existing.name not in packages:
            existing.unlink()
    for name, package in packages.items():
        target = folder / name
        if target.exists() and os.path.samefile(package, target):
            continue
        target.unlink(missing_ok=True)
        try:
            os.link(package, target)
        except OSError:
            shutil.copy2(package, target)


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
    tmp = fresh_dir(out.with_name(f".{out.name}.tmp"))
    _link_all(_packages(step), tmp)
    write_atomic(tmp / "APKINDEX.tar.gz", signed)
    replace_dir(tmp, out)
