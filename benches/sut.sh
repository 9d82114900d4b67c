#!/usr/bin/env bash
# The `sut` peer of the shared side-by-side harness (../shared/bench): writes a Rampart config
# for one data set into $WORKDIR and replaces itself with `rampart run` on it. benches/load.sh
# hands it to compare.sh as SUT_CMD; peer.sh runs it with `bash -c "exec …"` and exports
#   PORT     the DNS port on 127.0.0.1
#   DATADIR  the gen-data.py folder (root.hints, allowlist.rpz, blocklist.rpz)
#   THREADS  server threads
#   WORKDIR  a folder of its own (config, list state)
# Env of our own: RAMPART_BIN (default: target/release/rampart of this checkout),
#   RAMPART_CACHE_SIZE (answers kept, default 1000000: the peers get large caches too),
#   RUST_LOG (default warn).
#
# Same policy as the harness's unbound / pdns-recursor configs: iterative from the data set's
# root hints, queries only to 127.53.0.0/16 (every other IPv4 network and all of IPv6 denied),
# allowlist.rpz (PASSTHRU rules) consulted before blocklist.rpz, whose rules carry their own
# 192.0.2.1 / 2001:db8::1 data; the [block] addresses are the same for rules without data.
set -euo pipefail
: "${PORT:?}" "${DATADIR:?}" "${WORKDIR:?}"
THREADS=${THREADS:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${RAMPART_BIN:-$here/target/release/rampart}
[ -x "$bin" ] || { echo "sut.sh: no rampart binary at $bin (cargo build --release)" >&2; exit 1; }
mkdir -p "$WORKDIR/state"

# $deny: every network but the synthetic internet's.
# shellcheck source=benches/harness-deny.sh
. "$here/benches/harness-deny.sh"

cat > "$WORKDIR/rampart.toml" <<EOF
# written by benches/sut.sh for the shared bench harness
[server]
listen = ["127.0.0.1:$PORT"]
workers = $THREADS

[resolver]
mode = "recursive"
timeout = "5s"
# dnsperf is one client address with thousands of queries in flight: the per-client bound on
# upstream resolutions (meant for one subscriber) would turn its cache misses into SERVFAIL.
max_outstanding_per_client = 1000000

[resolver.recursive]
root_hints = "$DATADIR/root.hints"
authority_port = 53
deny_servers = [$deny]

[cache]
size = ${RAMPART_CACHE_SIZE:-1000000}

[block]
ipv4 = "192.0.2.1"
ipv6 = "2001:db8::1"

[admin]
listen = ""

# Measured against peers that keep no query log (and as measured before it existed).
[query_log]
mode = "off"
# The load generator is one client asking far more than a subscriber would: no rate limits
# (the peers it is compared with have none either).
[rate_limit]
client_qps = 0
prefix_qps = 0

[state]
dir = "$WORKDIR/state"

# consulted in this order: the allowlist's PASSTHRU rules win over the blocklist
[[lists]]
name = "allow"
path = "$DATADIR/allowlist.rpz"
format = "rpz"

[[lists]]
name = "block"
path = "$DATADIR/blocklist.rpz"
format = "rpz"
EOF

export RUST_LOG=${RUST_LOG:-warn,hickory_resolver=error} TOKIO_WORKER_THREADS=$THREADS
exec "$bin" run --config "$WORKDIR/rampart.toml"
