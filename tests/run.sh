#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs what the tests need (ffmpeg,
# rtmpdump, etcd, Prometheus), builds every binary, runs unit, integration and smoke tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive: real encoders/players, a real etcd, Prometheus, Chromium
# with node/npm to drive it (tests/tests/browser.rs). The list of
# tool -> package is shared with the local cluster command (deploy/local/deps.sh). The build
# itself needs none of them (protoc comes from a crate, see .cargo/config.toml).
source deploy/local/deps.sh
need etcd curl ffmpeg ffprobe rtmpdump prometheus promtool sh bash kill timeout getconf chromium node npm ip

# The build must not depend on a system protoc (it broke new users once): prove it each run.
tests/bare-build.sh

# Integration tests run the real binaries: build them first (release too, for the README's
# local cluster, so that its own build is a no-op while timing-sensitive tests run).
cargo build --workspace --all-targets
cargo build --release --bins
# The browser test's players (hls.js, mpegts.js) and driver (playwright-core, which uses the
# Debian chromium above and downloads no browser), pinned by tests/web/package-lock.json.
npm ci --prefix tests/web --no-audit --no-fund
# Each integration test starts its own nodes and ffmpeg processes; on 2 cores keep a few at once.
cargo test --workspace -- --test-threads "${LIVECDN_TEST_THREADS:-3}"
