"""Warnings for hooks that call services or commands that do not exist, and for run.name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest

from pakman.config.lint import lint_app, lint_hooks, lint_openrc_dependency, lint_run_name
from pakman.config.model import AppConfig, Identity
from pakman.config.schema import load_app
from pakman.config.source import load_file
from render_helpers import EXAMPLE_NAMES, example


def _with_hook(body: str, name: str = "pyweb") -> tuple[AppConfig, Identity]:
    app, identity = example(name)
    return dataclasses.replace(app, hooks=MappingProxyType({"post-install": body})), identity


def _messages(body: str, name: str = "pyweb") -> list[str]:
    return [d.message for d in lint_hooks(*_with_hook(body, name))]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_the_examples_have_no_warnings(name: str) -> None:
    assert lint_app(*example(name)) == []


@pytest.mark.parametrize(
    "body",
    [
        "rc-service pyweb migrate",
        "rc-service pyweb logs",
        "rc-service pyweb restart",
        "rc-service pyweb status || true",
        "/sbin/rc-service -q pyweb zap",
        "rc-update add pyweb default",
        'rc-service "$name" reload',  # a variable: unknown here, not guessed
        "rc-service bash start",  # a runtime dependency's service
    ],
)
def test_known_services_and_commands_pass(body: str) -> None:
    assert _messages(body) == []


def test_an_undefined_command_warns() -> None:
    (message,) = _messages("rc-service pyweb migrate && rc-service pyweb reload\n")
    assert message == (
        "`rc-service pyweb reload`: `reload` is neither a command of run.commands "
        "(logs, migrate) nor an OpenRC action (start, stop, restart, status, ...)"
    )


def test_every_call_on_a_line_is_checked() -> None:
    messages = _messages("rc-service pyweb seed; rc-service pyweb warm & rc-service pyweb start")
    assert [m.split(":")[0] for m in messages] == [
        "`rc-service pyweb seed`",
        "`rc-service pyweb warm`",
    ]


def test_comments_are_not_calls() -> None:
    assert _messages("# rc-service pyweb reload\necho done  # rc-service pyweb reload") == []


def test_another_service_warns_unless_a_dependency_provides_it() -> None:
    message, _ = _messages("rc-update add postgresql\nrc-service nginx reload", "heartbeat")
    assert message == (
        "`rc-update add postgresql`: no service `postgresql`: it is neither this package "
        "(`heartbeat`) nor one of its runtime dependencies"
    )
    assert len(_messages("rc-service nginx reload", "heartbeat")) == 1
    assert _messages("rc-service nginx reload", "static-site") == []


def test_a_static_site_has_no_service_of_its_own() -> None:
    (message,) = _messages("rc-service static-site restart", "static-site")
    assert "installs no OpenRC service of its own" in message


def test_a_custom_package_may_install_its_own_service() -> None:
    assert _messages("rc-service greet start", "greet") == []


def test_run_name_other_than_the_package_name(tmp_path: Path) -> None:
    app, identity = example("pyweb")
    renamed = dataclasses.replace(identity, name="web-app")
    (warning,) = lint_run_name(app, renamed)
    assert warning.severity == "warning"
    assert warning.path == "run.name"
    assert "installed and run as `web-app`" in warning.message
    hook_warnings = lint_hooks(app, renamed)
    assert hook_warnings and all("installed as `web-app`" in d.message for d in hook_warnings)
    assert lint_run_name(app, identity) == []


def test_warnings_are_located_at_the_hook_key(tmp_path: Path) -> None:
    config = tmp_path / "instellar.yml"
    config.write_text(
        "dependencies: {runtime: [bash]}\nstack: alpine/3.20\nbuild: {command: make}\n"
        "run:\n  services:\n    - {name: web, binary: app, start: {call: serve}}\n"
        "hook:\n  post-install: |\n    rc-service app nope\n"
    )
    app, _ = load_app(config)
    identity = Identity("upmaru", "app", "1.0.0")
    (warning,) = lint_app(app, identity, load_file(config))
    assert str(warning) == (
        f"{config}:8:3: warning: hook.post-install: `rc-service app nope`: `nope` is neither a "
        "command of run.commands (none) nor an OpenRC action (start, stop, restart, status, ...)"
    )


def test_an_app_that_runs_nothing_has_no_service_for_hooks_to_call() -> None:
    app, identity = _with_hook("rc-update add pyweb\nrc-service pyweb start")
    bare = dataclasses.replace(app, run=None)
    assert [d.message for d in lint_hooks(bare, identity)] == [
        "`rc-update add pyweb`: the package installs no OpenRC service: "
        "`run` defines no service or command",
        "`rc-service pyweb start`: the package installs no OpenRC service: "
        "`run` defines no service or command",
    ]


def test_an_openrc_dependency_of_a_package_without_init_script_warns() -> None:
    app, identity = example("heartbeat")  # depends on heartbeat-openrc
    assert lint_openrc_dependency(app, identity) == []
    (warning,) = lint_openrc_dependency(dataclasses.replace(app, run=None), identity)
    assert warning.path == "dependencies.runtime[5]"
    assert warning.message.startswith("`heartbeat-openrc` is not made: the package installs no")
