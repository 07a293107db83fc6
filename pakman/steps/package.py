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

import json
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Any

from pakman import __version__
from pakman.alpine import abuild_arch_variables
from pakman.apk import DEFAULT_LEVEL, OPENRC, PackageInfo, split_package, write_package
from pakman.apk.sbom import Provenance, Related, add_sbom, sbom_document
from pakman.apk.tracedeps import Trace
from pakman.compile.graph import Step
from pakman.config.identity import (
    DEFAULT_DESCRIPTION_FROM,
    DEFAULT_LICENSE_FROM,
    DEFAULT_ORGANIZATION,
)
from pakman.config.model import AppType, Dependency, Identity, runtime_dependencies
from pakman.fileio import write_if_changed
from pakman.render.executables import check_executables
from pakman.steps import (
    RunContext,
    discard,
    fresh_dir,
    replace_dir,
    upstream_output,
    upstream_outputs,
)
from pakman.steps.shell import run_sandboxed, run_shell, shell_variables
from pakman.steps.staging import stage_service_files

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
            "builddir": f"{BUILD_DIR}/src/{identity.name}-{identity.version}",
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
            "builddir": f"{srcdir}/{identity.name}-{identity.version}",
            "pkgdir": str(pkgdir),
            "startdir": str(startdir),
            "pkgname": identity.name,
            "pkgver": identity.version,
            "pkgrel": str(identity.release),
            "pkgusers": identity.name,
            "pkggroups": identity.name,
        }
        run_shell(
            shell_variables(variables) + 'cd "$srcdir"\n' + app.package,
            cwd=srcdir,
            log=context.log_path(step),
            what=f"package() of {identity.name} ({arch})",
            verbose=context.verbose,
            env={"SOURCE_DATE_EPOCH": str(identity.epoch), **abuild_arch_variables(arch)},
        )
    else:
        collected = Path(upstream_output(step, "collect"))
        shutil.copytree(collected, pkgdir, symlinks=True, dirs_exist_ok=True)
        stage_service_files(app, identity, build_dir, render_dir, pkgdir)
        owners[f"var/lib/{identity.name}"] = (identity.name, identity.name)
    # Before the split: the init script's commands and the run script see the whole install.
    warnings = check_executables(app, identity, pkgdir)

    if sandbox is not None and app.build.strip_binary and arch != "noarch":
        warnings = [*warnings, *_strip(pkgdir, step, context)]
    depends = tuple(runtime_dependencies(app.type, app.dependencies.runtime))
    provides: tuple[str, ...] = ()
    if app.dependencies.trace and arch != "noarch":
        traced = _trace(pkgdir, step, context)
        depends += tuple(d for d in traced.depends if d not in depends)
        provides = tuple(traced.provides)
        warnings = [*warnings, *(f"{identity.name} ({arch}): {w}" for w in traced.warnings)]

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
        description=identity.description or identity.name,
        url=identity.url,
        license=identity.license,
        origin=identity.name,
        packager=PACKAGER,
        depends=depends,
        provides=provides,
        install_scripts=scripts,
        owners=owners,
        builddate=identity.epoch,
    )
    tmp = fresh_dir(out.with_name(out.name + ".tmp"), context)
    key = context.signing_key()
    level = context.level or DEFAULT_LEVEL
    # Read before the split: the main package's dependencies, as in its .PKGINFO.
    traced_names = set(depends) - set(runtime_dependencies(app.type, app.dependencies.runtime))
    build_deps = _build_dependencies(step) if sandbox is not None else []
    if app.type is AppType.DEFAULT:
        sub_tree = work / f"pkgdir-{arch}-openrc"
        discard(sub_tree, context)  # split_package makes it
        info, sub_info = split_package(pkgdir, sub_tree, info, OPENRC)
        if sub_info is not None:
            _add_sbom(sub_tree, sub_info, identity, build_deps)
            write_package(sub_tree, sub_info, tmp, key, level=level)
    runtime = _runtime_dependencies(step, info, traced_names)
    _add_sbom(pkgdir, info, identity, [*runtime, *build_deps])
    write_package(pkgdir, info, tmp, key, level=level)
    _write_apkbuild(render_dir / "APKBUILD", tmp / "APKBUILD", identity.release)
    replace_dir(tmp, out, context)
    return warnings


def _add_sbom(tree: Path, info: PackageInfo, identity: Identity, related: list[Related]) -> None:
    """Write the package's SPDX document into its tree (see pakman.apk.sbom)."""
    chosen_org = identity.organization != DEFAULT_ORGANIZATION
    provenance = Provenance(
        supplier=f"Organization: {identity.organization}" if chosen_org else "",
        license_from=identity.license_from or DEFAULT_LICENSE_FROM,
        license_chosen=bool(identity.license_from)
        and identity.license_from != DEFAULT_LICENSE_FROM,
        description_from=identity.description_from or DEFAULT_DESCRIPTION_FROM,
        creator=f"Tool: pakman-{__version__}",
        purl_namespace=identity.organization,
    )
    add_sbom(tree, info, sbom_document(tree, info, provenance, related))


def _lock(step: Step, stage: str) -> dict[str, Any]:
    """The lock file an upstream fetch-deps step wrote ({} when there is none)."""
    paths = upstream_outputs(step, stage)
    if not paths:
        return {}
    lock = json.loads(Path(paths[0]).read_text(encoding="utf-8"))
    return lock if isinstance(lock, dict) else {}


def _apk_url(lock: dict[str, Any], repository: str, name: str, version: str) -> str:
    """Where a locked package is fetched from: beside its repository's index."""
    index = lock.get("indexes", {}).get(repository, {}).get("url", "")
    return f"{index.rsplit('/', 1)[0]}/{name}-{version}.apk" if index else ""


