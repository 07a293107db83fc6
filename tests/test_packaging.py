"""The wheel ships pakman/, the top-level pipelines/ and the templates, and works in a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support import EXAMPLES, ROOT


def files_under(folder: Path) -> set[str]:
    return {
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
    )
    (found,) = out.glob("pakman-*.whl")
    return found


def test_wheel_contents(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for source in files_under(ROOT / "pakman"):
        assert f"pakman/{source}" in names
    pipelines = files_under(ROOT / "pipelines")
    assert pipelines
    for source in pipelines:
        assert f"pakman/pipelines/{source}" in names
    assert not any(n.startswith(("tests/", "examples/", "pipelines/")) for n in names)


def test_the_wheel_ships_the_py_typed_marker(wheel: Path) -> None:
    # PEP 561: without pakman/py.typed, mypy ignores pakman's annotations in code that imports it
    assert "pakman/py.typed" in zipfile.ZipFile(wheel).namelist()


def test_fresh_venv_install_and_check(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True)
    listing = subprocess.run(
        [str(venv / "bin" / "pip"), "show", "-f", "pakman"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pakman/pipelines/README.md" in listing
    assert "pakman/cli/__init__.py" in listing
    result = subprocess.run(
        [str(venv / "bin" / "pakman"), "check", str(EXAMPLES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 invalid" in result.stdout
