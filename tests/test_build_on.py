"""--build-on alpine: builds in a root of the build lock's closure under bubblewrap; --build-on host warns.

Every build here fetches from the fixture mirror on 127.0.0.1 (tests/alpine_fixture.py),
trusting only its test key.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from alpine_fixture import AlpineRepository, LoopbackMirror
from build_support import BuildRun, KeyPair, make_key, working_directory
from pakman.alpine import host_arch
from pakman.cli import main

ARCH = host_arch()
BASE = "alpine-baselayout alpine-release busybox musl"

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@dataclass
class Mirror:
    url: str
    keys: Path


@pytest.fixture
def mirror(alpine_mirror: LoopbackMirror, alpine_repository: AlpineRepository) -> Mirror:
    return Mirror(alpine_mirror.url, alpine_repository.keys_dir)


def write_app(root: Path, name: str, build: str, command: str, package: str = "") -> Path:
    """A custom-type app on the fixture's stack, with its build command and package body."""
    folder = root / "apps" / name
    folder.mkdir(parents=True, exist_ok=True)
    body = package or 'mkdir -p "$pkgdir"/usr/share\ncp "$srcdir"/out.txt "$pkgdir"/usr/share/'
    text = (
        f"stack: alpine/3.20\ntype: custom\ndependencies:\n  build: {build}\n"
        f"build:\n  command: |\n{_indent(command)}\npackage: |\n{_indent(body)}\n"
    )
    (folder / "instellar.yml").write_text(text)
    return folder


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.strip().splitlines())


