"""Golden error tests: a folder per bad input under tests/errors/ with the exact output.

Each folder holds `instellar.yml` (or is generated below when too big or too
deep to commit), an optional `args` file with extra `pakman check` options,
and `expected.txt`: `# exit N` then exactly what `pakman check` prints.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pakman.cli import main

ERRORS = Path(__file__).resolve().parent / "errors"

GENERATED: dict[str, Callable[[], bytes]] = {
    "too-large": lambda: b"dependencies: {}\nbuild: {}\npadding: '" + b"x" * 10_000_000 + b"'\n",
    "deep-nesting": lambda: b"dependencies:\n" + b"- " * 300_000 + b"x\n",
}

CASES = sorted(p.name for p in ERRORS.iterdir() if p.is_dir())


def test_corpus_is_large_enough() -> None:
    invalid = [c for c in CASES if "exit 3" in (ERRORS / c / "expected.txt").read_text()]
    assert len(invalid) >= 30


@pytest.mark.parametrize("case", CASES)
def test_error_output(
    case: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    golden: Callable[[Path, str], None],
) -> None:
    folder = ERRORS / case
    target = tmp_path / "instellar.yml"
    if case in GENERATED:
        target.write_bytes(GENERATED[case]())
    else:
        shutil.copyfile(folder / "instellar.yml", target)
    args = (folder / "args").read_text().split() if (folder / "args").exists() else []
    monkeypatch.chdir(tmp_path)
    code = main(["check", *args, "instellar.yml"])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    golden(folder / "expected.txt", f"# exit {code}\n{captured.out}")
