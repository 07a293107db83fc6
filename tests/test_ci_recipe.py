"""The CI recipe (examples/ci/pakman.yml, docs/ci.md): its structure, every `pakman`
command line in it against pakman's own parser, and its scripts through shellcheck."""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pakman.cli import COMMANDS, build_parser
from pakman.compile.options import variables
from support import ROOT

WORKFLOW = ROOT / "examples" / "ci" / "pakman.yml"

# What the recipe uses that other branches add. Once merged, an item is parsed
# like the rest (only an unknown command or option is let through): shrink the
# lists then.
PENDING_COMMANDS: dict[str, str] = {}
PENDING_OPTIONS: dict[tuple[str, str], str] = {}
PENDING_VARIABLES: dict[str, str] = {}
# What the workflow's own variables stand for when its command lines are parsed.
SAMPLE = {"SHARD": "2", "SHARDS": "3", "BUCKET": "s3://bucket/prefix", "keys": "/tmp/k"}


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    loaded = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(loaded, dict)
    return loaded


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in workflow["jobs"].items() for step in spec["steps"]]


def runs(workflow: dict[str, Any], job: str | None = None) -> list[str]:
    return [s["run"] for j, s in steps(workflow) if "run" in s and job in (None, j)]


def command_lines(script: str) -> list[list[str]]:
    """Each `pakman ...` line of a script (continuations joined), as its words."""
    lines = script.replace("\\\n", " ").splitlines()
    found = []
    for line in lines:
        words = shlex.split(line, comments=True)
        if words[:1] == ["pakman"]:
            # a redirection ends the command's own words
            cut = next((i for i, w in enumerate(words) if w[:1] in "<>"), len(words))
            found.append([re.sub(r"\$(\w+)", lambda m: SAMPLE[m[1]], w) for w in words[1:cut]])
    return found


def test_the_workflow_has_shards_a_shared_cache_and_a_final_publish(
    workflow: dict[str, Any],
) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as true
    assert set(triggers) == {"push", "pull_request"}
    env = workflow["env"]
    assert env["PAKMAN_REMOTE_CACHE"] == "${{ vars.PAKMAN_REMOTE_CACHE }}"
    assert "github.event_name == 'pull_request'" in env["PAKMAN_REMOTE_CACHE_READONLY"]
    shard, publish = workflow["jobs"]["shard"], workflow["jobs"]["publish"]
    matrix = shard["strategy"]["matrix"]["shard"]
    assert matrix == list(range(1, len(matrix) + 1)) and int(env["SHARDS"]) == len(matrix)
    assert publish["needs"] == "shard"
    # The shards build into the cache, the final job restores, verifies and pushes.
    assert [w[:2] for s in runs(workflow, "shard") for w in command_lines(s)] == [
        ["graph", "--format"],
        ["build", "--shard"],
    ]
    final = [w for s in runs(workflow, "publish") for w in command_lines(s)]
    assert [w[0] for w in final] == ["build", "verify", "push", "publish"]
    assert "--shard" not in final[0]
    for job, step in steps(workflow):
        if "pakman build" in step.get("run", ""):
            # the header and the key come from secrets, never from the file
            assert step["env"]["PAKMAN_REMOTE_CACHE_HEADER"].startswith("${{ secrets."), job
            assert step["env"]["ABUILD_PRIVATE_KEY"] == "${{ secrets.ABUILD_PRIVATE_KEY }}"
    pushing = {s["run"]: s for _, s in steps(workflow) if s.get("run", "").startswith("pakman p")}
    for run, step in pushing.items():
        assert step["if"].startswith("github.event_name == 'push'"), run
    push_env = pushing["pakman push"]["env"]
    assert push_env["WORKFLOW_SHA"] == "${{ github.sha }}"
    assert push_env["WORKFLOW_REF"] == "${{ github.ref }}"
    assert push_env["INSTELLAR_AUTH_TOKEN"] == "${{ secrets.INSTELLAR_AUTH_TOKEN }}"
    # Versions need the whole history and the tags in every job that builds.
    for job, spec in workflow["jobs"].items():
        checkout = next(
            s for s in spec["steps"] if s.get("uses", "").startswith("actions/checkout")
        )
        assert checkout["with"]["fetch-depth"] == 0, job


def test_no_alpine_chroot_bootstrap_or_abuild(workflow: dict[str, Any]) -> None:
    for job, step in steps(workflow):
        assert "upmaru/" not in step.get("uses", ""), job
        assert "shell" not in step, job  # no alpine.sh {0}
        words = set(re.findall(r"[\w.-]+", step.get("run", "")))
        assert not words & {"abuild", "bootstrap", "setup-alpine", "alpine.sh"}, job


def test_scripts_take_no_expressions(workflow: dict[str, Any]) -> None:
    """`${{ }}` in a script is pasted into it before the shell reads it: values go
    through `env:` (GitHub's advice against script injection)."""
    for script in runs(workflow):
        assert "${{" not in script


def test_every_pakman_command_line_parses(workflow: dict[str, Any]) -> None:
    pending: set[str] = set()
    parsed = 0
    for script in runs(workflow):
        for words in command_lines(script):
            command = words[0]
            if command not in COMMANDS:
                assert command in PENDING_COMMANDS, f"pakman {command}: no such command"
                pending.add(PENDING_COMMANDS[command])
                continue
            known = _option_strings(command)
            argv = [command]
            rest = iter(words[1:])
            for word in rest:
                flag = word.split("=", 1)[0]
                if (
                    flag.startswith("--")
                    and flag not in known
                    and (command, flag) in PENDING_OPTIONS
                ):
                    pending.add(PENDING_OPTIONS[(command, flag)])
                    if "=" not in word:
                        next(rest, None)  # its value
                    continue
                argv.append(word)
            error = io.StringIO()
            with contextlib.redirect_stderr(error), contextlib.suppress(SystemExit):
                build_parser(command).parse_args(argv)
                parsed += 1
                continue
            pytest.fail(f"pakman {shlex.join(words)}: {error.getvalue().strip()}")
    assert parsed >= 3
    print("pending from other branches:", sorted(pending))


def _option_strings(command: str) -> set[str]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices[command]._option_string_actions)


def test_variables_are_ones_pakman_reads(workflow: dict[str, Any]) -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "pakman").rglob("*.py"))
    named = set(workflow["env"])
    for _, step in steps(workflow):
        named |= set(step.get("env", {}))
    ours = {n for n in named if n.startswith(("PAKMAN_", "ABUILD_", "INSTELLAR_", "WORKFLOW_"))}
    # The option table's variables (PAKMAN_<OPTION>) are made from the options' names.
    table = set(variables())
    unknown = {n for n in ours - PENDING_VARIABLES.keys() - table if f'"{n}"' not in source}
    assert unknown == set()


def test_scripts_pass_shellcheck(workflow: dict[str, Any], tmp_path: Path) -> None:
    assert shutil.which("shellcheck"), "shellcheck is not installed (./scripts/test installs it)"
    for number, script in enumerate(runs(workflow)):
        path = tmp_path / f"step{number}.sh"
        path.write_text(script)  # GitHub runs them with `bash -e {0}`
        result = subprocess.run(
            ["shellcheck", "--shell=bash", "--severity=style", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, script + result.stdout


def test_docs_describe_the_recipe() -> None:
    text = (ROOT / "docs" / "ci.md").read_text()
    assert "examples/ci/pakman.yml" in text
    readme = (ROOT / "README.md").read_text()
    assert "(docs/ci.md)" in readme
