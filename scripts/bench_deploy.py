#!/usr/bin/env python3
"""Benchmark `gantry deploy` on the `local` target under load, in one run.

  scripts/bench_deploy.py [--runs N] [--rate RPS] [--connections C] [--replicas N] [--gantry PATH] [--work DIR] [--markdown FILE]

Copies examples/hello to WORK/deploy/hello, deploys a first release to its local target
(N replicas of the Python example app behind gantry's own nginx, on a free loopback port),
then, in each of N rounds, one deploy of each scenario, alternating:

- `rolling` (batch 1), `blue-green` (bake 2s) and `canary` (10, 50, 100; bake 2s) deploys of
  a good release, each under a steady RPS requests/s from `hey` (-c C workers, each
  throttled to RPS/C; 50 by default, so a worker keeps up with up to 100 ms latency) through nginx. Failed requests are hey's non-2xx responses plus its
  errors (connection resets, timeouts); the achieved rate is hey's requests/s.
- `blue-green` of a release whose health fails 4 s after start (DEMO_FAIL_AFTER=4), so it
  fails during the bake, under the same load: rollback time from the first failed health
  check to RollbackStarted and to RollbackFinished, from the JSON event times.
- `canary` (10, 50, 100; bake 5s) of a release that fails 4 s after start, health and every
  request (DEMO_FAIL_AFTER=4 DEMO_FAIL_ALL=1), so it breaks after taking its 10% share, under
  the same load: failed requests against 10% of the requests sent while it had traffic, and
  its rollback time.
- `blue-green` of a good release with no load: the engine's overhead, elapsed_ms - health_ms
  of the Finished event (total deploy time minus the configured gate and bake windows).

Health checks are the example's: every 500 ms, 3 to pass, 2 to fail. hey starts 1 s before
each deploy and is stopped (SIGINT, it then reports) 0.5 s after gantry exits.
"""
import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTERVAL_S, UNHEALTHY = 0.5, 2
CANARY_SHARE = 10

TOML = """[project]
name = "hello"

[artifacts.app]
root = "app"
exclude = ["__pycache__/", "*.pyc"]
build = "python3 app/build.py"

[targets.web]
kind = "local"
strategy = {strategy}
local = {{ artifact = "app", command = "{python} server.py", replicas = {replicas}, listen = "127.0.0.1:{port}" }}

[[targets.web.health]]
url = "{{url}}/healthz"
expect_status = "200"
interval = "500ms"
timeout = "500ms"
healthy_threshold = 3
unhealthy_threshold = 2

[environments.dev]
targets = ["web"]
state = ".gantry/state/dev"
"""

STRATEGIES = {
    "rolling": '{ type = "rolling", batch = 1 }',
    "blue-green": '{ type = "blue-green", bake = "2s" }',
    "canary": '{ type = "canary", steps = [10, 50, 100], bake = "2s" }',
    "blue-green-fail": '{ type = "blue-green", bake = "5s" }',
    "canary-fail": '{ type = "canary", steps = [10, 50, 100], bake = "5s" }',
}


