#!/usr/bin/env bash
# Every benchmark scenario, against livecdn (etcd + origin + edge) and nginx-rtmp (origin +
# pulling edge) on loopback, in one run; writes BENCHMARKS.md. About 12 minutes on 2 cores.
#
#   bench/run.sh                 # everything, writes BENCHMARKS.md
#   QUICK=1 bench/run.sh         # tiny loads and windows: checks the script in ~3 minutes
#   SCENARIOS=hls bench/run.sh   # HLS only, writes target/bench-hls/BENCHMARKS.md
#   SCENARIOS=tls bench/run.sh   # what a TLS player costs, writes target/bench-tls/BENCHMARKS.md
#
# Knobs (environment): WINDOW (s, default 12), WARMUP (s, 4), BITRATE (2m), FANOUT
# ("500 1000 2000 3000"), FLV_FANOUT ("1000 3000", sizes of FANOUT), REPEAT (3) runs per server of (d) and of each of
# REPEAT_FANOUT ("1000 3000"), alternating servers (the headline takes medians),
# SERVER_CPUS (1), LOADGEN_CPUS (0), BASE (port base, 23000), RESULTS (dir for JSON/logs),
# OUT (BENCHMARKS.md), SKIP_NGINX=1, PROFILE=0 (skip the perf profile), LIVECDN_REV (the revision to report, default from git),
# SCENARIOS (default "fanout unpinned relay cold many stall workers hls tls profile"), REV (benchmark a
# commit instead of the working tree), QUIET_MAX / UNATTRIBUTED_MAX / RETRIES (shared machine).
# HLS: HLS_CLIENTS ("200 1000"), HLS_GOP (25: a keyframe every second at 25 fps, both
# servers), HLS_WINDOW (s, 12), HLS_WARMUP (s, 4), HLS_COLD_STREAMS (20), HLS_MANY_STREAMS (20),
# HLS_MANY_WARMUP (s, 22: the edge's window of 10 x 2 s segments fills).
# TLS: TLS_PLAYERS ("200 1000") players per run over RTMP, RTMPS, HTTP-FLV and HTTPS-FLV.
# Binaries are taken from $CARGO_TARGET_DIR (default target/)/release.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# How this run was started (the knobs that were set), for the report.
INVOCATION="$(for v in REV QUICK SCENARIOS WINDOW WARMUP BITRATE FPS GOP FANOUT FLV_FANOUT REPEAT REPEAT_FANOUT SERVER_CPUS \
  LOADGEN_CPUS SKIP_NGINX PROFILE STALL_WINDOW HLS_CLIENTS HLS_GOP HLS_WINDOW HLS_WARMUP HLS_COLD_STREAMS \
  HLS_MANY_STREAMS HLS_MANY_WARMUP TLS_PLAYERS; do [ -n "${!v+x}" ] && printf '%s=%q ' "$v" "${!v}"; done; true)bench/run.sh"
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  WINDOW=${WINDOW:-3}; WARMUP=${WARMUP:-1}; FANOUT=${FANOUT:-"50 100"}; FLV_FANOUT=${FLV_FANOUT:-"50"}
  STALL_WINDOW=${STALL_WINDOW:-5}; REPEAT=${REPEAT:-2}; REPEAT_FANOUT=${REPEAT_FANOUT-"100"}; MANY_STREAMS=${MANY_STREAMS:-10}; COLD_STREAMS=${COLD_STREAMS:-4}
  RELAY_PLAYERS=${RELAY_PLAYERS:-20}; STALL_PLAYERS=${STALL_PLAYERS:-50}; WORKERS_PLAYERS=${WORKERS_PLAYERS:-100}
  PROFILE_PLAYERS=${PROFILE_PLAYERS:-100}
  HLS_CLIENTS=${HLS_CLIENTS-"20"}; HLS_WINDOW=${HLS_WINDOW:-5}; HLS_WARMUP=${HLS_WARMUP:-2}
  HLS_COLD_STREAMS=${HLS_COLD_STREAMS:-3}; HLS_MANY_STREAMS=${HLS_MANY_STREAMS:-3}; HLS_MANY_WARMUP=${HLS_MANY_WARMUP:-3}
  TLS_PLAYERS=${TLS_PLAYERS-"50"}
  OUT=${OUT:-$ROOT/target/bench-quick/BENCHMARKS.md}
