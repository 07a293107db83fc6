"""A smoke run of the benchmark on a tiny tree (the real one is run by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_apk.py"


def test_benchmark_runs_and_prints_its_ratios() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH), "--size-mb", "0.5", "--files", "30", "--level", "5"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "speed-up:" in result.stdout and "size: data member" in result.stdout
    assert "reference: tar | gzip -9 -n, sha1" in result.stdout
