"""Exported Makefiles and build.ninja files, tested by running them.

For each format, the examples are copied into a fresh workspace, exported,
and built from scratch with `make -j2` or `ninja -j2` (each step is a
`pakman run-step` in its own process). The result must be the signed
repository `pakman build` makes; a second run must do nothing; a changed
source file must rerun only its app's build...sign chain.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from pakman.apk import load_public_keys, verify_file
from pakman.apk.index import parse_index_entries
from pakman.apk.reader import read_index_file
from support import EXAMPLES, PAKMAN, copy_examples, subprocess_env

# What the examples (less rails-seed, which .pakmanignore leaves out) build, per architecture.
EXPECTED = {
    "x86_64": {
        "greet-1.2.3-r4.apk",
        "heartbeat-1.2.3-r4.apk",
        "heartbeat-openrc-1.2.3-r4.apk",
        "pyweb-1.2.3-r4.apk",
        "pyweb-openrc-1.2.3-r4.apk",
        "static-site-1.2.3-r4.apk",
    },
}
HEARTBEAT_CHAIN = {
    "heartbeat/build/x86_64.json",
    "heartbeat/collect/x86_64.json",
    "heartbeat/package/x86_64.json",
    "repo/index/x86_64.json",
    "repo/sign/x86_64.json",
}
FILES = {"makefile": "Makefile", "ninja": "build.ninja"}
IDENTITY = ("--package-version=1.2.3", "--release=4")


@dataclass
class Built:
    """A workspace built from scratch by an exported file."""

    fmt: str
    root: Path
    key: Path
    first: subprocess.CompletedProcess[str]
    seconds: float

    def export(self, *extra: str, output: str | None = None) -> None:
        run(
            self.root,
            *PAKMAN,
            "graph",
            "examples",
            "--offline",
            f"--key={self.key}",
            *IDENTITY,
            *extra,
            "--format",
            self.fmt,
            "--command",
            " ".join(PAKMAN),
            "-o",
            output or FILES[self.fmt],
        )

    def build(self, *args: str) -> subprocess.CompletedProcess[str]:
        """make -j2 or ninja -j2 in the workspace."""
        if self.fmt == "makefile":
            return run(self.root, "make", "-j2", *args)
        return run(self.root, sys.executable, "-m", "ninja", "-j2", *args)

    def manifests(self) -> dict[str, int]:
        steps = self.root / ".pakman" / "steps"
        return {
            p.relative_to(steps).as_posix(): p.stat().st_mtime_ns for p in steps.rglob("*.json")
        }


def run(cwd: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def new_workspace(root: Path, signing_key: Path) -> Path:
    """The examples and the signing key in `root`; returns the key's path in it."""
    copy_examples(root)
    # The key sits in a folder whose name needs quoting for the shell, make and ninja.
    key = root / "keys $HOME #1" / signing_key.name
    key.parent.mkdir()
    shutil.copy2(signing_key, key)
    shutil.copy2(signing_key.with_name(signing_key.name + ".pub"), key.parent)
    return key.relative_to(root)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, signing_key: Path) -> Path:
    """The repository `pakman build` makes of the same workspace."""
    root = tmp_path_factory.mktemp("export-reference")
    key = new_workspace(root, signing_key)
    run(root, *PAKMAN, "build", "examples", "--offline", f"--key={key}", *IDENTITY, "-j2")
    return root / ".pakman" / "repo"


@pytest.fixture(scope="module", params=["makefile", "ninja"])
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, signing_key: Path
) -> Built:
    assert shutil.which("make"), "the tests need GNU make (scripts/test installs it)"
    fmt: str = request.param
    root = tmp_path_factory.mktemp(f"export-{fmt}")
    key = new_workspace(root, signing_key)
    workspace = Built(fmt, root, key, subprocess.CompletedProcess([], 0), 0)
    workspace.export()
    started = time.monotonic()
    workspace.first = workspace.build()
    workspace.seconds = time.monotonic() - started
    print(f"\n{fmt}: built the examples from scratch in {workspace.seconds:.1f}s")
    return workspace


def check_repository(built: Built) -> None:
    repo = built.root / ".pakman" / "repo"
    keys = load_public_keys([built.root / built.key.parent])
    published = [p.name for p in repo.iterdir() if p.is_dir() and p.name != ".publications"]
    assert sorted(published) == sorted(EXPECTED)
    for arch, names in EXPECTED.items():
        assert {p.name for p in (repo / arch).glob("*.apk")} == names
        for path in [*(repo / arch).glob("*.apk"), repo / arch / "APKINDEX.tar.gz"]:
            verdict = verify_file(path, keys)
            assert verdict.passed(), verdict.summary()
        with (repo / arch / "APKINDEX.tar.gz").open("rb") as handle:
            index = parse_index_entries(read_index_file(handle).text)
        assert {f"{e.name}-{e.version}.apk" for e in index} == names