fi
# HLS alone does not rewrite BENCHMARKS.md (the other scenarios' tables would be lost).
[ "${SCENARIOS:-}" = hls ] && OUT=${OUT:-$ROOT/target/bench-hls/BENCHMARKS.md}
[ "${SCENARIOS:-}" = tls ] && OUT=${OUT:-$ROOT/target/bench-tls/BENCHMARKS.md}
WINDOW=${WINDOW:-12}
WARMUP=${WARMUP:-4}
BITRATE=${BITRATE:-2m}
FPS=${FPS:-25}
GOP=${GOP:-50}
FANOUT=${FANOUT-"500 1000 2000 3000"}
FLV_FANOUT=${FLV_FANOUT-"1000 3000"}
REPEAT=${REPEAT:-3}                       # runs of each REPEAT_FANOUT size, per server
REPEAT_FANOUT=${REPEAT_FANOUT-"1000 3000"}
RELAY_PLAYERS=${RELAY_PLAYERS:-200}
COLD_STREAMS=${COLD_STREAMS:-20}
MANY_STREAMS=${MANY_STREAMS:-200}
STALL_PLAYERS=${STALL_PLAYERS:-500}
STALL_WINDOW=${STALL_WINDOW:-60}
WORKERS_PLAYERS=${WORKERS_PLAYERS:-3000}
HLS_CLIENTS=${HLS_CLIENTS-"200 1000"}
HLS_GOP=${HLS_GOP:-25}
HLS_WINDOW=${HLS_WINDOW:-12}
HLS_WARMUP=${HLS_WARMUP:-4}
HLS_COLD_STREAMS=${HLS_COLD_STREAMS:-20}
HLS_MANY_STREAMS=${HLS_MANY_STREAMS:-20}
HLS_MANY_WARMUP=${HLS_MANY_WARMUP:-22}
TLS_PLAYERS=${TLS_PLAYERS-"200 1000"}
SERVER_CPUS=${SERVER_CPUS:-1}
LOADGEN_CPUS=${LOADGEN_CPUS:-0}
BASE=${BASE:-23000}
OUT=${OUT:-$ROOT/BENCHMARKS.md}
SKIP_NGINX=${SKIP_NGINX:-0}
WORK=$(mktemp -d /tmp/livecdn-bench.XXXXXX)
RESULTS=${RESULTS:-$WORK/results}
mkdir -p "$RESULTS" "$WORK/logs"
LOGS=$WORK/logs

