#!/usr/bin/env bash
# Starts a local livecdn cluster on loopback: etcd + 2 origins + 2 edges, and prints the URLs
# to push to and play from. Ctrl-C stops everything it started.
# Ports: BASE (default 19000) + offsets; etcd on BASE+379.
set -euo pipefail
cd "$(dirname "$0")/../.."

source deploy/local/deps.sh
need etcd curl
cargo build --release --bins
bin=${CARGO_TARGET_DIR:-target}/release

BASE=${BASE:-19000}
ETCD_PORT=$((BASE + 379))
ETCD="http://127.0.0.1:$ETCD_PORT"
data=$(mktemp -d)
logs=${LOGS:-$data/logs}
mkdir -p "$logs"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data/etcd"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

etcd --name local --data-dir "$data/etcd" \
  --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$((BASE + 380))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 380))" \
  --initial-cluster "local=http://127.0.0.1:$((BASE + 380))" \
  >"$logs/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "$ETCD/health" >/dev/null 2>&1 && break
  sleep 0.1
done

start() { # role index region rtmp-port http-port api-port
  "$bin/$1" --node-id "$1-$2" --etcd "$ETCD" --region "$3" --region-distance east:west=10 \
    --rtmp-listen "127.0.0.1:$4" --http-listen "127.0.0.1:$5" --api-listen "127.0.0.1:$6" \
    >"$logs/$1-$2.log" 2>&1 &
  pids+=($!)
}
# Two regions: edge-1 in east, edge-2 in west (the locator sends players to their region's edge).
start origin 1 east $((BASE + 1)) $((BASE + 81)) $((BASE + 181))
start origin 2 west $((BASE + 2)) $((BASE + 82)) $((BASE + 182))
start edge 1 east $((BASE + 11)) $((BASE + 91)) $((BASE + 191))
start edge 2 west $((BASE + 12)) $((BASE + 92)) $((BASE + 192))
for port in $((BASE + 81)) $((BASE + 82)) $((BASE + 91)) $((BASE + 92)); do
  for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
done

cat <<TXT

livecdn local cluster is running (logs in $logs; Ctrl-C stops it).

  etcd      $ETCD
  origin-1  rtmp://127.0.0.1:$((BASE + 1))   http://127.0.0.1:$((BASE + 81))
  origin-2  rtmp://127.0.0.1:$((BASE + 2))   http://127.0.0.1:$((BASE + 82))
  edge-1    rtmp://127.0.0.1:$((BASE + 11))  http://127.0.0.1:$((BASE + 91))   (region east)
  edge-2    rtmp://127.0.0.1:$((BASE + 12))  http://127.0.0.1:$((BASE + 92))   (region west)
  control API (JSON /api/v1, gRPC; loopback only, no token): origin-1 http://127.0.0.1:$((BASE + 181)),
  origin-2 :$((BASE + 182)), edge-1 :$((BASE + 191)), edge-2 :$((BASE + 192))

Push (to either origin; OBS: server rtmp://127.0.0.1:$((BASE + 1))/live, stream key demo):
  ffmpeg -re -f lavfi -i testsrc2=rate=25 -f lavfi -i sine -c:v libx264 -g 50 -c:a aac -f flv rtmp://127.0.0.1:$((BASE + 1))/live/demo

Play from an edge (the first player makes it pull the stream from its origin):
  ffplay rtmp://127.0.0.1:$((BASE + 11))/live/demo
  ffplay http://127.0.0.1:$((BASE + 91))/live/demo.flv
  ffplay rtmp://127.0.0.1:$((BASE + 12))/live/demo
  ffplay http://127.0.0.1:$((BASE + 92))/live/demo.flv

HLS from an edge (LL-HLS over fMP4; MPEG-TS for old players), and the player page in a browser:
  http://127.0.0.1:$((BASE + 91))/live/demo.m3u8      http://127.0.0.1:$((BASE + 91))/live/demo/ts.m3u8
  http://127.0.0.1:$((BASE + 92))/live/demo.m3u8      http://127.0.0.1:$((BASE + 92))/live/demo/ts.m3u8
  http://127.0.0.1:$((BASE + 91))/live/demo           http://127.0.0.1:$((BASE + 92))/live/demo

One URL for players (any node answers; a 302 to the nearest edge; ?region= overrides the client's
region, which on loopback is the answering node's):
  ffplay 'http://127.0.0.1:$((BASE + 81))/locate/live/demo.flv?region=west'
  http://127.0.0.1:$((BASE + 81))/locate/live/demo.m3u8    http://127.0.0.1:$((BASE + 81))/locate/live/demo
  curl http://127.0.0.1:$((BASE + 81))/api/v1/locate/live/demo    (JSON, with the RTMP URL)

TXT
wait
