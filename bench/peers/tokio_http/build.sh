#!/usr/bin/env bash
# Builds tokio-http (the Tokio peer of tern-echo for bench/echo.sh) in release mode, offline: crates come from Debian's
# packaged registry (/usr/share/cargo/registry, librust-tokio-dev) through .cargo/config.toml's source replacement,
# never from crates.io, since the benchmark machines have no internet. Debian's cargo and rustc (1.63 in Debian 12)
# are preferred over a rustup toolchain, so the build is the same on every machine that has the packages.
#
#   bench/peers/tokio_http/build.sh [OUT_DIR [TARGET_DIR]]   # default OUT_DIR: build/bin; writes OUT_DIR/tokio-http
#
# Cargo's own outputs go to TARGET_DIR (default: OUT_DIR/../tokio-http-target), outside the source tree.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/build/bin}
if [[ -x /usr/bin/cargo ]]; then
  cargo=/usr/bin/cargo
  # With Debian's cargo, Debian's rustc too (not a rustup one earlier on PATH).
  if [[ -x /usr/bin/rustc ]]; then export RUSTC=/usr/bin/rustc; fi
elif command -v cargo >/dev/null; then
  cargo=$(command -v cargo)
else
  echo "tokio-http: cargo not found: apt-get install cargo librust-tokio-dev" >&2
  exit 1
fi
if ! compgen -G "/usr/share/cargo/registry/tokio-1.*" >/dev/null; then
  echo "tokio-http: no tokio under /usr/share/cargo/registry: apt-get install cargo librust-tokio-dev" >&2
  exit 1
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)
target=${2:-$(dirname "$out")/tokio-http-target}
# Cargo reads .cargo/config.toml (the offline source replacement) from its working directory. No Cargo.lock is kept:
# the registry holds one version of each crate, so it pins the build already, and a lock written against another
# Debian release's registry (other versions) would fail the offline build.
cd "$here"
rm -f Cargo.lock
CARGO_TARGET_DIR=$target "$cargo" build --offline --release
cp "$target/release/tokio-http" "$out/tokio-http"