def _runtime_dependencies(step: Step, info: PackageInfo, traced: set[str]) -> list[Related]:
    """The package's runtime dependencies (its .PKGINFO's) for its SBOM, with what the runtime lock resolved."""
    from pakman.apk.pkginfo import effective_depends

    depends = effective_depends(info)
    lock = _lock(step, "fetch-deps-runtime")
    resolved = lock.get("resolved", {})
    branch, arch = lock.get("branch", ""), lock.get("arch", "")
    related = []
    for text in depends:
        dependency = Dependency.parse(text)
        if dependency.conflict:
            continue  # not a dependency: a package that must not be installed
        entry = resolved.get(dependency.name) or {}
        said = f"Runtime dependency `{text}`"
        if text in traced:
            said += " (found by dependencies.trace)."
        elif text not in info.depends:
            said += " (added as abuild does: an install script runs /bin/sh)."
        else:
            said += "."
        if entry.get("source") == "index":
            package, version = str(entry["package"]), str(entry["version"])
            repository = str(entry.get("repository", ""))
            if package != dependency.name:
                said += f" Provided by {package}."
            said += f" The version resolved against Alpine {branch} {repository} ({arch}) when the package was built; apk installs whatever version fits."
            related.append(
                Related(
                    package,
                    "DEPENDS_ON",
                    version=version,
                    identity=str(entry.get("identity", "")),
                    download=_apk_url(lock, repository, package, version),
                    purl=f"pkg:apk/alpine/{package}@{version}?arch={arch}",
                    comment=said,
                )
            )
            continue
        if entry.get("source") == "local":
            said += " Made by the same build (pakman resolves no version for it)."
        elif text in info.depends and text not in traced:
            why = lock.get("offline") or "not in the runtime lock"
            said += f" Not resolved to a version ({why})."
        related.append(Related(dependency.name, "DEPENDS_ON", comment=said))
    return related


def _build_dependencies(step: Step) -> list[Related]:
    """The build root's packages (the build lock's closure), for the SBOM of a build on alpine."""
    lock = _lock(step, "fetch-deps-build")
    branch = lock.get("branch", "")
    related = []
    for entry in lock.get("closure") or ():
        name, version = str(entry["name"]), str(entry["version"])
        repository, arch = str(entry.get("repository", "")), str(entry.get("arch", ""))
        related.append(
            Related(
                name,
                "BUILD_DEPENDENCY_OF",
                version=version,
                identity=str(entry.get("identity", "")),
                download=_apk_url(lock, repository, name, version),
                purl=f"pkg:apk/alpine/{name}@{version}?arch={arch}",
                comment=f"In the build root (Alpine {branch} {repository}) the package was built in.",
            )
        )
    return related


def _strip(pkgdir: Path, step: Step, context: RunContext) -> list[str]:
    """abuild's stripbin: the root's `strip` on each executable and shared object, in the sandbox.

    As abuild: ELF files of type ET_EXEC or ET_DYN, not under usr/lib/debug,
    not of the STANDALONE OS ABI; `strip -o` into a temporary file whose
    bytes then replace the file's (so its mode stays). A root without
    `strip` (binutils is not in dependencies.build) strips nothing and says so.
    """
    from pakman.apk.elf import ELFOSABI_STANDALONE
    from pakman.apk.tracedeps import elf_files
    from pakman.sandbox import BUILD_DIR, Sandbox
    from pakman.steps.buildroot import root_for

    assert step.app is not None and step.arch is not None
    targets = [
        path
        for path, info in elf_files(pkgdir)
        if info.is_dynamic_object
        and info.osabi != ELFOSABI_STANDALONE
        and not path.startswith("usr/lib/debug/")
    ]
    if not targets:
        return []
    root = root_for(step, context)
    if not any(os.path.lexists(root / place / "strip") for place in ("usr/bin", "bin")):
        return [
            f"{step.app.identity.name} ({step.arch}): {len(targets)} ELF file(s) left unstripped: "
            "the build root has no `strip` (add binutils to dependencies.build, or set "
            "build.strip_binary: false)"
        ]
    lines = [
        f"strip -o /tmp/stripped {shlex.quote(p)} && cat /tmp/stripped > {shlex.quote(p)}"
        for p in targets
    ]
    run_sandboxed(
        f"cd {BUILD_DIR}\n" + "\n".join(lines) + "\n",
        Sandbox(root, arch=step.arch, build_dir=pkgdir, network=False),
        log=context.log_path(step).with_suffix(".strip.log"),
        what=f"strip of {step.app.identity.name} ({step.arch})",
        verbose=context.verbose,
    )
    return []


def _trace(pkgdir: Path, step: Step, context: RunContext) -> Trace:
    """abuild's tracedeps on the tree; needs resolved against the build root on alpine.

    On the host there is no Alpine root to ask, so every need the package
    does not meet itself becomes a dependency, with a warning that says so.
    """
    from pakman.apk.tracedeps import installed_sonames, trace

    if step.reads.get("sandbox") is None:
        traced = trace(pkgdir, None)
        if traced.depends:
            traced.warnings.append(
                "built on the host: "
                + ", ".join(traced.depends)
                + " added without checking that an Alpine package provides them"
            )
        return traced
    from pakman.steps.buildroot import root_for

    return trace(pkgdir, installed_sonames(root_for(step, context)))


def _write_apkbuild(rendered: Path, target: Path, release: int) -> None:
    """The APKBUILD of this build: the rendered one with the release filled in."""
    text = rendered.read_text(encoding="utf-8")
    text = re.sub(r"^pkgrel=.*$", f"pkgrel={release}", text, count=1, flags=re.MULTILINE)
    write_if_changed(target, text.encode(), 0o644)
