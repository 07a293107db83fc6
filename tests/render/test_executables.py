"""A package must hold every program its service files execute in the app's own folder."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from build_support import KeyPair, build, make_key
from pakman.config.model import AppConfig, Command, Dependencies, Dependency, Identity, Run, Service
from pakman.errors import StepFailed
from pakman.render.executables import check_executables, executed_programs
from render_helpers import SHAPES, example


def _app(*services: Service, commands: tuple[Command, ...] = (), runtime: bool = True) -> AppConfig:
    app, _ = example("heartbeat")
    return dataclasses.replace(
        app,
        run=Run(services=services, commands=commands),
        dependencies=Dependencies(runtime=(Dependency("bash"),) if runtime else ()),
    )


IDENTITY = Identity("upmaru", "app", "1.2.3")


def _file(tree: Path, path: str, mode: int = 0o755) -> None:
    target = tree / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("#!/bin/sh\n")
    target.chmod(mode)


def test_every_service_and_command_is_listed_where_it_runs() -> None:
    app = _app(
        Service("web", "app", "start"),
        Service("php", "php", "artisan", path="/usr/bin"),
        Service("release", "bin/app", "start", path="rel"),
        commands=(Command("migrate", "app", "eval", path="/var/lib/app/bin/"),),
    )
    assert executed_programs(app, IDENTITY) == [
        ("run.services[0] (web)", "/var/lib/app/bin/app"),
        ("run.services[1] (php)", "/usr/bin/php"),
        ("run.services[2] (release)", "/var/lib/app/rel/bin/app"),
        ("run.commands[0] (migrate)", "/var/lib/app/bin/app"),
    ]


def test_a_tree_holding_every_program_passes(tmp_path: Path) -> None:
    _file(tmp_path, "var/lib/app/bin/app")
    app = _app(Service("web", "app", "start"), Service("php", "php", "x", path="/usr/bin"))
    assert check_executables(app, IDENTITY, tmp_path) == []


def test_a_missing_program_fails_naming_it_and_where_the_file_is(tmp_path: Path) -> None:
    _file(tmp_path, "var/lib/app/app/bin/app")  # the release folder copied, not its contents
    app = _app(Service("web", "app", "start"), commands=(Command("migrate", "tool"),))
    with pytest.raises(StepFailed) as caught:
        check_executables(app, IDENTITY, tmp_path)
    assert str(caught.value) == (
        "a program the service files execute is missing:\n"
        "  run.services[0] (web) executes /var/lib/app/bin/app, but the package has no "
        "/var/lib/app/bin/app (it has /var/lib/app/app/bin/app; `<folder>/*` in "
        "build.destinations installs a folder's contents rather than the folder)\n"
        "  run.commands[0] (migrate) executes /var/lib/app/bin/tool, but the package has no "
        "/var/lib/app/bin/tool; does build.command make it, and do build.destinations copy it?"
    )


def test_a_program_that_is_not_executable_fails(tmp_path: Path) -> None:
    _file(tmp_path, "var/lib/app/bin/app", 0o644)
    with pytest.raises(StepFailed, match=r"not executable in the package \(mode 0644\)"):
        check_executables(_app(Service("web", "app", "start")), IDENTITY, tmp_path)


def test_links_are_followed_inside_the_package(tmp_path: Path) -> None:
    _file(tmp_path, "var/lib/app/releases/1/bin/app")
    (tmp_path / "var/lib/app/bin").mkdir()
    os.symlink("../releases/1/bin/app", tmp_path / "var/lib/app/bin/app")
    os.symlink("/var/lib/app/releases/1/bin", tmp_path / "var/lib/app/current")
    app = _app(
        Service("web", "app", "start"),
        Service("other", "app", "start", path="/var/lib/app/current"),
    )
    assert check_executables(app, IDENTITY, tmp_path) == []
    # A link out of the package to a system program is the system's to provide.
    (tmp_path / "var/lib/app/bin/app").unlink()
    os.symlink("/usr/bin/node", tmp_path / "var/lib/app/bin/app")
    assert check_executables(_app(Service("web", "app", "start")), IDENTITY, tmp_path) == []
    # A link to a missing file in the app's folder is missing.
    (tmp_path / "var/lib/app/bin/app").unlink()
    os.symlink("../gone", tmp_path / "var/lib/app/bin/app")
    with pytest.raises(StepFailed, match="the package has no /var/lib/app/gone"):
        check_executables(_app(Service("web", "app", "start")), IDENTITY, tmp_path)


def test_a_system_program_warns_only_without_runtime_dependencies(tmp_path: Path) -> None:
    service = Service("web", "php", "artisan", path="/usr/bin")
    assert check_executables(_app(service), IDENTITY, tmp_path) == []
    app = _app(service, runtime=False)
    line, column = app.where(("run", "services", 0))
    assert line > 0 and column > 0  # where heartbeat's instellar.yml writes its service
    assert check_executables(app, IDENTITY, tmp_path) == [
        f"{app.file}:{line}:{column}: run.services[0]: web executes /usr/bin/php, which is not "
        "in the package, and dependencies.runtime lists no package to provide it"
    ]
    _file(tmp_path, "usr/bin/php")  # installed by the package itself
    assert check_executables(_app(service, runtime=False), IDENTITY, tmp_path) == []


def test_a_build_whose_binary_is_not_where_the_run_script_starts_it_fails(
    tmp_path: Path,
) -> None:
    """The modern `destinations: [<release folder>]` copies the folder itself: caught at package."""
    key: KeyPair = make_key(tmp_path / "key")
    app = tmp_path / "ws/apps/hello"
    app.mkdir(parents=True)
    text = (SHAPES / "elixir-release/instellar.yml").read_text()
    (app / "instellar.yml").write_text(
        text.replace("destination: _build/prod/rel/hello", "destinations: [_build/prod/rel/hello]")
    )
    run = build(tmp_path / "ws", key)
    assert run.code == 1
    assert run.failed == {"hello:package:x86_64"}
    assert (
        "run.services[0] (web) executes /var/lib/hello/bin/hello, but the package has no "
        "/var/lib/hello/bin/hello (it has /var/lib/hello/hello/bin/hello;" in run.messages()
    )
