#!/usr/bin/env bash
# Builds the Go skynet peer with Debian's golang-go, offline: GOPATH mode (GO111MODULE=off) needs no go.mod and no
# module download, and the program imports only the standard library.
#
#   bench/peers/go_skynet/build.sh [OUTPUT]      # default OUTPUT: build/bin/go-skynet
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${1:-$root/build/bin/go-skynet}
if ! command -v go >/dev/null; then
  echo "go-skynet: go not found: apt-get install golang-go" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
# HOME may be unset in CI; the build cache then lives beside the output.
export GOCACHE=${GOCACHE:-$(dirname "$out")/.gocache}
# A caller's GOFLAGS (say -mod=mod) is module-mode only and Go rejects it in GOPATH mode, so it is cleared.
GO111MODULE=off GOPROXY=off GOFLAGS= go build -o "$out" "$here/skynet.go"
