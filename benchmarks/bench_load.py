"""Load-and-validate benchmark: pakman vs bare `yaml.load` on the same 1,000 configs.

Generates N realistic instellar.yml files (services, commands, hooks, kits),
then times, in one run and alternating, (a) reading each file and parsing it
with PyYAML's fastest safe loader, and (b) `pakman.config.schema.load_app` on it
(read, parse with positions, validate, build the model). Prints the medians
of several rounds, the per-file times and the ratio.

    python benchmarks/bench_load.py [--files 1000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pakman.config.schema import load_app

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def make_config(rng: random.Random, i: int) -> str:
    name = f"app{i}"
    services = [
        {"name": f"svc{j}", "binary": name, "start": {"call": f"serve --port {3000 + j}"}}
        for j in range(rng.randint(1, 3))
    ]
    commands = [
        {
            "name": f"cmd{j}",
            "binary": name,
            "call": f"task run {j}",
            **({"path": "/usr/bin"} if j % 2 else {}),
        }
        for j in range(rng.randint(0, 4))
    ]
    data = {
        "dependencies": {
            "build": [f"pkg{rng.randint(0, 500)}" for _ in range(rng.randint(1, 8))]
            + ["nodejs>=20"],
            "runtime": ["bash", "curl", "jq", "s6", "ca-certificates", f"{name}-openrc"],
            "trace": rng.random() < 0.3,
        },
        "stack": f"alpine/3.{rng.randint(14, 22)}",
        "build": {
            "command": "npm ci\nnpm run build\n" * rng.randint(1, 3),
            "destinations": ["*", ".next", "public/*"][: rng.randint(1, 3)],
        },
        "run": {"name": name, "services": services, "commands": commands},
        "hook": {
            "post-install": f"rc-update add {name}\nrc-service {name} migrate\n",
            "pre-upgrade": f"rc-service {name} stop\n",
            "post-upgrade": f"rc-service {name} start\n",
        },
        "kits": [
            {
                "name": "web",
                "description": "web service",
                "main": True,
                "ports": [{"name": "web", "target": 3000, "main": True}],
                "variables": [
                    {"key": "APP_ENV", "default_value": "production"},
                    {"key": "SECRET", "driver": "generic/secret", "driver_options": {"length": 64}},
                ],
            }
        ],
    }
    return yaml.safe_dump(data, sort_keys=False)


def bare(paths: list[Path]) -> None:
    for path in paths:
        yaml.load(path.read_bytes(), Loader=LOADER)


def pakman(paths: list[Path]) -> None:
    for path in paths:
        load_app(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.files):
            path = Path(tmp) / f"app{i}" / "instellar.yml"
            path.parent.mkdir()
            path.write_text(make_config(rng, i))
            paths.append(path)
        size = sum(p.stat().st_size for p in paths) / len(paths)
        times: dict[str, list[float]] = {"bare yaml.load": [], "pakman load_app": []}
        pakman(paths[:50])  # warm imports and caches for both
        bare(paths[:50])
        for _ in range(args.rounds):
            for label, run in (("bare yaml.load", bare), ("pakman load_app", pakman)):
                start = time.perf_counter()
                run(paths)
                times[label].append(time.perf_counter() - start)
    print(
        f"{args.files} configs, {size:.0f} bytes each on average, loader {LOADER.__name__}, {args.rounds} rounds"
    )
    print(f"{'':18} {'total (median)':>15} {'per file':>10}")
    medians = {label: statistics.median(values) for label, values in times.items()}
    for label, value in medians.items():
        print(f"{label:18} {value * 1000:12.0f} ms {value / args.files * 1e6:7.0f} us")
    ratio = medians["pakman load_app"] / medians["bare yaml.load"]
    print(f"ratio pakman / bare yaml.load: {ratio:.2f}x (target < 2x; total target < 1 s)")


if __name__ == "__main__":
    main()
