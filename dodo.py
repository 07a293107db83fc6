"""Tasks for this repository, run with plain `doit`: check every example."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any


def task_check_examples() -> Iterator[dict[str, Any]]:
    """Validate each example's instellar.yml."""
    for config in sorted(Path("examples").glob("*/instellar.yml")):
        yield {
            "name": config.parent.name,
            "actions": [f"python -m pakman check -q {config}"],
            "file_dep": [str(config)],
            "verbosity": 2,
        }
