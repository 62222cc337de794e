#!/usr/bin/env python3
"""Benchmark `gantry package` against Info-ZIP side by side, in one run.

  scripts/bench_package.py speed  [--runs N] [--gantry PATH] [--work DIR]
      A generated tree of about 200 MB in 5,000 files of mixed text and binary,
      zipped alternately by `zip -r -X -q -6` and `gantry package`; prints each run,
      the medians, the speed ratio and the size ratio.
  scripts/bench_package.py memory [--gantry PATH] [--work DIR]
      A generated tree of about 2 GB; reports gantry's peak resident memory.
  --markdown FILE appends the results as a Markdown section (docs/benchmarks.md).

Trees are generated from a fixed seed, so every run measures the same bytes. Peak
memory is each child's own ru_maxrss from wait4(2), so no other tool is needed.
"""
import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

WORDS = (
    "deploy release rollout canary health gate target bucket artifact manifest version "
    "pipeline approval lambda service cluster listener weight bake rollback ledger lock "
    "fn let mut struct impl return if else match for while async await self pub use mod"
).split()


def text_blob(rng: random.Random, size: int) -> bytes:
    """Source-code-like text: indented lines of words, numbers and punctuation."""
    lines = []
    total = 0
    while total < size:
        indent = "    " * rng.randrange(0, 4)
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 12)))
        line = f"{indent}{words}({rng.randrange(0, 10_000)}); // {rng.choice(WORDS)}\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def structured_blob(rng: random.Random, size: int) -> bytes:
    """Binary with structure (records of small integers), compressible about 2-3x."""
    out = bytearray()
    base = rng.randrange(0, 1 << 16)
    while len(out) < size:
        base += rng.randrange(0, 64)
        out += base.to_bytes(4, "little") + rng.randrange(0, 256).to_bytes(2, "little") + b"\x00\x01"
    return bytes(out[:size])


def generate(root: Path, files: int, total: int, seed: int = 20261122) -> None:
    """Writes `files` files of about `total` bytes: 55% text, 25% random, 20% structured."""
    marker = root / ".complete"
    if marker.exists() and marker.read_text() == f"{files} {total} {seed}":
        return
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    # A pool of text, sliced per file, keeps generation fast for large trees.
    pool = text_blob(rng, 8 << 20)
    mean = total // files
    for i in range(files):
        kind = rng.random()
        size = max(64, int(rng.expovariate(1 / mean)))
        path = root / f"d{i % 37:02d}" / f"s{i % 11}" / f"f{i:05d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind < 0.55:
            start = rng.randrange(0, len(pool) - 1)
            data = (pool[start:] + pool)[:size]
            path = path.with_suffix(".rs")
        elif kind < 0.80:
            data = rng.randbytes(size)
            path = path.with_suffix(".png")
        else:
            data = structured_blob(rng, size)
            path = path.with_suffix(".bin")
        path.write_bytes(data)
    marker.write_text(f"{files} {total} {seed}")


def generate_large(root: Path, seed: int = 7) -> None:
    """About 2 GB: 24 files of 64 MiB (text and random) and 2,000 small files."""
    marker = root / ".complete"
    if marker.exists():
        return
    if root.exists():
        shutil.rmtree(root)
    rng = random.Random(seed)
    pool = text_blob(rng, 16 << 20)
    big = root / "big"
    big.mkdir(parents=True)
    for i in range(24):
        with open(big / f"part{i:02d}.dat", "wb") as f:
            for _ in range(4):
                f.write(pool if i % 2 == 0 else os.urandom(16 << 20))
    generate(root / "small", 2000, 400 << 20, seed)
    (root / "small" / ".complete").unlink()
    marker.write_text("done")


