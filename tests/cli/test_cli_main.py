"""pakman.cli: one module per command, and only the running command's module imported."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from pakman.cli import COMMANDS, build_parser


def _command_modules_after(code: str) -> list[str]:
    """The pakman.cli.<command> modules loaded by `code` run in a fresh interpreter."""
    script = f"""
import contextlib, io, sys
from pakman.cli import COMMANDS, main
with contextlib.redirect_stdout(io.StringIO()):
    {code}
print(" ".join(m for m, _ in COMMANDS.values() if "pakman.cli." + m in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_a_command_imports_only_its_own_module() -> None:
    assert _command_modules_after('main(["schema"])') == ["schema"]


def test_the_help_lists_every_command_without_importing_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = 'with contextlib.suppress(SystemExit): main(["--help"])'
    assert _command_modules_after(script) == []
    with pytest.raises(SystemExit):
        build_parser("schema").parse_args(["--help"])
    listed = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert f"    {name}" in listed and summary.split()[0] in listed


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_is_one_module_that_declares_and_runs_it(name: str) -> None:
    module = importlib.import_module(f"pakman.cli.{COMMANDS[name][0]}")
    required = {
        "run-step": ["app:build:x86_64"],
        "index": ["repo/x86_64"],
        "verify": ["a.apk"],
        "sbom": ["a.apk"],
        "publish": ["s3://bucket"],
    }
    args = build_parser(name).parse_args([name, *required.get(name, [])])
    assert args.handler is module.run


@pytest.mark.parametrize(
    "args", [["--help"], ["publish", "--help"], ["verify", "--help"], ["check", "--help"]]
)
def test_boto3_is_not_imported_until_something_is_uploaded(args: list[str]) -> None:
    """boto3 and botocore take a noticeable time to import: only uploads pay it."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pakman", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "pakman.cli" in imported  # the listing is the one wanted
    assert not {m for m in imported if m.split(".")[0] in ("boto3", "botocore", "s3transfer")}
