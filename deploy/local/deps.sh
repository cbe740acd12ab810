# Sourced by deploy/local/cluster.sh and tests/run.sh: the one list of the programs the README's
# two commands use and the Debian package each comes from, and `need TOOL...` to install the
# packages of those missing. tests/tests/deps.rs checks that every program the tests spawn is here.
# Building needs none of them: protoc comes from a crate (see .cargo/config.toml).

declare -A LIVECDN_PKG=(
  # the local cluster
  [etcd]=etcd-server [curl]=curl
  # the tests: real publishers and players, Prometheus, a browser for the player page
  [ffmpeg]=ffmpeg [ffprobe]=ffmpeg [rtmpdump]=rtmpdump
  [prometheus]=prometheus [promtool]=prometheus
  [chromium]=chromium [node]=nodejs [npm]=npm
  # the chaos tests: network namespaces and veth pairs (tests/src/netns.rs)
  [ip]=iproute2
  # base system (in every Debian image; listed so that the check above finds them)
  [sh]=dash [bash]=bash [kill]=procps [timeout]=coreutils [getconf]=libc-bin
)

# need TOOL...: installs (apt, --no-install-recommends) the packages of the tools not on PATH.
need() {
  local missing=() tool
  for tool in "$@"; do
    if [ -z "${LIVECDN_PKG[$tool]:-}" ]; then
      echo "deps.sh: no package known for '$tool': add it to LIVECDN_PKG" >&2
      return 1
    fi
    command -v "$tool" >/dev/null 2>&1 || missing+=("${LIVECDN_PKG[$tool]}")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  local pkgs sudo=""
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: $pkgs"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
}
