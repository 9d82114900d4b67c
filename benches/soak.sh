#!/usr/bin/env bash
# Soak: DURATION s (default 600) of mixed load at ~60 % of the measured maximum, while a
# 1M-name list is replaced every 5 s and, in the middle, the upstream (the synthetic internet
# of ../shared/bench) is cut for OUTAGE s (default 60). Reports per minute: queries sent, lost,
# SERVFAIL, p50 / p99 latency and Rampart's RSS; then crashes, lost queries outside the outage
# and RSS growth.
#
#   benches/soak.sh SHARED DATADIR [DURATION] [OUTAGE]
#
# SHARED: the ../shared folder (bench/fake-internet.sh serves DATADIR's zones with NSD on
# 127.53/16). DATADIR: a bench/gen-data.py output (root.hints, blocklist.txt, allowlist.rpz,
# q-hit.txt, q-blocked.txt, q-miss.txt). Env: DNSPERF_BUFFER_KB (dnsperf socket buffers, default 4096), SETTLE (s at the soak rate before RSS at start is read;
# default 60), RATE (queries/s; default 60 % of a 10 s
# closed-loop run on the same mix), SERVER_CPUS (default 0), LOADGEN_CPUS (default 1).
# Loopback only; needs dnsperf, nsd, dig, python3 (../shared/bench/setup.sh installs them).
#
# The mix, per 20 queries: 14 cache hits (q-hit, Zipf over 5,000 names), 4 blocked
# (q-blocked: names under the 1M list), 2 cache misses (q-miss: unique names, each a full
# recursion to the leaf servers). The caches are sized small (200,000 answers) so that they are
# full, and evicting, from the first minute on: RSS then measures leaks, not caches filling.
# The upstream cut is a SIGSTOP of every NSD process: queries to it time out, as when a
# network link dies. Misses then get SERVFAIL (or a stale answer) within resolver.timeout, so
# even during the cut no query should go unanswered.
set -euo pipefail
shared=$(realpath "${1:?usage: soak.sh SHARED DATADIR [DURATION] [OUTAGE]}")
data=$(realpath "${2:?usage: soak.sh SHARED DATADIR [DURATION] [OUTAGE]}")
duration=${3:-600}
outage=${4:-60}
minutes=$(( duration / 60 ))
[ "$minutes" -ge 3 ] || { echo "DURATION must be at least 180 s" >&2; exit 2; }
[ "$outage" -le 60 ] || { echo "OUTAGE must be at most 60 s (it fits in one minute)" >&2; exit 2; }
cut_minute=$(( minutes / 2 + 1 ))   # 1-based minute in which the upstream is cut
here=$(cd "$(dirname "$0")/.." && pwd)
bin="${CARGO_TARGET_DIR:-$here/target}/release/rampart"
(cd "$here" && cargo build --release --quiet)
for tool in dnsperf nsd dig python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (see $shared/bench/setup.sh)" >&2; exit 2; }
done

