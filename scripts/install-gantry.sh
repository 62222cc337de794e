#!/usr/bin/env bash
# Installs gantry into DIR/bin: a released binary for this platform, checksum-verified, or
# a build from source. The GitHub Action (action.yml) runs it; it works the same by hand.
#
#   scripts/install-gantry.sh VERSION DIR
#
#   VERSION  `1.2.3` or `v1.2.3`: that release's binary; `latest`: the newest release;
#            `source`: build with cargo from GANTRY_SOURCE_DIR.
#   DIR      installs DIR/bin/gantry (created).
#
# Environment:
#   GANTRY_REPOSITORY    owner/name the releases belong to (default: $GITHUB_ACTION_REPOSITORY,
#                        else $GITHUB_REPOSITORY).
#   GANTRY_RELEASES_URL  base of the release downloads (default https://github.com/REPO/releases);
#                        assets are fetched from BASE/download/vVERSION/NAME, `latest` from
#                        BASE/latest/download/NAME.
#   GANTRY_SOURCE_DIR    a gantry source tree (the action's own checkout): the fallback when the
#                        release has no asset for this platform, and what `source` builds.
#
# Release assets (what gantry's release workflow attaches):
#   gantry-TARGET.tar.gz  holding the `gantry` binary, for TARGET x86_64-unknown-linux-gnu,
#                         aarch64-unknown-linux-gnu, x86_64-apple-darwin, aarch64-apple-darwin
#   SHA256SUMS            `sha256sum` lines for every archive
#
# A binary is installed only when its SHA-256 is the one SHA256SUMS lists: a mismatch, or a
# SHA256SUMS without the asset, fails (exit 1) and never falls back to anything. Only a missing
# asset (HTTP 404) falls back to a source build, and only when GANTRY_SOURCE_DIR is set;
# otherwise that fails too. Exit codes: 0 installed, 1 failed, 2 usage.
set -euo pipefail

log() { echo "install-gantry: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 2 ] || { echo "usage: $0 VERSION DIR" >&2; exit 2; }
version=$1
dir=$2
repo=${GANTRY_REPOSITORY:-${GITHUB_ACTION_REPOSITORY:-${GITHUB_REPOSITORY:-}}}
base=${GANTRY_RELEASES_URL:-}
if [ -z "$base" ] && [ "$version" != source ]; then
  [ -n "$repo" ] || { echo "install-gantry: set GANTRY_REPOSITORY (owner/name) or GANTRY_RELEASES_URL" >&2; exit 2; }
  base="https://github.com/$repo/releases"
fi

target() {
  local os arch
  os=$(uname -s)
  arch=$(uname -m)
  case "$arch" in
    x86_64 | amd64) arch=x86_64 ;;
    aarch64 | arm64) arch=aarch64 ;;
    *) return 1 ;;
  esac
  case "$os" in
    Linux) echo "$arch-unknown-linux-gnu" ;;
    Darwin) echo "$arch-apple-darwin" ;;
    *) return 1 ;;
  esac
}

build_from_source() {
  local why=$1
  local src=${GANTRY_SOURCE_DIR:-}
  if [ -z "$src" ] || [ ! -f "$src/Cargo.toml" ]; then
    die "$why, and there is no source to build from (set GANTRY_SOURCE_DIR to a gantry checkout)"
  fi
  command -v cargo >/dev/null || die "$why; building from $src needs cargo (install Rust: https://rustup.rs)"
  log "$why: building gantry from $src with cargo"
  cargo install --locked --quiet --path "$src" --root "$dir" --force >&2
}

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

# Downloads URL to FILE; prints the HTTP status (000: no answer).
fetch() {
  curl -sSL --retry 3 --retry-delay 1 --connect-timeout 10 --max-time 300 -o "$2" -w '%{http_code}' "$1" || true
}

mkdir -p "$dir/bin"
if [ "$version" = source ]; then
  build_from_source "version \`source\` asked for"
else
  plat=$(target) || plat=""
  if [ -z "$plat" ]; then
    build_from_source "no released gantry for $(uname -s) $(uname -m)"
  else
    case "$version" in
      latest) url="$base/latest/download" ;;
      v*) url="$base/download/$version" ;;
      *) url="$base/download/v$version" ;;
    esac
    asset="gantry-$plat.tar.gz"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    status=$(fetch "$url/$asset" "$tmp/$asset")
    if [ "$status" = 404 ]; then
      build_from_source "release $version has no asset $asset"
    elif [ "$status" != 200 ]; then
      die "cannot download $url/$asset (HTTP $status)"
    else
      status=$(fetch "$url/SHA256SUMS" "$tmp/SHA256SUMS")
      [ "$status" = 200 ] || die "cannot download $url/SHA256SUMS (HTTP $status): refusing to install an unverified binary"
      expected=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$tmp/SHA256SUMS")
      [ -n "$expected" ] || die "SHA256SUMS of release $version lists no $asset: refusing to install an unverified binary"
      actual=$(sha256 "$tmp/$asset")
      if [ "$actual" != "$expected" ]; then
        die "checksum mismatch for $asset: SHA256SUMS says $expected, the download is $actual; not installed"
      fi
      tar -xzf "$tmp/$asset" -C "$tmp" gantry || die "$asset holds no \`gantry\` binary"
      install -m 0755 "$tmp/gantry" "$dir/bin/gantry"
      log "installed gantry $version ($plat, sha256 $actual) in $dir/bin"
    fi
  fi
fi
"$dir/bin/gantry" --version >&2 || die "the installed gantry does not run"
