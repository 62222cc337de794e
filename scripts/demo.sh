#!/usr/bin/env bash
# The README's first command (`make demo`): build gantry, package the example app,
# and show that packaging is reproducible: two checkouts in different folders, at
# different times, give byte-identical archives.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet
gantry="$PWD/target/debug/gantry"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
else
  step() { printf '\n==> %s\n' "$*"; }
fi

step "gantry package (the example app in examples/hello)"
rm -rf examples/hello/dist
"$gantry" --config examples/hello/gantry.toml package

step "what was written"
ls -l examples/hello/dist
cat examples/hello/dist/release.json
(cd examples/hello/dist && sha256sum --check SHA256SUMS)
zip_file=$(ls examples/hello/dist/*.zip | head -n 1)
unzip -l "$zip_file"

step "reproducible: the same release from another folder, a second later"
sleep 1
cp -r examples/hello "$work/elsewhere"
rm -rf "$work/elsewhere/dist"
touch "$work/elsewhere/app/server.py"
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' examples/hello/dist/release.json)
epoch=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_date_epoch"])' examples/hello/dist/release.json)
SOURCE_DATE_EPOCH=$epoch "$gantry" --config "$work/elsewhere/gantry.toml" package --version "$version" --out "$work/dist"
if cmp -s "$zip_file" "$work/dist/$(basename "$zip_file")"; then
  echo "identical: $(sha256sum "$zip_file" | cut -c1-64)"
else
  echo "archives differ: packaging is not reproducible" >&2
  exit 1
fi

step "done: see README.md for what comes next (publish, deploy, release)"
