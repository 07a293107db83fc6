"""Benchmark: making a build root, and running a command in it, against their floors.

    python3 benchmarks/bench_root.py [--packages N] [--files N] [--size-mb N] [--runs N]
                                     [--commands N] [--keep]

Setup (not timed): a closure of `--packages` .apk files written with pakman's
writer and a throw-away key: Debian's static busybox as `busybox` (with
Alpine's post-install and trigger, `busybox --install -s`, so a script runs
under bubblewrap as in a real root) and synthetic packages sharing
`--files` files (source-like text and some binary bytes, `--size-mb` in all,
with folders and symlinks).

1. Making a root: `install_root` of the closure into a new folder, against
   the floor `tar -xzf <pkg>.apk -C <folder>` of the same files in one shell
   loop. Alternated `--runs` times; medians. Target: within 1.5x.
2. Reusing a root (of the closure above; at least 10,000 files by default):
   `Sandbox.run(["/bin/true"])` against the same command run directly by
   `bwrap` with the same mounts, alternated `--commands` times; the median
   overhead. Target: under 20 ms.

Needs bubblewrap and busybox-static.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pakman.apk import PackageInfo, SigningKey, generate_key, write_package  # noqa: E402
from pakman.sandbox import RootSpec, Sandbox, install_root  # noqa: E402
from pakman.sandbox.bwrap import check_bwrap  # noqa: E402

EPOCH = 1_700_000_000
MB = 1_000_000
_WORDS = [
    "static",
    "inline",
    "return",
    "struct",
    "const",
    "void",
    "int",
    "char",
    "unsigned",
    "include",
    "define",
    "if",
    "else",
]


def _text(rng: random.Random, size: int) -> bytes:
    words = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words).encode()[:size]


def make_closure(folder: Path, packages: int, files: int, size_mb: float) -> list[Path]:
    """Write the closure's .apk files into `folder`; returns them in install order."""
    rng = random.Random(15)
    private, public = generate_key(folder / "key", "bench", bits=2048, now=0x6B000000)
    key = SigningKey.from_file(private, public_path=public)
    out = folder / "apk"
    trees = folder / "trees"
    made = []
    busybox = shutil.which("busybox")
    if busybox is None:
        raise SystemExit("busybox not found: install busybox-static")
    tree = trees / "busybox"
    (tree / "bin").mkdir(parents=True)
    shutil.copyfile(busybox, tree / "bin/busybox")
    (tree / "bin/busybox").chmod(0o755)
    (tree / "bin/sh").symlink_to("busybox")
    for folder_name in ("usr/bin", "sbin", "usr/sbin", "proc", "dev", "tmp"):
        (tree / folder_name).mkdir(parents=True)
    script = "#!/bin/busybox sh\n/bin/busybox --install -s || exit 1\n"
    info = PackageInfo(
        "busybox",
        "1.36.1",
        "x86_64",
        install_scripts={"post-install": script, "trigger": script},
        triggers=("/bin", "/usr/bin", "/sbin", "/usr/sbin"),
        builddate=EPOCH,
    )
    made.append(write_package(tree, info, out, key))
    per_package = max(1, files // max(1, packages - 1))
    average = size_mb * MB / max(1, files)
    for number in range(packages - 1):
        name = f"lib{number:02d}"
        tree = trees / name
        for index in range(per_package):
            folder_path = tree / "usr" / ("lib" if index % 3 else "share") / name / f"d{index % 17}"
            folder_path.mkdir(parents=True, exist_ok=True)
            size = int(rng.expovariate(1 / average))
            path = folder_path / f"f{index}.{'so' if index % 5 == 0 else 'h'}"
            if index % 5 == 0:
                path.write_bytes(rng.randbytes(size // 2) + _text(rng, size - size // 2))
            else:
                path.write_bytes(_text(rng, size))
            if index % 50 == 0:
                (folder_path / f"link{index}").symlink_to(path.name)
        info = PackageInfo(name, "1.0", "x86_64", builddate=EPOCH)
        made.append(write_package(tree, info, out, key))
    shutil.rmtree(trees)
    return made


def _clear(path: Path) -> None:
    if path.exists():
        subprocess.run(["rm", "-rf", "--", path], check=True)


def time_roots(closure: list[Path], work: Path, runs: int) -> tuple[list[float], list[float], int]:
    """Seconds of each install_root and tar loop (alternated), and the files in a root."""
    ours, floor = [], []
    loop = 'for f in "$@"; do tar -xzf "$f" -C "$TARGET" 2>/dev/null || exit 1; done'
    files = 0
    for _ in range(runs):
        target = work / "root"
        _clear(target)
        start = time.perf_counter()
        install_root(target, RootSpec(tuple(closure), "x86_64"))
        ours.append(time.perf_counter() - start)
        files = sum(len(f) + len(d) for _, d, f in os.walk(target))
        _clear(target)
        target.mkdir()
        start = time.perf_counter()
        subprocess.run(
            ["sh", "-c", loop, "sh", *closure],
            env={**os.environ, "TARGET": str(target)},
            check=True,
        )
        floor.append(time.perf_counter() - start)
    return ours, floor, files


def time_reuse(root: Path, commands: int) -> tuple[float, float]:
    """Median seconds of Sandbox.run and of bwrap run directly, same command and mounts."""
    build = root.parent / "build"
    build.mkdir(exist_ok=True)
    sandbox = Sandbox(root, arch="x86_64", build_dir=build)
    check_bwrap()  # the once-per-process probe, timed separately
    direct_argv = sandbox.argv(["/bin/true"], bwrap=shutil.which("bwrap"))
    env = sandbox.environment()
    ours, direct = [], []
    for _ in range(commands):
        start = time.perf_counter()
        status = sandbox.run(["/bin/true"])
        ours.append(time.perf_counter() - start)
        assert status == 0
        start = time.perf_counter()
        subprocess.run(direct_argv, env=env, stdin=subprocess.DEVNULL, check=True)
        direct.append(time.perf_counter() - start)
    return statistics.median(ours), statistics.median(direct)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--packages", type=int, default=30)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size-mb", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--commands", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    check_bwrap()
    work = Path(tempfile.mkdtemp(prefix="bench-root-"))
    try:
        closure = make_closure(work, args.packages, args.files, args.size_mb)
        size = sum(p.stat().st_size for p in closure) / MB
        print(f"closure: {len(closure)} packages, {size:.1f} MB of .apk files")
        ours_runs, floor_runs, files = time_roots(closure, work, args.runs)
        ours, floor = statistics.median(ours_runs), statistics.median(floor_runs)
        print(f"root: {files} files and folders")
        print(f"  pakman install_root: {ours * 1000:8.1f} ms (median of {args.runs})")
        print(f"  tar -xzf, each file: {floor * 1000:8.1f} ms (the floor)")
        ratio = ours / floor
        verdict = "ok" if ratio <= 1.5 else "over"
        print(f"  ratio to the floor: {ratio:.2f}x (target <= 1.5x: {verdict})")
        # on a busy machine the fastest runs say more than the medians
        print(f"  ratio of the fastest runs: {min(ours_runs) / min(floor_runs):.2f}x")
        root = work / "kept" / "root"
        install_root(root, RootSpec(tuple(closure), "x86_64"))
        start = time.perf_counter()
        check_bwrap.cache_clear()
        check_bwrap()
        probe = time.perf_counter() - start
        ours_run, direct_run = time_reuse(root, args.commands)
        overhead = (ours_run - direct_run) * 1000
        print(f"reuse: a command in a root of {files} files")
        print(f"  Sandbox.run:   {ours_run * 1000:7.2f} ms (median of {args.commands})")
        print(f"  bwrap direct:  {direct_run * 1000:7.2f} ms")
        verdict = "ok" if overhead < 20 else "over"
        print(f"  overhead: {overhead:.2f} ms (target < 20 ms: {verdict})")
        print(f"  bwrap probe, once per process: {probe * 1000:.2f} ms")
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            _clear(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