# --- prerequisites --------------------------------------------------------------------------
declare -A pkg_for=([etcd]=etcd-server [nginx]=nginx [curl]=curl [taskset]=util-linux [openssl]=openssl)
missing=()
for tool in "${!pkg_for[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${pkg_for[$tool]}")
done
[ -f /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# 3000 players: the load generator and the servers each need a descriptor per connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "open files limit: $(ulimit -n)"

# REV=<commit>: benchmark exactly that commit (exported with git archive, built in
# target/bench-rev) instead of the working tree, so edits in progress are not measured.
REV=${REV:-}
if [ -n "$REV" ]; then
  SRC=$WORK/src
  mkdir -p "$SRC"
  git archive "$REV" | tar -x -C "$SRC"
  rm -rf "$SRC/bench"
  cp -r "$ROOT/bench" "$SRC/bench"
  grep -q '"bench"' "$SRC/Cargo.toml" ||
    sed -i 's/^members = \[\(.*\)\]/members = [\1, "bench"]/' "$SRC/Cargo.toml"
  echo "building $REV (release)..."
  (cd "$SRC" && CARGO_TARGET_DIR=$ROOT/target/bench-rev \
    cargo build --release -q -p livecdn-origin -p livecdn-edge -p livecdn-bench)
  BIN=$ROOT/target/bench-rev/release
  LIVECDN_REV=${LIVECDN_REV:-"$(git rev-parse --short "$REV") (REV=$REV; uncommitted changes not measured)"}
else
  echo "building (release)..."
  cargo build --release -q -p livecdn-origin -p livecdn-edge -p livecdn-bench
  BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

# --- process bookkeeping ----------------------------------------------------------------------
pids=()
# nginx-rtmp's HLS fragments live on tmpfs (as a production setup would have them).
HLS_DIR=$(mktemp -d /dev/shm/livecdn-bench-hls.XXXXXX)
chmod 777 "$HLS_DIR"   # nginx's workers (not root) write there
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$HLS_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
stop_pid() { # pid: TERM, then KILL after 5 s; then forgotten (its number may be reused)
  local p=$1 q kept=()
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  fi
  wait "$p" 2>/dev/null || true
  for q in "${pids[@]}"; do [ "$q" = "$p" ] || kept+=("$q"); done
  pids=("${kept[@]}")
}
wait_tcp() { # port
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}
log_cmd() { echo "$*" >>"$RESULTS/commands.txt"; }

# --- etcd (one for the whole run) -----------------------------------------------------------------
ETCD_PORT=$((BASE + 379))
ETCD=http://127.0.0.1:$ETCD_PORT
etcd_cmd=(taskset -c "$SERVER_CPUS" etcd --name bench --data-dir "$WORK/etcd"
  --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD"
  --listen-peer-urls "http://127.0.0.1:$((BASE + 380))"
  --initial-advertise-peer-urls "http://127.0.0.1:$((BASE + 380))"
  --initial-cluster "bench=http://127.0.0.1:$((BASE + 380))" --log-level warn)
log_cmd "${etcd_cmd[*]}"
"${etcd_cmd[@]}" >"$LOGS/etcd.log" 2>&1 &
ETCD_PID=$!
pids+=("$ETCD_PID")
for _ in $(seq 1 100); do curl -fsS "$ETCD/health" >/dev/null 2>&1 && break; sleep 0.1; done

# --- livecdn: origin + edge ---------------------------------------------------------------------------
O_RTMP=$((BASE + 1)); O_HTTP=$((BASE + 81)); E_RTMP=$((BASE + 11)); E_HTTP=$((BASE + 91))
ORIGIN_PID=""; EDGE_PID=""
E_RTMPS=$((BASE + 12)); E_HTTPS=$((BASE + 92))
EDGE_EXTRA=()   # more edge flags (the TLS listeners)
start_ours() { # [edge cpus] [edge worker threads]
  local edge_cpus=${1:-$SERVER_CPUS} workers=${2:-}
  # Each node's control API on its own port (both default to 127.0.0.1:1985); set through the
  # environment, which binaries without that listener ignore (REV= of older commits).
  local o=(env "LIVECDN_API_LISTEN=127.0.0.1:$((BASE + 985))" taskset -c "$SERVER_CPUS" "$BIN/origin"
    --node-id origin-1 --etcd "$ETCD" --rtmp-listen "127.0.0.1:$O_RTMP" --http-listen "127.0.0.1:$O_HTTP")
  local e=(env "LIVECDN_API_LISTEN=127.0.0.1:$((BASE + 986))" taskset -c "$edge_cpus" "$BIN/edge"
    --node-id edge-1 --etcd "$ETCD" --rtmp-listen "127.0.0.1:$E_RTMP" --http-listen "127.0.0.1:$E_HTTP"
    ${EDGE_EXTRA[@]+"${EDGE_EXTRA[@]}"})
  log_cmd "${o[*]}"
  "${o[@]}" >>"$LOGS/origin.log" 2>&1 &
  ORIGIN_PID=$!; pids+=("$ORIGIN_PID")
  if [ -n "$workers" ]; then
    log_cmd "TOKIO_WORKER_THREADS=$workers ${e[*]}"
    TOKIO_WORKER_THREADS=$workers "${e[@]}" >>"$LOGS/edge.log" 2>&1 &
  else
    log_cmd "${e[*]}"
    "${e[@]}" >>"$LOGS/edge.log" 2>&1 &
  fi
  EDGE_PID=$!; pids+=("$EDGE_PID")
  for port in $O_HTTP $E_HTTP; do
    for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  done
  wait_tcp $O_RTMP; wait_tcp $E_RTMP
  OURS_PIDS=(--pid "edge=$EDGE_PID" --pid "origin=$ORIGIN_PID" --pid "etcd=$ETCD_PID")
}
stop_ours() {
  stop_pid "$EDGE_PID"; stop_pid "$ORIGIN_PID"
  # The edge's metrics are gone with it; its log keeps what it said about slow players.
}

# --- nginx-rtmp: origin + edge (pull) -------------------------------------------------------------
NO_RTMP=$((BASE + 101)); NE_RTMP=$((BASE + 111))
NGINX_O_MASTER=""; NGINX_E_MASTER=""; NGINX_O=""; NGINX_E=""
nginx_conf() { # dir port [pull-from-port] [chunk size]
  local app="live on;" chunk=""
  [ -n "${3:-}" ] && app="live on; pull rtmp://127.0.0.1:$3/live;"
  [ -n "${4:-}" ] && chunk="chunk_size $4;"
  cat >"$1/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$2;
    $chunk
    application live { $app }
  }
}
CONF
}
worker_of() { # master pid
  for _ in $(seq 1 50); do
    local w; w=$(pgrep -P "$1" | head -1 || true)
    [ -n "$w" ] && { echo "$w"; return 0; }
    sleep 0.1
  done
  echo "no nginx worker under $1" >&2; return 1
}
start_nginx() { # [chunk size; default: nginx-rtmp's own, 4096]
  mkdir -p "$WORK/nginx-origin" "$WORK/nginx-edge"
  nginx_conf "$WORK/nginx-origin" $NO_RTMP "" "${1:-}"
  nginx_conf "$WORK/nginx-edge" $NE_RTMP $NO_RTMP "${1:-}"
  for role in origin edge; do
    local dir=$WORK/nginx-$role
    local cmd=(taskset -c "$SERVER_CPUS" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
    log_cmd "${cmd[*]}   # $dir/nginx.conf"
    [ -z "${1:-}" ] && cp "$dir/nginx.conf" "$RESULTS/nginx-$role.conf"
    "${cmd[@]}" >>"$LOGS/nginx-$role.log" 2>&1 &
    local m=$!; pids+=("$m")
    if [ $role = origin ]; then NGINX_O_MASTER=$m; else NGINX_E_MASTER=$m; fi
  done
  wait_tcp $NO_RTMP; wait_tcp $NE_RTMP
  NGINX_O=$(worker_of "$NGINX_O_MASTER"); NGINX_E=$(worker_of "$NGINX_E_MASTER")
  NGINX_PIDS=(--pid "edge=$NGINX_E" --pid "origin=$NGINX_O")
}
stop_nginx() {
  stop_pid "$NGINX_E_MASTER"; stop_pid "$NGINX_O_MASTER"
  cat "$WORK/nginx-edge/error.log" "$WORK/nginx-origin/error.log" >>"$LOGS/nginx-errors.log" 2>/dev/null || true
}

# nginx-rtmp's HLS: the origin pushes every stream to the edge (a publish there, which is
# what nginx-rtmp's HLS packages: a `pull` edge only pulls for RTMP players), the edge cuts
# 2 s fragments onto tmpfs and its own `http` block serves them with sendfile. One worker,
# so one process does what the livecdn edge does (ingest, packaging, serving).
NE_HTTP=$((BASE + 191))
nginx_hls_conf() { # dir
  local d=$1
  mkdir -p "$d/tmp"
  cat >"$WORK/nginx-origin/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $WORK/nginx-origin/nginx.pid;
error_log $WORK/nginx-origin/error.log warn;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$NO_RTMP;
    application live { live on; push rtmp://127.0.0.1:$NE_RTMP/live; }
  }
}
CONF
  cat >"$d/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$NE_RTMP;
    application live {
      live on;
      hls on;
      hls_path $HLS_DIR;
      hls_fragment 2s;
      hls_playlist_length 20s;
    }
  }
}
http {
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  access_log off;
  client_body_temp_path $d/tmp/body;
  proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi;
  uwsgi_temp_path $d/tmp/uwsgi;
  scgi_temp_path $d/tmp/scgi;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$NE_HTTP;
    location /hls/ {
      alias $HLS_DIR/;
      add_header Cache-Control no-cache;
    }
  }
}
CONF
}
start_nginx_hls() {
  mkdir -p "$WORK/nginx-origin" "$WORK/nginx-edge"
  rm -rf "${HLS_DIR:?}"/*
  nginx_hls_conf "$WORK/nginx-edge"
  cp "$WORK/nginx-origin/nginx.conf" "$RESULTS/nginx-hls-origin.conf"
  cp "$WORK/nginx-edge/nginx.conf" "$RESULTS/nginx-hls-edge.conf"
  for role in edge origin; do
    local dir=$WORK/nginx-$role
    local cmd=(taskset -c "$SERVER_CPUS" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log")
    log_cmd "${cmd[*]}   # $dir/nginx.conf (HLS)"
    "${cmd[@]}" >>"$LOGS/nginx-$role.log" 2>&1 &
    local m=$!; pids+=("$m")
    if [ $role = origin ]; then NGINX_O_MASTER=$m; else NGINX_E_MASTER=$m; fi
  done
  wait_tcp $NO_RTMP; wait_tcp $NE_RTMP; wait_tcp $NE_HTTP
  NGINX_O=$(worker_of "$NGINX_O_MASTER"); NGINX_E=$(worker_of "$NGINX_E_MASTER")
  NGINX_PIDS=(--pid "edge=$NGINX_E" --pid "origin=$NGINX_O")
}

# --- the load generator -----------------------------------------------------------------------------------
COMMON=(--bitrate "$BITRATE" --fps "$FPS" --gop "$GOP" --warmup "$WARMUP" --duration "$WINDOW")
lg() { # name [loadgen args...]
  local name=$1; shift
  local cmd=(taskset -c "$LOADGEN_CPUS" "$BIN/loadgen" --label "$name" --json "$RESULTS/$name.json" "$@")
  log_cmd "${cmd[*]}"
  echo; echo ">>> $name"
  if ! "${cmd[@]}" 2>&1 | tee "$RESULTS/$name.txt"; then
    echo "loadgen $name failed" | tee -a "$RESULTS/failures.txt"
  fi
  sleep 1
}
theirs_enabled() { [ "$SKIP_NGINX" != 1 ]; }

# This machine may be shared: wait until it is quiet before a run, and repeat a run during
# which other programs took CPU time (the load generator reports busy time that no measured
# process accounts for).
QUIET_MAX=${QUIET_MAX:-15}                # % of one core, whole machine, before a run
QUIET_WAIT=${QUIET_WAIT:-90}              # tries (~2 s each) before running anyway
UNATTRIBUTED_MAX=${UNATTRIBUTED_MAX:-15}  # % of one core during a run
RETRIES=${RETRIES:-3}                     # attempts per run
machine_busy() { # busy % of one core over 1 s, whole machine (/proc/stat)
  local u n s i w q sq st b1 t1
  read -r _ u n s i w q sq st _ </proc/stat
  b1=$((u + n + s + q + sq + st)); t1=$((b1 + i + w))
  sleep 1
  read -r _ u n s i w q sq st _ </proc/stat
  local b2=$((u + n + s + q + sq + st)); local t2=$((b2 + i + w))
  echo $(((b2 - b1) * 100 * $(nproc) / (t2 - t1 + 1)))
}
wait_quiet() {
  local b
  for _ in $(seq 1 "$QUIET_WAIT"); do
    b=$(machine_busy)
    [ "$b" -le "$QUIET_MAX" ] && return 0
    echo "waiting for the machine to be quiet (busy: ${b}% of one core)"
    sleep 1
  done
  echo "machine still busy (${b}% of one core); running anyway" | tee -a "$RESULTS/retries.txt"
}
unattributed() { # json -> integer % of one core
  sed -n 's/.*"unattributed_cpu_pct": *\([0-9]*\).*/\1/p' "$1" 2>/dev/null | head -1
}
# run_on SERVER NAME [loadgen args...]: fresh servers (ours | nginx | ours-w1 | ours-w2: the
# edge on both CPUs with 1 or 2 runtime workers), one loadgen run with the servers' PIDs,
# servers stopped. Repeated when other programs competed for the CPU.
run_on() {
  local server=$1 name=$2 attempt=1 u p
  shift 2
  while :; do
    wait_quiet
    case $server in
      ours) start_ours; p=("${OURS_PIDS[@]}") ;;
      ours-w*) start_ours "0,1" "${server#ours-w}"; p=("${OURS_PIDS[@]}") ;;
      ours-tls) EDGE_EXTRA=(--tls-cert "$TLS_DIR/cert.pem" --tls-key "$TLS_DIR/key.pem"
          --rtmps-listen "127.0.0.1:$E_RTMPS" --https-listen "127.0.0.1:$E_HTTPS")
        start_ours; EDGE_EXTRA=(); wait_tcp $E_RTMPS; wait_tcp $E_HTTPS; p=("${OURS_PIDS[@]}") ;;
      nginx) start_nginx; p=("${NGINX_PIDS[@]}") ;;
      nginx-chunk*) start_nginx "${server#nginx-chunk}"; p=("${NGINX_PIDS[@]}") ;;
      nginx-hls) start_nginx_hls; p=("${NGINX_PIDS[@]}") ;;
    esac
    lg "$name" "$@" "${p[@]}"
    # AFTER_RUN=FUNCTION: called with the run's name once the load ends, servers still up.
    if [ -n "${AFTER_RUN:-}" ]; then "$AFTER_RUN" "$name"; fi
    if [[ $server == nginx* ]]; then stop_nginx; else stop_ours; fi
    u=$(unattributed "$RESULTS/$name.json"); u=${u:-0}
    if [ "$u" -le "$UNATTRIBUTED_MAX" ] || [ "$attempt" -ge "$RETRIES" ]; then
      [ "$u" -gt "$UNATTRIBUTED_MAX" ] && echo "$name: ${u}% of a core went to other programs (kept after $attempt attempts)" >>"$RESULTS/retries.txt"
      return 0
    fi
    echo "$name: ${u}% of a core went to other programs; attempt $((attempt + 1))" | tee -a "$RESULTS/retries.txt"
    attempt=$((attempt + 1))
  done
}

