"""Every generated shell file passes shellcheck and `sh -n`; execline files have the reference's shape."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess
from pathlib import Path

import pytest

from pakman.config.model import AppConfig, Command, Identity, Run, Service
from pakman.render.engine import RenderedFile, render_all, write_rendered
from render_helpers import EXAMPLE_NAMES, example, need

# abuild defines the variables an APKBUILD reads (srcdir, pkgdir, startdir)
# and reads the ones it sets (pkgver, depends, ...): the usual disables.
APKBUILD_DISABLES = "SC2034,SC2154"
INTERPRETERS = {"#!/bin/sh": "dash", "#!/bin/bash": "bash", "#!/sbin/openrc-run": "dash"}
EXECLINE = "#!/bin/execlineb -P"


def _hostile() -> tuple[AppConfig, Identity]:
    """pyweb with shell metacharacters in every name and call it has."""
    app, identity = example("pyweb")
    odd = 'it\'s $(x) `y` "z" ;&|<>'
    run = Run(
        services=(
            Service(
                odd,
                f"{odd}.bin",
                f"--a={shlex.quote(odd)} -- {shlex.quote(odd)}",
                path=f"/opt/{odd}",
            ),
        ),
        commands=(Command("task", odd.replace(" ", ""), "'$(x)' \"`y`\"", path=f"/{odd}"),),
    )
    return dataclasses.replace(app, run=run), dataclasses.replace(identity, name=odd)


CASES = {name: example(name) for name in EXAMPLE_NAMES} | {"hostile": _hostile()}


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, RenderedFile]]:
    files = render_all(*CASES[request.param])
    folder = tmp_path_factory.mktemp("rendered")
    write_rendered(files, folder)
    return folder, files


def _shell_files(files: dict[str, RenderedFile]) -> list[str]:
    return [n for n, f in files.items() if n != "APKBUILD" and not f.text.startswith(EXECLINE)]


def test_shell_files_pass_shellcheck(rendered: tuple[Path, dict[str, RenderedFile]]) -> None:
    need("shellcheck")
    folder, files = rendered
    names = _shell_files(files)
    # SC2016 notes that `$(x)` in single quotes does not expand: for the
    # hostile names that is the point, so the note is turned off for them.
    hostile = ["-e", "SC2016"] if any("$(x)" in n for n in names) else []
    result = subprocess.run(
        ["shellcheck", "--norc", *hostile, *names],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_apkbuild_passes_sh_n_and_shellcheck(
    rendered: tuple[Path, dict[str, RenderedFile]],
) -> None:
    need("shellcheck", "dash")
    folder, files = rendered
    subprocess.run(["dash", "-n", "APKBUILD"], cwd=folder, check=True)
    disables = APKBUILD_DISABLES + (",SC2016" if "$(x)" in files["APKBUILD"].text else "")
    result = subprocess.run(
        ["shellcheck", "--norc", "-s", "sh", "-e", disables, "APKBUILD"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_each_script_parses_in_its_own_shell(
    rendered: tuple[Path, dict[str, RenderedFile]],
) -> None:
    need("bash", "dash")
    folder, files = rendered
    for name in _shell_files(files):
        shebang = files[name].text.split("\n", 1)[0]
        assert shebang in INTERPRETERS, f"{name}: unexpected first line {shebang!r}"
        subprocess.run([INTERPRETERS[shebang], "-n", name], cwd=folder, check=True)


def test_execline_files_have_the_reference_shape(
    rendered: tuple[Path, dict[str, RenderedFile]],
) -> None:
    _, files = rendered
    execline = {f.kind: f.text for f in files.values() if f.text.startswith(EXECLINE)}
    if not execline:
        assert files["APKBUILD"].text.count("$pkgname.finish") == 0
        return
    assert set(execline) == {"finish", "log"}
    for text in execline.values():
        lines = text.split("\n")
        assert len(lines) == 3 and lines[2] == "", "a shebang and one command line"
    assert execline["finish"].split("\n")[1].split() == [
        "s6-permafailon",
        "60",
        "5",
        "1,101-103,SIGSEGV,SIGBUS",
    ]
    log = execline["log"].split("\n")[1]
    assert log.startswith("s6-log -b n20 s1000000 T ")
    assert log.removeprefix("s6-log -b n20 s1000000 T ").strip('"').startswith("/var/log/")
