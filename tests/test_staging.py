"""The Python package(): destination globs, service files, and the APKBUILD run in a shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pakman.render import render_all, write_rendered
from pakman.staging import (
    StagingError,
    collect_destinations,
    stage_package,
    stage_service_files,
)
from render_helpers import EXAMPLE_NAMES, example, need, tree, write_stub


def make(root: Path, files: dict[str, str | int]) -> Path:
    """Files (text) or folders (an int mode) under `root`; `root` itself is created."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = root / name
        if isinstance(content, int):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(content)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
    return root


def collected(srcdir: Path, destinations: tuple[str, ...], out: Path) -> dict[str, object]:
    out.mkdir()
    collect_destinations(srcdir, destinations, out)
    return {path: kind for path, (kind, _, _) in tree(out).items()}


# --------------------------------------------------------------------------
# collect_destinations


def test_star_skips_dot_files_which_are_listed_by_name(tmp_path: Path) -> None:
    src = make(
        tmp_path / "src", {"app.rb": "x", "lib/a.rb": "y", ".bundle/config": "z", ".env": "s"}
    )
    assert collected(src, ("*",), tmp_path / "a") == {
        "app.rb": "file",
        "lib": "dir",
        "lib/a.rb": "file",
    }
    assert set(collected(src, ("*", ".bundle"), tmp_path / "b")) == {
        "app.rb",
        "lib",
        "lib/a.rb",
        ".bundle",
        ".bundle/config",
    }


def test_a_folder_pattern_copies_the_folder_and_contents_pattern_its_entries(
    tmp_path: Path,
) -> None:
    src = make(
        tmp_path / "src", {"_build/prod/rel/app/bin/app": "x", "_build/prod/rel/app/.v": "v"}
    )
    assert set(collected(src, ("_build/prod/rel/app/*",), tmp_path / "a")) == {"bin", "bin/app"}
    assert set(collected(src, ("_build/prod/rel/app",), tmp_path / "b")) == {
        "app",
        "app/bin",
        "app/bin/app",
        "app/.v",  # inside a copied folder, dot-files come along, as with cp -r
    }


def test_patterns_merge_into_one_folder(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"one/bin/a": "a", "two/bin/b": "b"})
    assert set(collected(src, ("one/bin", "two/bin"), tmp_path / "out")) == {
        "bin",
        "bin/a",
        "bin/b",
    }


def test_a_pattern_that_matches_nothing_is_an_error_naming_it(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"bin/x": "x"})
    with pytest.raises(StagingError, match=r"build.destinations\[1\]: 'public/\*' matches nothing"):
        collected(src, ("bin", "public/*"), tmp_path / "out")
    with pytest.raises(StagingError, match="'dist' matches nothing"):
        collected(src, ("dist",), tmp_path / "out2")


def test_modes_follow_umask_022_and_nothing_else(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"d/private": "p", "d/shared": "s", "d/tool": "t"})
    (src / "d" / "private").chmod(0o600)
    (src / "d" / "shared").chmod(0o666)
    (src / "d" / "tool").chmod(0o4775)
    (src / "d").chmod(0o775)
    out = tmp_path / "out"
    collected(src, ("d",), out)
    modes = {path: mode for path, (_, mode, _) in tree(out).items()}
    assert modes == {"d": 0o755, "d/private": 0o600, "d/shared": 0o644, "d/tool": 0o755}


def test_symlinks_are_kept_as_links(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"releases/1/run": "r"})
    os.symlink("releases/1", src / "current")
    os.symlink("run", src / "releases" / "1" / "start")
    out = tmp_path / "out"
    collected(src, ("current", "releases"), out)
    entries = tree(out)
    assert entries["current"] == ("link", 0, "releases/1")
    assert entries["releases/1/start"] == ("link", 0, "run")


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "../.."])
def test_a_symlink_out_of_the_source_tree_is_refused(tmp_path: Path, target: str) -> None:
    src = make(tmp_path / "src", {"bin/app": "x"})
    os.symlink(target, src / "bin" / "secret")
    with pytest.raises(
        StagingError, match=r"bin/secret is a symbolic link to .* outside the source"
    ):
        collected(src, ("bin",), tmp_path / "out")


def test_a_path_through_a_linked_folder_outside_is_refused(tmp_path: Path) -> None:
    make(tmp_path / "elsewhere", {"secret/key": "k"})
    src = make(tmp_path / "src", {})
    os.symlink(tmp_path / "elsewhere", src / "link")
    with pytest.raises(StagingError, match="a symbolic link to a folder outside the source tree"):
        collected(src, ("link/secret",), tmp_path / "out")


def test_special_files_are_refused(tmp_path: Path) -> None:
    src = make(tmp_path / "src", {"run": 0o755})
    os.mkfifo(src / "run" / "pipe")
    with pytest.raises(StagingError, match="run/pipe is not a file, folder or symbolic link"):
        collected(src, ("run",), tmp_path / "out")


# --------------------------------------------------------------------------
# stage_package and stage_service_files


def _stage(name: str, tmp_path: Path) -> tuple[dict[str, tuple[str, int, bytes | str]], object]:
    app, identity = example(name)
    rendered = tmp_path / "rendered"
    write_rendered(render_all(app, identity), rendered)
    srcdir = tmp_path / "src"
    shutil.copytree(app.root, srcdir)
    make(srcdir, {"bin/x": "x", "src/main.py": "m", "public/index.html": "i"})
    owners = stage_package(app, identity, srcdir, rendered, tmp_path / "pkg")
    return tree(tmp_path / "pkg"), owners