SCENARIOS=${SCENARIOS:-"fanout unpinned relay cold many stall workers hls tls profile"}
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }

START=$(date +%s)
O=127.0.0.1:$O_RTMP; E=127.0.0.1:$E_RTMP; NO=127.0.0.1:$NO_RTMP; NE=127.0.0.1:$NE_RTMP

# (a) fan-out on one edge.
if want fanout; then
  for n in $FANOUT; do
    # The headline's sizes run REPEAT times, alternating servers: the report takes medians.
    reps=1
    [[ " $REPEAT_FANOUT " == *" $n "* ]] && reps=$REPEAT
    for r in $(seq 1 "$reps"); do
      sfx=""; [ "$r" -gt 1 ] && sfx="-r$r"
      run_on ours "fanout-ours-rtmp-$n$sfx" "${COMMON[@]}" --players "$n" --ramp 500 \
        --publish "rtmp://$O/live/fan$n" --play "rtmp://$E/live/fan$n"
      # HTTP-FLV beside RTMP in the same rounds (its target is a ratio to RTMP).
      [[ " $FLV_FANOUT " == *" $n "* ]] && run_on ours "fanout-ours-flv-$n$sfx" "${COMMON[@]}" \
        --players "$n" --ramp 500 --publish "rtmp://$O/live/flv$n" --play "http://127.0.0.1:$E_HTTP/live/flv$n.flv"
      theirs_enabled && run_on nginx "fanout-nginx-rtmp-$n$sfx" "${COMMON[@]}" --players "$n" --ramp 500 \
        --publish "rtmp://$NO/live/fan$n" --play "rtmp://$NE/live/fan$n"
      # nginx-rtmp with the same outbound chunk size as livecdn's players (60000, not its
      # default 4096), which makes it cheaper: reported beside the default configuration.
      [ "$reps" -gt 1 ] && theirs_enabled && run_on nginx-chunk60000 "fanout-nginx60000-rtmp-$n$sfx" \
        "${COMMON[@]}" --players "$n" --ramp 500 --publish "rtmp://$NO/live/fan$n" --play "rtmp://$NE/live/fan$n"
    done
  done
