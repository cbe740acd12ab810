#!/usr/bin/env bash
# Starts a local livecdn on loopback and prints the URLs to push to and play from.
# Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v protoc >/dev/null 2>&1 || {
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq protobuf-compiler >/dev/null
}
cargo build --release --bins

RTMP_PORT=${RTMP_PORT:-1935}
HTTP_PORT=${HTTP_PORT:-8080}
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

./target/release/origin --node-id origin-1 \
  --rtmp-listen "127.0.0.1:$RTMP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" &
pids+=($!)

cat <<TXT

livecdn is running (Ctrl-C stops it).

  push:  ffmpeg -re -f lavfi -i testsrc2=rate=25 -f lavfi -i sine -c:v libx264 -g 50 -c:a aac -f flv rtmp://127.0.0.1:$RTMP_PORT/live/demo
         (OBS: server rtmp://127.0.0.1:$RTMP_PORT/live, stream key demo)
  play:  ffplay rtmp://127.0.0.1:$RTMP_PORT/live/demo
         ffplay http://127.0.0.1:$HTTP_PORT/live/demo.flv

TXT
wait
