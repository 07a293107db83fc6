"""Every build option is declared once (pakman.compile.options) and reaches Settings the same way
from the command line and from plain doit's PAKMAN_* variables."""

from __future__ import annotations

import dataclasses

import pytest

from pakman.cli import build_parser
from pakman.cli.options import settings_from_args
from pakman.compile.options import OPTIONS, VERBOSE, Option
from pakman.compile.settings import Settings
from pakman.dodo import VARIABLES, settings_from_environment

# Fields no option sets: where the apps are (PATH arguments, PAKMAN_PATH), the
# workspace (found, see pakman.workspace.layout) and what only code chooses.
NOT_OPTIONS = {"paths", "root", "pipeline", "level"}


def _sample(option: Option) -> str:
    if option.kind == "flag":
        return "1"
    if option.choices:  # one that is not the default
        default = getattr(Settings(paths=()), option.field)
        return next(choice for choice in option.choices if choice != default)
    if option.flag == "--shard":  # checked on the command line
        return "2/3"
    return "a-value"


def test_every_settings_field_is_one_option() -> None:
    fields = [f.name for f in dataclasses.fields(Settings) if f.name not in NOT_OPTIONS]
    declared = [o.field for o in (*OPTIONS, VERBOSE)]
    assert sorted(declared) == sorted(fields)
    assert len({o.flag for o in OPTIONS}) == len(OPTIONS)
    assert set(VARIABLES) == {"PAKMAN_PATH"} | {o.env for o in (*OPTIONS, VERBOSE)}


@pytest.mark.parametrize("command", ["build", "graph", "explain", "run-step"])
@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.flag)
def test_flag_and_variable_give_the_same_settings(
    command: str, option: Option, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    value = _sample(option)
    flag = [option.flag] if option.kind == "flag" else [f"{option.flag}={value}"]
    step = ["a:build:x86_64"] if command == "run-step" else []
    where = ["-p", "apps"] if command == "explain" else ["apps"]
    if option.group == "remote" and command != "build":
        # Only a build asks the remote cache: the others have no such option.
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, *flag, *step, *where])
        return
    args = build_parser().parse_args([command, *flag, *step, *where])
    from_flag = settings_from_args(args)
    monkeypatch.setenv(option.env, value)
    from_variable = settings_from_environment(("apps",))
    assert from_flag == from_variable
    assert from_flag != Settings(paths=("apps",))


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.command_line_reads_variable])
def test_the_command_line_falls_back_on_some_variables(
    option: Option, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(option.env, _sample(option))
    args = build_parser().parse_args(["build", "apps"])
    assert getattr(settings_from_args(args), option.field) == option.from_text(_sample(option))
