#!/usr/bin/env bash
# What the query log costs at full speed: dnsperf closed-loop (no -Q: as fast as answers come)
# for DURATION s against Rampart with [query_log] mode = "all" (a JSON line per query, written
# by the writer thread to a file on the working folder), then with mode = "off"; ROUNDS
# interleaved pairs, medians. Prints the QPS of both, their ratio, and how many entries the
# "all" runs wrote and dropped (rampart_query_log_{written,dropped}_total).
#
#   [ROUNDS=3] benches/querylog.sh DATADIR [DURATION]
#
# DATADIR: a ../shared/bench/gen-data.py output folder (blocklist.txt and q-blocked.txt are
# used; every query is a name under a listed entry, answered from the policy by the UDP fast
# path, so no upstream is needed and every query is logged in both "blocked" and "all"
# modes). DURATION defaults to 30 s. Loopback only; dnsperf from Debian. Pinned like
# ../shared/bench: the server on SERVER_CPUS (default 0), dnsperf on LOADGEN_CPUS (default 1).
set -euo pipefail
data=${1:?usage: querylog.sh DATADIR [DURATION]}
duration=${2:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${RAMPART_BIN:-$here/target/release/rampart}
[ -n "${RAMPART_BIN:-}" ] || (cd "$here" && cargo build --release --quiet)
command -v dnsperf >/dev/null || { echo "dnsperf is needed (apt-get install dnsperf)" >&2; exit 2; }
for f in blocklist.txt q-blocked.txt; do
  [ -f "$data/$f" ] || { echo "$data/$f is missing (a gen-data.py folder is needed)" >&2; exit 2; }
done

# The log goes to the working folder, on disk unless BENCH_TMP says otherwise: a log on
# tmpfs would hide what writing costs.
work=$(mktemp -d -p "${BENCH_TMP:-/var/tmp}")
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
head -n 2000000 "$data/q-blocked.txt" > "$work/queries.txt"

# start MODE: Rampart on the list with the query log in MODE; waits until it answers.
start() {
  cat > "$work/rampart.toml" <<CONF
[server]
listen = ["127.0.0.1:$port"]
workers = ${THREADS:-1}
# One load generator asks far more than a subscriber would: no rate limits.
[rate_limit]
client_qps = 0
prefix_qps = 0
[admin]
listen = "127.0.0.1:$admin"
[state]
dir = "$work/state"
[resolver]
mode = "forward"
timeout = "1s"
[resolver.forward]
upstreams = ["127.0.0.1:9"]
[query_log]
mode = "$1"
path = "$work/log/queries.log"
rotate_size = "1GiB"
keep = 2
[[lists]]
name = "big"
path = "$data/blocklist.txt"
format = "wildcard"
refresh = "1h"
CONF
  taskset -c "${SERVER_CPUS:-0}" env RUST_LOG=warn "$bin" run --config "$work/rampart.toml" &
  pid=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$admin/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "rampart did not become ready" >&2
  exit 1
}

stop() {
  kill "$pid" && wait "$pid" 2>/dev/null || true
  pid=
}

metric() { curl -s "http://127.0.0.1:$admin/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

# run NAME: closed-loop dnsperf (the shared harness's load.sh settings) for DURATION s.
run() {
  local out="$work/$1.out"
  timeout -k 5 $((duration + 30)) taskset -c "${LOADGEN_CPUS:-1}" dnsperf -s 127.0.0.1 -p "$port" \
    -d "$work/queries.txt" -l "$duration" -c 16 -q 256 -T 1 -t 2 > "$out" 2>&1 || true
  local qps lost
  qps=$(awk '/Queries per second:/ {print $4}' "$out")
  lost=$(awk '/Queries lost:/ {print $3}' "$out")
  local extra=""
  if [ "${1%%-*}" = all ]; then
    extra="written=$(metric 'rampart_query_log_written_total{sink="file"}') dropped=$(metric 'rampart_query_log_dropped_total{sink="queue"}')"
  fi
  printf '%-8s qps=%s lost=%s %s\n' "$1" "$qps" "$lost" "$extra" | tee -a "$work/summary"
}

rounds=${ROUNDS:-3}
for round in $(seq 1 "$rounds"); do
  start all
  run "all-$round"
  stop
  start off
  run "off-$round"
  stop
done
median() { grep "^$1-" "$work/summary" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
all=$(median all qps)
off=$(median off qps)
echo "median of $rounds rounds: all qps=$all off qps=$off ratio=$(awk -v a="$all" -v b="$off" 'BEGIN {printf "%.3f", a/b}')" \
  "dropped(all, median)=$(median all dropped) written(all, median)=$(median all written)"