def test_stage_package_for_the_default_type(tmp_path: Path) -> None:
    staged, owners = _stage("pyweb", tmp_path)
    assert owners == {"var/lib/pyweb": ("pyweb", "pyweb")}
    expected = {
        "etc/init.d/pyweb": 0o755,
        "etc/profile.d/pyweb.sh": 0o644,
        "var/lib/pyweb/service/run": 0o755,
        "var/lib/pyweb/service/finish": 0o755,
        "var/lib/pyweb/service/log/run": 0o755,
        "var/lib/pyweb/bin/environment": 0o755,
        "var/lib/pyweb/bin/env-exec": 0o755,
        "var/lib/pyweb/bin/x": 0o644,
        "var/lib/pyweb/src/main.py": 0o644,
    }
    for path, mode in expected.items():
        assert staged[path][:2] == ("file", mode), path
    assert (
        staged["var/lib/pyweb/service/log/run"][2]
        == render_all(*example("pyweb"))["pyweb.log"].text.encode()
    )
    assert all(mode == 0o755 for kind, mode, _ in staged.values() if kind == "dir")


def test_stage_package_for_a_static_site(tmp_path: Path) -> None:
    staged, owners = _stage("static-site", tmp_path)
    assert owners == {"var/lib/static-site": ("static-site", "static-site")}
    assert staged["etc/static-site/default.conf"][:2] == ("file", 0o644)
    assert sorted(p for p in staged if p.startswith("etc")) == [
        "etc",
        "etc/static-site",
        "etc/static-site/default.conf",
    ]


def test_a_static_site_without_nginx_conf_fails_naming_it(tmp_path: Path) -> None:
    app, identity = example("static-site")
    make(tmp_path / "src", {})
    with pytest.raises(StagingError, match=r"has no .*src/nginx\.conf"):
        stage_service_files(app, identity, tmp_path / "src", tmp_path, tmp_path / "pkg")


def test_a_missing_rendered_file_is_an_error(tmp_path: Path) -> None:
    app, identity = example("pyweb")
    with pytest.raises(StagingError, match=r"pyweb\.initd is missing; render it first"):
        stage_service_files(app, identity, tmp_path, tmp_path, tmp_path / "pkg")


def test_an_app_with_its_own_package_body_is_not_staged_here(tmp_path: Path) -> None:
    app, identity = example("greet")
    with pytest.raises(StagingError, match="writes its own package"):
        stage_package(app, identity, tmp_path, tmp_path, tmp_path / "pkg")


# --------------------------------------------------------------------------
# The generated APKBUILD, run in a shell, builds the same tree

INSTALL_STANDIN = f'''#!{sys.executable}
"""Stand-in for install: the app's user does not exist here. Record -o/-g and drop them."""
import os, sys
args, owner = [], {{}}
words = iter(sys.argv[1:])
for word in words:
    if word in ("-o", "-g"):
        owner[word] = next(words)
    else:
        args.append(word)
if owner:
    with open(os.environ["OWNERS"], "a") as out:
        out.write("\\0".join([args[-1], owner["-o"], owner["-g"]]) + "\\n")
os.execv({shutil.which("install")!r}, ["install", *args])
'''

BUNDLE_STANDIN = """#!/bin/sh
# Stand-in for bundler (the Rails example's gems come from the network):
# `bundle config set KEY VALUE` writes .bundle/config, as bundler does.
if [ "$1" = config ]; then mkdir -p .bundle && echo "$3: $4" >> .bundle/config; fi
"""

# What abuild does around package(): its umask, a link to each source in
# $srcdir (symlinksrc), then prepare, build and package, all with `set -e`.
ABUILD_STEPS = """set -e
umask 022
default_prepare() { :; }
. "$startdir/APKBUILD"
for s in $source; do ln -sf "$startdir/$s" "$srcdir/"; done
prepare
build
package
"""


@pytest.mark.parametrize("name", [n for n in EXAMPLE_NAMES if example(n)[0].package is None])
def test_the_apkbuild_and_the_python_staging_build_the_same_tree(name: str, tmp_path: Path) -> None:
    need("fakeroot", "dash", "install")
    app, identity = example(name)
    startdir = tmp_path / "startdir"
    write_rendered(render_all(app, identity), startdir)
    (startdir / f"{identity.name}-{identity.version}.tar").write_bytes(b"")  # the snapshot
    srcdir = tmp_path / "src"
    shutil.copytree(app.root, srcdir, ignore=shutil.ignore_patterns(".apk", "__pycache__"))
    stubs = tmp_path / "stubs"
    write_stub(stubs / "install", INSTALL_STANDIN)
    write_stub(stubs / "bundle", BUNDLE_STANDIN)
    owners_file = tmp_path / "owners"
    env = {
        "PATH": f"{stubs}:/usr/bin:/bin",
        "srcdir": str(srcdir),
        "pkgdir": str(tmp_path / "by-shell"),
        "startdir": str(startdir),
        "OWNERS": str(owners_file),
        "HOME": str(tmp_path),
        "LC_ALL": "C",
    }
    result = subprocess.run(
        ["fakeroot", "dash", "-c", ABUILD_STEPS],
        env=env,
        cwd=startdir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    by_shell = tmp_path / "by-shell"
    shell_owners = {}
    for line in owners_file.read_text().splitlines():
        path, user, group = line.split("\0")
        shell_owners[Path(path).relative_to(by_shell).as_posix()] = (user, group)

    owners = stage_package(app, identity, srcdir, startdir, tmp_path / "by-python")

    by_python = tree(tmp_path / "by-python")
    assert tree(by_shell) == by_python
    assert shell_owners == dict(owners)
    assert not any(p.endswith((".tar", ".initd")) for p in by_python)  # prepare() removed the links
    if name == "rails-seed":
        assert "var/lib/devspace/.bundle/config" in by_python
        assert "var/lib/devspace/instellar.yml" in by_python
