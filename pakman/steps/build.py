"""The build step: a clean copy of the app's source, then build.command in it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pakman.alpine import abuild_arch_variables
from pakman.compile.graph import Step
from pakman.errors import StepFailed
from pakman.steps import RunContext, fresh_dir
from pakman.steps.shell import HOST_WARNING, run_sandboxed, run_shell, shell_variables
from pakman.workspace.fingerprint import SourceTree

SANDBOX_PKGBASE = "/tmp/pkg"  # $pkgdir of a sandboxed build is $SANDBOX_PKGBASE/$pkgname


def copy_source(tree: SourceTree, dest: Path) -> None:
    """Copy exactly the files the fingerprint covers (symlinks stay symlinks).

    Modes are what a checkout under abuild's umask 022 has, from the one bit
    git and the fingerprint keep: files 0755 when executable, else 0644, and
    folders 0755. So neither the builder's umask nor the umask the source was
    checked out under reaches the package.
    """
    made = {dest}
    for f in tree.files:
        source, target = tree.root / f.path, dest / f.path
        _make_folders(target.parent, made)
        if f.kind == "l":
            os.symlink(os.readlink(source), target)
        elif f.kind == "d":
            _make_folders(target, made)
        else:
            shutil.copy2(source, target)
            os.chmod(target, 0o755 if f.executable else 0o644)


def _make_folders(folder: Path, made: set[Path]) -> None:
    """`mkdir -p folder`, each folder made 0755 whatever the umask."""
    missing = []
    while folder not in made:
        missing.append(folder)
        folder = folder.parent
    for each in reversed(missing):
        each.mkdir(exist_ok=True)
        os.chmod(each, 0o755)
        made.add(each)


def run_build(step: Step, context: RunContext) -> list[str]:
    """Copy the source into `build-<arch>/` and run build.command there with abuild's variables.

    On alpine (the step reads `sandbox`) the command runs in the build root
    under bubblewrap, with the copy at /home/build; on the host it runs here,
    and the step warns that its binaries are linked against the host's libraries.
    """
    assert step.app is not None and step.source is not None and step.arch is not None
    sandbox = step.reads.get("sandbox")
    root = None
    if sandbox is not None and step.app.config.build.command.strip():
        from pakman.steps.buildroot import check_sandbox, root_for

        check_sandbox(step)  # before the copy: a machine that cannot run it stops at once
        root = root_for(step, context)
    # Built in place (not renamed afterwards), so paths a build writes into
    # its files stay true; the step's manifest, written last, marks it done.
    out = fresh_dir(Path(step.outputs[0]), context)
    copy_source(step.source, out)
    git = step.app.git if "git" in step.reads else None
    if git is not None:
        from pakman.config.gitmeta import (
            SANDBOX_OBJECTS,
            index_build_repository,
            write_build_repository,
        )

        write_build_repository(out, git, SANDBOX_OBJECTS if root is not None else git.objects)
        index_build_repository(out, git)
    identity = step.app.identity
    if root is not None:
        from pakman.sandbox import BUILD_DIR

        srcdir = BUILD_DIR
        # abuild removes $pkgdir before package(): what a build writes there is
        # thrown away, so it gets a place in the sandbox's tmpfs.
        pkgdir = f"{SANDBOX_PKGBASE}/{identity.name}"
    else:
        srcdir = str(out)
        pkgdir = str(out.parent / f"pkgdir-{step.arch}")
    variables = {
        "srcdir": srcdir,
        "builddir": f"{srcdir}/{identity.name}-{identity.version}",  # abuild's default
        "pkgdir": pkgdir,
        "pkgname": identity.name,
        "pkgver": identity.version,
    }
    command = step.app.config.build.command
    if "pkgrel" in command:
        # The release feeds only the steps that write it; a command that
        # names $pkgrel reads it too (and its key says so, see the graph).
        variables["pkgrel"] = str(identity.release)
    if not command.strip():
        return []
    what = f"build of {identity.name} ({step.arch})"
    try:
        return _run(step, context, command, variables, root, out, what)
    except StepFailed as exc:
        if git is None and "not a git repository" in str(exc):
            raise StepFailed(
                f"{exc}\n(the build sees no .git: `build.git: true` in instellar.yml gives it "
                "the repository's commit and tags, and reruns it on each commit)"
            ) from None
        raise


def _run(
    step: Step,
    context: RunContext,
    command: str,
    variables: dict[str, str],
    root: Path | None,
    out: Path,
    what: str,
) -> list[str]:
    assert step.app is not None and step.arch is not None
    identity = step.app.identity
    sandbox = step.reads.get("sandbox")
    git = step.app.git if "git" in step.reads else None
    if root is not None:
        from pakman.config.gitmeta import SANDBOX_OBJECTS
        from pakman.sandbox import Sandbox

        assert sandbox is not None
        # CARCH, CBUILD, CHOST, CTARGET: in the sandbox's environment
        script = shell_variables(variables) + 'cd "$srcdir"\n' + command
        run_sandboxed(
            script,
            Sandbox(
                root,
                arch=step.arch,
                build_dir=out,
                network=sandbox.get("network") != "none",
                env={"SOURCE_DATE_EPOCH": str(identity.epoch)},
                ro_binds=((git.objects, SANDBOX_OBJECTS),) if git is not None else (),
            ),
            log=context.log_path(step),
            what=what,
            verbose=context.verbose,
        )
        return []
    run_shell(
        shell_variables(variables) + 'cd "$srcdir"\n' + command,
        cwd=out,
        log=context.log_path(step),
        what=what,
        verbose=context.verbose,
        env={
            "SOURCE_DATE_EPOCH": str(identity.epoch),
            **abuild_arch_variables(step.arch),
            # git looks no further up than the copy: the workspace's repository is not the build's
            "GIT_CEILING_DIRECTORIES": str(out.parent),
        },
    )
    return [HOST_WARNING.format(what=what)]
