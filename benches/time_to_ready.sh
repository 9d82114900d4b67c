#!/usr/bin/env bash
# Time to ready and resident memory of the whole `rampart` server on a synthetic list from
# ../shared/bench/gen-data.py, measured the way ../shared/bench/peer.sh measures the peers:
# from process start until the data set's `ready_name` gets the block answer, and VmRSS then
# (before any other query). Loopback only; the server resolves nothing upstream.
#
#   benches/time_to_ready.sh DATADIR [rpz|wildcard|hosts|adblock]
#
# DATADIR is a gen-data.py output folder (e.g. /tmp/bench-data-1m). The list format picks which
# of its files is loaded: blocklist.rpz (+ allowlist.rpz, the peers' input), blocklist.txt,
# blocklist.hosts or blocklist.adblock.
set -euo pipefail
data=${1:?usage: time_to_ready.sh DATADIR [rpz|wildcard|hosts|adblock]}
format=${2:-rpz}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/rampart"
[ -x "$bin" ] || (cd "$here" && cargo build --release --quiet)
ready=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ready_name"])' "$data/meta.json")
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
case "$format" in
  rpz) lists="[[lists]]
name = \"allow\"
path = \"$data/allowlist.rpz\"
format = \"rpz\"

[[lists]]
name = \"block\"
path = \"$data/blocklist.rpz\"
format = \"rpz\"" ;;
  wildcard) lists="[[lists]]
name = \"block\"
path = \"$data/blocklist.txt\"
format = \"wildcard\"" ;;
  hosts|adblock) lists="[[lists]]
name = \"block\"
path = \"$data/blocklist.$format\"
format = \"$format\"" ;;
  *) echo "unknown format $format" >&2; exit 2 ;;
esac
cat > "$work/rampart.toml" <<CONF
[server]
listen = ["127.0.0.1:$port"]
# Measured against peers that keep no query log (and as measured before it existed).
[query_log]
mode = "off"
[admin]
listen = ""
[resolver]
mode = "forward"
timeout = "1s"
[resolver.forward]
upstreams = ["127.0.0.1:9"]
[block]
ipv4 = "192.0.2.1"
ipv6 = "2001:db8::1"
$lists
CONF

start=$(date +%s.%N)
RUST_LOG=warn "$bin" run --config "$work/rampart.toml" &
pid=$!
deadline=$(( $(date +%s) + 120 ))
until dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" "$ready" A 2>/dev/null | grep -qx 192.0.2.1; do
  kill -0 "$pid" 2>/dev/null || { echo "rampart exited" >&2; exit 1; }
  [ "$(date +%s)" -lt "$deadline" ] || { echo "not ready within 120 s" >&2; exit 1; }
  sleep 0.05
done
end=$(date +%s.%N)
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
entries=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocklist_entries"])' "$data/meta.json")
printf 'format=%s entries=%s ready_s=%.2f rss_mib=%.1f rss_per_entry_b=%.1f\n' "$format" "$entries" \
  "$(echo "$end - $start" | bc)" "$(echo "$rss_kb / 1024" | bc -l)" "$(echo "$rss_kb * 1024 / $entries" | bc -l)"
