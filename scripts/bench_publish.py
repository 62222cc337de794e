#!/usr/bin/env python3
"""Benchmark `gantry publish` against `aws s3 cp`, side by side, on one local S3 server.

  scripts/bench_publish.py speed  [--runs N] [--size-mib N]
      A packaged release holding one artifact of about 1 GiB of random bytes, uploaded
      alternately by `aws s3 cp` (the awscli package, default settings) and by
      `gantry publish` (which also sends SHA256SUMS and release.json, and reads every
      checksum back), each run into a fresh bucket. Then `gantry publish` of the same,
      unchanged release, which must upload nothing. Every timed run starts after sync(2),
      and each run's bucket is deleted from the store after it is timed, so that no run
      pays for writing back an earlier run's gigabyte.
  scripts/bench_publish.py memory [--size-mib N]
      gantry's peak resident memory while publishing an artifact of N MiB (default 5 GiB).
  --markdown FILE appends the results as a Markdown section (docs/benchmarks.md).

The server is s3s-fs (crates.io, `cargo install s3s-fs --version 0.14.1 --features
binary`), which is much faster than moto (too slow to tell clients apart). It validates
SigV4 and the checksums of single puts; it keeps none for parts, so gantry checks those by
ETag. Even so, on 2 cores the server's own work is most of the CPU of either run.

`aws s3 cp` runs from its own virtualenv (.tools/bench-awscli), installed as `pip install
awscli` installs it: without awscrt. The test services' virtualenv has awscrt (moto needs it
for CRC64NVME); with it installed, `aws s3 cp` used 6.4 to 7.5 s of CPU per GiB here instead
of 3.8 to 4.2 s, which would flatter gantry.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
S3S = ROOT / ".tools/s3s/bin/s3s-fs"
AWSCLI_VERSION = "1.46.3"
AWS_VENV = ROOT / ".tools/bench-awscli"
AWS = AWS_VENV / "bin/aws"
def free_port() -> int:
    """A loopback port nobody listens on (a fixed one collided with another checkout's benchmark)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()
KEY, SECRET = "benchkey", "benchsecret"


def ensure_tools() -> None:
    if not S3S.exists():
        print("installing s3s-fs 0.14.1 (about 3 minutes) ...", file=sys.stderr)
        subprocess.run(["cargo", "install", "s3s-fs", "--version", "0.14.1", "--features", "binary", "--locked",
                        "--root", str(ROOT / ".tools/s3s")], check=True)
    if not AWS.exists():
        print(f"installing awscli {AWSCLI_VERSION} into {AWS_VENV} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(AWS_VENV)], check=True)
        subprocess.run([str(AWS_VENV / "bin/pip"), "install", "-q", "--disable-pip-version-check",
                        f"awscli=={AWSCLI_VERSION}"], check=True)
    probe = subprocess.run([str(AWS_VENV / "bin/python"), "-c", "import awscrt"], capture_output=True)
    if probe.returncode == 0:
        sys.exit(f"{AWS_VENV} has awscrt, which `pip install awscli` does not bring: remove the folder and re-run")


def env() -> dict:
    e = dict(os.environ)
    e.update({
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{PORT}", "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
        "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    })
    return e


SERVER_PID = 0
STORE = ROOT / "bench-out" / "s3s-store"


def server_cpu() -> float:
    """CPU seconds (user + system) the S3 server has used so far."""
    fields = Path(f"/proc/{SERVER_PID}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], cwd: Path, extra: dict | None = None, cpu: list | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command; appends (client, server) CPU seconds to `cpu`."""
    e = env()
    e.update(extra or {})
    # Every run starts with nothing waiting to be written back: the previous run's 1 GiB
    # of dirty pages would otherwise be flushed during this one.
    os.sync()
    server_before = server_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    if cpu is not None:
        cpu.append((usage.ru_utime + usage.ru_stime, server_cpu() - server_before))
    return elapsed, usage.ru_maxrss


def project(work: Path, size_mib: int, gantry: str) -> Path:
    proj = work / f"project-{size_mib}"
    data = proj / "blob" / "data.bin"
    if not data.exists() or data.stat().st_size != size_mib << 20:
        data.parent.mkdir(parents=True, exist_ok=True)
        with open(data, "wb") as f:
            for _ in range(size_mib):
                f.write(os.urandom(1 << 20))
    (proj / "gantry.toml").write_text(
        '[project]\nname = "bench"\n\n[artifacts.blob]\nroot = "blob"\n\n'
        '[environments.bench]\nrelease_bucket = "placeholder"\n')
    # Packaged by the gantry under test, every time: release.json's contents (its CRC64NVMEs)
    # decide how publish checks what it sends.
    shutil.rmtree(proj / "dist", ignore_errors=True)
    subprocess.run([gantry, "package", "-q", "--version", "1.0.0"], cwd=proj, check=True)
    return proj


def wait_for_port(port: int, seconds: float = 15) -> None:
    """Until the server accepts connections (a fixed sleep lost the race on a busy machine)."""
    import socket
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"the S3 server did not start on port {port}")
            time.sleep(0.1)


def bucket(name: str) -> None:
    subprocess.run([str(AWS), "s3api", "create-bucket", "--bucket", name], env=env(), check=True,
                   stdout=subprocess.DEVNULL)


def speed(args, proj: Path) -> list[str]:
    artifact = next((proj / "dist").glob("blob-*.zip"))
    size = artifact.stat().st_size
    cli_t, gantry_t = [], []
    cli_cpu, gantry_cpu = [], []
    for i in range(args.runs):
        b_cli, b_gantry = f"cli-{os.getpid()}-{i}", f"gantry-{os.getpid()}-{i}"
        bucket(b_cli)
        bucket(b_gantry)
        order = [("cli", b_cli), ("gantry", b_gantry)] if i % 2 == 0 else [("gantry", b_gantry), ("cli", b_cli)]
        for tool, b in order:
            if tool == "cli":
                t, _ = run([str(AWS), "s3", "cp", "--only-show-errors", str(artifact), f"s3://{b}/{artifact.name}"], proj,
                           cpu=cli_cpu)
                cli_t.append(t)
            else:
                t, _ = run([args.gantry, "--env", "bench", "publish"], proj,
                           {"GANTRY_ENVIRONMENTS__BENCH__RELEASE_BUCKET": b}, cpu=gantry_cpu)
                gantry_t.append(t)
            if not (tool == "gantry" and i == args.runs - 1):  # kept for the re-publish below
                shutil.rmtree(STORE / b, ignore_errors=True)  # the disk does not fill up run by run
        print(f"run {i + 1}: aws s3 cp {cli_t[-1]:.2f}s  gantry publish {gantry_t[-1]:.2f}s", file=sys.stderr)
    last = f"gantry-{os.getpid()}-{args.runs - 1}"
    again = [run([args.gantry, "--env", "bench", "publish"], proj, {"GANTRY_ENVIRONMENTS__BENCH__RELEASE_BUCKET": last})[0]
             for _ in range(5)]
    cmed, gmed, amed = statistics.median(cli_t), statistics.median(gantry_t), statistics.median(again)
    mb = size / 1e6
    cpu = lambda runs, i: statistics.median(r[i] for r in runs)
    return [
        f"One artifact of {size / (1 << 30):.2f} GiB (random bytes), to s3s-fs 0.14.1 on loopback; "
        f"{os.cpu_count()} cores; {args.runs} runs alternating, each into a fresh bucket.",
        "",
        "| client | median wall time | runs (s) | throughput | client CPU | s3s-fs CPU |",
        "|---|---|---|---|---|---|",
        f"| `aws s3 cp` (awscli {AWSCLI_VERSION} from pip, defaults) | {cmed:.2f} s | {', '.join(f'{t:.2f}' for t in cli_t)} | "
        f"{mb / cmed:.0f} MB/s | {cpu(cli_cpu, 0):.2f} s | {cpu(cli_cpu, 1):.2f} s |",
        f"| `gantry publish` | {gmed:.2f} s | {', '.join(f'{t:.2f}' for t in gantry_t)} | "
        f"{mb / gmed:.0f} MB/s | {cpu(gantry_cpu, 0):.2f} s | {cpu(gantry_cpu, 1):.2f} s |",
        "",
        f"Speed: gantry is **{cmed / gmed:.2f}x** `aws s3 cp` (target at least 1.3x). CPU columns are medians of "
        "user + system seconds, of the client process and of the server during that client's run. gantry's time "
        "includes CRC64NVME of every part sent (the object's is combined from them and must be release.json's), "
        "MD5 of every part (s3s-fs keeps no multipart checksum, so parts and the object are checked by ETag; "
        "the MD5s are computed while the server assembles the object), HeadObject checks, and uploading "
        "SHA256SUMS and release.json.",
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        f"Re-publishing the unchanged release: median **{amed:.3f} s** over 5 runs "
        f"({', '.join(f'{t:.3f}' for t in again)}), no upload (target under 0.5 s).",
    ]


def memory(args, proj: Path) -> list[str]:
    b = f"mem-{os.getpid()}"
    bucket(b)
    t, rss = run([args.gantry, "--env", "bench", "publish"], proj, {"GANTRY_ENVIRONMENTS__BENCH__RELEASE_BUCKET": b})
    return [f"Publishing one {args.size_mib / 1024:.1f} GiB artifact: {t:.1f} s, peak resident memory "
            f"**{rss / 1024:.0f} MB** (target under 200 MB)."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["speed", "memory"])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size-mib", type=int)
    parser.add_argument("--gantry", default=str(ROOT / "target/release/gantry"))
    parser.add_argument("--work", default=str(ROOT / "bench-out"))
    parser.add_argument("--markdown")
    args = parser.parse_args()
    args.size_mib = args.size_mib or (1024 if args.mode == "speed" else 5 * 1024)
    ensure_tools()
    work = Path(args.work)
    global STORE, SERVER_PID
    STORE = store = work / "s3s-store"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    server = subprocess.Popen([str(S3S), "--host", "127.0.0.1", "--port", str(PORT), "--access-key", KEY,
                               "--secret-key", SECRET, str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    SERVER_PID = server.pid
    try:
        wait_for_port(PORT)
        proj = project(work, args.size_mib, args.gantry)
        lines = speed(args, proj) if args.mode == "speed" else memory(args, proj)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(store, ignore_errors=True)
    print("\n".join(lines))
    if args.markdown:
        title = "Publishing to S3 against `aws s3 cp`" if args.mode == "speed" else "Publishing memory on a large artifact"
        with open(args.markdown, "a") as f:
            f.write(f"\n### {title} ({time.strftime('%Y-%m-%d')})\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
