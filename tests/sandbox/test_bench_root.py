"""A smoke run of the root benchmark on a tiny closure (the real one is run by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_root.py"
ARGS = ("--packages", "3", "--files", "40", "--size-mb", "0.2", "--runs", "1", "--commands", "2")


def test_benchmark_runs_and_prints_its_ratios() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), *ARGS],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "closure: 3 packages" in result.stdout
    assert "ratio to the floor:" in result.stdout and "overhead:" in result.stdout
