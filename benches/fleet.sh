#!/usr/bin/env bash
# A fleet on loopback: one BIND primary serving an RPZ zone (TSIG, NOTIFY to every node) and
# N Rampart nodes fed by zone transfer. Adds a name to the zone with nsupdate and measures the
# time until every node blocks it, then removes it and measures until every node lets it pass.
#
#   benches/fleet.sh [NODES] [ROUNDS]      (defaults: 3 nodes, 5 rounds)
#
# Needs Debian's bind9, bind9-utils (nsupdate) and bind9-dnsutils (dig). Loopback only.
set -euo pipefail
nodes=${1:-3}
rounds=${2:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/release/rampart"
(cd "$here" && cargo build --release --quiet)
for tool in named nsupdate dig; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install bind9 bind9-utils bind9-dnsutils)" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ms() { date +%s%3N; }

secret=$(head -c 32 /dev/urandom | base64)
primary=$(free_port)
ports=()
for _ in $(seq "$nodes"); do ports+=("$(free_port)"); done

# shellcheck source=benches/primary.sh
. "$here/benches/primary.sh"
start_primary "$work" "$primary" rpz.fleet. "$secret" "${ports[@]}"
pids+=("$PRIMARY_PID")

for n in $(seq 0 $((nodes - 1))); do
  mkdir -p "$work/node$n"
  cat > "$work/node$n/rampart.toml" <<CONF
[server]
listen = ["127.0.0.1:${ports[$n]}"]
[admin]
listen = ""
[state]
dir = "$work/node$n/state"
[resolver]
mode = "forward"
timeout = "300ms"
[resolver.forward]
upstreams = ["127.0.0.1:$primary"]
[[lists]]
name = "fleet"
xfr = { primary = "127.0.0.1:$primary", zone = "rpz.fleet.", tsig_key = "bench", tsig_secret = "$secret" }
refresh = "1h"
CONF
  RUST_LOG=${NODE_LOG:-warn} "$bin" run --config "$work/node$n/rampart.toml" 2>"$work/node$n/log" &
  pids+=($!)
done
for p in "${ports[@]}"; do
  for _ in $(seq 200); do
    dig +time=1 +tries=1 @127.0.0.1 -p "$p" seed.primary.test A 2>/dev/null | grep -q "status: NXDOMAIN" && break
    sleep 0.05
  done
done

# wait_all STATUS NAME: poll every node until NAME gets STATUS; prints ms since $start.
wait_all() {
  local want=$1 name=$2 deadline=$(( $(ms) + 10000 ))
  for p in "${ports[@]}"; do
    until dig +time=1 +tries=1 @127.0.0.1 -p "$p" "$name" A 2>/dev/null | grep -q "status: $want"; do
      [ "$(ms)" -lt "$deadline" ] || { echo "timeout waiting for $name $want on port $p: $(dig +time=1 +tries=1 @127.0.0.1 -p "$p" "$name" A 2>&1 | grep -E "status|ANSWER SECTION" -A1 | head -3)" >&2; tail -5 "$work/named.log" >&2; return 1; }
      sleep 0.01
    done
  done
  echo $(( $(ms) - start ))
}

trap '[ -n "${KEEP_LOGS:-}" ] && cp "$work"/node0/log "$work"/named.log /tmp/ 2>/dev/null; cleanup' EXIT
echo "nodes=$nodes primary=BIND $(named -v | head -1)"
for r in $(seq "$rounds"); do
  name="r$r.fleet.test"
  start=$(ms)
  zone_update "$primary" rpz.fleet. "$secret" "update add $name.rpz.fleet. 60 CNAME ."
  add=$(wait_all NXDOMAIN "$name")
  start=$(ms)
  zone_update "$primary" rpz.fleet. "$secret" "update delete $name.rpz.fleet. CNAME"
  # The upstream is the primary itself (recursion off): a name the policy lets through gets
  # REFUSED there, so SERVFAIL here, at once.
  del=$(wait_all SERVFAIL "$name")
  echo "round=$r add_to_enforced_on_all_ms=$add remove_to_lifted_on_all_ms=$del"
done
