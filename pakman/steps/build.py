"""The build step: a clean copy of the app's source, then build.command in it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pakman.fingerprint import SourceTree
from pakman.graph import Step
from pakman.steps import RunContext, fresh_dir
from pakman.steps.shell import run_shell, shell_variables


def copy_source(tree: SourceTree, dest: Path) -> None:
    """Copy exactly the files the fingerprint covers (symlinks stay symlinks, modes kept)."""
    for f in tree.files:
        source, target = tree.root / f.path, dest / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.kind == "l":
            os.symlink(os.readlink(source), target)
        elif f.kind == "d":
            target.mkdir(exist_ok=True)
        else:
            shutil.copy2(source, target)


def run_build(step: Step, context: RunContext) -> None:
    """Copy the source into `build-<arch>/` and run build.command there with abuild's variables."""
    assert step.app is not None and step.source is not None and step.arch is not None
    # Built in place (not renamed afterwards), so paths a build writes into
    # its files stay true; the step's manifest, written last, marks it done.
    out = fresh_dir(Path(step.outputs[0]), context)
    copy_source(step.source, out)
    identity = step.app.identity
    variables = {
        "srcdir": str(out),
        "pkgdir": str(out.parent / f"pkgdir-{step.arch}"),
        "pkgname": identity.name,
        "pkgver": identity.version,
        "CARCH": step.arch,
    }
    command = step.app.config.build.command
    if "pkgrel" in command:
        # The release feeds only the steps that write it; a command that
        # names $pkgrel reads it too (and its key says so, see the graph).
        variables["pkgrel"] = str(identity.release)
    if command.strip():
        script = shell_variables(variables) + 'export CARCH\ncd "$srcdir"\n' + command
        run_shell(
            script,
            cwd=out,
            log=context.log_path(step),
            what=f"build of {identity.name} ({step.arch})",
            verbose=context.verbose,
            env={"SOURCE_DATE_EPOCH": str(context.source_date_epoch)},
        )
