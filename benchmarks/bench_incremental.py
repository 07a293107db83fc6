"""Incremental builds at monorepo scale: pakman build, plain doit and ninja on one graph.

For N apps (default 1, 50 and 200), each with ~200 source files and a trivial
build command, this generates a monorepo, builds it once, then measures in
one run, with the median of several repetitions:

- the no-op build (nothing changed) with `pakman build`, with plain `doit`
  (the one-line dodo.py) and with `ninja` on the `build.ninja` that
  `pakman graph --format ninja` exports for the same graph;
- the one-file change (one source file of one app edited), which must run
  exactly the minimal steps: that app's build, collect and package, and the
  repository's index and sign; its cost is compared with the same change
  built in a workspace holding only that app (the same steps, run alone;
  one such workspace per app changed, so that its files are as cold as in
  the monorepo), whose builds alternate with pakman's so that both see the
  machine alike; the ratio against app000 alone, changed every time (warm),
  is printed too;
- both again with `pakman watch` running in pakman's workspace ("pakman
  watch" rows), where a build checks only the apps the watcher names.

    python benchmarks/bench_incremental.py [--apps 1,50,200] [--repeat 5]

Targets (issue 6): the no-op build of 200 apps within 3x of ninja's no-op on
the same graph and under 1 s; the one-file change at no more than 1.2x the
cost of running those steps alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = ROOT  # where the measured pakman is imported from (a compiled copy, see main)
FILES_PER_APP = 200
MINIMAL = {"build", "collect", "package", "index", "sign"}


def environment() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH", "")
    # on the host, as ninja's commands (`pakman watch` and plain doit read the variable)
    return {
        **os.environ,
        "PAKMAN_BUILD_ON": "host",
        "PYTHONPATH": f"{CODE}:{path}" if path else str(CODE),
    }


def make_monorepo(root: Path, apps: int) -> None:
    """N apps of ~200 small source files each, with a trivial build command."""
    for i in range(apps):
        name = f"app{i:03d}"
        app = root / "apps" / name
        for module in range(10):
            folder = app / "src" / f"mod{module}"
            folder.mkdir(parents=True)
            for number in range(FILES_PER_APP // 10):
                (folder / f"file{number}.py").write_text(
                    f"# {name} module {module} file {number}\n" + "VALUE = 1\n" * 20
                )
        (app / "instellar.yml").write_text(
            f"""dependencies:
  runtime: [python3, {name}-openrc]
stack: alpine/3.20
build:
  command: |
    mkdir -p bin && printf '#!/bin/sh\\necho hi\\n' > bin/{name} && chmod 755 bin/{name}
  destinations: [bin, src]
run:
  name: {name}
  services:
    - name: web
      binary: {name}
      start:
        call: serve
hook:
  post-install: |
    rc-update add {name}
"""
        )


def run(command: Sequence[str], cwd: Path, **env: str) -> tuple[float, str]:
    """Run a command; its wall time and standard output (failing loudly)."""
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=cwd, env={**environment(), **env}, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed in {cwd}:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def pakman(workspace: Path, key: Path, *extra: str) -> list[str]:
    # --build-on host: ninja runs the same commands on the host, so pakman does too
    # (the default, --build-on alpine, would build each app in a sandbox on a root)
    return [
        sys.executable,
        "-m",
        "pakman",
        *extra,
        "apps",
        "--offline",
        "--build-on",
        "host",
        "--key",
        str(key),
    ]


def ran_steps(json_lines: str) -> set[str]:
    events = [json.loads(line) for line in json_lines.splitlines() if line.startswith("{")]
    return {e["step"] for e in events if e["event"] == "success"}


def median(values: list[float]) -> float:
    return statistics.median(values)


def edit(workspace: Path, app: str, counter: int) -> None:
    path = workspace / "apps" / app / "src" / "mod3" / "file4.py"
    with path.open("a") as handle:
        handle.write(f"EDIT_{counter} = {counter}\n")


@contextlib.contextmanager
def watcher(workspace: Path) -> Iterator[None]:
    """`pakman watch` running in the workspace (until the block ends)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pakman", "watch"],
        cwd=workspace,
        env=environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # it says so once it watches
        if "watching" not in line:
            raise SystemExit(f"pakman watch did not start: {line}")
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


