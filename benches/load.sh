#!/usr/bin/env bash
# Throughput side by side: runs the shared harness's compare.sh (../shared/bench) with Rampart
# as its `sut` peer, so Rampart's figures come from the same run as unbound's, pdns-recursor's
# and the reflector's (same data, same load generator, same CPU pinning, loopback only inside a
# network namespace). Prints compare.sh's markdown table; raw results go to $RESULTS
# (default /tmp/bench-results/<time>/).
#
#   [PEERS="reflector unbound sut"] [REPEATS=3] [DURATION=10] … \
#     benches/load.sh SHARED_BENCH_DIR DATADIR
#
# SHARED_BENCH_DIR: the harness folder (../shared/bench; run its setup.sh once, as root).
# DATADIR: a gen-data.py output folder (e.g. /tmp/bench-data-1m).
# Every other variable compare.sh reads (PEERS DURATION REPEATS WARM CLIENTS OUTSTANDING
# THREADS SERVER_CPUS LOADGEN_CPUS FAKE_CPUS RESULTS BASE_PORT NETNS) passes through. PEERS
# defaults to compare.sh's peers plus sut, without hickory-dns when its binary is missing.
# The sut's config is written by benches/sut.sh (see there); it ends up in
# $RESULTS/run/sut/rampart.toml. Needs root (compare.sh enters a network namespace).
set -euo pipefail
shared=$(realpath "${1:?usage: load.sh SHARED_BENCH_DIR DATADIR}")
data=$(realpath "${2:?usage: load.sh SHARED_BENCH_DIR DATADIR}")
here=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$shared/compare.sh" ] || { echo "$shared/compare.sh not found" >&2; exit 2; }
for f in root.hints allowlist.rpz blocklist.rpz meta.json q-hit.txt q-blocked.txt q-miss.txt spot.txt; do
  [ -f "$data/$f" ] || { echo "$data/$f missing (run $shared/gen-data.py $data)" >&2; exit 2; }
done
# compare.sh splits q-blocked and q-miss into one slice per repeat; a slice shorter than what a
# fast peer answers in DURATION s is answered again from the caches (compare.sh then warns
# "went round again") and the miss column measures cache hits.
miss_lines=$(wc -l < "$data/q-miss.txt")
if [ "$miss_lines" -lt $(( ${REPEATS:-3} * 200000 )) ]; then
  echo "warning: $data/q-miss.txt has only $miss_lines lines: the miss figures will be cache hits" \
    "(gen-data.py's defaults give 2M; regenerate without --miss-lines)" >&2
fi

(cd "$here" && cargo build --release --quiet --bin rampart)
target=$(cd "$here" && realpath -m "${CARGO_TARGET_DIR:-target}")
export RAMPART_BIN=$target/release/rampart

if [ -z "${PEERS:-}" ]; then
  PEERS="reflector unbound pdns-recursor"
  [ -x "${HICKORY_BIN:-/tmp/hickory-0.26.3/bin/hickory-dns}" ] && PEERS+=" hickory-dns"
  PEERS+=" sut"
fi
export PEERS
# peer.sh runs it as `bash -c "exec $SUT_CMD"`: quote the path for that shell
SUT_CMD=$(printf '%q' "$here/benches/sut.sh")
export SUT_CMD
exec "$shared/compare.sh" "$data"
