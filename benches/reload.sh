#!/usr/bin/env bash
# Latency while lists are replaced: dnsperf sends a fixed query rate to Rampart for DURATION s,
# once with no list changes and once while a 1M-name list is replaced every 5 s (two versions
# with the same names in a different order, so every swap is a full parse + compile + swap) and
# an RPZ zone on a BIND primary changes every second (NOTIFY, IXFR, swap). Reports lost queries
# and latency percentiles of both kinds of run side by side (ROUNDS interleaved pairs, medians).
#
#   [ROUNDS=3] benches/reload.sh DATADIR [RATE] [DURATION]
#
# DATADIR: a ../shared/bench/gen-data.py output folder (blocklist.txt and q-blocked.txt are
# used; every query is a name under a listed entry, answered from the policy, so no upstream
# is needed). RATE defaults to 20000 qps, DURATION to 30 s. Loopback only; dnsperf, bind9,
# bind9-utils and bind9-dnsutils from Debian.
set -euo pipefail
data=${1:?usage: reload.sh DATADIR [RATE] [DURATION]}
rate=${2:-20000}
duration=${3:-30}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/rampart"
(cd "$here" && cargo build --release --quiet)
for tool in dnsperf named nsupdate dig; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install dnsperf bind9 bind9-utils bind9-dnsutils)" >&2; exit 2; }
done

