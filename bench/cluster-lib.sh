# Sourced by bench/locate.sh and bench/tiers.sh: the release binaries, a scratch dir, and one
# etcd on loopback at BASE+379, all stopped (and $out given the logs) on exit.
# Needs: BASE, out (results directory).
source deploy/local/deps.sh
need etcd curl
cargo build --release -p livecdn-origin -p livecdn-edge -p livecdn-bench
bin=${CARGO_TARGET_DIR:-target}/release
mkdir -p "$out"
data=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  cp "$data"/*.log "$out/" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
ETCD="http://127.0.0.1:$((BASE + 379))"
etcd --name b --data-dir "$data/etcd" --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
  --listen-peer-urls "http://127.0.0.1:$((BASE + 380))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 380))" \
  --initial-cluster "b=http://127.0.0.1:$((BASE + 380))" >"$data/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fsS "$ETCD/health" >/dev/null 2>&1 && break; sleep 0.1; done

# edges_in_view API_PORT N: waits until the node on API_PORT sees N edges.
edges_in_view() {
  for _ in $(seq 1 100); do
    n=$(curl -fsS "http://127.0.0.1:$1/api/v1/cluster/nodes" 2>/dev/null | grep -o '"role":"edge"' | wc -l || true)
    [ "$n" -ge "$2" ] && return 0
    sleep 0.2
  done
  return 1
}