fi

# (a, unpinned) the headline's sizes again with every server and the load generator free to
# use every CPU (no taskset): what an operator who pins nothing sees. REPEAT rounds, the
# servers alternating.
if want unpinned; then
  pinned=("$SERVER_CPUS" "$LOADGEN_CPUS")
  SERVER_CPUS=0-$(($(nproc) - 1)); LOADGEN_CPUS=$SERVER_CPUS
  for n in $REPEAT_FANOUT; do
    for r in $(seq 1 "$REPEAT"); do
      sfx=""; [ "$r" -gt 1 ] && sfx="-r$r"
      run_on ours "unpinned-ours-rtmp-$n$sfx" "${COMMON[@]}" --players "$n" --ramp 500 \
        --publish "rtmp://$O/live/ufan$n" --play "rtmp://$E/live/ufan$n"
      run_on ours "unpinned-ours-flv-$n$sfx" "${COMMON[@]}" --players "$n" --ramp 500 \
        --publish "rtmp://$O/live/uflv$n" --play "http://127.0.0.1:$E_HTTP/live/uflv$n.flv"
      theirs_enabled && run_on nginx "unpinned-nginx-rtmp-$n$sfx" "${COMMON[@]}" --players "$n" \
        --ramp 500 --publish "rtmp://$NO/live/ufan$n" --play "rtmp://$NE/live/ufan$n"
    done
  done
  SERVER_CPUS=${pinned[0]}; LOADGEN_CPUS=${pinned[1]}
