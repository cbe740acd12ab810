#!/usr/bin/env bash
# Edge tiers under load (issue 15's target): etcd, one origin, one tier-1 (mid) edge and four
# tier-2 (leaf) edges on loopback. The same 400 players at 2 Mbit/s play one stream twice:
# from the mid edge (one tier), then spread over the leaves (three tiers: origin -> mid ->
# leaves). Reports the origin's connection count and the players' first frame and latency
# percentiles of both. Writes target/bench-tiers/TIERS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-28000}
PLAYERS=${PLAYERS:-400}
DURATION=${DURATION:-20}
out=target/bench-tiers
source bench/cluster-lib.sh
node() { # binary id rtmp-port extra...
  local b=$1 id=$2 port=$3
  shift 3
  "$bin/$b" --node-id "$id" --etcd "$ETCD" --log warn --rtmp-listen "127.0.0.1:$port" \
    --http-listen "127.0.0.1:$((port + 100))" --api-listen "127.0.0.1:$((port + 200))" "$@" \
    >"$data/$id.log" 2>&1 &
  pids+=($!)
}
node origin origin $((BASE + 1))
node edge mid $((BASE + 10)) --tier 1
for i in 1 2 3 4; do node edge "leaf$i" $((BASE + 10 + i)) --tier 2; done
edges_in_view $((BASE + 201)) 5
origin_players() {
  curl -fsS "http://127.0.0.1:$((BASE + 101))/metrics" | awk '/^livecdn_media_players\{.*protocol="rtmp"/ {s += $2} END {print s + 0}'
}
play() { # label stream urls...
  local label=$1 stream=$2
  shift 2
  local args=()
  for u in "$@"; do args+=(--play "$u"); done
  echo "### $label"
  echo
  echo '```'
  "$bin/loadgen" --publish "rtmp://127.0.0.1:$((BASE + 1))/live/$stream" "${args[@]}" \
    --players "$PLAYERS" --bitrate 2m --gop 50 --warmup 3 --duration "$DURATION" \
    --json "$out/$stream.json" 2>&1 | grep -E "players|latency|first frame|gaps" || true
  echo '```'
  echo
}
{
  echo "# Edge tiers under load ($(date -u +%F), $PLAYERS players at 2 Mbit/s, 2 s GOPs, unpinned)"
  echo
  play "one tier: every player on the mid edge" one "rtmp://127.0.0.1:$((BASE + 10))/live/one"
  leaves=()
  for i in 1 2 3 4; do leaves+=("rtmp://127.0.0.1:$((BASE + 10 + i))/live/three"); done
  (sleep $((DURATION / 2 + 5)); echo "origin RTMP connections while three tiers play: $(origin_players)" >"$out/origin.txt") &
  play "three tiers: origin -> mid -> 4 leaves, players spread over the leaves" three "${leaves[@]}"
  wait
  cat "$out/origin.txt"
} | tee "$out/TIERS.md"