# Working files on tmpfs when there is one: the primary's journal fsyncs and the list copies
# stand for other machines' disks, not this one's.
tmp=${BENCH_TMP:-/tmp}
[ -z "${BENCH_TMP:-}" ] && [ -d /dev/shm ] && tmp=/dev/shm
work=$(mktemp -d -p "$tmp")
pid=
PRIMARY_PID=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$PRIMARY_PID" ] && kill "$PRIMARY_PID" 2>/dev/null
  [ -n "${KEEP:-}" ] && cp "$work"/*.out /tmp/ 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=benches/primary.sh
. "$here/benches/primary.sh"
# The primary stands for another machine: keep it off the server's CPU.
export PRIMARY_CPUS=${PRIMARY_CPUS:-${LOADGEN_CPUS:-1}}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
primary=$(free_port)
secret=$(head -c 32 /dev/urandom | base64)
start_primary "$work" "$primary" rpz.reload. "$secret" "$port"
cp "$data/blocklist.txt" "$work/a.txt"
# Same names, reversed order: a different file that compiles to the same set.
tac "$data/blocklist.txt" > "$work/b.txt"
cp "$work/a.txt" "$work/list.txt"
# Query names from q-blocked.txt (NAME TYPE per line), in dnsperf's format.
head -n 2000000 "$data/q-blocked.txt" > "$work/queries.txt"

cat > "$work/rampart.toml" <<CONF
[server]
listen = ["127.0.0.1:$port"]
# Measured against peers that keep no query log (and as measured before it existed).
[query_log]
mode = "off"
# One load generator asks far more than a subscriber would: no rate limits.
[rate_limit]
client_qps = 0
prefix_qps = 0
[admin]
listen = "127.0.0.1:$admin"
token = "bench"
[state]
dir = "$work/state"
[resolver]
mode = "forward"
timeout = "1s"
[resolver.forward]
upstreams = ["127.0.0.1:9"]
[[lists]]
name = "big"
path = "$work/list.txt"
format = "wildcard"
refresh = "1h"
max_shrink = 1.0
CONF
# FEED_SUBSCRIBED=0 leaves the zone changing on the primary without Rampart following it: the
# control run for what the primary and nsupdate alone cost on a 2-core machine.
if [ "${FEED_SUBSCRIBED:-1}" = 1 ]; then
  cat >> "$work/rampart.toml" <<CONF
[[lists]]
name = "feed"
xfr = { primary = "127.0.0.1:$primary", zone = "rpz.reload.", tsig_key = "bench", tsig_secret = "$secret" }
refresh = "1h"
CONF
fi
# Pinned like ../shared/bench: the server on SERVER_CPUS, dnsperf on LOADGEN_CPUS.
taskset -c "${SERVER_CPUS:-0}" env RUST_LOG=warn "$bin" run --config "$work/rampart.toml" &
pid=$!
for _ in $(seq 1 200); do
  curl -sf "http://127.0.0.1:$admin/health" >/dev/null 2>&1 && break
  sleep 0.05
done

# run NAME: dnsperf at RATE for DURATION; per-query latencies from -v, percentiles with awk.
run() {
  local name=$1 out="$work/$1.out"
  timeout -k 5 $((duration + 30)) taskset -c "${LOADGEN_CPUS:-1}" dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" \
    -l "$duration" -Q "$rate" -c 8 -q 500 -t 2 -v > "$out" 2>&1 || true
  local lost sent
  sent=$(awk '/Queries sent:/ {print $3}' "$out")
  lost=$(awk '/Queries lost:/ {print $3}' "$out")
  awk '/^> / { printf "%.3f\n", $NF * 1000 }' "$out" | sort -n > "$work/$name.lat"
  local n
  n=$(wc -l < "$work/$name.lat")
  pct() { sed -n "$(( ($1 * n + 999) / 1000 ))p" "$work/$name.lat"; }
  printf '%-12s sent=%s lost=%s answered=%s p50_ms=%s p99_ms=%s p99.9_ms=%s max_ms=%s\n' \
    "$name" "$sent" "$lost" "$n" "$(pct 500)" "$(pct 990)" "$(pct 999)" "$(tail -1 "$work/$name.lat")" \
    | tee -a "$work/summary"
}

# disturb: for DURATION s, replace the list every 5 s (SWAP_LIST=0 skips it, to see each cause)
# and change the RPZ zone every second (UPDATE_FEED=0 skips it) through one long-lived nsupdate
# (a new process per update costs more CPU than everything Rampart does for it).
# The operator's side of an update (copying a list file, the primary's work) stands for other
# processes or machines: off the server's CPU and at idle priority, so that it shows up as
# little as possible in dnsperf's timing on a 2-core machine.
background() {
  taskset -pc "$PRIMARY_CPUS" "$BASHPID" >/dev/null
  chrt -i -p 0 "$BASHPID"
}
k=0
jobs_=
disturb() {
  jobs_=
  [ "${SWAP_LIST:-1}" = 1 ] && (
    background
    end=$(( $(date +%s) + duration ))
    v=b
    while [ "$(date +%s)" -lt "$end" ]; do
      sleep 5
      cp "$work/$v.txt" "$work/list.txt.tmp" && mv "$work/list.txt.tmp" "$work/list.txt"
      curl -sf -X POST -H "Authorization: Bearer bench" "http://127.0.0.1:$admin/v1/lists/big/refresh" >/dev/null || true
      [ "$v" = b ] && v=a || v=b
    done
  ) &
  [ "${SWAP_LIST:-1}" = 1 ] && jobs_="$jobs_ $!"
  [ "${UPDATE_FEED:-1}" = 1 ] && (
    background
    end=$(( $(date +%s) + duration ))
    printf 'server 127.0.0.1 %s\nzone rpz.reload.\n' "$primary"
    while [ "$(date +%s)" -lt "$end" ]; do
      sleep 1
      k=$((k + 1))
      printf 'update add n%s-%s.reload.test.rpz.reload. 60 CNAME .\nsend\n' "$round" "$k"
    done
  ) | ${PRIMARY_CPUS:+taskset -c "$PRIMARY_CPUS"} chrt -i 0 nsupdate -y "hmac-sha256:bench:$secret" >/dev/null 2>&1 &
  [ "${UPDATE_FEED:-1}" = 1 ] && jobs_="$jobs_ $!"
  return 0
}

# ROUNDS pairs of (steady, reloading) runs, interleaved so that the machine's drift (a noisy
# VM's steady p99 moves by 2x between minutes) lands on both sides alike; medians of the pairs.
rounds=${ROUNDS:-3}
for round in $(seq 1 "$rounds"); do
  run "steady-$round"
  disturb
  run "reloading-$round"
  for job in $jobs_; do wait "$job" || true; done
done
median() { grep "^$1-" "$work/summary" | sed -n "s/.* $2=\([0-9.]*\).*/\1/p" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
lost_total=$(awk '{for (i=1;i<=NF;i++) if ($i ~ /^lost=/) {sub("lost=","",$i); s+=$i}} END {print s+0}' "$work/summary")
s99=$(median steady p99_ms)
r99=$(median reloading p99_ms)
echo "median of $rounds rounds: steady p99_ms=$s99 reloading p99_ms=$r99 ratio=$(awk -v a="$r99" -v b="$s99" 'BEGIN {printf "%.2f", a/b}')" \
  "steady p50_ms=$(median steady p50_ms) reloading p50_ms=$(median reloading p50_ms) lost_total=$lost_total"
metrics=$(curl -s "http://127.0.0.1:$admin/metrics")
echo "swaps: $(echo "$metrics" | awk '/^rampart_list_compiles_total\{list="big"\}/ {print $2}') compiles of the 1M list," \
  "$(echo "$metrics" | awk '/^rampart_list_compiles_total\{list="feed"\}/ {print $2}') of the RPZ feed (serial $(echo "$metrics" | awk '/^rampart_list_serial\{list="feed"\}/ {print $2}'))," \
  "NOTIFY to service p50 via rampart_notify_to_service_seconds: $(echo "$metrics" | awk '/^rampart_notify_to_service_seconds_(sum|count)/ {v[$1]=$2} END {if (v["rampart_notify_to_service_seconds_count"]) printf "%.1f ms mean", 1000*v["rampart_notify_to_service_seconds_sum"]/v["rampart_notify_to_service_seconds_count"]}')"