fi

# (b) relay-added latency: the same stream played on the origin and on the edge.
if want relay; then
  run_on ours relay-ours "${COMMON[@]}" --players "$RELAY_PLAYERS" --ramp 200 \
    --publish "rtmp://$O/live/relay" --play "rtmp://$O/live/relay" --play "rtmp://$E/live/relay"
  theirs_enabled && run_on nginx relay-nginx "${COMMON[@]}" --players "$RELAY_PLAYERS" --ramp 200 \
    --publish "rtmp://$NO/live/relay" --play "rtmp://$NO/live/relay" --play "rtmp://$NE/live/relay"
fi

# (c) cold start: one player per stream on an edge that does not pull it yet.
if want cold; then
  COLD=(--bitrate "$BITRATE" --fps "$FPS" --gop "$GOP" --streams "$COLD_STREAMS"
    --players "$COLD_STREAMS" --ramp 4 --lead 3 --warmup 1 --duration 3)
  run_on ours cold-ours "${COLD[@]}" --publish "rtmp://$O/live/cold{n}" --play "rtmp://$E/live/cold{n}"
  theirs_enabled && run_on nginx cold-nginx "${COLD[@]}" \
    --publish "rtmp://$NO/live/cold{n}" --play "rtmp://$NE/live/cold{n}"
fi

# (d) many streams: MANY_STREAMS x 5 players, REPEAT rounds alternating servers (the latency
# tail is set by the publishers' aligned keyframe bursts and varies from run to run: the
# report compares medians).
if want many; then
  MANY=("${COMMON[@]}" --streams "$MANY_STREAMS" --players $((MANY_STREAMS * 5)) --ramp 500 --lead 3)
  # The edge's GOP caches' payload high-water mark (a gauge), read once the load has ended,
  # before the edge stops: the report sets the edge's RSS against it. (Polling it during the
  # run put a scrape of the edge and a curl process on the measured cores, ours only.)
  gop_peak() {
    curl -fsS "http://127.0.0.1:$E_HTTP/metrics" 2>/dev/null |
      sed -n 's/^livecdn_media_gop_cache_peak_bytes \([0-9.]*\)$/\1/p' >"$RESULTS/$1-gop.txt" || true
  }
  for r in $(seq 1 "$REPEAT"); do
    sfx=""; [ "$r" -gt 1 ] && sfx="-r$r"
    AFTER_RUN=gop_peak run_on ours "many-ours$sfx" "${MANY[@]}" --publish "rtmp://$O/live/many{n}" --play "rtmp://$E/live/many{n}"
    theirs_enabled && run_on nginx "many-nginx$sfx" "${MANY[@]}" \
      --publish "rtmp://$NO/live/many{n}" --play "rtmp://$NE/live/many{n}"
  done
fi

# (e) one stalled player among STALL_PLAYERS (longer window: kernel socket buffers absorb tens
# of seconds of media before a server can notice a player that stopped reading).
if want stall; then
  STALL=(--bitrate "$BITRATE" --fps "$FPS" --gop "$GOP" --warmup "$WARMUP" --duration "$STALL_WINDOW"
    --players "$STALL_PLAYERS" --stalled 1 --ramp 500)
  run_on ours stall-ours "${STALL[@]}" --publish "rtmp://$O/live/stall" --play "rtmp://$E/live/stall"
  sed 's/\x1b\[[0-9;]*m//g' "$LOGS/edge.log" | grep -E "too slow|write stalled" | tail -3 \
    >"$RESULTS/stall-ours-edge-log.txt" || true
  theirs_enabled && run_on nginx stall-nginx "${STALL[@]}" \
    --publish "rtmp://$NO/live/stall" --play "rtmp://$NE/live/stall"