def test_builds_the_signed_repository_from_scratch(built: Built, reference: Path) -> None:
    assert built.first.returncode == 0
    check_repository(built)
    # Byte for byte what `pakman build` makes: the same graph ran.
    repo = built.root / ".pakman" / "repo"
    for arch, names in EXPECTED.items():
        for name in [*names, "APKINDEX.tar.gz"]:
            assert (repo / arch / name).read_bytes() == (reference / arch / name).read_bytes()
    # Every step ran once, through run-step, with the options given at export.
    # (identical steps of different apps share outputs through the store)
    ran = [
        line.split()[1]
        for line in built.first.stdout.splitlines()
        if line.startswith(("ran ", "restored "))
    ]
    assert sorted(ran) == sorted(
        m.removesuffix(".json").replace("/", ":") for m in built.manifests()
    ), built.first.stdout
    assert "repo:sign:x86_64" in ran


def test_a_second_run_does_nothing(built: Built) -> None:
    before = built.manifests()
    if built.fmt == "makefile":
        assert run(built.root, "make", "-q", check=False).returncode == 0
    else:
        assert "no work to do" in built.build("-n").stdout
    second = built.build()
    assert "ran " not in second.stdout
    assert built.manifests() == before


def test_a_changed_source_file_reruns_only_its_apps_chain(built: Built) -> None:
    before = built.manifests()
    time.sleep(0.05)  # past the file system's time granularity
    script = built.root / "examples" / "heartbeat" / "bin" / "heartbeat"
    script.write_text(script.read_text() + f"# changed for {built.fmt}\n")
    result = built.build()
    after = built.manifests()
    assert {k for k in after if after[k] != before[k]} == HEARTBEAT_CHAIN, result.stdout
    check_repository(built)
    assert "ran " not in built.build().stdout


def test_the_options_are_part_of_every_step(built: Built) -> None:
    exported = built.root / FILES[built.fmt]
    written = exported.stat().st_mtime_ns
    built.export()  # the same options: the file keeps its time, nothing is out of date
    assert exported.stat().st_mtime_ns == written
    if built.fmt == "makefile":
        assert run(built.root, "make", "-q", check=False).returncode == 0
        # The Makefile is a prerequisite of every step: exported with other
        # options it changes, and every step is out of date.
        dry = run(built.root, "make", "-n", "-W", FILES["makefile"])
    else:
        assert "no work to do" in built.build("-n").stdout
        built.export("--release=5", output="other.ninja")
        dry = built.build("-n", "-f", "other.ninja")
    steps = len(built.manifests())
    if built.fmt == "makefile":
        assert dry.stdout.count(" run-step ") == steps
    else:
        assert f"[{steps}/{steps}]" in dry.stdout


def _refused_url() -> str:
    """A mirror on 127.0.0.1 that refuses connections (a port nothing listens on)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/alpine"


@pytest.mark.parametrize("fmt", ["makefile", "ninja"])
def test_an_unreachable_mirror_fails_neither_a_build_nor_the_export(
    fmt: str, tmp_path: Path, signing_key: Path
) -> None:
    mirror = f"--mirror={_refused_url()}"
    key = tmp_path / "key.rsa"
    shutil.copy2(signing_key, key)
    shutil.copy2(signing_key.with_name(signing_key.name + ".pub"), tmp_path / "key.rsa.pub")
    for root in (tmp_path / "built", tmp_path / "exported"):
        shutil.copytree(EXAMPLES / "heartbeat", root / "apps" / "heartbeat")
    options = ("apps", f"--key={key}", mirror, *IDENTITY)
    # pakman build: the dependencies are not checked, with a warning, and the build goes on.
    built = run(tmp_path / "built", *PAKMAN, "build", *options)
    assert "dependencies.runtime: not checked" in built.stdout + built.stderr
    exported = Built(fmt, tmp_path / "exported", key, subprocess.CompletedProcess([], 0), 0)
    run(
        exported.root,
        *PAKMAN,
        "graph",
        *options,
        "--format",
        fmt,
        "--command",
        " ".join(PAKMAN),
        "-o",
        FILES[fmt],
    )
    first = exported.build()
    assert "dependencies.runtime: not checked" in first.stdout + first.stderr
    repo = exported.root / ".pakman/repo/x86_64"
    assert sorted(p.name for p in repo.glob("*.apk")) == sorted(
        p.name for p in (tmp_path / "built/.pakman/repo/x86_64").glob("*.apk")
    )
    assert {p.name for p in repo.glob("*.apk")} == {
        "heartbeat-1.2.3-r4.apk",
        "heartbeat-openrc-1.2.3-r4.apk",
    }
    # As a build does, the next run checks the dependencies again, and only that.
    again = exported.build()
    assert "dependencies.runtime: not checked" in again.stdout + again.stderr
    assert "heartbeat:build:x86_64" not in again.stdout
    explained = run(
        exported.root,
        *PAKMAN,
        "explain",
        "-p",
        *options,
        "heartbeat:fetch-deps-runtime:x86_64",
    )
    assert "could not reach the mirror" in explained.stdout
