#!/usr/bin/env python3
"""Benchmark `gantry image push` against `skopeo copy`, side by side, in one run.

  scripts/bench_image.py [--runs N] [--gantry PATH] [--work DIR] [--markdown FILE]

Generates (once, from a fixed seed) an OCI image layout of about 200 MB in 5 gzip'd
layers, then pushes it alternately with `skopeo copy oci:... docker://...` and with
`gantry image push` (source `oci_layout`), each run to a new repository of the same local
registry (scripts/test-services: Debian's docker-registry behind htpasswd, moto for ECR),
so every run uploads every blob. Then re-pushes the unchanged image with gantry several
times: it must upload no blob (gantry's JSON and the registry's access log agree) and
should take under half a second.

Both tools log in with moto's ECR token. skopeo's blob-info cache is deleted before each of
its runs, so it cannot mount blobs it saw in an earlier run's repository. Timings are wall
clock; peak memory is each process's own ru_maxrss from wait4(2).
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN_USER, TOKEN_PASSWORD = "AWS", "123456789012-auth-token"
SKOPEO_CACHES = [
    Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb"),
    Path("/var/lib/containers/cache/blob-info-cache-v1.sqlite"),
    Path.home() / ".local/share/containers/cache/blob-info-cache-v1.boltdb",
    Path.home() / ".local/share/containers/cache/blob-info-cache-v1.sqlite",
]


def services() -> dict[str, str]:
    out = subprocess.run([ROOT / "scripts/test-services", "start"], check=True, capture_output=True, text=True)
    env = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    htpasswd = Path(env["GANTRY_TEST_HTPASSWD"])
    if not any(l.startswith(f"{TOKEN_USER}:") for l in htpasswd.read_text().splitlines()):
        line = subprocess.run(["htpasswd", "-Bbn", TOKEN_USER, TOKEN_PASSWORD], check=True, capture_output=True, text=True)
        text = htpasswd.read_text()
        with open(htpasswd, "a") as f:
            f.write(("" if text.endswith("\n") or not text else "\n") + line.stdout.strip() + "\n")
    return env


def aws_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": env["GANTRY_TEST_MOTO"],
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def blob(layout: Path, data: bytes) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def generate(layout: Path, seed: int = 20261122) -> int:
    """An OCI layout: 5 layers, each about 36 MB of random bytes and 8 MB of text (gzip -1)."""
    marker = layout / ".complete"
    if marker.exists() and marker.read_text() == str(seed):
        return sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())
    rng = random.Random(seed)
    (layout / "blobs/sha256").mkdir(parents=True, exist_ok=True)
    text = b"".join(f"line {i} deploy release rollout canary health gate\n".encode() for i in range(200_000))[: 8 << 20]
    layers, diff_ids = [], []
    for n in range(5):
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in [(f"layer{n}/random.bin", rng.randbytes(36 << 20)), (f"layer{n}/notes.txt", text)]:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
        tar_bytes = raw.getvalue()
        diff_ids.append(f"sha256:{hashlib.sha256(tar_bytes).hexdigest()}")
        layers.append(
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(layout, gzip.compress(tar_bytes, 1, mtime=0))}
        )
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **blob(layout, json.dumps(config).encode())}
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config_desc,
        "layers": layers,
    }
    desc = {"mediaType": manifest["mediaType"], **blob(layout, json.dumps(manifest).encode())}
    desc["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    marker.write_text(str(seed))
    return sum(p.stat().st_size for p in (layout / "blobs/sha256").iterdir())


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str, str]:
    """Wall seconds, peak RSS (KiB), stdout and stderr of one command."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{stdout}{stderr}")
    return elapsed, usage.ru_maxrss, stdout, stderr