fi

# (f) the edge with 1 vs 2 runtime worker threads (edge allowed on both cores; origin and
# etcd on SERVER_CPUS, the load generator on LOADGEN_CPUS as everywhere).
if want workers; then
  for w in 1 2; do
    run_on "ours-w$w" "workers-ours-$w" "${COMMON[@]}" --players "$WORKERS_PLAYERS" --ramp 500 \
      --publish "rtmp://$O/live/workers$w" --play "rtmp://$E/live/workers$w"
  done
fi

# (h) HLS. livecdn: the edge (pulling from the origin) serves plain HLS (MPEG-TS,
# /live/NAME/ts.m3u8) and LL-HLS (fMP4 parts, blocking reloads, /live/NAME.m3u8); nginx-rtmp:
# its own HLS (2 s fragments on tmpfs) served by nginx's http with sendfile, plain clients.
# Both with a keyframe every HLS_GOP frames and 2 s segments.
if want hls; then
  # Plain clients reload every 1 s, half the 2 s fragments both servers cut (nginx-rtmp may
  # announce TARGETDURATION:3 after a first, longer fragment: half of that would slow its
  # clients down).
  HLS=(--bitrate "$BITRATE" --fps "$FPS" --gop "$HLS_GOP" --warmup "$HLS_WARMUP" --duration "$HLS_WINDOW"
    --ramp 500 --lead 3 --hls-poll 1)
  EH=http://127.0.0.1:$E_HTTP; NH=http://127.0.0.1:$NE_HTTP
  for n in $HLS_CLIENTS; do
    run_on ours "hls-ours-ts-$n" "${HLS[@]}" --players "$n" \
      --publish "rtmp://$O/live/hts$n" --play "$EH/live/hts$n/ts.m3u8"
    theirs_enabled && run_on nginx-hls "hls-nginx-ts-$n" "${HLS[@]}" --players "$n" --du "hls=$HLS_DIR" \
      --publish "rtmp://$NO/live/hts$n" --play "$NH/hls/hts$n.m3u8"
    run_on ours "hls-ours-ll-$n" "${HLS[@]}" --players "$n" \
      --publish "rtmp://$O/live/hll$n" --play "$EH/live/hll$n.m3u8"
  done
  # A cold edge: one client per stream, each stream published to the origin 3 s before.
  HLS_COLD=(--bitrate "$BITRATE" --fps "$FPS" --gop "$HLS_GOP" --streams "$HLS_COLD_STREAMS"
    --players "$HLS_COLD_STREAMS" --ramp 4 --lead 3 --warmup 2 --duration 3 --hls-poll 1)
  run_on ours hls-cold-ours-ll "${HLS_COLD[@]}" --publish "rtmp://$O/live/hcl{n}" --play "$EH/live/hcl{n}.m3u8"
  run_on ours hls-cold-ours-ts "${HLS_COLD[@]}" --publish "rtmp://$O/live/hct{n}" --play "$EH/live/hct{n}/ts.m3u8"
  # Memory per stream: HLS_MANY_STREAMS streams, a window's worth of segments each.
  HLS_MANY=(--bitrate "$BITRATE" --fps "$FPS" --gop "$HLS_GOP" --streams "$HLS_MANY_STREAMS" --ramp 50
    --lead 3 --warmup "$HLS_MANY_WARMUP" --duration 4 --hls-poll 1)
  run_on ours hls-many-ours "${HLS_MANY[@]}" --players $((2 * HLS_MANY_STREAMS)) \
    --publish "rtmp://$O/live/hm{n}" --play "$EH/live/hm{n}.m3u8" --play "$EH/live/hm{n}/ts.m3u8"
  theirs_enabled && run_on nginx-hls hls-many-nginx "${HLS_MANY[@]}" --players "$HLS_MANY_STREAMS" \
    --du "hls=$HLS_DIR" --publish "rtmp://$NO/live/hm{n}" --play "$NH/hls/hm{n}.m3u8"
fi

# (i) What a TLS player costs: one edge with RTMPS and HTTPS listeners (a self-signed ECDSA
# P-256 certificate made here, which the load generator verifies with --ca), the same N
# players over RTMP, RTMPS, HTTP-FLV and HTTPS-FLV, one run each with fresh servers.
if want tls; then
  TLS_DIR=$WORK/tls
  mkdir -p "$TLS_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
    -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" >>"$LOGS/openssl.log" 2>&1
  log_cmd "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ... -out $TLS_DIR/cert.pem"
  for n in $TLS_PLAYERS; do
    for proto in rtmp rtmps flv https; do
      case $proto in
        rtmp) play="rtmp://$E/live/tls$n" ;;
        rtmps) play="rtmps://127.0.0.1:$E_RTMPS/live/tls$n" ;;
        flv) play="http://127.0.0.1:$E_HTTP/live/tls$n.flv" ;;
        https) play="https://127.0.0.1:$E_HTTPS/live/tls$n.flv" ;;
      esac
      run_on ours-tls "tls-ours-$proto-$n" "${COMMON[@]}" --players "$n" --ramp 500 \
        --ca "$TLS_DIR/cert.pem" --publish "rtmp://$O/live/tls$n" --play "$play"
    done
  done