work=$(mktemp -d -p "${BENCH_TMP:-/tmp}" soak.XXXXXX)
pid=
fake_started=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  nsd_signal CONT 2>/dev/null || true
  [ -n "$fake_started" ] && FAKE_RUN="$work/fake" "$shared/bench/fake-internet.sh" stop "$data" >/dev/null 2>&1
  [ -n "${KEEP:-}" ] && echo "kept: $work" || rm -rf "$work"
}
trap cleanup EXIT
# Every NSD process of our synthetic internet: each started process (xfrd), its main process
# and the server processes under that.
tree() {
  local c
  echo "$1"
  for c in $(pgrep -P "$1"); do tree "$c"; done
}
nsd_signal() {
  local f
  for f in "$work"/fake/*.mainpid; do
    [ -e "$f" ] || continue
    # shellcheck disable=SC2046
    kill -"$1" $(tree "$(cat "$f")") 2>/dev/null || true
  done
}

mkdir -p "$work/fake"
FAKE_RUN="$work/fake" FAKE_CPUS=${LOADGEN_CPUS:-1} "$shared/bench/fake-internet.sh" start "$data" >/dev/null
fake_started=1

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
cp "$data/blocklist.txt" "$work/a.txt"
tac "$data/blocklist.txt" > "$work/b.txt"   # same names, other order: a full rebuild each swap
cp "$work/a.txt" "$work/list.txt"
python3 - "$data" "$work/mix.txt" <<'PY'
import itertools, sys
d, out = sys.argv[1], sys.argv[2]
hit = itertools.cycle(open(f"{d}/q-hit.txt").read().splitlines())
blocked = iter(open(f"{d}/q-blocked.txt").read().splitlines())
miss = iter(open(f"{d}/q-miss.txt").read().splitlines())
with open(out, "w") as f:
    for i in range(4_000_000):
        k = i % 20
        src = miss if k in (7, 17) else blocked if k in (3, 9, 13, 19) else hit
        line = next(src, None)
        if line is None:
            break
        f.write(line + "\n")
PY

# $deny: every network but the synthetic internet's.
# shellcheck source=benches/harness-deny.sh
. "$here/benches/harness-deny.sh"
cat > "$work/rampart.toml" <<CONF
[server]
listen = ["127.0.0.1:$port"]
workers = 1
[resolver]
mode = "recursive"
timeout = "2s"
# dnsperf is one address standing for many clients.
max_outstanding_per_client = 100000
[resolver.recursive]
root_hints = "$data/root.hints"
authority_port = 53
deny_servers = [$deny]
[cache]
size = 200000
packet_size = 200000
# Popular names expire and are refetched every two minutes, so some are expired during the cut
# and answered stale.
max_ttl = "120s"
[block]
ipv4 = "192.0.2.1"
ipv6 = "2001:db8::1"
[admin]
listen = "127.0.0.1:$admin"
token = "soak"
[state]
dir = "$work/state"
# Measured against peers that keep no query log (and as measured before it existed).
[query_log]
mode = "off"
# One load generator asks far more than a subscriber would: no rate limits.
[rate_limit]
client_qps = 0
prefix_qps = 0
${SOAK_EXTRA_CONFIG:-}
[[lists]]
name = "allow"
path = "$data/allowlist.rpz"
format = "rpz"
[[lists]]
name = "big"
path = "$work/list.txt"
format = "wildcard"
refresh = "1h"
max_shrink = 1.0
CONF
taskset -c "${SERVER_CPUS:-0}" env RUST_LOG=warn "$bin" run --config "$work/rampart.toml" 2> "$work/rampart.log" &
pid=$!
for _ in $(seq 1 400); do
  curl -sf "http://127.0.0.1:$admin/health" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/rampart.log" >&2; exit 1; }
  sleep 0.05
done
# The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets).
rcvbuf_errors() { awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp; }
# Datagrams the kernel dropped on Rampart's own DNS sockets (all SO_REUSEPORT workers).
server_drops() {
  awk -v p="$(printf ':%04X' "$port")" 'NR > 1 && substr($2, length($2) - 4) == p {s += $13} END {print s + 0}' /proc/net/udp
}
rss_mib() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
alive() { kill -0 "$pid" 2>/dev/null; }

# The list is replaced every 5 s for the whole run, at idle priority off the server's CPU.
(
  taskset -pc "${LOADGEN_CPUS:-1}" "$BASHPID" >/dev/null
  chrt -i -p 0 "$BASHPID"
  v=b
  while :; do
    sleep 5
    cp "$work/$v.txt" "$work/list.tmp" && mv "$work/list.tmp" "$work/list.txt"
    curl -sf -X POST -H "Authorization: Bearer soak" "http://127.0.0.1:$admin/v1/lists/big/refresh" >/dev/null || true
    [ "$v" = b ] && v=a || v=b
  done
) &
swapper=$!

# dnsperf's sockets get the same 4 MiB buffers as the server's: with the default (208 KiB,
# ~3 ms of replies at the soak rate) a server that resumes after its CPU was taken away for a
# moment (the VM's vCPU, see rampart_udp_away_seconds) answers its backlog faster than dnsperf
# reads it, and dnsperf's own socket drops replies the server sent. A real population of
# clients has one socket each. The server's own socket drops are reported apart (last column).
perf() {  # perf SECONDS OUT [dnsperf args…]
  local secs=$1 out=$2; shift 2
  timeout -k 5 $((secs + 30)) taskset -c "${LOADGEN_CPUS:-1}" dnsperf -s 127.0.0.1 -p "$port" \
    -d "$work/mix.txt" -l "$secs" -c 8 -t 5 -b "${DNSPERF_BUFFER_KB:-4096}" "$@" > "$out" 2>&1 || true
}
# Warm-up (caches fill, the miss path is exercised, the list has been swapped a few times, so
# the RSS measured after it is the steady state), then the maximum for this mix.
perf 20 "$work/warm.out" -q 2000
perf 10 "$work/max.out" -q 2000
max=$(awk '/Queries per second:/ {printf "%d", $4}' "$work/max.out")
rate=${RATE:-$(( max * 6 / 10 ))}
echo "closed-loop maximum on this mix: $max qps; soak rate: $rate qps for $duration s"
echo "upstream cut for $outage s at the start of minute $cut_minute"

# Settle at the soak rate until the caches are full and several list versions have come and
# gone (SETTLE s, default 60): RSS at start is the steady state, so growth measures leaks.
perf "${SETTLE:-60}" "$work/settle.out" -Q "$rate" -q 20000

rss_start=$(rss_mib)
echo "minute 0: rss ${rss_start} MiB $(rcvbuf_errors) $(server_drops)" > "$work/rss"
crashed=0
for m in $(seq 1 "$minutes"); do
  if [ "$m" = "$cut_minute" ]; then
    ( nsd_signal STOP; sleep "$outage"; nsd_signal CONT ) &
  fi
  perf 60 "$work/m$m.out" -Q "$rate" -q 20000 -v
  if alive; then echo "minute $m: rss $(rss_mib) MiB $(rcvbuf_errors) $(server_drops)" >> "$work/rss"; else crashed=1; break; fi
done
kill "$swapper" 2>/dev/null; wait "$swapper" 2>/dev/null || true
rss_end=$(awk 'END {print $4}' "$work/rss")
swaps=$(curl -sf "http://127.0.0.1:$admin/metrics" | awk '/^rampart_list_compiles_total\{list="big"\}/ {s += $2} END {print s + 0}')
curl -sf "http://127.0.0.1:$admin/metrics" > "$work/metrics.txt" || true
stale=$(awk '/^rampart_stale_answers_total/ {s += $2} END {print s + 0}' "$work/metrics.txt")

# SIGTERM: a clean drain and exit 0, or it counts as a crash.
if alive; then
  kill -TERM "$pid"
  if wait "$pid"; then :; else crashed=1; fi
else
  crashed=1
fi
pid=

echo "(kernel rcvbuf drops: every UDP socket on the machine; during the cut, mostly the stopped NSD processes' own)"
printf '\n| minute | sent | lost | SERVFAIL | p50 ms | p99 ms | RSS MiB | kernel rcvbuf drops | on the server socket |\n|---|---|---|---|---|---|---|---|---|\n'
lost_outside=0
for m in $(seq 1 "$minutes"); do
  f="$work/m$m.out"
  [ -e "$f" ] || continue
  sent=$(awk '/Queries sent:/ {print $3}' "$f")
  lost=$(awk '/Queries lost:/ {print $3}' "$f")
  servfail=$(awk '/Response codes:/ { for (i = 1; i < NF; i++) if ($i == "SERVFAIL") print $(i + 1) }' "$f")
  awk '/^> / { printf "%.3f\n", $NF * 1000 }' "$f" | sort -n > "$work/lat"
  n=$(wc -l < "$work/lat")
  pct() { [ "$n" -gt 0 ] && sed -n "$(( ($1 * n + 999) / 1000 ))p" "$work/lat" || echo -; }
  rss=$(awk -v m="$m" '$2 == m":" {print $4}' "$work/rss")
  drops=$(awk -v m="$m" '$2 == (m - 1)":" {a = $6} $2 == m":" {b = $6} END {print b - a}' "$work/rss")
  own=$(awk -v m="$m" '$2 == (m - 1)":" {a = $7} $2 == m":" {b = $7} END {print b - a}' "$work/rss")
  mark=$m
  [ "$m" = "$cut_minute" ] && mark="$m (cut)"
  [ "$m" != "$cut_minute" ] && lost_outside=$(( lost_outside + ${lost:-0} ))
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$mark" "$sent" "$lost" "${servfail:-0}" "$(pct 500)" "$(pct 990)" "$rss" "$drops" "$own"
done
growth=$(python3 -c "print(f'{($rss_end - $rss_start) * 100 / $rss_start:+.1f}')")
echo
echo "crashes: $crashed (process alive through the run and exit 0 on SIGTERM = 0)"
echo "lost queries outside the cut minute: $lost_outside"
echo "RSS start ${rss_start} MiB (after warm-up and ${SETTLE:-60} s at the soak rate), end ${rss_end} MiB: ${growth} %"
echo "list swaps completed: $swaps; stale answers served: $stale"
echo "server counters at the end:"
grep -E '^rampart_(udp_dropped_total|upstream_limited_total|upstream_errors_total|rate_limited_total|access_denied_total)' "$work/metrics.txt" | sed 's/^/  /' || true
echo "UDP worker: batches by time spent on them, and full batches by time away from the socket before:"
grep -E '^rampart_udp_(batch|away)_seconds_(bucket|count)' "$work/metrics.txt" | sed 's/^/  /' || true
echo "compiles at normal priority (idle CPU starved): $(grep -c 'starved' "$work/rampart.log" || true)"
grep -iE "panic|error" "$work/rampart.log" | head -5 || echo "no panic or error in the server log"
