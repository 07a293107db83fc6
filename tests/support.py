"""Paths and helpers the tests share (imported as `support`; conftest.py holds fixtures)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
GOLDEN = Path(__file__).resolve().parent / "golden"


def updating_goldens(config: pytest.Config) -> bool:
    return (
        bool(config.getoption("--update-goldens")) or os.environ.get("PAKMAN_UPDATE_GOLDENS") == "1"
    )


def example_configs() -> list[Path]:
    return sorted(EXAMPLES.glob("*/instellar.yml"))