def measure(apps: int, repeat: int, base: Path, key: Path) -> dict[str, float]:
    source = base / f"source-{apps}"
    make_monorepo(source, apps)
    spaces = {name: base / f"{name}-{apps}" for name in ("pakman", "doit", "ninja")}
    for space in spaces.values():
        shutil.copytree(source, space)
    (spaces["doit"] / "dodo.py").write_text("from pakman.dodo import *  # noqa: F403\n")
    doit_env = {
        "PAKMAN_PATH": "apps",
        "PAKMAN_OFFLINE": "1",
        "PAKMAN_BUILD_ON": "host",
        "PAKMAN_KEY": str(key),
    }

    figures: dict[str, float] = {}
    figures["full pakman"], _ = run(
        pakman(spaces["pakman"], key, "build", "-j", "2"), spaces["pakman"]
    )
    figures["full doit"], _ = run(
        [sys.executable, "-m", "doit", "-n", "2"], spaces["doit"], **doit_env
    )
    # ninja's workspace is built by pakman, then ninja takes over its graph
    run(pakman(spaces["ninja"], key, "build", "-j", "2"), spaces["ninja"])
    command = f"{sys.executable} -m pakman"
    run(
        pakman(
            spaces["ninja"],
            key,
            "graph",
            "--format",
            "ninja",
            "-o",
            "build.ninja",
            "--command",
            command,
        ),
        spaces["ninja"],
    )

    tools: dict[str, Callable[[], list[str]]] = {
        "pakman": lambda: pakman(spaces["pakman"], key, "build"),
        "doit": lambda: [sys.executable, "-m", "doit"],
        "ninja": lambda: ["ninja"],
    }
    extra_env = {"pakman": {}, "doit": doit_env, "ninja": {}}
    for tool, command_for in tools.items():
        run(command_for(), spaces[tool], **extra_env[tool])  # settle (first run after export)
        times = [run(command_for(), spaces[tool], **extra_env[tool])[0] for _ in range(repeat)]
        figures[f"no-op {tool}"] = median(times)

    # The same change, its steps run alone: a workspace holding only that app,
    # one per app the change visits, so that its files have sat as long as in
    # the monorepo (a file the page cache no longer holds is read from disk:
    # only the app built last is warm). Its builds alternate with pakman's
    # own, so that both see the machine in the same state (a shared machine
    # drifts: writeback, other jobs). For comparison with earlier figures,
    # also the same change always in app000, built alone (warm every time).
    visited = sorted({f"app{(i * 7) % apps:03d}" for i in range(repeat)})
    alone: dict[str, Path] = {}
    for app in [*visited, "warm"]:
        alone[app] = base / f"alone-{apps}" / app
        copied = "app000" if app == "warm" else app
        (alone[app] / "apps").mkdir(parents=True)
        shutil.copytree(source / "apps" / copied, alone[app] / "apps" / copied)
        run(pakman(alone[app], key, "build"), alone[app])

    # One file of one app changes; the app differs every time.
    counter = 0
    alone_samples: dict[str, list[float]] = {"same": [], "warm": []}

    def one_file(tool: str, row: str, *, beside_alone: bool = False) -> None:
        nonlocal counter
        times: list[float] = []
        alone_times: dict[str, list[float]] = {"same": [], "warm": []}
        for i in range(repeat):
            counter += 1
            app = f"app{(i * 7) % apps:03d}"
            edit(spaces[tool], app, counter)
            seconds, _ = run(tools[tool](), spaces[tool], **extra_env[tool])
            times.append(seconds)
            if tool == "pakman":
                steps = ran_steps(
                    run(pakman(spaces[tool], key, "build", "--json"), spaces[tool])[1]
                )
                assert steps == set(), f"a second build after the change ran {steps}"
            if beside_alone:
                for kind, space, edited in (
                    ("same", alone[app], app),
                    ("warm", alone["warm"], "app000"),
                ):
                    edit(space, edited, counter)
                    alone_times[kind].append(run(pakman(space, key, "build"), space)[0])
        figures[f"one-file {row}"] = median(times)
        if beside_alone:
            for kind, samples in alone_times.items():
                figures[f"one-file alone {kind}, beside {row}"] = median(samples)
                alone_samples[kind].extend(samples)

    for tool in tools:
        one_file(tool, tool, beside_alone=tool == "pakman")

    # Again with the watcher, in pakman's workspace.
    with watcher(spaces["pakman"]):
        run(tools["pakman"](), spaces["pakman"])  # settle: the first build checks everything
        times = [run(tools["pakman"](), spaces["pakman"])[0] for _ in range(repeat)]
        figures["no-op pakman watch"] = median(times)
        one_file("pakman", "pakman watch", beside_alone=True)
        counter += 1
        edit(spaces["pakman"], "app000", counter)
        _, out = run(pakman(spaces["pakman"], key, "build", "--json"), spaces["pakman"])
        steps = ran_steps(out)
        minimal_watch = {s.split(":")[1] for s in steps} == MINIMAL and len(steps) == 5
    figures["one-file alone"] = median(alone_samples["same"])
    figures["one-file alone, app000"] = median(alone_samples["warm"])

    # The minimal steps, exactly: checked with the JSON events.
    counter += 1
    edit(spaces["pakman"], "app000", counter)
    _, out = run(pakman(spaces["pakman"], key, "build", "--json"), spaces["pakman"])
    steps = ran_steps(out)
    stages = {s.split(":")[1] for s in steps}
    figures["minimal steps"] = float(stages == MINIMAL and len(steps) == 5 and minimal_watch)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--apps", default="1,50,200", help="comma-separated app counts")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions per figure (median)")
    args = parser.parse_args()
    counts = [int(n) for n in args.apps.split(",")]
    if shutil.which("ninja") is None:
        raise SystemExit("ninja is needed (pip install ninja)")
    with tempfile.TemporaryDirectory(prefix="pakman-bench-") as tmp:
        base = Path(tmp)
        # pakman runs as an installed copy does, from compiled bytecode (pip
        # compiles it at install time), even where PYTHONDONTWRITEBYTECODE is set.
        global CODE
        CODE = base / "code"
        for folder in ("pakman", "pipelines"):
            shutil.copytree(ROOT / folder, CODE / folder, ignore=shutil.ignore_patterns("*.pyc"))
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(CODE)], check=True)
        sys.path.insert(0, str(CODE))
        from pakman.apk import generate_key

        key, _ = generate_key(base, "bench", bits=2048)
        results = {n: measure(n, args.repeat, base, key) for n in counts}

    rows = [
        "full pakman",
        "full doit",
        "no-op pakman",
        "no-op doit",
        "no-op ninja",
        "no-op pakman watch",
        "one-file pakman",
        "one-file doit",
        "one-file ninja",
        "one-file pakman watch",
        "one-file alone",
        "one-file alone, app000",
    ]
    print(f"median of {args.repeat} runs, seconds; {FILES_PER_APP} source files per app")
    print(f"{'':22}" + "".join(f"{n:>10} apps" for n in counts))
    for row in rows:
        print(f"{row:22}" + "".join(f"{results[n][row]:15.3f}" for n in counts))
    print()
    for n in counts:
        r = results[n]
        for mode in ("pakman", "pakman watch"):
            noop_ratio = r[f"no-op {mode}"] / r["no-op ninja"]
            beside = r[f"one-file alone same, beside {mode}"]
            warm = r[f"one-file alone warm, beside {mode}"]
            change = r[f"one-file {mode}"]
            print(
                f"{n} apps, {mode}: no-op / ninja's {noop_ratio:.2f}x (target <= 3x), "
                f"no-op {r[f'no-op {mode}']:.3f}s (target < 1s), "
                f"one-file change / its steps alone {change / beside:.2f}x (target <= 1.2x; "
                f"the same app alone {beside:.3f}s in the builds alternating with these; "
                f"against app000 alone each time, warm: {change / warm:.2f}x, {warm:.3f}s)"
            )
        print(f"{n} apps: exactly the minimal steps: {'yes' if r['minimal steps'] else 'NO'}")


if __name__ == "__main__":
    main()
