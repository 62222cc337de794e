#!/usr/bin/env python3
"""The README demo as a fresh machine runs it: `make demo` with an empty cargo home (every
crate downloaded from the registry again) and an empty target folder (every crate compiled),
timed end to end, next to the same first build of the full gantry (`cloud` feature: the AWS
SDKs and octocrab) that the demo no longer needs.

  scripts/bench_demo.py [--runs N] [--fresh-apt] [--full-build] [--markdown FILE]

Needs a quiet machine: the build is CPU-bound on every core. With --fresh-apt each run first
removes the apt packages the demo installs (nginx, hey), so the run installs them again as a
fresh machine does (`make demo` installs them while cargo compiles); without it they stay.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


APT_PACKAGES = ["nginx", "nginx-common", "hey"]


def remove_apt_packages():
    """Takes away what scripts/bootstrap installs for the demo, as on a fresh machine."""
    subprocess.run(
        ["apt-get", "purge", "-y", "-qq", *APT_PACKAGES],
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        check=True,
        capture_output=True,
    )


def run_demo(scratch):
    """One `make demo` from nothing; returns (total s, build s) or raises on failure."""
    env = dict(os.environ)
    env["CARGO_HOME"] = os.path.join(scratch, "cargo-home")
    env["CARGO_TARGET_DIR"] = os.path.join(scratch, "target")
    env.pop("RUSTC_WRAPPER", None)
    started = time.monotonic()
    out = subprocess.run(["make", "-s", "demo"], cwd=REPO, env=env, capture_output=True, text=True)
    total = time.monotonic() - started
    if out.returncode != 0:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f"make demo failed with exit code {out.returncode}")
    built = re.search(r"built in (\d+) s", out.stdout)
    return total, float(built.group(1)) if built else float("nan")


def full_build(scratch):
    """The first `cargo build` of the full gantry, from the same empty cargo home."""
    env = dict(os.environ)
    env["CARGO_HOME"] = os.path.join(scratch, "cargo-home")
    env["CARGO_TARGET_DIR"] = os.path.join(scratch, "target-full")
    started = time.monotonic()
    subprocess.run(["cargo", "build", "--locked", "--quiet"], cwd=REPO, env=env, check=True)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--fresh-apt", action="store_true", help="remove nginx and hey before each run")
    parser.add_argument("--full-build", action="store_true", help="also time one first build of the full gantry")
    parser.add_argument("--markdown", help="append the results to this Markdown file")
    args = parser.parse_args()

    subprocess.run([os.path.join(REPO, "scripts", "bootstrap")], check=True)
    totals, builds = [], []
    full = None
    for i in range(args.runs):
        scratch = tempfile.mkdtemp(prefix="gantry-bench-demo-")
        try:
            if args.fresh_apt:
                remove_apt_packages()
            total, build = run_demo(scratch)
            totals.append(total)
            builds.append(build)
            print(f"run {i + 1}: make demo from nothing {total:.0f} s (of which the build {build:.0f} s)")
            if args.full_build and full is None:
                full = full_build(scratch)
                print(f"first build of the full gantry: {full:.0f} s")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    median = statistics.median(totals)
    lines = [
        "",
        f"### Fresh-machine demo ({time.strftime('%Y-%m-%d')}, `scripts/bench_demo.py --runs {args.runs}"
        f"{' --fresh-apt' if args.fresh_apt else ''}`)",
        "",
        "`make demo` with an empty cargo home and an empty target folder: every crate downloaded and",
        "compiled, then the demo's deploys"
        + (", with nginx and hey removed first so the demo installs them again." if args.fresh_apt else "."),
        "Target: under two minutes.",
        "",
        "| | median | runs |",
        "|---|---|---|",
        f"| `make demo` from nothing | **{median:.0f} s** | {', '.join(f'{t:.0f}' for t in totals)} |",
        f"| of which the build (`--no-default-features`) | {statistics.median(builds):.0f} s | "
        f"{', '.join(f'{b:.0f}' for b in builds)} |",
    ]
    if full is not None:
        lines.append(f"| first build of the full gantry (`cloud`), for comparison | {full:.0f} s | 1 run |")
    lines.append("")
    verdict = "met" if median < 120 else "missed"
    lines.append(f"Two-minute target {verdict}: median {median:.0f} s.")
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
