"""`pakman build examples/` with the default (--build-on alpine), on a local mirror as scripts/build-examples makes.

The mirror is the fixture one (tests/alpine_fixture.py) with the examples'
branches (alpine 3.19 to 3.22) and the stand-ins for their runtime
dependencies, served on 127.0.0.1. Every package must verify, and every ELF
file in it must use musl's loader or none.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from alpine_fixture import (
    EXAMPLE_BRANCHES,
    AlpineRepository,
    LoopbackMirror,
    build_alpine_repository,
)
from build_support import KeyPair, make_key, working_directory
from pakman.apk import PackageInfo, SigningKey, generate_key, write_package
from pakman.apk.elf import ElfError, is_elf, read_elf
from pakman.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# What the local mirror has of a build root's base (see scripts/build-examples)
BASE = "alpine-baselayout alpine-release busybox musl"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


def foreign_interpreters(apk: Path) -> list[str]:
    """`member: interpreter` for each ELF file of a package whose PT_INTERP is not musl's loader."""
    found = []
    with tarfile.open(apk, "r:gz") as archive, tempfile.TemporaryDirectory() as scratch:
        for member in archive:
            if not member.isfile() or member.name.startswith("."):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            copy = Path(scratch) / "member"
            copy.write_bytes(handle.read())
            if not is_elf(copy):
                continue
            try:
                interpreter = read_elf(copy).interpreter
            except ElfError as exc:
                found.append(f"{member.name}: unreadable ELF ({exc})")
                continue
            if interpreter is not None and not interpreter.startswith("/lib/ld-musl-"):
                found.append(f"{member.name}: {interpreter}")
    return found


@pytest.fixture(scope="module")
def examples_repository(tmp_path_factory: pytest.TempPathFactory) -> AlpineRepository:
    return build_alpine_repository(
        tmp_path_factory.mktemp("examples-mirror"), branches=EXAMPLE_BRANCHES, stand_ins=True
    )


@pytest.fixture(scope="module")
def examples_mirror(examples_repository: AlpineRepository) -> Iterator[LoopbackMirror]:
    mirror = LoopbackMirror(examples_repository.root).start()
    yield mirror
    mirror.stop()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


def test_the_examples_build_on_alpine_by_default_and_use_musl_or_no_loader(
    tmp_path: Path,
    key: KeyPair,
    examples_repository: AlpineRepository,
    examples_mirror: LoopbackMirror,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAKMAN_BUILD_ON", raising=False)  # the default, not conftest's host
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    out, err = io.StringIO(), io.StringIO()
    with (
        working_directory(tmp_path),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(
            [
                "build",
                "examples",
                "--json",
                "--key",
                str(key.private),
                "--mirror",
                examples_mirror.url,
                "--alpine-keys",
                str(examples_repository.keys_dir),
                "--build-base-packages",
                BASE,
            ]
        )
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    assert code == 0, err.getvalue() + out.getvalue()
    ran = {e["step"] for e in events if e["event"] == "success"}
    apps = sorted(p.name for p in EXAMPLES.iterdir() if (p / "instellar.yml").is_file())
    built = [a for a in apps if a != "rails-seed"]  # left out by examples/.pakmanignore
    for app in built:
        # every app's build ran in its stack's root: a buildroot step, no note about the host
        assert any(s.startswith(f"{app}:buildroot:") for s in ran), app
    warnings = [w for e in events for w in e.get("warnings") or ()]
    assert not [w for w in warnings if "host's libraries" in w]
    assert not [w for w in warnings if "not checked" in w]  # every dependency resolved
    for app, release in (("greet", "3.22"), ("static-site", "3.19"), ("pyweb", "3.20")):
        (record,) = (tmp_path / f".pakman/build/{app}").glob("buildroot-*.json")
        root = tmp_path / ".pakman/roots" / json.loads(record.read_text())["root"] / "root"
        assert (root / "etc/alpine-release").read_text().startswith(release), app

    packages = sorted((tmp_path / ".pakman/repo").glob("*/*.apk"))
    names = {p.name.rsplit("-", 2)[0] for p in packages}
    assert names == {
        "greet",
        "heartbeat",
        "heartbeat-openrc",
        "pyweb",
        "pyweb-openrc",
        "static-site",
    }
    indexes = [str(p) for p in (tmp_path / ".pakman/repo").glob("*/APKINDEX.tar.gz")]
    with contextlib.redirect_stdout(io.StringIO()) as said:
        verdict = main(
            ["verify", "--keys-dir", str(key.private.parent), *map(str, packages), *indexes]
        )
    assert verdict == 0, said.getvalue()
    for package in packages:
        assert foreign_interpreters(package) == [], package


def test_the_interpreter_check_finds_a_glibc_program(tmp_path: Path) -> None:
    """The check above can fail: the host's (glibc) `true` in a package is found."""
    host_true = Path(shutil.which("true") or "/bin/true").resolve()
    interpreter = read_elf(host_true).interpreter
    if interpreter is None or interpreter.startswith("/lib/ld-musl-"):
        pytest.skip("the host's true is not a glibc program")
    tree = tmp_path / "tree"
    (tree / "usr/bin").mkdir(parents=True)
    shutil.copyfile(host_true, tree / "usr/bin/true")
    (tree / "usr/share").mkdir()
    (tree / "usr/share/notes").write_text("not ELF\n")
    private, public = generate_key(tmp_path / "key", "check", bits=2048)
    signing = SigningKey.from_file(private, public_path=public)
    apk = write_package(
        tree, PackageInfo("glibc-true", "1.0", "x86_64", description="x"), tmp_path, signing
    )
    assert foreign_interpreters(apk) == [f"usr/bin/true: {interpreter}"]
