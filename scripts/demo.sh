#!/usr/bin/env bash
# The README's first command (`make demo`): build gantry, then deploy the example app in
# examples/hello to the `local` target (replicas behind gantry's own nginx on loopback):
#
#   1. package and deploy v1;
#   2. deploy v2 blue-green while `hey` sends it steady load, and show hey's result;
#   3. deploy a broken v3, which gantry rolls back by itself (exit code 3);
#   4. print `gantry history`, stop nginx and the replicas.
#
# It works on a copy of examples/hello in a temp folder, so the repository stays clean,
# and listens on a free loopback port pair. It exits non-zero when any step does not
# behave: v2 not live, failed requests under load, v3 not rolled back.
# scripts/bootstrap (run by `make demo` first) installs nginx and hey.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$(date +%s.%N)

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1;34m==> %s\033[0m\n' "$*"; }
  ok() { printf '\033[32mok:\033[0m %s\n' "$*"; }
  fail() { printf '\033[1;31mdemo failed:\033[0m %s\n' "$*" >&2; exit 1; }
else
  step() { printf '\n==> %s\n' "$*"; }
  ok() { printf 'ok: %s\n' "$*"; }
  fail() { printf 'demo failed: %s\n' "$*" >&2; exit 1; }
fi

# The demo deploys to the local target only, so it builds gantry without the `cloud` feature
# (no AWS SDKs, no octocrab, no TLS): under half the full build on a fresh machine. It
# builds with its own profile (Cargo.toml's [profile.demo]), into target/demo, so it never
# replaces the full build in target/debug.
step "build gantry (local targets only: --no-default-features --profile demo)"
build_started=$(date +%s.%N)
# What the demo needs from apt (nginx, hey) installs while cargo compiles: one waits on the
# network and the disk, the other on the CPU. The build itself needs only cargo and a C linker.
if command -v cargo >/dev/null 2>&1 && command -v cc >/dev/null 2>&1; then
  "$repo/scripts/bootstrap" &
  bootstrap_pid=$!
else
  "$repo/scripts/bootstrap"
  bootstrap_pid=""
fi
cargo build --locked --quiet --no-default-features --profile demo
if [ -n "$bootstrap_pid" ]; then
  wait "$bootstrap_pid" || fail "scripts/bootstrap could not install what the demo needs"
fi
gantry="${CARGO_TARGET_DIR:-$repo/target}/demo/gantry"
ok "built in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$build_started" "$(date +%s.%N)") s"

work=$(mktemp -d)
project="$work/hello"
cp -r examples/hello "$project"
rm -rf "$project/dist" "$project/.gantry"
state_dir="$project/.gantry/local/dev/web"
hey_pid=""
cleanup() {
  [ -n "$hey_pid" ] && kill "$hey_pid" 2>/dev/null || true
  python3 "$repo/scripts/local_down.py" "$state_dir" || true
  rm -rf "$work"
}
trap cleanup EXIT

# A free pair of loopback ports (public, preview = public + 1), so the demo never
# collides with another gantry on this machine.
port=$(python3 - <<'EOF'
import random, socket
for _ in range(200):
    port = random.randrange(20000, 30000, 2)
    try:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", port)); b.bind(("127.0.0.1", port + 1))
        print(port); break
    except OSError:
        continue
EOF
)
export GANTRY_TARGETS__WEB__LOCAL__LISTEN="127.0.0.1:$port"
# A 2 s bake instead of the example's 5 s, through the same environment overrides a user has.
export GANTRY_TARGETS__WEB__STRATEGY__BAKE=2s
url="http://127.0.0.1:$port"
cd "$project"
live_version() { curl -fsS --max-time 2 "$url/version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'; }

step "v1: gantry package && gantry --env dev deploy (2 replicas behind nginx on $url)"
"$gantry" package -q --version 1.0.0
"$gantry" --env dev deploy --version 1.0.0
[ "$(live_version)" = 1.0.0 ] || fail "v1 is not live at $url"
ok "$url answers: $(curl -fsS "$url/")"

step "v2: blue-green deploy while hey sends 100 requests/s to $url"
"$gantry" package -q --version 2.0.0
hey -z 120s -c 10 -q 10 "$url/" >"$work/hey.txt" 2>&1 &
hey_pid=$!
sleep 1
"$gantry" --env dev deploy --version 2.0.0
sleep 1
kill -INT "$hey_pid"
wait "$hey_pid" || true
hey_pid=""
echo "hey (load generator) result:"
sed -n '/^Summary:/,/Requests\/sec/p;/^Status code distribution:/,$p' "$work/hey.txt" | grep -v '^[[:space:]]*$'
failed=$(python3 - "$work/hey.txt" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
codes = re.search(r"Status code distribution:\n((?:\s+\[\d+\].*\n)*)", text)
bad = sum(int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", codes.group(1) if codes else "")
          if not code.startswith("2"))
errors = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)*)", text)
bad += sum(int(n) for n in re.findall(r"\[(\d+)\]", errors.group(1) if errors else ""))
ok = sum(int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", text) if code.startswith("2"))
print(bad if ok else "no successful requests")
EOF
)
[ "$failed" = 0 ] || fail "failed requests during the v2 deploy: $failed"
[ "$(live_version)" = 2.0.0 ] || fail "v2 is not live at $url"
ok "0 failed requests during the cutover; $url answers: $(curl -fsS "$url/")"

step "v3: a broken release (its health check fails): gantry rolls it back by itself"
DEMO_BROKEN=1 "$gantry" package -q --version 3.0.0
code=0
"$gantry" --env dev deploy --version 3.0.0 || code=$?
[ "$code" = 3 ] || fail "deploying the broken v3 exited with $code, expected 3 (rolled back)"
[ "$(live_version)" = 2.0.0 ] || fail "v2 is not live after the rollback of v3"
ok "gantry exited with code 3 (rolled back); $url still answers: $(curl -fsS "$url/")"

step "gantry --env dev history"
"$gantry" --env dev history

step "clean up: stop nginx and the replicas"
cd "$repo"
python3 scripts/local_down.py "$state_dir"
ok "stopped"
printf '\ndemo finished in %s s\n' "$(python3 -c "import time; print(round(time.time() - $started))")"
