#!/usr/bin/env bash
# Locate under load (issue 14's target: p99 under 1 ms at 5,000 requests/s on one node): etcd,
# one origin and 9 edges in 3 regions on loopback, then `locate-load` asks the origin for
# Zipf-distributed streams from random regions, JSON and 302, and prints the latency
# percentiles and the node's CPU. Writes target/bench-locate/LOCATE.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE=${BASE:-27000}
RATE=${RATE:-5000}
SECONDS_=${SECONDS_:-20}
out=target/bench-locate
source bench/cluster-lib.sh
dist="r0:r1=10,r0:r2=20,r1:r2=10"
"$bin/origin" --node-id o --etcd "$ETCD" --region r0 --region-distance "$dist" \
  --rtmp-listen "127.0.0.1:$((BASE + 1))" --http-listen "127.0.0.1:$((BASE + 81))" \
  --api-listen "127.0.0.1:$((BASE + 181))" --log warn >"$data/origin.log" 2>&1 &
pids+=($!)
origin_pid=$!
for i in $(seq 0 8); do
  "$bin/edge" --node-id "e$i" --etcd "$ETCD" --region "r$((i % 3))" --region-distance "$dist" \
    --rtmp-listen "127.0.0.1:$((BASE + 10 + i))" --http-listen "127.0.0.1:$((BASE + 90 + i))" \
    --api-listen "127.0.0.1:$((BASE + 190 + i))" --log warn >"$data/edge-$i.log" 2>&1 &
  pids+=($!)
done
edges_in_view $((BASE + 181)) 9
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)
run() { # label path status
  local before after
  before=$(cpu "$origin_pid")
  res=$("$bin/locate-load" --addr "127.0.0.1:$((BASE + 81))" --rate "$RATE" --seconds "$SECONDS_" \
    --path "$2" --status "$3")
  after=$(cpu "$origin_pid")
  cpu_pct=$(awk -v a="$after" -v b="$before" -v t="$tck" -v s="$SECONDS_" 'BEGIN{printf "%.1f", (a-b)/t/s*100}')
  echo "| $1 | $res | $cpu_pct |"
}
{
  echo "# Locate under load ($(date -u +%F), ${RATE} requests/s for ${SECONDS_} s, 9 edges in 3 regions, 100 Zipf streams)"
  echo
  echo "| entry | result | answering node CPU % of a core |"
  echo "|---|---|---|"
  run "JSON /api/v1/locate" '/api/v1/locate/live/s{n}?region=r{r}' 200
  run "302 /locate/...flv" '/locate/live/s{n}.flv?region=r{r}' 302
} | tee "$out/LOCATE.md"