def blob_requests(log: Path, repo: str) -> int:
    time.sleep(0.3)  # the registry writes a line just after its response
    return sum(1 for l in log.read_text().splitlines() if f"/v2/{repo}/blobs/" in l)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gantry", default="target/release/gantry")
    parser.add_argument("--work", default="bench-out")
    parser.add_argument("--markdown", help="append the results to this Markdown file")
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(generate(Path(args.generate)))
        return
    gantry = str(Path(args.gantry).resolve())
    work = Path(args.work).resolve() / "image"
    work.mkdir(parents=True, exist_ok=True)
    env = services()
    registry, aws = env["GANTRY_TEST_REGISTRY"], env["GANTRY_TEST_AWS"]
    log = Path(env["GANTRY_TEST_HTPASSWD"]).with_name("registry.log")
    print(f"generating {work / 'layout'} ...", file=sys.stderr)
    # In a child, so this process stays small: a child's ru_maxrss counts what it inherits.
    made = subprocess.run([sys.executable, __file__, "--generate", str(work / "layout")], check=True, capture_output=True)
    image_bytes = int(made.stdout)
    (work / "inputs").mkdir(exist_ok=True)
    (work / "inputs/version.txt").write_text("1\n")
    (work / "gantry.toml").write_text(
        '[project]\nname = "bench"\n\n[images.bench]\nrepository = "set-per-run"\ninputs = ["inputs/"]\n'
        'oci_layout = "layout"\n\n[environments.dev]\nregion = "us-east-1"\n'
    )
    base_env = {**aws_env(env), "GANTRY_ENVIRONMENTS__DEV__REGISTRY": registry}
    stamp = time.strftime("%H%M%S")
    s_times, g_times, s_rss, g_rss = [], [], [], []
    repo = ""
    for i in range(args.runs):
        for cache in SKOPEO_CACHES:
            cache.unlink(missing_ok=True)
        dest = f"docker://{registry}/bench-skopeo-{stamp}-{i}:latest"
        st, srss, out, err = run(
            ["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", f"{TOKEN_USER}:{TOKEN_PASSWORD}",
             f"oci:{work / 'layout'}:latest", dest],
            work,
            os.environ.copy(),
        )
        if "skipped" in out + err:
            sys.exit(f"skopeo reused blobs instead of uploading them:\n{out}{err}")
        repo = f"bench-gantry-{stamp}-{i}"
        subprocess.run([aws, "ecr", "create-repository", "--repository-name", repo], env=aws_env(env), check=True,
                       capture_output=True)
        gt, grss, out, _ = run([gantry, "image", "push", "--env", "dev", "bench", "--output", "json"], work,
                            {**base_env, "GANTRY_IMAGES__BENCH__REPOSITORY": repo})
        report = json.loads(out)
        if report["blobs"]["uploaded"] != 6:
            sys.exit(f"gantry did not upload every blob: {report}")
        s_times.append(st)
        g_times.append(gt)
        s_rss.append(srss)
        g_rss.append(grss)
        print(f"run {i + 1}: skopeo {st:.2f}s  gantry {gt:.2f}s  ratio {st / gt:.2f}x", file=sys.stderr)

    before = blob_requests(log, repo)
    again = []
    for _ in range(max(args.runs, 5)):
        t, _, out, _ = run([gantry, "image", "push", "--env", "dev", "bench", "--output", "json"], work,
                        {**base_env, "GANTRY_IMAGES__BENCH__REPOSITORY": repo})
        report = json.loads(out)
        if report["status"] != "unchanged" or report["blobs"]["uploaded"] != 0:
            sys.exit(f"an unchanged re-push uploaded something: {report}")
        again.append(t)
    after = blob_requests(log, repo)
    smed, gmed, amed = statistics.median(s_times), statistics.median(g_times), statistics.median(again)
    lines = [
        f"Image: OCI layout of {image_bytes / 1e6:.0f} MB (5 gzip'd layers of about 38 MB, mostly random bytes, and "
        f"the config); local docker-registry 2.8 with htpasswd auth on the same machine; {os.cpu_count()} cores; "
        f"{args.runs} runs alternating, each to a new repository.",
        "",
        "| tool | median wall time | runs (s) | peak RSS |",
        "|---|---|---|---|",
        f"| `skopeo copy oci:... docker://...` (skopeo {skopeo_version()}) | {smed:.2f} s | "
        f"{', '.join(f'{t:.2f}' for t in s_times)} | {max(s_rss) / 1024:.0f} MB |",
        f"| `gantry image push` (`oci_layout`) | {gmed:.2f} s | {', '.join(f'{t:.2f}' for t in g_times)} | "
        f"{max(g_rss) / 1024:.0f} MB |",
        "",
        f"Speed: gantry is **{smed / gmed:.2f}x** skopeo (median wall time; target at least 1x). "
        "gantry's time also covers its ECR calls to moto (GetAuthorizationToken, DescribeRepositories), hashing the "
        "inputs, checking every tag before and after, and reading both tags back.",
        "",
        f"Unchanged re-push: median **{amed:.3f} s** over {len(again)} runs "
        f"({', '.join(f'{t:.3f}' for t in again)}; target under 0.5 s); blob requests in the registry's log for the "
        f"repository: {after - before} (target 0).",
    ]
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n### Image push against skopeo ({time.strftime('%Y-%m-%d')})\n\n" + "\n".join(lines) + "\n")


def skopeo_version() -> str:
    out = subprocess.run(["skopeo", "--version"], capture_output=True, text=True).stdout.split()
    return out[-1] if out else "?"


if __name__ == "__main__":
    main()
