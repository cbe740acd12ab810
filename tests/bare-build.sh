#!/usr/bin/env bash
# Guard for the README's promise that a bare machine builds livecdn: checks livecdn-common (the
# crate that pulls etcd-client, whose build script runs protoc) in a scratch target directory
# with no protoc on PATH, PROTOC unset and PROTOC_INCLUDE pointing at an empty directory. It
# passes only if the build finds protoc and the well-known .proto files by itself (tools/protoc,
# wired in .cargo/config.toml), whatever this machine has installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir "$scratch/bin" "$scratch/include"
# A PATH with every program of this one but protoc: a directory of links.
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  for f in "$d"/*; do
    n=${f##*/}
    if [ "$n" != protoc ] && [ ! -e "$scratch/bin/$n" ]; then ln -s "$f" "$scratch/bin/$n"; fi
  done
done
echo "bare build: checking livecdn-common with no protoc on PATH (scratch target $scratch/target)"
if ! env -u PROTOC PROTOC_INCLUDE="$scratch/include" PATH="$scratch/bin" \
  CARGO_TARGET_DIR="$scratch/target" cargo check --quiet --locked -p livecdn-common \
  >"$scratch/log" 2>&1; then
  cat "$scratch/log" >&2
  echo "bare build FAILED: the build needs something a bare machine lacks (see above)" >&2
  exit 1
fi
echo "bare build: ok"
