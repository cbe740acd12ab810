#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need (ffmpeg,
# rtmpdump, etcd, protoc), builds every binary, runs unit, integration and smoke tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: real encoders/players, a real etcd.
declare -A pkg_for=(
  [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [rtmpdump]=rtmpdump [etcd]=etcd-server [protoc]=protobuf-compiler
  [prometheus]=prometheus [promtool]=prometheus
)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: $(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null
fi

# Integration tests run the real binaries: build them first (release too, for the README's
# local cluster, so that its own build is a no-op while timing-sensitive tests run).
cargo build --workspace --all-targets
cargo build --release --bins
# Each integration test starts its own nodes and ffmpeg processes; on 2 cores keep a few at once.
cargo test --workspace -- --test-threads "${LIVECDN_TEST_THREADS:-3}"
