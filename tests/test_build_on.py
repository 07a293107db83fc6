"""--build-on alpine: builds in a root of the build lock's closure under bubblewrap; --build-on host warns.

Every build here fetches from the fixture mirror on 127.0.0.1 (tests/alpine_fixture.py),
trusting only its test key.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alpine_fixture import (
    AlpineRepository,
    LoopbackMirror,
    build_alpine_repository,
    extract_debian_packages,
)
from build_support import BuildRun, KeyPair, make_key, working_directory
from nginx_support import Nginx
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


FOREIGN = "aarch64" if ARCH != "aarch64" else "x86_64"


@pytest.fixture(scope="module")
def foreign_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    """The fixture mirror for another architecture, from Debian's packages of it, on loopback.

    Skips when this machine has no qemu handler for it (scripts/test registers one when it
    can) or the Debian packages were not downloaded (scripts/test does).
    """
    from pakman.sandbox import SandboxUnavailable, check_arch

    try:
        check_arch(FOREIGN)
    except SandboxUnavailable as exc:
        pytest.skip(str(exc))
    folder = tmp_path_factory.mktemp(f"alpine-{FOREIGN}")
    try:
        tree = extract_debian_packages(FOREIGN, folder / "debian")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    repository = build_alpine_repository(folder, FOREIGN, debian_tree=tree)
    served = LoopbackMirror(repository.root).start()
    yield Mirror(served.url, repository.keys_dir)
    served.stop()


def write_app(
    root: Path, name: str, build: str, command: str, package: str = "", arch: str = ""
) -> Path:
    """A custom-type app on the fixture's stack, with its build command and package body."""
    folder = root / "apps" / name
    folder.mkdir(parents=True, exist_ok=True)
    body = package or 'mkdir -p "$pkgdir"/usr/share\ncp "$srcdir"/out.txt "$pkgdir"/usr/share/'
    architectures = f"architectures: [{arch}]\n" if arch else ""
    text = (
        f"stack: alpine/3.20\ntype: custom\n{architectures}dependencies:\n  build: {build}\n"
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


def log(workspace: Path, app: str, stage: str = "build", arch: str = ARCH) -> str:
    return (workspace / f".pakman/logs/{app}/{stage}/{arch}.log").read_text()


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


def test_a_foreign_architecture_builds_under_qemu_in_a_root_of_its_own_packages(
    tmp_path: Path, key: KeyPair, foreign_mirror: Mirror
) -> None:
    from pakman.apk.reader import read_package_control

    write_app(
        tmp_path,
        "arm",
        "[]",
        'echo "machine=$(uname -m) CARCH=$CARCH" | tee out.txt\nbusybox sha256sum out.txt',
        arch=FOREIGN,
    )
    done = run(tmp_path, key, foreign_mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    assert {f"arm:buildroot:{FOREIGN}", f"arm:build:{FOREIGN}"} <= done.ran
    text = log(tmp_path, "arm", arch=FOREIGN)
    # uname is the root's busybox (its links made by busybox's post-install, under qemu too)
    assert f"machine={FOREIGN} CARCH={FOREIGN}" in text
    assert "out.txt" in text.split("\n")[-2]  # busybox sha256sum ran
    (root,) = roots(tmp_path)
    assert (root / "root/bin/uname").is_symlink()
    assert (root / "root/etc/apk/arch").read_text() == f"{FOREIGN}\n"
    (apk,) = (tmp_path / f".pakman/build/arm/packages/{FOREIGN}").glob("arm-*.apk")
    with apk.open("rb") as handle:
        assert ("arch", FOREIGN) in read_package_control(handle).pkginfo


def test_noarch_builds_in_the_machines_architecture(
    tmp_path: Path, key: KeyPair, mirror: Mirror
) -> None:
    from pakman.apk.reader import read_package_control

    command = 'echo "machine=$(uname -m) CARCH=$CARCH" | tee out.txt'
    write_app(tmp_path, "na", "[]", command, arch="noarch")
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    machine = subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip()
    # abuild's CARCH is the build machine's, whatever the APKBUILD's arch says
    assert f"machine={machine} CARCH={ARCH}" in log(tmp_path, "na", arch="noarch")
    (apk,) = (tmp_path / ".pakman/build/na/packages/noarch").glob("na-*.apk")
    with apk.open("rb") as handle:
        assert ("arch", "noarch") in read_package_control(handle).pkginfo


_SHOW_VARIABLES = (
    'mkdir -p "$pkgdir" && touch "$pkgdir"/written-by-$0\n'
    '[ "$builddir" = "$srcdir/$pkgname-$pkgver" ] && echo builddir-ok\n'
    "echo CARCH=$CARCH CBUILD=$CBUILD CHOST=$CHOST pkgname=$pkgname\n"
    "sh -c 'echo exported=$CARCH'\n"
)


@pytest.mark.parametrize("arch", [ARCH, "noarch"])
@pytest.mark.parametrize("build_on", ["host", "alpine"])
def test_builds_get_abuilds_variables_on_the_host_and_on_alpine_alike(
    tmp_path: Path, key: KeyPair, mirror: Mirror, build_on: str, arch: str
) -> None:
    write_app(
        tmp_path,
        "vars",
        "[]",
        _SHOW_VARIABLES.replace("$0", "build") + "echo > out.txt",
        _SHOW_VARIABLES.replace("$0", "package")
        + 'mkdir -p "$pkgdir"/usr/share\ncp "$srcdir"/out.txt "$pkgdir"/usr/share/',
        arch=arch,
    )
    if build_on == "alpine":
        done = run(tmp_path, key, mirror, "--build-on", "alpine")
    else:
        done = run(tmp_path, key, None, "--offline")
    assert done.code == 0, done.messages()
    hostspec = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(ARCH, ARCH) + "-alpine-linux-musl"
    # abuild's CARCH is the machine's (noarch too), and the build sees it exported
    said = f"CARCH={ARCH} CBUILD={hostspec} CHOST={hostspec} pkgname=vars"
    for stage in ("build", "package"):
        text = log(tmp_path, "vars", stage, arch=arch)
        assert said in text, stage
        assert f"exported={ARCH}" in text and "builddir-ok" in text, stage
    # what the build wrote into $pkgdir is thrown away before package(), as abuild does
    assert not (tmp_path / f".pakman/build/vars/pkgdir-{arch}/written-by-build").exists()
    assert (tmp_path / f".pakman/build/vars/pkgdir-{arch}/usr/share/out.txt").exists()


@pytest.fixture
def own_mirror(alpine_repository: AlpineRepository) -> Iterator[tuple[LoopbackMirror, Mirror]]:
    """The fixture mirror on a port of its own, which a test may stop."""
    served = LoopbackMirror(alpine_repository.root).start()
    yield served, Mirror(served.url, alpine_repository.keys_dir)
    served.stop()


@pytest.fixture
def unreachable(alpine_repository: AlpineRepository) -> Mirror:
    """A loopback URL nothing answers on (a mirror served, then stopped)."""
    served = LoopbackMirror(alpine_repository.root).start()
    url = served.url
    served.stop()
    return Mirror(url, alpine_repository.keys_dir)


def test_the_default_builds_on_alpine(
    tmp_path: Path, key: KeyPair, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAKMAN_BUILD_ON", raising=False)  # conftest builds on the host
    write_app(tmp_path, "one", "[greet]", "greet default > out.txt\ncat /etc/alpine-release")
    done = run(tmp_path, key, mirror)  # no --build-on
    assert done.code == 0, done.messages()
    assert f"one:buildroot:{ARCH}" in done.ran
    assert "3.20" in log(tmp_path, "one")
    assert (tmp_path / f".pakman/build/one/pkgdir-{ARCH}/usr/share/out.txt").read_text() == (
        "hello, default\n"
    )
    assert not any("host's libraries" in w for e in done.events for w in e.get("warnings") or ())
    with working_directory(tmp_path), contextlib.redirect_stdout(io.StringIO()) as said:
        options = ["--mirror", mirror.url, "--alpine-keys", str(mirror.keys)]
        assert (
            main(["explain", "-p", "apps", "--all", "--build-base-packages", BASE, *options]) == 0
        )
    assert "builds on the host" not in said.getvalue()


def test_offline_without_a_cached_index_fails_saying_what_to_do(
    tmp_path: Path, key: KeyPair, unreachable: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAKMAN_BUILD_ON", raising=False)
    write_app(tmp_path, "one", "[greet]", "echo > out.txt")
    done = run(tmp_path, key, unreachable, "--offline")
    assert done.code == 1
    assert done.failed == {f"one:fetch-deps-build:{ARCH}"}
    message = done.messages()
    assert "--offline and no cached index of alpine v3.20" in message
    assert "Build once with the mirror reachable" in message
    assert "point --mirror" in message and "--build-on host" in message
    assert "Traceback" not in message + done.stderr
    # on the host, --offline leaves the dependencies unchecked as before
    host = run(tmp_path, key, unreachable, "--offline", "--build-on", "host")
    assert host.code == 0, host.messages()


def test_an_unreachable_mirror_without_a_cache_fails_saying_what_to_do(
    tmp_path: Path, key: KeyPair, unreachable: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAKMAN_BUILD_ON", raising=False)
    write_app(tmp_path, "one", "[greet]", "echo > out.txt")
    done = run(tmp_path, key, unreachable)
    assert done.code == 1
    assert done.failed == {f"one:fetch-deps-build:{ARCH}"}
    message = done.messages()
    assert "the mirror could not be reached and no copy is cached" in message
    assert unreachable.url in message
    assert "Build once with the mirror reachable" in message and "--build-on host" in message
    assert "Traceback" not in message + done.stderr


def test_offline_after_an_online_build_uses_the_cached_index_and_packages(
    tmp_path: Path,
    key: KeyPair,
    own_mirror: tuple[LoopbackMirror, Mirror],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAKMAN_BUILD_ON", raising=False)
    served, mirror = own_mirror
    write_app(tmp_path, "one", "[greet]", "greet online > out.txt")
    assert run(tmp_path, key, mirror).code == 0
    served.stop()  # from here on nothing answers at mirror.url
    shutil.rmtree(tmp_path / ".pakman/roots")  # the root is made again, from the cache
    write_app(tmp_path, "one", "[greet]", "greet offline > out.txt")
    done = run(tmp_path, key, mirror, "--offline")
    assert done.code == 0, done.messages()
    assert {f"one:fetch-deps-build:{ARCH}", f"one:buildroot:{ARCH}"} <= done.ran
    assert any(
        "--offline: dependencies.build resolved against the cached index" in w
        for e in done.events
        for w in e.get("warnings") or ()
    )
    built = tmp_path / f".pakman/build/one/pkgdir-{ARCH}/usr/share/out.txt"
    assert built.read_text() == "hello, offline\n"
    lock = json.loads((tmp_path / f".pakman/build/one/deps/build-{ARCH}.json").read_text())
    assert lock["closure"] and not lock["unresolved"]


def test_offline_with_the_index_but_not_the_packages_cached_fails_saying_what_to_do(
    tmp_path: Path,
    key: KeyPair,
    own_mirror: tuple[LoopbackMirror, Mirror],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PAKMAN_BUILD_ON", raising=False)
    served, mirror = own_mirror
    write_app(tmp_path, "one", "[greet]", "echo > out.txt")
    assert run(tmp_path, key, mirror).code == 0
    served.stop()
    shutil.rmtree(tmp_path / ".pakman/roots")
    shutil.rmtree(tmp_path / ".pakman/cache/apk")
    done = run(tmp_path, key, mirror, "--offline")
    assert done.code == 1
    assert done.failed == {f"one:buildroot:{ARCH}"}
    message = done.messages()
    assert "--offline and 6 package(s) of the build root's closure are not in" in message
    assert "greet 1.0-r1 (main)" in message and "--build-on host" in message
    assert "Traceback" not in message + done.stderr


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
    done = run(tmp_path, key, None, "--offline", "--build-on", "host")
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


def _gc(workspace: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    with working_directory(workspace):
        assert main(["gc", *args]) == 0
    return capsys.readouterr().out


def test_gc_removes_the_roots_and_cached_packages_no_lock_references(
    tmp_path: Path, key: KeyPair, mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    from pakman.apk.reader import identity_digest
    from pakman.workspace.layout import Layout
    from pakman.workspace.lock import run_lock

    write_app(tmp_path, "one", "[greet]", "greet one > out.txt")
    two = write_app(tmp_path, "two", "[hello-setup]", "greet two > out.txt") / "instellar.yml"
    assert run(tmp_path, key, mirror, "--build-on", "alpine").code == 0
    first_roots = roots(tmp_path)
    assert len(first_roots) == 2
    lock = json.loads((tmp_path / f".pakman/build/two/deps/build-{ARCH}.json").read_text())
    (hello,) = (p for p in lock["closure"] if p["name"] == "hello-setup")
    cache = tmp_path / ".pakman/cache/apk"
    hello_apk = cache / f"{identity_digest(hello['identity'])}.apk"
    assert hello_apk.is_file()
    # two now needs what one needs: hello-setup's root and package are no lock's
    two.write_text(two.read_text().replace("build: [hello-setup]", "build: [greet]"))
    assert run(tmp_path, key, mirror, "--build-on", "alpine").code == 0
    (kept,) = (
        r
        for r in first_roots
        if r.name
        in {json.loads((tmp_path / f".pakman/build/one/buildroot-{ARCH}.json").read_text())["root"]}
    )
    (unused,) = (r for r in first_roots if r != kept)
    # what gc must not follow: a link out of .pakman/ in the unused root, and one in place of a root
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("keep")
    (unused / "root/tmp").rmdir()
    (unused / "root/tmp").symlink_to(outside)
    (tmp_path / ".pakman/roots/linked").symlink_to(outside)
    leftover = tmp_path / ".pakman/roots/.0123456789abcdef.x.tmp"  # a killed run's half root
    (leftover / "root/usr").mkdir(parents=True)
    (leftover / "root/usr").chmod(0o555)

    with run_lock(Layout.at(tmp_path)):  # a build is running: nothing is touched
        said = _gc(tmp_path, capsys)
    assert "build roots and cached packages left alone: a build is running" in said
    assert unused.is_dir() and hello_apk.is_file()

    said = _gc(tmp_path, capsys, "--dry-run")
    assert f"would remove root {unused.name} (" in said
    assert f"would remove package {hello_apk.name} (" in said
    assert "would remove root linked (" in said and f"would remove leftover {leftover.name}" in said
    assert unused.is_dir() and hello_apk.is_file() and leftover.is_dir()

    said = _gc(tmp_path, capsys)
    assert f"removed root {unused.name} (" in said
    assert "removed 2 build roots, 1 cached packages and 1 leftovers" in said
    assert not unused.exists() and not hello_apk.exists() and not leftover.exists()
    assert not (tmp_path / ".pakman/roots/linked").is_symlink()
    assert (outside / "keep").read_text() == "keep"  # never followed
    assert roots(tmp_path) == [kept]
    assert (cache / ".lock").exists()
    assert {p.name for p in cache.glob("*.apk")} == {
        f"{identity_digest(p['identity'])}.apk"
        for p in json.loads((tmp_path / f".pakman/build/one/deps/build-{ARCH}.json").read_text())[
            "closure"
        ]
    }
    # what is kept still builds, with nothing to fetch or make
    assert run(tmp_path, key, mirror, "--build-on", "alpine").ran == set()
    assert "removed 0 build roots, 0 cached packages and 0 leftovers" in _gc(tmp_path, capsys)


def test_a_sandboxed_build_with_git_sees_the_commit_and_tags_and_cannot_change_the_host(
    tmp_path: Path, key: KeyPair, mirror: Mirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fixture root has no git: what the build sees is checked with busybox
    # (tests/test_build_git.py runs git itself, on the host).
    for who in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{who}_NAME", "t")
        monkeypatch.setenv(f"GIT_{who}_EMAIL", "t@example.com")

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    git("init", "-q")
    one = write_app(
        tmp_path,
        "one",
        "[]",
        "cat .git/HEAD .git/objects/info/alternates .git/packed-refs\n"
        "echo objects: $(ls /run/pakman/git-objects)\n"
        "touch /run/pakman/git-objects/x 2>/dev/null && echo objects-writable || echo objects-ro\n"
        # what `pip install` into the system would do: the root is read-only
        "touch /usr/lib/pakman-probe 2>/dev/null && echo root-writable || echo root-ro\n"
        "git config core.hooksPath .husky 2>/dev/null || echo no-git-in-root\n"
        f"ls {tmp_path}/outside 2>/dev/null || echo outside-unseen\n"
        "echo > out.txt",
    )
    config = one / "instellar.yml"
    config.write_text(config.read_text().replace("build:\n", "build:\n  git: true\n"))
    write_app(tmp_path, "two", "[]", "echo > out.txt")
    git("add", "-A")
    git("commit", "-q", "-m", "first")
    git("tag", "v1.0.0")
    # the repository's own alternates name a host folder: the sandbox has no such path
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret").write_text("secret\n")
    (tmp_path / ".git/objects/info/alternates").write_text(f"{tmp_path}/outside\n")
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    seen = log(tmp_path, "one").splitlines()
    head = git("rev-parse", "HEAD")
    assert seen[:3] == [head, "/run/pakman/git-objects", f"{head} refs/tags/v1.0.0"]
    objects = seen[3].split()
    assert objects[0] == "objects:" and {"info", "pack", head[:2]} <= set(objects[1:])
    assert seen[4:8] == ["objects-ro", "root-ro", "no-git-in-root", "outside-unseen"]
    assert not Path("/usr/lib/pakman-probe").exists()
    assert not any((root / "usr/lib/pakman-probe").exists() for root in roots(tmp_path))
    assert "hookspath" not in git("config", "--list", "--local").lower()

    (tmp_path / "README").write_text("x\n")
    git("add", "README")
    git("commit", "-q", "-m", "second")
    again = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert again.code == 0, again.messages()
    assert f"one:build:{ARCH}" in again.ran
    assert f"two:build:{ARCH}" not in again.ran
    assert log(tmp_path, "one").splitlines()[0] == git("rev-parse", "HEAD")


def test_the_sbom_of_a_build_on_alpine_lists_the_roots_packages_and_the_runtime_versions(
    tmp_path: Path, key: KeyPair, mirror: Mirror
) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    folder = write_app(tmp_path, "bom", "[greet]", "greet sbom > out.txt")
    config = folder / "instellar.yml"
    config.write_text(
        config.read_text().replace("  build: [greet]", "  build: [greet]\n  runtime: [greet]")
    )
    done = run(tmp_path, key, mirror, "--build-on", "alpine")
    assert done.code == 0, done.messages()
    (apk,) = (tmp_path / f".pakman/build/bom/packages/{ARCH}").glob("bom-*.apk")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["sbom", str(apk)]) == 0
    (tmp_path / "bom.spdx.json").write_text(out.getvalue())
    assert validate_full_spdx_document(parse_file(str(tmp_path / "bom.spdx.json"))) == []
    document = json.loads(out.getvalue())
    by_id = {p["SPDXID"]: p for p in document["packages"]}
    described = document["packages"][0]["SPDXID"]

    build_lock = json.loads((tmp_path / f".pakman/build/bom/deps/build-{ARCH}.json").read_text())
    closure = {p["name"]: p for p in build_lock["closure"]}
    assert {"greet", "musl", "busybox"} <= set(closure)
    build_deps = {}
    for relation in document["relationships"]:
        if relation["relationshipType"] == "BUILD_DEPENDENCY_OF":
            assert relation["relatedSpdxElement"] == described
            package = by_id[relation["spdxElementId"]]
            build_deps[package["name"]] = package
    assert set(build_deps) == set(closure)  # exactly the build root's packages
    for name, package in build_deps.items():
        locked = closure[name]
        assert package["versionInfo"] == locked["version"]
        sha1 = base64.b64decode(locked["identity"][2:]).hex()
        assert package["checksums"] == [{"algorithm": "SHA1", "checksumValue": sha1}]
        assert locked["identity"] in package["comment"]
        # where it came from: the mirror on 127.0.0.1, which SPDX takes for no location
        assert package["downloadLocation"] == "NOASSERTION"
        where = f"{mirror.url}/v3.20/{locked['repository']}/{ARCH}/{name}-{locked['version']}.apk"
        assert f"Fetched from {where}." in package["comment"]

    runtime_lock = json.loads(
        (tmp_path / f".pakman/build/bom/deps/runtime-{ARCH}.json").read_text()
    )
    locked = runtime_lock["resolved"]["greet"]
    (greet,) = [
        by_id[r["relatedSpdxElement"]]
        for r in document["relationships"]
        if r["relationshipType"] == "DEPENDS_ON"
        and by_id[r["relatedSpdxElement"]]["name"] == "greet"
    ]
    assert greet["versionInfo"] == locked["version"]
    assert greet["externalRefs"][0]["referenceLocator"] == (
        f"pkg:apk/alpine/greet@{locked['version']}?arch={ARCH}"
    )


def test_a_clone_restoring_from_the_remote_cache_makes_no_build_root_until_it_builds(
    tmp_path: Path,
    key: KeyPair,
    own_mirror: tuple[LoopbackMirror, Mirror],
    alpine_repository: AlpineRepository,
    nginx: Nginx,
) -> None:
    served, mirror = own_mirror
    for clone in ("a", "b"):
        write_app(tmp_path / clone, "one", "[greet]", "greet one > out.txt")
    cached = ("--build-on", "alpine", "--remote-cache", nginx.url)
    first = run(tmp_path / "a", key, mirror, *cached)
    assert first.code == 0, first.messages()
    assert f"one:buildroot:{ARCH}" in first.ran
    repository = {"repo:index:" + ARCH, "repo:sign:" + ARCH}
    # The mirror gone: the second clone needs nothing from it, nor makes a root.
    served.stop()
    clone = tmp_path / "b"
    second = run(clone, key, mirror, *cached)
    assert second.code == 0, second.messages()
    assert second.ran == repository
    not_needed = {str(e["step"]) for e in second.events if e["event"] == "not-needed"}
    assert not_needed == {f"one:buildroot:{ARCH}"}
    assert not (clone / ".pakman/roots").exists()
    assert not (clone / f".pakman/build/one/buildroot-{ARCH}.json").exists()
    packages = sorted(p.name for p in (clone / f".pakman/repo/{ARCH}").glob("*.apk"))
    assert packages == sorted(p.name for p in (tmp_path / f"a/.pakman/repo/{ARCH}").glob("*.apk"))
    # Nothing changed: nothing runs (the root still not made), the no-op path included.
    assert run(clone, key, mirror, *cached).ran == set()
    assert not (clone / ".pakman/roots").exists()
    # A new build command: the build runs, in a root made for it first.
    again = LoopbackMirror(alpine_repository.root, port=int(mirror.url.rpartition(":")[2]))
    config = clone / "apps/one/instellar.yml"
    config.write_text(config.read_text().replace("greet one", "greet two"))
    try:
        fourth = run(clone, key, Mirror(again.start().url, mirror.keys), *cached)
    finally:
        again.stop()
    assert fourth.code == 0, fourth.messages()
    assert {f"one:buildroot:{ARCH}", f"one:build:{ARCH}", f"one:package:{ARCH}"} <= fourth.ran
    assert len(roots(clone)) == 1
    assert "two" in (clone / f".pakman/build/one/build-{ARCH}/out.txt").read_text()
