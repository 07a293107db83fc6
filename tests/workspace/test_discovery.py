"""pakman finds its workspace as git finds a repository: the nearest folder upwards with .pakman/."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from build_support import make_workspace, working_directory
from pakman.cli import main
from pakman.workspace.layout import find_workspace


def run(folder: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with (
        working_directory(folder),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_the_nearest_folder_with_pakman_upwards(tmp_path: Path) -> None:
    if any((p / ".pakman").is_dir() for p in tmp_path.parents[:-1]):
        pytest.skip("a folder above the test's holds .pakman/")
    deep = tmp_path / "mono" / "app" / "src"
    deep.mkdir(parents=True)
    assert find_workspace(deep) == deep  # none: the folder itself, as before
    (tmp_path / ".pakman").mkdir()
    (tmp_path / "mono" / ".pakman").mkdir()
    assert find_workspace(deep) == tmp_path / "mono"
    assert find_workspace(tmp_path / "mono") == tmp_path / "mono"
    (deep / ".pakman").write_text("a file, not a workspace\n")
    assert find_workspace(deep) == tmp_path / "mono"


def test_the_filesystem_root_is_never_found_from_below(tmp_path: Path) -> None:
    # A stray /.pakman (someone built in /) must not capture every build on the machine.
    folder = Path("/")
    for part in tmp_path.parts[1:]:
        folder /= part
        assert find_workspace(folder) in (folder, *folder.parents[:-1])
    assert find_workspace(Path("/")) == Path("/")


def test_a_build_inside_an_app_uses_the_workspace_above(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, ["greet"])
    code, out, _ = run(root, "build", "apps", "--offline", "--json")
    assert code == 0
    keys = sorted((root / ".pakman" / "keys").glob("*.rsa"))
    assert len(keys) == 1
    app = root / "apps" / "greet"
    code, out, err = run(app, "build", "--offline", "--json")
    assert code == 0, err
    assert f"pakman: workspace ../.. ({root}): the nearest folder with .pakman/\n" in err
    assert not (app / ".pakman").exists()  # no second workspace, no second signing key
    assert sorted((root / ".pakman" / "keys").glob("*.rsa")) == keys
    events = [json.loads(line) for line in out.splitlines()]
    assert not [e for e in events if e["event"] == "success"]  # all up to date
    # gc and explain see the same workspace.
    code, out, _ = run(app, "gc", "--dry-run")
    assert code == 0
    store_line = out.splitlines()[0]  # the store's (roots and packages follow)
    assert "would remove 0 entries" in store_line and "; 0 kept" not in store_line
    code, out, _ = run(app, "explain", "--offline")
    assert (code, out.splitlines()[-1]) == (0, "0 of 9 steps will run")
    # An exported Makefile's paths are the workspace's: it is written there.
    code, _, err = run(app, "graph", "--offline", "--format", "makefile")
    assert code == 3
    assert f"the workspace is {root}: export a makefile file there (cd ../..)" in err


def test_verify_trusts_the_workspace_key_and_says_so(tmp_path: Path) -> None:
    root = make_workspace(tmp_path, ["greet"])
    assert run(root, "build", "apps", "--offline", "--json")[0] == 0
    (public,) = (root / ".pakman" / "keys").glob("*.rsa.pub")
    files = sorted(str(p) for p in (root / ".pakman" / "repo").glob("*/*") if p.is_file())
    assert any(f.endswith(".apk") for f in files) and any(f.endswith(".tar.gz") for f in files)
    code, out, err = run(root, "verify", *files)
    assert code == 0, out
    assert err == f"pakman: trusting {public.name} (.pakman/keys)\n"
    # From inside an app too: the workspace is found upwards.
    code, _, err = run(root / "apps" / "greet", "verify", *files)
    assert (code, err) == (0, f"pakman: trusting {public.name} (../../.pakman/keys)\n")
    code, out, err = run(root, "verify", "--no-workspace-key", *files)
    assert code == 1
    assert "UNTRUSTED" in out
    assert err == "pakman: trusting no key (give --key or --keys-dir)\n"
    code, out, _ = run(root, "verify", "--json", *files)
    assert (code, json.loads(out)["trusted"]) == (0, [public.name])
