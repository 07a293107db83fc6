"""The Python package(): destination globs, service files, and the APKBUILD run in a shell."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from build_support import make_key
from pakman.cli import main
from pakman.render.engine import render_all, write_rendered
from pakman.steps.staging import StagingError, collect_destinations, stage_service_files
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
# stage_service_files


def test_a_static_site_without_nginx_conf_fails_naming_it(tmp_path: Path) -> None:
    app, identity = example("static-site")
    make(tmp_path / "src", {})
    with pytest.raises(StagingError, match=r"has no .*src/nginx\.conf"):
        stage_service_files(app, identity, tmp_path / "src", tmp_path, tmp_path / "pkg")


def test_a_missing_rendered_file_is_an_error(tmp_path: Path) -> None:
    app, identity = example("pyweb")
    with pytest.raises(StagingError, match=r"pyweb\.initd is missing; render it first"):
        stage_service_files(app, identity, tmp_path, tmp_path, tmp_path / "pkg")


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


SBOM_DIR = "var/lib/db/sbom/"
SBOM_PATHS = ("var/lib/db", "var/lib/db/sbom")


def _packaged(
    repo: Path, name: str
) -> tuple[dict[str, tuple[str, int, bytes | str]], dict[str, tuple[str, str]]]:
    """The tree the built .apk files (the package and its -openrc split) install, and its owners."""
    packages = sorted(repo.glob(f"*/{name}-1.2.3-r4.apk"))
    arch = packages[0].parent
    entries: dict[str, tuple[str, int, bytes | str]] = {}
    owners: dict[str, tuple[str, str]] = {}
    for package in (arch / f"{name}-1.2.3-r4.apk", arch / f"{name}-openrc-1.2.3-r4.apk"):
        if not package.exists():
            continue
        with tarfile.open(package, "r:gz") as archive:
            for member in archive.getmembers():
                if member.name.startswith("."):  # .PKGINFO, .SIGN.*, install scripts
                    continue
                if member.name.rstrip("/") in SBOM_PATHS or member.name.startswith(SBOM_DIR):
                    continue  # the SBOM pakman adds to every package (abuild writes none)
                if member.issym():
                    entries[member.name] = ("link", 0, member.linkname)
                elif member.isdir():
                    entries[member.name] = ("dir", member.mode, b"")
                else:
                    content = archive.extractfile(member)
                    assert content is not None
                    entries[member.name] = ("file", member.mode, content.read())
                if (member.uname, member.gname) != ("root", "root"):
                    owners[member.name] = (member.uname, member.gname)
    return entries, owners


def _binstubs(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)


@pytest.mark.parametrize("name", [n for n in EXAMPLE_NAMES if example(n)[0].package is None])
def test_the_apkbuild_and_pakman_build_package_the_same_tree(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need("fakeroot", "dash", "install")
    app, identity = example(name)
    stubs = tmp_path / "stubs"
    write_stub(stubs / "install", INSTALL_STANDIN)
    write_stub(stubs / "bundle", BUNDLE_STANDIN)
    # The source both build: the app as pakman's build step copies it (abuild's
    # snapshot would also hold instellar.yml, which pakman leaves out).
    ignored = shutil.ignore_patterns(".apk", "__pycache__", "instellar.yml")
    app_files = {"Gemfile": "gem 'rails'\n", "config.ru": "run App\n", "app/models/user.rb": ""}
    rails_app = app_files if name == "rails-seed" else {}  # the example is its config alone
    # A Rails app's binstubs, which its services and commands execute.
    binstubs = ["bin/rails", "bin/bundle"] if name == "rails-seed" else []

    # pakman build: the build, collect and package steps, packed into .apk files.
    workspace = tmp_path / "workspace"
    shutil.copytree(
        app.root, workspace / "apps" / name, ignore=shutil.ignore_patterns(".apk", "__pycache__")
    )
    make(workspace / "apps" / name, rails_app)
    _binstubs(workspace / "apps" / name, binstubs)
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")  # bundle, for rails-seed
    monkeypatch.chdir(workspace)
    key = make_key(tmp_path / "key")
    umask = os.umask(0o077)  # abuild's is 022, whatever the builder's: so is pakman's
    try:
        code = main(
            [
                "build",
                "apps",
                "--offline",
                "--json",
                "--key",
                str(key.private),
                "--package-name",
                identity.name,
                "--organization",
                identity.organization,
                "--package-version",
                identity.version,
                "--release",
                str(identity.release),
            ]
        )
    finally:
        os.umask(umask)
    assert code == 0
    by_pakman, owners = _packaged(workspace / ".pakman/repo", identity.name)

    # abuild: prepare, build and package as the generated APKBUILD says.
    startdir = tmp_path / "startdir"
    write_rendered(render_all(app, identity), startdir)
    (startdir / f"{identity.name}-{identity.version}.tar").write_bytes(b"")  # the snapshot
    srcdir = tmp_path / "src"
    shutil.copytree(app.root, srcdir, ignore=ignored)
    make(srcdir, rails_app)
    _binstubs(srcdir, binstubs)
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

    assert tree(by_shell) == by_pakman
    assert shell_owners == owners
    assert not any(p.endswith((".tar", ".initd")) for p in by_pakman)  # prepare() removed the links
    if name == "rails-seed":
        assert "var/lib/devspace/.bundle/config" in by_pakman
        assert "var/lib/devspace/app/models/user.rb" in by_pakman
