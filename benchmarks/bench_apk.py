"""Benchmark: pakman's package writer against the pipeline abuild runs, on the same tree.

    python3 benchmarks/bench_apk.py [--size-mb N] [--files N] [--level L] [--threads T]
                                    [--compare-levels] [--keep]

Generates a tree in a temporary folder: `--files` small source-like text
files plus `--size-mb` of large files (60% compressible text, 40% random
bytes). Then, one after the other:

- reference: abuild's data pipeline, `find | LC_ALL=C sort -z | tar
  --format=posix ... | gzip -n -9`, with a SHA-1 of every file (`sha1sum`,
  standing in for abuild-tar) running beside it as abuild-tar does;
- pakman: `write_package` (a complete signed package) in a fresh Python process.

Both read the tree from the page cache. Prints wall time, throughput, CPU
time, peak memory (max RSS of the process tree) and output size, then the
ratios against the targets (at least 5x faster, at most 3% larger).
`--compare-levels` also times each deflate engine and level on the same tar
stream (parallel blocks, all threads).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Kept in step with pakman.apk.gzipper; this process imports nothing heavy before it has
# measured, because a child's peak RSS starts at its parent's size when forked.
DEFAULT_LEVEL = 5

EPOCH = 1_700_000_000
MB = 1_000_000
_WORDS = (
    "self",
    "return",
    "if",
    "else",
    "for",
    "while",
    "def",
    "class",
    "import",
    "from",
    "with",
    "as",
    "try",
    "except",
    "raise",
    "None",
    "True",
    "False",
    "and",
    "or",
    "not",
    "in",
    "is",
    "lambda",
    "yield",
    "async",
    "await",
    "value",
    "result",
    "items",
    "data",
    "config",
    "path",
    "name",
    "index",
    "count",
    "total",
    "buffer",
    "stream",
    "request",
    "response",
    "handler",
    "server",
    "client",
    "session",
    "user",
    "token",
    "error",
    "message",
    "status",
    "code",
    "length",
    "offset",
    "header",
    "payload",
    "record",
    "entry",
    "table",
    "column",
    "row",
    "key",
    "cache",
    "store",
    "load",
    "save",
    "read",
    "write",
    "open",
    "close",
    "start",
    "stop",
    "update",
    "delete",
    "create",
    "parse",
    "format",
)


def text_corpus(size: int, seed: int) -> bytes:
    """Source-like text: indented lines of words (Zipf-like), names and numbers."""
    rng = random.Random(seed)
    names = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(4, 12)))
        for _ in range(3000)
    ]
    vocabulary = [*_WORDS, *names]
    cumulative = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(vocabulary))))
    lines = []
    total = 0
    while total < size:
        words = rng.choices(vocabulary, cum_weights=cumulative, k=rng.randint(2, 12))
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 100000)))
        line = (
            "    " * rng.randint(0, 4) + " ".join(words) + rng.choice(("", ":", "()", ",")) + "\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def generate_tree(root: str | Path, files: int, size_mb: float, seed: int = 4) -> tuple[int, int]:
    """Write the benchmark tree; returns (entries, bytes)."""
    root = Path(root)
    rng = random.Random(seed)
    corpus = text_corpus(4 << 20, seed)
    total = 0
    entries = 0
    folders = max(1, files // 100)
    for number in range(files):
        folder = root / "var/lib/bench/src" / f"pkg{number % folders:03d}" / f"mod{number % 7}"
        if not folder.is_dir():
            folder.mkdir(parents=True)
        size = int(rng.lognormvariate(7.5, 1.0)) % 64_000 + 50
        start = rng.randrange(0, len(corpus) - size)
        (folder / f"file{number:05d}.py").write_bytes(corpus[start : start + size])
        total += size
        entries += 1
    large = root / "var/lib/bench/data"
    large.mkdir(parents=True, exist_ok=True)
    text_bytes = int(size_mb * MB * 0.6)
    random_bytes = int(size_mb * MB) - text_bytes
    # deflate sees 32 KiB back, so slices of a few corpora are as good as endless new text
    pool = [corpus, *(text_corpus(4 << 20, seed + n) for n in range(1, 4))]
    with (large / "app.log").open("wb") as handle:
        written = 0
        while written < text_bytes:
            source = rng.choice(pool)
            length = min(1 << 20, text_bytes - written)
            start = rng.randrange(0, len(source) - length + 1)
            handle.write(source[start : start + length])
            written += length
    half = random_bytes // 2
    (large / "model.bin").write_bytes(rng.randbytes(half))
    (large / "assets.bin").write_bytes(rng.randbytes(random_bytes - half))
    total += text_bytes + random_bytes
    entries += 3
    return entries, total


@dataclass
class Run:
    """One measured run."""

    label: str
    seconds: float
    cpu_seconds: float
    peak_rss_kib: int
    output_bytes: int


def measure(label: str, command: list[str], output: Path, cwd: Path | None = None) -> Run:
    """Run `command`, waiting with wait4 to get its (and its children's) resource use."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{label} failed with exit status {process.returncode}")
    return Run(
        label, seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, output.stat().st_size
    )


def reference_command(tree: Path, output: Path) -> list[str]:
    """abuild's pipeline: sorted pax tar | gzip -9 -n, with a SHA-1 of every file beside it."""
    script = f"""
        set -e
        cd {tree}
        ( find . -mindepth 1 -printf '%P\\0' | LC_ALL=C sort -z |
          tar --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,atime:=0,ctime:=0 \\
              --mtime=@{EPOCH} --owner=0 --group=0 --numeric-owner \\
              --no-recursion --null -cf - -T - |
          gzip -n -9 > {output} ) &
        archive=$!
        ( find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha1sum > /dev/null ) &
        hashes=$!
        wait $archive
        wait $hashes
    """
    return ["bash", "-c", textwrap.dedent(script)]


def pakman_command(tree: Path, out_dir: Path, key: Path, level: int, threads: int) -> list[str]:
    """A fresh Python process that writes the package with pakman."""
    code = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from pakman.apk import PackageInfo, SigningKey, write_package
info = PackageInfo(name="bench", version="1.0.0", arch="x86_64", builddate={EPOCH},
                   description="benchmark tree", license="MIT")
write_package({str(tree)!r}, info, {str(out_dir)!r}, SigningKey.from_file({str(key)!r}),
              level={level}, threads={threads})
"""
    return [sys.executable, "-c", code]


def data_member_size(package: Path) -> int:
    """Bytes of the last gzip member (the data) of a package."""
    import zlib

    data = package.read_bytes()
    offset = 0
    for _ in range(2):  # skip the signature and control members
        decompressor = zlib.decompressobj(wbits=31)
        decompressor.decompress(data[offset : offset + (1 << 20)])
        offset += min(len(data) - offset, 1 << 20) - len(decompressor.unused_data)
    return len(data) - offset


def _deflate_with_isal(data: bytes, level: int, threads: int) -> int:
    """Size of `data` deflated by ISA-L in primed 1 MiB blocks (the same scheme as pakman's)."""
    from concurrent.futures import ThreadPoolExecutor

    from isal import isal_zlib  # type: ignore[import-not-found, unused-ignore]

    def block(offset: int) -> int:
        zdict = data[max(0, offset - 32768) : offset]
        if zdict:
            compressor = isal_zlib.compressobj(level, 8, -15, 9, 0, zdict)
        else:
            compressor = isal_zlib.compressobj(level, 8, -15)
        return len(compressor.compress(data[offset : offset + (1 << 20)])) + len(
            compressor.flush(2)
        )

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(block, range(0, len(data), 1 << 20)))


def compare_levels(tree: Path, work: Path, reference_size: int, threads: int) -> None:
    """Time each engine and level on the same uncompressed tar stream."""
    sys.path.insert(0, str(ROOT))
    from pakman.apk.gzipper import LEVELS, ParallelGzipWriter

    tar_path = work / "ref.tar"
    subprocess.run(
        [
            "bash",
            "-c",
            f"cd {tree} && find . -mindepth 1 -printf '%P\\0' | LC_ALL=C sort -z | "
            f"tar --format=posix --mtime=@{EPOCH} --owner=0 --group=0 --numeric-owner "
            f"--no-recursion --null -cf {tar_path} -T -",
        ],
        check=True,
    )
    data = tar_path.read_bytes()
    tar_path.unlink()
    print(
        f"\ndeflate engines on the {len(data) / MB:.0f} MB tar stream, {threads} threads, 1 MiB blocks:"
    )
    print(f"  {'engine':<10}{'level':>6}{'MB/s':>10}{'size vs gzip -9':>18}")

    def report(engine: str, level: int, size: int, seconds: float) -> None:
        change = (size / reference_size - 1) * 100
        print(f"  {engine:<10}{level:>6}{len(data) / MB / seconds:>10.0f}{change:>+17.2f}%")

    for engine, levels in (("zlib-ng", LEVELS), ("zlib", (1, 6, 9))):
        for level in levels:
            sizes = [0]

            def count(chunk: bytes, sizes: list[int] = sizes) -> None:
                sizes[0] += len(chunk)

            start = time.perf_counter()
            writer = ParallelGzipWriter(count, level=level, threads=threads, engine=engine)  # type: ignore[arg-type]
            view = memoryview(data)
            for offset in range(0, len(data), 1 << 20):
                writer.write(view[offset : offset + (1 << 20)])
            writer.close()
            report(engine, level, sizes[0], time.perf_counter() - start)
    try:
        for level in (1, 2, 3):
            start = time.perf_counter()
            size = _deflate_with_isal(data, level, threads)
            report("isal", level, size, time.perf_counter() - start)
    except ImportError:
        print("  (python-isal is not installed: no ISA-L rows)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size-mb", type=float, default=300, help="MB of large files (default 300)"
    )
    parser.add_argument(
        "--files", type=int, default=20000, help="number of small files (default 20000)"
    )
    parser.add_argument(
        "--level",
        type=int,
        default=DEFAULT_LEVEL,
        help=f"pakman's deflate level 1-9 (default {DEFAULT_LEVEL})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="pakman's deflate threads (default: all CPUs)",
    )
    parser.add_argument(
        "--compare-levels", action="store_true", help="also time every deflate engine and level"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="pakman-bench-"))
    try:
        tree = work / "tree"
        tree.mkdir()
        started = time.perf_counter()
        # in a child process, so that this one stays small (see DEFAULT_LEVEL)
        generator = f"""
import sys
sys.path.insert(0, {str(ROOT / "benchmarks")!r}); sys.path.insert(0, {str(ROOT)!r})
from bench_apk import generate_tree
from pakman.apk.keys import generate_key
print(generate_tree({str(tree)!r}, {args.files}, {args.size_mb})[1])
generate_key({str(work / "keys")!r}, "bench", bits=2048)
"""
        size = int(
            subprocess.run(
                [sys.executable, "-c", generator], check=True, stdout=subprocess.PIPE, text=True
            ).stdout
        )
        private_key = next((work / "keys").glob("*.rsa"))
        print(
            f"tree: {args.files} small files and 3 large ones, {size / MB:.1f} MB "
            f"(generated in {time.perf_counter() - started:.1f} s); {os.cpu_count()} CPUs"
        )
        os.sync()
        reference = measure(
            "reference: tar | gzip -9 -n, sha1",
            reference_command(tree, work / "ref.tar.gz"),
            work / "ref.tar.gz",
        )
        out_dir = work / "out"
        pakman = measure(
            f"pakman: level {args.level}, {args.threads} threads",
            pakman_command(tree, out_dir, private_key, args.level, args.threads),
            out_dir / "bench-1.0.0-r0.apk",
        )
        data_bytes = data_member_size(out_dir / "bench-1.0.0-r0.apk")
        print(f"\n  {'':<38}{'time':>9}{'MB/s':>9}{'CPU':>9}{'peak RSS':>11}{'output':>14}")
        for run in (reference, pakman):
            print(
                f"  {run.label:<38}{run.seconds:>8.2f}s{size / MB / run.seconds:>9.1f}"
                f"{run.cpu_seconds:>8.2f}s{run.peak_rss_kib / 1024:>8.1f} MiB{run.output_bytes:>14,}"
            )
        speedup = reference.seconds / pakman.seconds
        growth = (data_bytes / reference.output_bytes - 1) * 100
        print(f"\nspeed-up: {speedup:.2f}x (target >= 5x): {'met' if speedup >= 5 else 'NOT met'}")
        print(
            f"size: data member {data_bytes:,} bytes vs {reference.output_bytes:,}: {growth:+.2f}% "
            f"(target <= +3%): {'met' if growth <= 3 else 'NOT met'}; whole package {pakman.output_bytes:,} bytes"
        )
        print(
            f"memory: pakman peak RSS {pakman.peak_rss_kib / 1024:.1f} MiB, reference {reference.peak_rss_kib / 1024:.1f} MiB"
        )
        if args.compare_levels:
            compare_levels(tree, work, reference.output_bytes, args.threads)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
