from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from build_support import subprocess_env
from pakman import __version__
from pakman.cli import build_parser, main
from support import EXAMPLES, ROOT


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pakman", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env=subprocess_env(),
    )


def test_check_examples_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert out.count(": ok") == len(list(EXAMPLES.glob("*/instellar.yml")))
    assert "0 invalid" in out


def test_check_one_file_one_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(EXAMPLES / "pyweb" / "instellar.yml"), str(EXAMPLES / "greet")]) == 0
    assert "checked 2 files: 2 valid" in capsys.readouterr().out


def test_check_mixed_folder_exits_3_and_reports_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(EXAMPLES / "pyweb", tmp_path / "good")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "instellar.yml").write_text("dependencies: {}\nbuild: []\n")
    (tmp_path / "node_modules" / "x").mkdir(parents=True)
    (tmp_path / "node_modules" / "x" / "instellar.yml").write_text("not: searched\n")
    assert main(["check", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert f"{tmp_path}/bad/instellar.yml:2:8: build: expected a mapping, got a list" in out
    assert f"{tmp_path}/good/instellar.yml: ok" in out
    assert f"{tmp_path}/bad/instellar.yml:1:1: warning: run: runs no service" in out
    assert "checked 2 files: 1 valid, 1 invalid (1 error, 2 warnings)" in out


def test_check_nothing_found_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path)]) == 3
    assert "no instellar.yml found" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing")]) == 3
    assert "no such file or folder" in capsys.readouterr().err


def test_check_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["check", "--json", "-v", "--package-version", "1.2.3", str(EXAMPLES / "pyweb")]) == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["valid"] is True
    assert report["files"][0]["package"] == "pyweb 1.2.3-r0 (default, alpine/3.20, x86_64)"


def test_check_verbose_identity_error_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "-v", "--release", "x", str(EXAMPLES / "pyweb")]) == 3
    assert "--release='x' is not allowed" in capsys.readouterr().err


def test_version_flag() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"pakman {__version__}")


def test_every_command_has_help() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"check", "schema"} <= set(commands)
    for name, sub in commands.items():
        text = sub.format_help()
        assert sub.description, f"{name} has no description"
        assert "usage: pakman " + name in text


def test_no_command_prints_help_and_exits_2() -> None:
    result = run_cli()
    assert result.returncode == 2
    assert "usage: pakman" in result.stdout


def test_bad_usage_exits_2() -> None:
    assert run_cli("check", "--no-such-flag").returncode == 2


def test_invalid_file_in_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "instellar.yml").write_bytes(b"\x00\x01garbage")
    result = run_cli("check", str(tmp_path))
    assert result.returncode == 3
    assert "Traceback" not in result.stderr + result.stdout
    assert "NUL bytes" in result.stdout


def test_check_lints_hooks_and_needs_the_apps_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "pyweb"
    shutil.copytree(EXAMPLES / "pyweb", app)
    config = app / "instellar.yml"
    text = config.read_text()
    config.write_text(
        text.replace("    rc-service pyweb migrate\n", "    rc-service pyweb nonesuch\n")
    )
    site = tmp_path / "site"
    shutil.copytree(EXAMPLES / "static-site", site)
    (site / "nginx.conf").unlink()

    assert main(["check", str(app)]) == 0  # a warning leaves the file valid
    out = capsys.readouterr().out
    assert f"{config}:" in out and "`rc-service pyweb nonesuch`" in out
    assert "2 warnings" in out  # post-install and post-upgrade both call it

    assert main(["check", str(site)]) == 3
    out = capsys.readouterr().out
    line = 1 + (site / "instellar.yml").read_text().splitlines().index("type: static")
    assert f"{site / 'instellar.yml'}:{line}:7: type: `type: static` installs" in out
    assert "nginx.conf does not exist" in out
    assert "0 valid, 1 invalid" in out


def test_a_reader_that_goes_away_ends_the_command_quietly() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman", "schema"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `pakman schema | head -1` once head is done
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141
    assert err == ""


def test_a_damaged_workspace_is_one_line_naming_the_path(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "greet", tmp_path / "greet")
    (tmp_path / ".pakman").write_text("not a folder")
    result = run_cli("build", "greet", "--offline", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("pakman: ") and "Not a directory" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["build", "-j", "0"],
        ["gc", "--max-age", "-1"],
        ["gc", "--max-age", "nan"],
        ["keygen", "-b", "512"],
    ],
)
def test_out_of_range_options_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["inf", "-1", "lots"])
def test_gc_refuses_sizes_that_are_not_sizes(
    size: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["gc", "--max-size", size]) == 3
    assert "use a size such as 500M" in capsys.readouterr().err


def test_the_command_ends_with_all_its_output_written() -> None:
    """`python -m pakman` ends with os._exit (see cli.run): what it printed must all be there."""
    env = subprocess_env()
    env.pop("PYTHONUNBUFFERED", None)  # output to a pipe is buffered, as by default
    result = subprocess.run(
        [sys.executable, "-m", "pakman", "check", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok") == len(list(EXAMPLES.glob("*/instellar.yml")))
    assert result.stdout.rstrip().endswith("(0 errors, 0 warnings)")


def test_repository_root_builds_only_the_examples() -> None:
    # The repository's .pakmanignore leaves the test fixtures (tests/errors/ holds
    # invalid apps on purpose) out of `pakman build` run at its root.
    from pakman.workspace.discovery import find_configs

    found = find_configs([ROOT], skip_ignored=True)
    assert found
    assert {config.relative_to(ROOT).parts[0] for config in found} == {"examples"}


@pytest.mark.parametrize("command", ["check", "build", "graph", "run-step", "explain", "render"])
def test_every_command_takes_the_apps_path_the_same_way(command: str) -> None:
    parser = build_parser()
    step = ["app:build:x86_64"] if command == "run-step" else []
    given = parser.parse_args([command, *step, "-p", "one"])
    default = parser.parse_args([command, *step])
    if command == "render":
        assert (given.path, default.path) == ("one", ".")
        return
    assert (given.paths, default.paths) == (["one"], ["."])
    if command != "explain":
        both = parser.parse_args([command, *step, "one", "three", "--path", "two"])
        assert both.paths == ["one", "three", "two"]


def test_render_takes_one_app(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["render", "one", "-p", "two"])
    assert exit_.value.code == 2
    assert "render takes one app" in capsys.readouterr().err


def _commands() -> tuple[dict[str, argparse.ArgumentParser], dict[str, str | None]]:
    """Each command's parser, and its line in `pakman --help`."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(commands.choices), {a.dest: a.help for a in commands._choices_actions}


@pytest.mark.parametrize("name", sorted(_commands()[0]))
def test_every_command_says_what_it_does(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    parsers, listed = _commands()
    command = parsers[name]
    assert command.description and len(command.description) > 40
    assert listed[name]
    undocumented = [a.dest for a in command._actions if not a.help]
    assert undocumented == []
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert " ".join(command.description.split()[:8]) in help_text


def test_run_step_help_says_it_runs_whatever_the_state_or_restores() -> None:
    description = " ".join((_commands()[0]["run-step"].description or "").split())
    assert "whatever its state" in description
    assert "restores" in description and "store" in description