def free_port_pair() -> int:
    for _ in range(200):
        port = random.randrange(20000, 30000, 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    sys.exit("no free loopback port pair")


def when(event: dict) -> float:
    return datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()


class VersionWatch(threading.Thread):
    """Asks the public address which version answers (its X-App-Version header), every
    20 ms, and keeps (time, version) for each answer: when the last answer from a failed
    release came is when users were back on the old one."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port, self.seen, self.stop = port, [], threading.Event()

    def run(self) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/version")
                resp = conn.getresponse()
                resp.read()
                self.seen.append((time.time(), resp.getheader("X-App-Version")))
            except (OSError, http.client.HTTPException):
                conn = None
            self.stop.wait(0.02)


def parse_hey(text: str) -> dict:
    codes = re.search(r"Status code distribution:\n((?:[ \t]+\[\d+\].*\n?)*)", text)
    statuses = [(c, int(n)) for c, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", codes.group(1) if codes else "")]
    errors = re.search(r"Error distribution:\n((?:[ \t]+\[\d+\].*\n?)*)", text)
    error_lines = errors.group(1).strip().splitlines() if errors else []
    n_errors = sum(int(re.search(r"\[(\d+)\]", line).group(1)) for line in error_lines)
    ok = sum(n for c, n in statuses if c.startswith("2"))
    bad = sum(n for c, n in statuses if not c.startswith("2"))
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    total = re.search(r"Total:\s+([\d.]+) secs", text)
    return {
        "ok": ok,
        "failed": bad + n_errors,
        "requests": ok + bad + n_errors,
        "rate": float(rate.group(1)) if rate else 0.0,
        "secs": float(total.group(1)) if total else 0.0,
        "errors": [line.strip() for line in error_lines],
        "statuses": statuses,
    }


class Bench:
    def __init__(self, gantry: str, work: Path, replicas: int, rate: int, connections: int):
        self.gantry, self.replicas, self.rate, self.connections = gantry, replicas, rate, connections
        self.project = work / "hello"
        shutil.rmtree(self.project, ignore_errors=True)
        shutil.copytree(ROOT / "examples/hello", self.project, ignore=shutil.ignore_patterns("dist", ".gantry"))
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = self.project / ".gantry/local/dev/web"
        self.version = 0

    def down(self) -> None:
        subprocess.run([sys.executable, ROOT / "scripts/local_down.py", self.state_dir], check=False)

    def deploy(self, scenario: str, env: dict[str, str] | None = None, load: bool = False) -> dict:
        """Packages a new version (with `env` for build.py) and deploys it with `scenario`'s strategy."""
        self.version += 1
        version = f"1.0.{self.version}"
        strategy = STRATEGIES[scenario]
        (self.project / "gantry.toml").write_text(TOML.format(strategy=strategy, replicas=self.replicas, port=self.port, python=PYTHON))
        build_env = {k: v for k, v in os.environ.items() if not k.startswith("DEMO_")} | (env or {})
        subprocess.run([self.gantry, "package", "-q", "--version", version], cwd=self.project, env=build_env, check=True)
        hey = None
        if load:
            per_worker = self.rate / self.connections
            hey = subprocess.Popen(
                ["hey", "-z", "600s", "-c", str(self.connections), "-q", f"{per_worker:g}", f"{self.url}/"],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            time.sleep(1)
        watch = VersionWatch(self.port)
        watch.start()
        started = time.time()
        run = subprocess.run([self.gantry, "--env", "dev", "--output", "json", "deploy", "--version", version],
                             cwd=self.project, capture_output=True, text=True)
        wall = time.time() - started
        watch.stop.set()
        watch.join()
        result = {"scenario": scenario, "version": version, "code": run.returncode, "wall": wall}
        if hey:
            time.sleep(0.5)
            hey.send_signal(signal.SIGINT)
            out, _ = hey.communicate(timeout=60)
            result["hey"] = parse_hey(out)
        events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        result["events"] = events
        result["stderr"] = run.stderr
        finished = next((e for e in events if e["event"] == "finished"), None)
        if finished:
            result["elapsed_ms"], result["health_ms"] = finished["elapsed_ms"], finished["health_ms"]
            result["result"] = finished["result"]
        first_fail = next((e for e in events if e["event"] == "health" and not e["ok"]), None)
        rb_start = next((e for e in events if e["event"] == "rollback-started"), None)
        rb_end = next((e for e in events if e["event"] == "rollback-finished"), None)
        if first_fail and rb_start and rb_end:
            result["to_rollback_started"] = when(rb_start) - when(first_fail)
            result["to_rollback_finished"] = when(rb_end) - when(first_fail)
            result["first_fail_phase"] = first_fail["phase"]
            last_new = max((t for t, v in watch.seen if v == version), default=None)
            if last_new:
                result["to_users_back"] = last_new - when(first_fail)
            # From the canary's first traffic until users were back on the old version.
            canary_on = next((e for e in events if e["event"] == "traffic" and e["new_weight"] > 0), None)
            if canary_on:
                result["canary_window"] = (last_new or when(rb_end)) - when(canary_on)
        return result


# The replicas run the interpreter itself, as `app_start` does: on machines where `python3` on
# PATH is a pyenv shim (a chain of bash scripts), the shim alone takes longer than the app's own
# start-up, and the benchmark would measure pyenv, not gantry.
PYTHON = os.path.realpath(sys.executable)


def app_start(app: Path, replicas: int) -> float:
    """Seconds until `replicas` copies of the example app, started at once without gantry,
    all accept connections: the part of start-new that is the app's own start-up."""
    ports = [free_port_pair() for _ in range(replicas)]
    began = time.time()
    procs = [subprocess.Popen([PYTHON, "server.py"], cwd=app, env={**os.environ, "PORT": str(port)},
                              stderr=subprocess.DEVNULL) for port in ports]
    pending = set(ports)
    while pending and time.time() - began < 30:
        for port in list(pending):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                pending.discard(port)
            except OSError:
                pass
        time.sleep(0.01)
    took = time.time() - began
    for proc in procs:
        proc.terminate()
        proc.wait()
    return took


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(values: list[float], digits: int = 2) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=500, help="requests/s hey sends during each deploy")
    parser.add_argument("--connections", type=int, default=50, help="hey's workers, each throttled to RATE/C")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--gantry", default="target/release/gantry")
    parser.add_argument("--work", default="bench-out")
    parser.add_argument("--markdown", help="append the results to this Markdown file")
    args = parser.parse_args()
    for tool in ("nginx", "hey"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"{tool} not found: run scripts/bootstrap")
    gantry = str(Path(args.gantry).resolve())
    work = Path(args.work).resolve() / "deploy"
    work.mkdir(parents=True, exist_ok=True)
    bench = Bench(gantry, work, args.replicas, args.rate, args.connections)
    good = ["rolling", "blue-green", "canary"]
    results: dict[str, list[dict]] = {name: [] for name in good + ["blue-green-fail", "canary-fail", "overhead"]}
    began = time.time()
    try:
        first = bench.deploy("blue-green")
        if first["code"] != 0:
            sys.exit(f"the first deploy failed:\n{first['stderr']}")
        for i in range(args.runs):
            for name in good:
                r = bench.deploy(name, load=True)
                results[name].append(r)
                print(f"run {i + 1} {name}: exit {r['code']}, {r['hey']['failed']} failed of {r['hey']['requests']} "
                      f"at {r['hey']['rate']:.0f} rps, {r['wall']:.1f}s", file=sys.stderr)
                if r["code"] != 0:
                    print(r["stderr"], file=sys.stderr)
            r = bench.deploy("blue-green-fail", env={"DEMO_FAIL_AFTER": "4"}, load=True)
            results["blue-green-fail"].append(r)
            print(f"run {i + 1} blue-green-fail: exit {r['code']}, fail->rollback started "
                  f"{r.get('to_rollback_started', float('nan')):.2f}s, users back {r.get('to_users_back', float('nan')):.2f}s, finished {r.get('to_rollback_finished', float('nan')):.2f}s, "
                  f"{r['hey']['failed']} failed", file=sys.stderr)
            r = bench.deploy("canary-fail", env={"DEMO_FAIL_AFTER": "4", "DEMO_FAIL_ALL": "1"}, load=True)
            results["canary-fail"].append(r)
            print(f"run {i + 1} canary-fail: exit {r['code']}, first fail in {r.get('first_fail_phase')}, "
                  f"fail->users back {r.get('to_users_back', float('nan')):.2f}s, "
                  f"->rollback finished {r.get('to_rollback_finished', float('nan')):.2f}s, "
                  f"{r['hey']['failed']} failed of {r['hey']['requests']}", file=sys.stderr)
            r = bench.deploy("blue-green")
            r["app_start"] = app_start(bench.project / "app", args.replicas)
            results["overhead"].append(r)
            print(f"run {i + 1} overhead: {(r['elapsed_ms'] - r['health_ms']) / 1000:.2f}s "
                  f"(elapsed {r['elapsed_ms'] / 1000:.2f}s, health {r['health_ms'] / 1000:.2f}s)", file=sys.stderr)
    finally:
        bench.down()
        (work / "results.json").write_text(json.dumps(results, indent=1))
    report(args, results, time.time() - began)


def report(args, results: dict[str, list[dict]], took: float) -> None:
    budget = UNHEALTHY * INTERVAL_S + 1
    lines = [
        f"App: examples/hello (Python `ThreadingHTTPServer`, run as `{PYTHON} server.py`, not through a pyenv shim), {args.replicas} replicas behind gantry's nginx "
        f"(1 worker) on loopback; load: `hey -c {args.connections} -q {args.rate / args.connections:g}` (target "
        f"{args.rate} requests/s) from 1 s before each deploy to 0.5 s after; health every 500 ms, 3 to pass, "
        f"2 to fail; no extra drain (the default); {os.cpu_count()} cores, shared with hey, nginx and the replicas; "
        f"{args.runs} rounds, each deploying every scenario in turn ({took / 60:.1f} min in all).",
        "",
        "| deploy of a good release | exit codes | failed requests per run | median achieved rate | "
        "rates per run (req/s) | median deploy time |",
        "|---|---|---|---|---|---|",
    ]
    for name, detail in [("rolling", "rolling, batch 1"), ("blue-green", "blue-green, bake 2s"),
                         ("canary", "canary 10/50/100, bake 2s")]:
        rs = results[name]
        lines.append(
            f"| {detail} | {', '.join(str(r['code']) for r in rs)} | {', '.join(str(r['hey']['failed']) for r in rs)} "
            f"| {median([r['hey']['rate'] for r in rs]):.0f} req/s | {fmt([r['hey']['rate'] for r in rs], 0)} "
            f"| {median([r['wall'] for r in rs]):.1f} s |"
        )
    failed = sum(r["hey"]["failed"] for name in ("rolling", "blue-green", "canary") for r in results[name])
    total = sum(r["hey"]["requests"] for name in ("rolling", "blue-green", "canary") for r in results[name])
    errors = sorted({e for name in ("rolling", "blue-green", "canary") for r in results[name] for e in r["hey"]["errors"]})
    lines += ["", f"Failed requests (non-2xx or connection errors) over all good deploys: **{failed}** of {total} "
              f"(target 0)." + (f" hey's errors: {'; '.join(errors)}." if errors else "")]

    bg = results["blue-green-fail"]
    back_s = [r["to_users_back"] for r in bg if "to_users_back" in r]
    started_s = [r["to_rollback_started"] for r in bg if "to_rollback_started" in r]
    finished_s = [r["to_rollback_finished"] for r in bg if "to_rollback_finished" in r]
    lines += [
        "",
        f"Rollback of a release whose health fails 4 s after start (blue-green, fails during the bake at 100%; exit "
        f"codes {', '.join(str(r['code']) for r in bg)}): from the first failed health check to RollbackStarted "
        f"median **{median(started_s):.2f} s** ({fmt(started_s)}), to the last answer from the failed release on "
        f"the public address (polled every 20 ms) median **{median(back_s):.2f} s** ({fmt(back_s)}), to "
        f"RollbackFinished (old version serving, new one "
        f"drained and stopped) median **{median(finished_s):.2f} s** ({fmt(finished_s)}); target within "
        f"{UNHEALTHY} x {INTERVAL_S:g} s + 1 s = {budget:g} s. Failed requests: "
        f"{', '.join(str(r['hey']['failed']) for r in bg)} (health only fails, so users are still answered).",
    ]
    cf = results["canary-fail"]
    rows = []
    for r in cf:
        window = r.get("canary_window")
        share = CANARY_SHARE / 100 * r["hey"]["rate"] * window if window else float("nan")
        rows.append((r, window, share))
    lines += [
        "",
        "Canary (10, 50, 100; bake 5s) of a release that fails health and every request 4 s after start, so after "
        "taking its 10% share; under the same load:",
        "",
        "| run | exit | first failed check in | first failure → last answer from it | → RollbackFinished | failed "
        "requests | requests while the canary had traffic | its 10% share | under the share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (r, window, share) in enumerate(rows, 1):
        sent = r["hey"]["rate"] * window if window else float("nan")
        lines.append(
            f"| {i} | {r['code']} | {r.get('first_fail_phase', '-')} | {r.get('to_users_back', float('nan')):.2f} s "
            f"| {r.get('to_rollback_finished', float('nan')):.2f} s "
            f"| {r['hey']['failed']} | {sent:.0f} | {share:.0f} | {'yes' if r['hey']['failed'] < share else 'no'} |"
        )
    lines += ["", "The poller reaches a 10% canary in about 1 request of 10, so its \"last answer\" is coarse there; a "
              "negative figure means it saw no answer from the canary after the first failed check."]
    over = [(r["elapsed_ms"] - r["health_ms"]) / 1000 for r in results["overhead"]]
    elapsed = [r["elapsed_ms"] / 1000 for r in results["overhead"]]
    health = [r["health_ms"] / 1000 for r in results["overhead"]]
    loaded = [(r["elapsed_ms"] - r["health_ms"]) / 1000 for r in results["blue-green"]]
    lines += [
        "",
        f"Engine overhead, {args.replicas}-replica blue-green (bake 2s) of a good release with no load: Finished "
        f"`elapsed_ms - health_ms` median **{median(over):.2f} s** ({fmt(over)}; target under 1 s); deploy "
        f"{fmt(elapsed)} s, of which gates and bakes {fmt(health)} s. The rest is starting the replicas (the app's own "
        f"start-up included), nginx checks and reloads, and draining and stopping the old replicas. Under the load above: median "
        f"{median(loaded):.2f} s ({fmt(loaded)}).",
    ]
    phases: dict[str, list[float]] = {}
    for r in results["overhead"]:
        in_phases = 0.0
        for e in r["events"]:
            if e["event"] == "phase-finished":
                phases.setdefault(e["phase"], []).append(e["elapsed_ms"] / 1000)
                in_phases += e["elapsed_ms"] / 1000
        phases.setdefault("between phases (ledger writes, events)", []).append(r["elapsed_ms"] / 1000 - in_phases)
    lines += ["", "Where the no-load blue-green's time goes (median per phase; gate-new and bake are the configured "
              "windows):", "", "| phase | median | runs (s) |", "|---|---|---|"]
    lines += [f"| {name} | {median(v):.2f} s | {fmt(v)} |" for name, v in phases.items()]
    starts = [r["app_start"] for r in results["overhead"] if "app_start" in r]
    lines += ["", f"{args.replicas} replicas of the app alone, started at once without gantry right after each of "
              f"these deploys, take median {median(starts):.2f} s ({fmt(starts)}) to accept connections; without "
              f"the app's own start-up, the overhead is median {median([o - a for o, a in zip(over, starts)]):.2f} s "
              f"({fmt([o - a for o, a in zip(over, starts)])})."]
    print("\n".join(lines))
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(f"\n### Deploys under load on the local target ({time.strftime('%Y-%m-%d')})\n\n"
                    + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
