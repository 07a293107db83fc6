"""The package step: stage the package tree and write the .apk files.

For the default and static types the tree is what the APKBUILD's default
package() installs: the collected destinations under /var/lib/<name>/
(owned by the app's user and group), plus the generated service files or
the site's nginx.conf. An app with its own `package` body gets it run with
abuild's variables instead, in a copy of the build's output (so it may
change `$srcdir` as abuild allows, without touching what other steps share). The default type's /etc/init.d moves into the
`<name>-openrc` subpackage, as abuild splits it.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from pakman.apk import DEFAULT_LEVEL, OPENRC, PackageInfo, split_package, write_package
from pakman.executables import check_executables
from pakman.fsutil import write_if_changed
from pakman.graph import Step
from pakman.model import AppType
from pakman.render import runtime_dependencies
from pakman.staging import stage_service_files
from pakman.steps import (
    RunContext,
    discard,
    fresh_dir,
    replace_dir,
    upstream_output,
    upstream_outputs,
)
from pakman.steps.shell import run_sandboxed, run_shell, shell_variables

LICENSE = "MIT"  # what the original writes
PACKAGER = "pakman"


def package(step: Step, context: RunContext) -> list[str]:
    """Write `<name>-<ver>-r<rel>.apk` (and its -openrc split) into packages/<arch>/."""
    assert step.app is not None and step.arch is not None
    app, identity, arch = step.app.config, step.app.identity, step.arch
    out = Path(step.outputs[0])
    work = out.parent.parent
    build_dir = Path(upstream_output(step, "build"))
    render_dir = work / "render"
    pkgdir = fresh_dir(work / f"pkgdir-{arch}", context)
    owners: dict[str, tuple[str, str]] = {}
    sandbox = step.reads.get("sandbox")
    if app.package is not None and sandbox is not None:
        # On alpine the body runs in the build root, in copies under one
        # folder bound at /home/build: src/, pkg/ (then moved to pkgdir) and startdir/.
        from pakman.sandbox import BUILD_DIR, Sandbox
        from pakman.steps.buildroot import check_sandbox, root_for

        check_sandbox(step)
        root = root_for(step, context)
        place = fresh_dir(work / f"package-{arch}", context)
        shutil.copytree(build_dir, place / "src", symlinks=True)
        shutil.copytree(render_dir, place / "startdir", symlinks=True)
        (place / "pkg").mkdir()
        variables = {
            "srcdir": f"{BUILD_DIR}/src",
            "pkgdir": f"{BUILD_DIR}/pkg",
            "startdir": f"{BUILD_DIR}/startdir",
            "pkgname": identity.name,
            "pkgver": identity.version,
            "pkgrel": str(identity.release),
            "pkgusers": identity.name,
            "pkggroups": identity.name,
        }
        run_sandboxed(
            shell_variables(variables) + 'cd "$srcdir"\n' + app.package,
            Sandbox(
                root,
                arch=arch,
                build_dir=place,
                network=sandbox.get("network") != "none",
                env={"SOURCE_DATE_EPOCH": str(identity.epoch)},
            ),
            log=context.log_path(step),
            what=f"package() of {identity.name} ({arch})",
            verbose=context.verbose,
        )
        pkgdir.rmdir()
        os.replace(place / "pkg", pkgdir)
    elif app.package is not None:
        # The body runs in copies: what it changes in $srcdir or $startdir must
        # not reach the build's and render's outputs, which other steps and the
        # store share.
        srcdir = fresh_dir(work / f"srcdir-{arch}", context)
        shutil.copytree(build_dir, srcdir, symlinks=True, dirs_exist_ok=True)
        # abuild links each source of the APKBUILD into $srcdir, so a body may
        # install "$srcdir"/$pkgname.initd (the original's own caddy example).
        for kind in app.service_files:
            shutil.copyfile(
                render_dir / f"{identity.name}.{kind}", srcdir / f"{identity.name}.{kind}"
            )
        startdir = fresh_dir(work / f"startdir-{arch}", context)
        shutil.copytree(render_dir, startdir, symlinks=True, dirs_exist_ok=True)
        variables = {
            "srcdir": str(srcdir),
            "pkgdir": str(pkgdir),
            "startdir": str(startdir),
            "pkgname": identity.name,
            "pkgver": identity.version,
            "pkgrel": str(identity.release),
            "pkgusers": identity.name,
            "pkggroups": identity.name,
            "CARCH": arch,
        }
        run_shell(
            shell_variables(variables) + 'export CARCH\ncd "$srcdir"\n' + app.package,
            cwd=srcdir,
            log=context.log_path(step),
            what=f"package() of {identity.name} ({arch})",
            verbose=context.verbose,
            env={"SOURCE_DATE_EPOCH": str(identity.epoch)},
        )
    else:
        collected = Path(upstream_output(step, "collect"))
        shutil.copytree(collected, pkgdir, symlinks=True, dirs_exist_ok=True)
        stage_service_files(app, identity, build_dir, render_dir, pkgdir)
        owners[f"var/lib/{identity.name}"] = (identity.name, identity.name)
    # Before the split: the init script's commands and the run script see the whole install.
    warnings = check_executables(app, identity, pkgdir)

    scripts = {}
    for path in upstream_outputs(step, "render-pre-install") + upstream_outputs(
        step, "render-hook"
    ):
        hook = Path(path).name.removeprefix(f"{identity.name}.")
        scripts[hook] = Path(path).read_bytes()
    info = PackageInfo(
        name=identity.name,
        version=identity.version,
        release=identity.release,
        arch=arch,
        description=identity.name,
        url=identity.url,
        license=LICENSE,
        origin=identity.name,
        packager=PACKAGER,
        depends=tuple(runtime_dependencies(app)),
        install_scripts=scripts,
        owners=owners,
        builddate=identity.epoch,
    )
    tmp = fresh_dir(out.with_name(out.name + ".tmp"), context)
    key = context.signing_key()
    level = context.level or DEFAULT_LEVEL
    if app.type is AppType.DEFAULT:
        sub_tree = work / f"pkgdir-{arch}-openrc"
        discard(sub_tree, context)  # split_package makes it
        info, sub_info = split_package(pkgdir, sub_tree, info, OPENRC)
        if sub_info is not None:
            write_package(sub_tree, sub_info, tmp, key, level=level)
    write_package(pkgdir, info, tmp, key, level=level)
    _write_apkbuild(render_dir / "APKBUILD", tmp / "APKBUILD", identity.release)
    replace_dir(tmp, out, context)
    return warnings


def _write_apkbuild(rendered: Path, target: Path, release: int) -> None:
    """The APKBUILD of this build: the rendered one with the release filled in."""
    text = rendered.read_text(encoding="utf-8")
    text = re.sub(r"^pkgrel=.*$", f"pkgrel={release}", text, count=1, flags=re.MULTILINE)
    write_if_changed(target, text.encode(), 0o644)