def run(workspace: Path, key: KeyPair, mirror: Mirror | None, *args: str) -> BuildRun:
    """`pakman build apps --json` in `workspace`, on the fixture mirror when given."""
    options = ["--mirror", mirror.url, "--alpine-keys", str(mirror.keys)] if mirror else []
    options += ["--build-base-packages", BASE]
    out, err = io.StringIO(), io.StringIO()
    with (
        working_directory(workspace),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        code = main(["build", "apps", "--key", str(key.private), "--json", *options, *args])
    events = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    return BuildRun(code, events, err.getvalue())


def log(workspace: Path, app: str, stage: str = "build") -> str:
    return (workspace / f".pakman/logs/{app}/{stage}/{ARCH}.log").read_text()


def roots(workspace: Path) -> list[Path]:
    return sorted(p for p in (workspace / ".pakman/roots").iterdir() if not p.name.startswith("."))


def test_a_build_on_alpine_sees_the_stack_and_its_dependencies_and_not_the_host(
    tmp_path: Path, key: KeyPair, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAKMAN_TEST_HOST_SECRET", "leaked")
    assert Path("/usr/bin/python3").exists()  # the host has it: the build must not see it
    write_app(
        tmp_path,
        "one",
        "[greet]",
        'echo "release $(cat /etc/alpine-release)"\n'
        "greet sandbox\n"
        "test -e /usr/bin/python3 && echo python-seen || echo no-python\n"
        'echo "secret=${PAKMAN_TEST_HOST_SECRET:-unset} pwd=$(pwd) srcdir=$srcdir"\n'
        "cat /etc/alpine-release > out.txt",
        'mkdir -p "$pkgdir"/usr/share\ncp "$srcdir"/out.txt "$pkgdir"/usr/share/\n'
        'echo "package sees $(cat /etc/alpine-release) at $srcdir"',
    )
    first = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert first.code == 0, first.messages()
    assert f"one:buildroot:{ARCH}" in first.ran
    text = log(tmp_path, "one")
    assert "release 3.20" in text
    assert "hello, sandbox" in text  # greet and libgreet from dependencies.build, linked with musl
    assert "no-python" in text and "python-seen" not in text
    assert "secret=unset pwd=/home/build srcdir=/home/build" in text
    assert "package sees 3.20" in log(tmp_path, "one", "package")
    # no warning about the host's libraries on alpine
    build_event = next(
        e for e in first.events if e.get("step") == f"one:build:{ARCH}" and e["event"] == "success"
    )
    assert not build_event.get("warnings")
    # the package holds what the sandbox wrote
    built = tmp_path / f".pakman/build/one/pkgdir-{ARCH}/usr/share/out.txt"
    assert built.read_text().startswith("3.20")
    # the fetched packages are cached by identity; nothing runs again
    assert list((tmp_path / ".pakman/cache/apk").glob("*.apk"))
    assert run(tmp_path, key, mirror, "--build-on", "alpine").ran == set()


def test_network_none_cuts_the_build_off(tmp_path: Path, key: KeyPair, mirror: Mirror) -> None:
    index = f"{mirror.url}/v3.20/main/{ARCH}/APKINDEX.tar.gz"
    write_app(
        tmp_path,
        "net",
        "[]",
        f"if wget -q -O /dev/null {index}; then echo reached; else echo unreachable; fi\n"
        "echo > out.txt",
    )
    shared = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert shared.code == 0, shared.messages()
    assert "reached" in log(tmp_path, "net").split()
    cut = run(tmp_path, key, mirror, "--build-on", "alpine", "--network", "none")
    assert cut.code == 0, cut.messages()
    assert f"net:build:{ARCH}" in cut.ran  # the network is part of the build's key
    assert f"net:buildroot:{ARCH}" not in cut.ran  # not of the root's
    assert "unreachable" in log(tmp_path, "net").split()


@pytest.mark.skipif(shutil.which("musl-gcc") is None, reason="needs musl-gcc (musl-tools)")
def test_a_program_compiled_with_musl_gcc_runs_in_the_root(
    tmp_path: Path, key: KeyPair, mirror: Mirror
) -> None:
    folder = write_app(tmp_path, "c", "[]", "./hello > out.txt\ncat out.txt")
    source = tmp_path / "hello.c"
    source.write_text('#include <stdio.h>\nint main(void) { puts("hello from musl"); return 0; }\n')
    subprocess.run(["musl-gcc", "-O2", "-o", str(folder / "hello"), str(source)], check=True)
    interpreter = subprocess.run(
        ["readelf", "-l", str(folder / "hello")], capture_output=True, text=True, check=False
    ).stdout
    assert "ld-musl" in interpreter or not interpreter  # dynamically linked against musl
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    assert "hello from musl" in log(tmp_path, "c")


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_two_apps_with_one_closure_build_one_root(
    tmp_path: Path, key: KeyPair, mirror: Mirror, jobs: str
) -> None:
    write_app(tmp_path, "one", "[greet]", "greet one > out.txt")
    write_app(tmp_path, "two", "[greet]", "greet two > out.txt")
    # -j 2: both buildroot steps at once wait for one another, not fetch into the same files
    done = run(tmp_path, key, mirror, "--build-on", "alpine", "-j", jobs)
    assert done.code == 0, done.messages()
    assert {f"one:buildroot:{ARCH}", f"two:buildroot:{ARCH}"} <= done.ran
    assert len(roots(tmp_path)) == 1
    records = {
        json.loads((tmp_path / f".pakman/build/{app}/buildroot-{ARCH}.json").read_text())["root"]
        for app in ("one", "two")
    }
    assert records == {roots(tmp_path)[0].name}


def test_a_change_of_build_dependencies_rebuilds_the_root_the_build_and_what_follows(
    tmp_path: Path, key: KeyPair, mirror: Mirror
) -> None:
    config = write_app(tmp_path, "one", "[greet]", "greet one > out.txt") / "instellar.yml"
    write_app(tmp_path, "two", "[greet]", "greet two > out.txt")
    assert run(tmp_path, key, mirror, "--build-on", "alpine").code == 0
    config.write_text(config.read_text().replace("build: [greet]", "build: [hello-setup]"))
    again = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert again.code == 0, again.messages()
    assert again.ran == {
        f"one:fetch-deps-build:{ARCH}",
        f"one:buildroot:{ARCH}",
        f"one:build:{ARCH}",
        "one:render-apkbuild",  # the APKBUILD lists the build dependencies (makedepends)
        f"one:package:{ARCH}",
        f"repo:index:{ARCH}",
        f"repo:sign:{ARCH}",
    }
    assert len(roots(tmp_path)) == 2  # one's new closure has its own root; two's is kept


def test_an_offline_lock_cannot_build_on_alpine(tmp_path: Path, key: KeyPair) -> None:
    write_app(tmp_path, "one", "[greet]", "echo > out.txt")
    done = run(tmp_path, key, None, "--build-on", "alpine", "--offline")
    assert done.code == 1
    assert done.failed == {f"one:buildroot:{ARCH}"}
    message = done.messages()
    assert "--build-on alpine needs the closure of dependencies.build" in message
    assert "without --offline" in message


def test_without_bwrap_the_build_stops_with_what_to_install(
    tmp_path: Path, key: KeyPair, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pakman.sandbox import bwrap

    write_app(tmp_path, "one", "[greet]", "echo > out.txt")
    assert run(tmp_path, key, mirror, "--build-on", "alpine").code == 0
    empty = tmp_path / "no-bwrap"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    bwrap.find_bwrap.cache_clear()
    bwrap.check_bwrap.cache_clear()
    try:
        # a no-op build asks nothing of the sandbox
        assert run(tmp_path, key, mirror, "--build-on", "alpine").ran == set()
        write_app(tmp_path, "one", "[greet]", "echo changed > out.txt")
        stopped = run(tmp_path, key, mirror, "--build-on", "alpine")
    finally:
        bwrap.find_bwrap.cache_clear()
        bwrap.check_bwrap.cache_clear()
    assert stopped.code == 1
    assert stopped.failed == {f"one:build:{ARCH}"}
    assert "bwrap (bubblewrap) was not found" in stopped.messages()
    assert "apt-get install bubblewrap" in stopped.messages()


def test_a_build_on_the_host_says_its_binaries_use_the_host_libraries(
    tmp_path: Path, key: KeyPair, capsys: pytest.CaptureFixture[str]
) -> None:
    write_app(tmp_path, "one", "[]", "echo > out.txt")
    done = run(tmp_path, key, None, "--offline")  # --build-on host is the default
    assert done.code == 0, done.messages()
    step = f"one:build:{ARCH}"
    event = next(e for e in done.events if e.get("step") == step and e["event"] == "success")
    warnings = event.get("warnings")
    assert isinstance(warnings, list) and len(warnings) == 1
    assert "linked against the host's libraries" in warnings[0]

    def explain(*args: str) -> str:
        capsys.readouterr()
        options = ["-p", "apps", "--all", "--offline", "--build-base-packages", BASE]
        with working_directory(tmp_path):
            assert main(["explain", *options, *args]) == 0
        return capsys.readouterr().out

    said = explain()
    assert f"{step}: up to date\n  note: it builds on the host" in said
    assert "linked against the host's libraries" in said
    assert "builds on the host" not in explain("--build-on", "alpine")


def test_a_wrong_build_on_variable_is_invalid_input(
    tmp_path: Path, key: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_app(tmp_path, "one", "[]", "echo > out.txt")
    monkeypatch.setenv("PAKMAN_BUILD_ON", "docker")
    done = run(tmp_path, key, None, "--offline")
    assert done.code == 3
    assert "PAKMAN_BUILD_ON 'docker': use host or alpine" in done.stderr


@pytest.mark.parametrize("traced", [True, False])
def test_trace_adds_the_so_dependencies_the_roots_packages_provide(
    tmp_path: Path, key: KeyPair, mirror: Mirror, traced: bool
) -> None:
    from pakman.apk.reader import read_package_control

    folder = write_app(
        tmp_path,
        "tr",
        "[greet]",
        "echo > out.txt",
        'mkdir -p "$pkgdir"/usr/bin\ncp /usr/bin/greet "$pkgdir"/usr/bin/',
    )
    config = folder / "instellar.yml"
    config.write_text(
        config.read_text().replace(
            "  build: [greet]", f"  build: [greet]\n  trace: {str(traced).lower()}"
        )
    )
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    (apk,) = (tmp_path / f".pakman/build/tr/packages/{ARCH}").glob("tr-*.apk")
    with apk.open("rb") as handle:
        depends = [v for k, v in read_package_control(handle).pkginfo if k == "depend"]
    assert ("so:libgreet.so.1" in depends) is traced
    warnings = [w for e in done.events for w in e.get("warnings") or ()]
    # Debian's musl-gcc links `libc.so`, which no package of the root provides: left out, said
    assert any("libc.so (needed by usr/bin/greet)" in w for w in warnings) is traced


@pytest.mark.parametrize("strip", [True, False])
def test_a_root_without_strip_leaves_elf_files_unstripped_and_says_so(
    tmp_path: Path, key: KeyPair, mirror: Mirror, strip: bool
) -> None:
    folder = write_app(
        tmp_path,
        "st",
        "[greet]",
        "echo > out.txt",
        'mkdir -p "$pkgdir"/usr/bin\ncp /usr/bin/greet "$pkgdir"/usr/bin/',
    )
    config = folder / "instellar.yml"
    text = config.read_text().replace(
        "build:\n  command:", "build:\n  strip_binary: false\n  command:"
    )
    if not strip:
        config.write_text(text)
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    warnings = [w for e in done.events for w in e.get("warnings") or ()]
    said = [w for w in warnings if "left unstripped" in w]
    assert bool(said) is strip
    if strip:
        assert "1 ELF file(s)" in said[0] and "binutils" in said[0]
    packaged = tmp_path / f".pakman/build/st/pkgdir-{ARCH}/usr/bin/greet"
    (root,) = roots(tmp_path)
    assert packaged.read_bytes() == (root / "root/usr/bin/greet").read_bytes()  # unchanged


@pytest.mark.parametrize("strip", [True, False])
def test_the_roots_strip_runs_on_the_packages_elf_files_unless_strip_binary_is_false(
    tmp_path: Path, key: KeyPair, mirror: Mirror, strip: bool
) -> None:
    folder = write_app(
        tmp_path,
        "fs",
        "[greet, fake-strip]",
        "echo > out.txt",
        'mkdir -p "$pkgdir"/usr/bin "$pkgdir"/usr/share\n'
        'cp /usr/bin/greet "$pkgdir"/usr/bin/\necho text > "$pkgdir"/usr/share/notes',
    )
    if not strip:
        config = folder / "instellar.yml"
        config.write_text(
            config.read_text().replace(
                "build:\n  command:", "build:\n  strip_binary: false\n  command:"
            )
        )
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    tree = tmp_path / f".pakman/build/fs/pkgdir-{ARCH}"
    (root,) = roots(tmp_path)
    original = (root / "root/usr/bin/greet").read_bytes()
    greet = tree / "usr/bin/greet"
    # abuild's `strip -o tmp file`, then the bytes replace the file's: its mode stays
    assert greet.read_bytes() == (original + b"STRIPPED" if strip else original)
    assert greet.stat().st_mode & 0o777 == 0o755
    assert (tree / "usr/share/notes").read_text() == "text\n"  # not ELF: never stripped
