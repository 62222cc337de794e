#!/usr/bin/env python3
"""Stops what a `local` deploy target left running: its nginx and every replica.

    scripts/local_down.py STATE_DIR [STATE_DIR...]

STATE_DIR is the target's state dir (`.gantry/local/ENV/TARGET` under the project).
It does what `LocalTarget::down()` does, from outside gantry: nginx by the pid in
`nginx/nginx.pid` (fast shutdown), then each replica's process group by the pids in
`state.json`, and any process still carrying the target's marker variable
(`GANTRY_LOCAL_STATE=STATE_DIR`). SIGTERM first, SIGKILL after 5 s. Used by the demo
and the deploy benchmark; safe to run twice, and it touches no other process.
"""
import json
import os
import signal
import sys
import time
from pathlib import Path

MARKER = "GANTRY_LOCAL_STATE"


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def marked(state_dir: str) -> list[int]:
    """Pids whose environment carries this target's marker."""
    want = f"{MARKER}={state_dir}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if want in env.split(b"\0"):
            pids.append(int(entry.name))
    return pids


def state_pids(state_dir: Path) -> list[int]:
    try:
        state = json.loads((state_dir / "state.json").read_text())
    except (OSError, ValueError):
        return []
    replicas = list(state.get("retiring") or [])
    for key in ("stable", "new"):
        if state.get(key):
            replicas += state[key].get("replicas") or []
    return [r["process"]["pid"] for r in replicas if r.get("process")]


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        # Replicas lead their own session and process group: signal the whole group.
        for send in (lambda: os.killpg(pid, sig), lambda: os.kill(pid, sig)):
            try:
                send()
                break
            except (ProcessLookupError, PermissionError):
                continue


def down(state_dir: Path) -> None:
    state_dir = state_dir.resolve()
    pids = []
    pid_file = state_dir / "nginx" / "nginx.pid"
    if pid_file.exists():
        try:
            master = int(pid_file.read_text().strip())
            cmdline = Path(f"/proc/{master}/cmdline").read_bytes().decode(errors="replace")
            if "nginx" in cmdline and str(state_dir) in cmdline:
                os.kill(master, signal.SIGTERM)  # nginx: TERM is a fast shutdown
                pids.append(master)
        except (OSError, ValueError):
            pass
    replicas = sorted(set(state_pids(state_dir) + marked(str(state_dir))))
    signal_all(replicas, signal.SIGTERM)
    pids += replicas
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    signal_all([p for p in pids if alive(p)], signal.SIGKILL)


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for arg in sys.argv[1:]:
        down(Path(arg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