def run(cmd: list[str], cwd: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{stderr}")
    return elapsed, usage.ru_maxrss


def project(work: Path, tree: Path) -> Path:
    """A gantry.toml in `work` whose one artifact is `tree` (a folder inside `work`)."""
    (work / "gantry.toml").write_text(f'[project]\nname = "bench"\n\n[artifacts.tree]\nroot = "{tree.name}"\n')
    return work


def speed(args: argparse.Namespace) -> list[str]:
    work = Path(args.work)
    tree = work / "tree-200m"
    print(f"generating {tree} ...", file=sys.stderr)
    generate(tree, 5000, 200 << 20)
    tree_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and p.name != ".complete")
    # Both tools read the same files; after the first run both read them from the page cache.
    proj = project(work, tree)
    out_zip = work / "infozip.zip"
    out_dir = work / "gantry-dist"
    env_cmd = ["env", "SOURCE_DATE_EPOCH=1700000000"]
    rows = []
    z_times, g_times = [], []
    for i in range(args.runs):
        out_zip.unlink(missing_ok=True)
        zt, zrss = run(["zip", "-r", "-X", "-q", "-6", str(out_zip), "."], tree)
        shutil.rmtree(out_dir, ignore_errors=True)
        gt, grss = run(env_cmd + [args.gantry, "package", "--version", "1.0.0", "--out", str(out_dir)], proj)
        z_times.append(zt)
        g_times.append(gt)
        rows.append((i + 1, zt, gt, zrss, grss))
        print(f"run {i + 1}: zip {zt:.2f}s  gantry {gt:.2f}s  ratio {zt / gt:.2f}x", file=sys.stderr)
    zsize = out_zip.stat().st_size
    gsize = (out_dir / "tree-1.0.0.zip").stat().st_size
    zmed, gmed = statistics.median(z_times), statistics.median(g_times)
    lines = [
        f"Tree: {tree_bytes / 1e6:.0f} MB in 5,000 files (55% text, 25% random, 20% structured binary); "
        f"{os.cpu_count()} cores; {args.runs} runs alternating.",
        "",
        "| tool | median wall time | runs (s) | archive size | peak RSS |",
        "|---|---|---|---|---|",
        f"| Info-ZIP `zip -r -X -q -6` | {zmed:.2f} s | {', '.join(f'{t:.2f}' for t in z_times)} | "
        f"{zsize / 1e6:.2f} MB | {max(r[3] for r in rows) / 1024:.0f} MB |",
        f"| `gantry package` | {gmed:.2f} s | {', '.join(f'{t:.2f}' for t in g_times)} | "
        f"{gsize / 1e6:.2f} MB | {max(r[4] for r in rows) / 1024:.0f} MB |",
        "",
        f"Speed: gantry is **{zmed / gmed:.2f}x** Info-ZIP (median wall time; target at least 2x). "
        f"Size: gantry's archive is **{(gsize / zsize - 1) * 100:+.2f}%** against Info-ZIP's (target at most +2%). "
        "gantry's time includes writing SHA256SUMS and release.json and hashing the archive.",
    ]
    return lines


def memory(args: argparse.Namespace) -> list[str]:
    work = Path(args.work)
    tree = work / "tree-2g"
    print(f"generating {tree} (about 2 GB) ...", file=sys.stderr)
    generate_large(tree)
    tree_bytes = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and p.name != ".complete")
    proj = project(work, tree)
    out_dir = work / "gantry-dist-2g"
    shutil.rmtree(out_dir, ignore_errors=True)
    t, rss = run(["env", "SOURCE_DATE_EPOCH=1700000000", args.gantry, "package", "--version", "1.0.0", "--out", str(out_dir)], proj)
    shutil.rmtree(out_dir, ignore_errors=True)
    print(f"2 GB tree: {t:.1f}s, peak RSS {rss / 1024:.0f} MB", file=sys.stderr)
    return [
        f"Tree: {tree_bytes / 1e9:.2f} GB (24 files of 64 MiB, half text, half random, and 2,000 small files).",
        "",
        f"`gantry package`: {t:.1f} s, peak resident memory **{rss / 1024:.0f} MB** (target under 100 MB).",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "memory"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gantry", default="target/release/gantry")
    parser.add_argument("--work", default="bench-out")
    parser.add_argument("--markdown", help="append the results to this Markdown file")
    args = parser.parse_args()
    args.gantry = str(Path(args.gantry).resolve())
    Path(args.work).mkdir(parents=True, exist_ok=True)
    lines = speed(args) if args.mode == "speed" else memory(args)
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "a") as f:
            title = "Packaging speed against Info-ZIP" if args.mode == "speed" else "Packaging memory on a 2 GB tree"
            f.write(f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