fi

# (g) where the edge spends its CPU: perf samples (cpu-clock, call graphs) of the edge during a
# fan-out of PROFILE_PLAYERS RTMP players, then HTTP-FLV players (ours only; not a comparison).
PROFILE=${PROFILE:-1}
PROFILE_PLAYERS=${PROFILE_PLAYERS:-2000}
if want profile && [ "$PROFILE" = 1 ] && command -v perf >/dev/null 2>&1; then
  for proto in rtmp flv; do
    wait_quiet
    start_ours
    if [ $proto = rtmp ]; then
      play="rtmp://127.0.0.1:$E_RTMP/live/prof"
    else
      play="http://127.0.0.1:$E_HTTP/live/prof.flv"
    fi
    lg "profile-ours-$proto-$PROFILE_PLAYERS" "${COMMON[@]}" --players "$PROFILE_PLAYERS" --ramp 500 \
      --publish "rtmp://127.0.0.1:$O_RTMP/live/prof" --play "$play" \
      "${OURS_PIDS[@]}" &
    lg_job=$!
    sleep $((2 + PROFILE_PLAYERS / 500 + WARMUP + 1))
    perf_cmd=(taskset -c "$LOADGEN_CPUS" perf record -e cpu-clock -F 499 -g -p "$EDGE_PID"
      -o "$WORK/perf-$proto.data" -- sleep $((WINDOW - 2)))
    log_cmd "${perf_cmd[*]}"
    "${perf_cmd[@]}" >"$LOGS/perf-$proto.log" 2>&1 || echo "perf record failed (see $LOGS/perf-$proto.log)"
    wait "$lg_job" || true
    if [ -s "$WORK/perf-$proto.data" ]; then
      clean() { grep -v '^#' | grep -v '^$' | sed -E 's/[[:space:]]+-[[:space:]]+-[[:space:]]*$//'; }
      perf report -i "$WORK/perf-$proto.data" --no-children --sort dso --stdio -g none \
        --percent-limit 0.5 2>/dev/null | clean | head -20 >"$RESULTS/profile-$proto-dso.txt" || true
      perf report -i "$WORK/perf-$proto.data" --no-children --sort dso,symbol --stdio -g none \
        --percent-limit 0.4 2>/dev/null | clean | head -45 >"$RESULTS/profile-$proto-symbols.txt" || true
      perf report -i "$WORK/perf-$proto.data" --children --sort symbol --stdio -g none \
        --percent-limit 4 2>/dev/null | clean | head -60 >"$RESULTS/profile-$proto-children.txt" || true
      cp "$WORK/perf-$proto.data" "$RESULTS/" 2>/dev/null || true
    fi
    stop_ours
  done
fi

END=$(date +%s)

# --- the report -------------------------------------------------------------------------------------------------
{
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "invocation=$INVOCATION"
  echo "duration_s=$((END - START))"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
  echo "kernel=$(uname -srm)"
  echo "ram=$(free -h | awk '/^Mem:/ {print $2}')"
  echo "virtualization=$(lscpu | sed -n 's/^Hypervisor vendor: *//p' | head -1)"
  echo "rustc=$(rustc --version)"
  echo "nginx=$(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "nginx_rtmp=$(dpkg-query -W -f '${Version}' libnginx-mod-rtmp 2>/dev/null || echo unknown)"
  echo "etcd=$(etcd --version 2>/dev/null | head -1)"
  if [ -n "${LIVECDN_REV:-}" ]; then
    rev=$LIVECDN_REV
  else
    rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    changed=$(git status --porcelain -- . ':!bench' ':!BENCHMARKS.md' 2>/dev/null | awk '{print $2}' | tr '\n' ' ')
    [ -n "$changed" ] && rev="$rev plus uncommitted changes to: $changed"
  fi
  echo "livecdn=$rev"
  echo "server_cpus=$SERVER_CPUS"
  echo "loadgen_cpus=$LOADGEN_CPUS"
  echo "ulimit_n=$(ulimit -n)"
  echo "window_s=$WINDOW"
  echo "warmup_s=$WARMUP"
  echo "bitrate=$BITRATE"
  echo "fps=$FPS"
  echo "gop=$GOP"
  echo "stall_window_s=$STALL_WINDOW"
  echo "hls_gop=$HLS_GOP"
  echo "hls_window_s=$HLS_WINDOW"
  echo "hls_warmup_s=$HLS_WARMUP"
  echo "quick=$QUICK"
} >"$RESULTS/meta.env"
"$BIN/bench-report" --results "$RESULTS" --out "$OUT" --tried "$ROOT/bench/cluster.md" --tried "$ROOT/bench/tried.md"
echo
echo "results: $RESULTS   logs: $LOGS"
echo "wrote $OUT"
