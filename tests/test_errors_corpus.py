"""Golden error tests: a folder per bad input under tests/errors/ with the exact output.

A case is one of two kinds.

`pakman check` on one file: the folder holds `instellar.yml` (or it is
generated below when too big or too deep to commit), an optional `args` file
with extra `pakman check` options, and `expected.txt`: `# exit N` then
exactly what `pakman check` prints.

Any command in a workspace: the folder holds `command` (the pakman command
line, e.g. `build --offline`; `{key}` stands for a test signing key), an
optional `tree/` copied as the workspace, and an optional `setup.json`, a list
of steps the harness interprets (nothing in a case is ever executed):

- `{"env": {"NAME": "value"}}` sets environment variables for the command
- `{"mkdir": "path"}` makes a folder (and its parents)
- `{"write": "path", "text": "..."}` or `{"write": "path", "hex": "..."}`
- `{"symlink": "path", "to": "target"}` (`{ws}` in the target is the workspace)
- `{"fifo": "path"}` makes a FIFO (a named pipe), replacing a file there
- `{"deep": "path", "depth": N}`: N nested folders under path, a file at the bottom
- `{"run": "build --offline"}`: a pakman command run first (its output is not kept;
  `{key}` as in `command`)
- `{"overwrite": "glob", "hex": "..."}`: every file the glob matches gets these bytes

Paths are relative to the workspace (`{ws}` in a value is the workspace); a `\\udcXX` escape in a name stands for
the byte XX of a name that is not UTF-8. `expected.txt` holds `# exit N`,
standard output, then `# stderr` and standard error when there is any; the
workspace's path is written `<ws>` and durations `N.NNs`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pakman.cli import main
from support import changes_a_build

ERRORS = Path(__file__).resolve().parent / "errors"

GENERATED: dict[str, Callable[[], bytes]] = {
    "too-large": lambda: b"dependencies: {}\nbuild: {}\npadding: '" + b"x" * 10_000_000 + b"'\n",
    "deep-nesting": lambda: b"dependencies:\n" + b"- " * 300_000 + b"x\n",
}

CASES = sorted(p.name for p in ERRORS.iterdir() if p.is_dir())
# The exit codes the README lists: ok, a step failed, bad usage, invalid input.
EXIT_CODES = {0, 1, 2, 3}
_DURATION = re.compile(r"\b[0-9]+\.[0-9]+s\b")


def test_corpus_is_large_enough() -> None:
    invalid = [c for c in CASES if "exit 3" in (ERRORS / c / "expected.txt").read_text()]
    assert len(invalid) >= 30
    workspace_cases = [c for c in CASES if (ERRORS / c / "command").exists()]
    assert len(workspace_cases) >= 20


def _path(workspace: Path, name: str) -> Path:
    return workspace / os.fsdecode(name.encode("utf-8", "surrogateescape"))


def _setup(
    step: dict[str, Any], workspace: Path, monkeypatch: pytest.MonkeyPatch, key: Path
) -> None:
    if "env" in step:
        for name, value in step["env"].items():
            monkeypatch.setenv(name, value.replace("{ws}", str(workspace)))
    elif "mkdir" in step:
        _path(workspace, step["mkdir"]).mkdir(parents=True, exist_ok=True)
    elif "write" in step:
        target = _path(workspace, step["write"])
        target.parent.mkdir(parents=True, exist_ok=True)
        data = bytes.fromhex(step["hex"]) if "hex" in step else step["text"].encode()
        target.write_bytes(data)
    elif "symlink" in step:
        link = _path(workspace, step["symlink"])
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(step["to"].replace("{ws}", str(workspace)))
    elif "fifo" in step:
        fifo = _path(workspace, step["fifo"])
        fifo.unlink(missing_ok=True)
        os.mkfifo(fifo)
    elif "deep" in step:
        # os.makedirs would build the whole path at once, beyond PATH_MAX.
        fd = os.open(_path(workspace, step["deep"]), os.O_RDONLY)
        try:
            for _ in range(step["depth"]):
                os.mkdir("d", dir_fd=fd)
                inner = os.open("d", os.O_RDONLY, dir_fd=fd)
                os.close(fd)
                fd = inner
            with open(os.open("file", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
                f.write("deep\n")
        finally:
            os.close(fd)
    elif "run" in step:
        main(shlex.split(step["run"].replace("{key}", str(key))))
    elif "overwrite" in step:
        matches = [p for p in workspace.glob(step["overwrite"]) if p.is_file()]
        assert matches, f"setup: nothing matches {step['overwrite']}"
        for path in matches:
            path.write_bytes(bytes.fromhex(step["hex"]))
    else:
        raise AssertionError(f"setup: unknown step {step}")


@pytest.mark.parametrize("case", CASES)
def test_error_output(
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    golden: Callable[[Path, str], None],
    signing_key: Path,
) -> None:
    folder = ERRORS / case
    for name in list(os.environ):
        if changes_a_build(name):
            monkeypatch.delenv(name)
    if (folder / "command").exists():
        workspace = tmp_path / "ws"
        if (folder / "tree").exists():
            shutil.copytree(folder / "tree", workspace, symlinks=True)
        else:
            workspace.mkdir()
        monkeypatch.chdir(workspace)
        setup = folder / "setup.json"
        steps = json.loads(setup.read_text()) if setup.exists() else []
        for step in steps:
            _setup(step, workspace, monkeypatch, signing_key)
        capsys.readouterr()
        command = (folder / "command").read_text().strip().replace("{key}", str(signing_key))
        code = main(shlex.split(command))
        captured = capsys.readouterr()
        out, err = (
            _DURATION.sub("N.NNs", text.replace(str(workspace), "<ws>"))
            for text in (captured.out, captured.err)
        )
        text = f"# exit {code}\n{out}" + (f"# stderr\n{err}" if err else "")
        for step in steps:
            if "deep" in step:  # pytest's own clean-up would hit the recursion limit
                _remove_deep(_path(workspace, step["deep"]))
    else:
        target = tmp_path / "instellar.yml"
        if case in GENERATED:
            target.write_bytes(GENERATED[case]())
        else:
            shutil.copyfile(folder / "instellar.yml", target)
        args = (folder / "args").read_text().split() if (folder / "args").exists() else []
        monkeypatch.chdir(tmp_path)
        code = main(["check", *args, "instellar.yml"])
        captured = capsys.readouterr()
        text = f"# exit {code}\n{captured.out}"
    assert "Traceback" not in captured.out + captured.err
    assert code in EXIT_CODES
    golden(folder / "expected.txt", text)


def _remove_deep(top: Path) -> None:
    """Delete a tree bottom-up without recursion (shutil.rmtree recurses per folder)."""
    stack = [str(top)]
    while stack:
        with os.scandir(stack[-1]) as listing:
            entries = list(listing)
        deeper = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        if deeper:
            stack.extend(deeper)
            continue
        for entry in entries:
            os.unlink(entry.path)
        os.rmdir(stack.pop())
