"""The shapes the original PAKman builds from (tests/shapes/), built for real.

An app without `run`, the old `run` holding only `command`, and an Elixir
release named by the old singular `build.destination`: each builds, and its
packages hold what the generated scripts execute, where they execute it.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key
from render_helpers import SHAPES, need, relocate


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key(tmp_path_factory.mktemp("key"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, key: KeyPair) -> Path:
    workspace = tmp_path_factory.mktemp("workspace")
    for shape in ("files-only", "command-only", "elixir-release", "own-package"):
        shutil.copytree(SHAPES / shape, workspace / "apps" / shape)
    run = build(workspace, key)
    assert run.code == 0, run.messages()
    return workspace


def members(package: Path) -> dict[str, tarfile.TarInfo]:
    """The package's data entries but its SBOM (tests/test_sbom.py checks that)."""
    with tarfile.open(package, "r:gz") as archive:
        return {
            m.name: m
            for m in archive.getmembers()
            if not m.name.startswith((".", "var/lib/db/sbom/"))
        }


def test_the_repository_holds_an_openrc_split_only_for_apps_with_an_init_script(
    built: Path,
) -> None:
    assert sorted(p.name for p in (built / ".pakman/repo/x86_64").glob("*.apk")) == [
        "files-only-0.0.0-r0.apk",
        "hello-0.0.0-r0.apk",
        "hello-openrc-0.0.0-r0.apk",
        "tool-0.0.0-r0.apk",
        "tool-openrc-0.0.0-r0.apk",
        "uplink-caddy-0.0.0-r0.apk",
        "uplink-caddy-openrc-0.0.0-r0.apk",
    ]


def test_an_app_without_run_installs_its_files_and_nothing_that_runs(built: Path) -> None:
    entries = members(built / ".pakman/repo/x86_64/files-only-0.0.0-r0.apk")
    assert sorted(n for n, m in entries.items() if m.isfile()) == [
        "var/lib/files-only/public/index.html"
    ]
    assert (entries["var/lib/files-only"].uname, entries["var/lib/files-only"].mode) == (
        "files-only",
        0o755,
    )
    rendered = sorted(p.name for p in (built / ".pakman/build/files-only/render").iterdir())
    assert rendered == ["APKBUILD", "files-only.pre-install"]


def test_commands_without_a_service_get_an_init_script_and_no_s6_service(built: Path) -> None:
    entries = members(built / ".pakman/repo/x86_64/tool-0.0.0-r0.apk")
    assert "var/lib/tool/bin/tool" in entries and "var/lib/tool/bin/env-exec" in entries
    assert not any(n.startswith("var/lib/tool/service") for n in entries)
    openrc = members(built / ".pakman/repo/x86_64/tool-openrc-0.0.0-r0.apk")
    assert sorted(n for n, m in openrc.items() if m.isfile()) == ["etc/init.d/tool"]


def test_the_old_destination_installs_the_release_folders_contents(built: Path) -> None:
    entries = members(built / ".pakman/repo/x86_64/hello-0.0.0-r0.apk")
    assert entries["var/lib/hello/bin/hello"].mode == 0o755
    assert "var/lib/hello/releases/start_erl.data" in entries
    assert not any(n.startswith("var/lib/hello/hello") for n in entries)


def test_a_package_body_installs_the_service_files_from_srcdir_as_under_abuild(
    built: Path,
) -> None:
    entries = members(built / ".pakman/repo/x86_64/uplink-caddy-0.0.0-r0.apk")
    assert entries["usr/sbin/caddy"].mode == 0o755
    assert "var/lib/uplink-caddy/service/run" in entries
    assert "var/lib/uplink-caddy/bin/env-exec" in entries
    openrc = members(built / ".pakman/repo/x86_64/uplink-caddy-openrc-0.0.0-r0.apk")
    assert "etc/init.d/uplink-caddy" in openrc


def test_the_elixir_release_starts_from_its_installed_run_script(
    built: Path, tmp_path: Path
) -> None:
    """The run script, relocated under a folder, starts the release's bin/hello."""
    need("bash")
    with tarfile.open(built / ".pakman/repo/x86_64/hello-0.0.0-r0.apk", "r:gz") as archive:
        # filter= exists from Python 3.10.12 and 3.11.4 on; 3.14 makes it the default.
        safe = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        archive.extractall(tmp_path / "root", **safe)  # type: ignore[arg-type]
    root = tmp_path / "root"
    environment = root / "var/lib/hello/bin/environment"
    environment.write_text("")  # the platform's variables are not fetched here
    run = root / "var/lib/hello/service/run"
    run.write_text(relocate(run.read_text(), root))
    result = subprocess.run(["bash", str(run)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "hello start\n"), result.stderr


TYPO = """\
dependencies:
  runtime: [bash]
stack: alpine/3.20
build:
  command: mkdir -p bin && touch bin/app && chmod +x bin/app
  destinations: [bin]
run:
  name: app
  servics:
    - name: web
      binary: app
      start:
        call: serve
"""


def test_check_and_build_agree_on_a_typo(tmp_path: Path, key: KeyPair) -> None:
    """`servics:` passed check with a warning, then failed build's render-run (exit 3)."""
    from pakman.cli import main

    app = tmp_path / "apps/app"
    app.mkdir(parents=True)
    (app / "instellar.yml").write_text(TYPO)
    assert main(["check", str(app)]) == 0
    run = build(tmp_path, key)
    assert (run.code, run.failed) == (0, set()), run.messages()
    assert "run.servics: unknown key `servics`; did you mean `services`?" in run.stderr
    assert "run: runs no service" in run.stderr
    assert main(["check", "--strict", str(app)]) == 3
    assert build(tmp_path, key, "--strict").code == 3
