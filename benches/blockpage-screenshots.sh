#!/usr/bin/env bash
# Screenshots of the block page as a browser shows it, in English and Vietnamese: builds
# Rampart, starts it on loopback with a small legal list (a gambling domain with the reference of
# the decision ordering the block) and the block page, and has headless Chromium load the
# blocked name with each language preferred.
#
#   benches/blockpage-screenshots.sh OUTDIR
#
# Writes OUTDIR/blockpage-en.png and OUTDIR/blockpage-vi.png. Needs chromium (Debian package
# `chromium`) and python3 (to find free ports). Honours CARGO_TARGET_DIR.
set -euo pipefail
out=${1:?usage: blockpage-screenshots.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
here=$(cd "$(dirname "$0")/.." && pwd)
chromium=$(command -v chromium || command -v chromium-browser || true)
[ -n "$chromium" ] || { echo "chromium is not installed: apt-get install chromium" >&2; exit 1; }

(cd "$here" && cargo build --quiet --bin rampart)
bin="${CARGO_TARGET_DIR:-$here/target}/debug/rampart"

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, getattr(socket, sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}
dns=$(free_port SOCK_DGRAM)
page=$(free_port SOCK_STREAM)
host=blocked.example.test

cat > "$work/authority.csv" <<CSV
domain,category,reference,added
$host,gambling,Quyết định 123/QĐ-BTTTT,2026-01-02
CSV
cat > "$work/rampart.toml" <<CONF
[server]
listen = ["127.0.0.1:$dns"]
[admin]
listen = ""
[resolver]
mode = "forward"
[resolver.forward]
upstreams = ["127.0.0.1:9"]
[state]
dir = "state"
[block_page]
listen = ["127.0.0.1:$page"]
operator = "Example ISP"
contact = "abuse@example.net, 1900 1234"
appeal_url = "https://appeal.example.net/"

[[lists]]
name = "authority"
path = "authority.csv"
basis = "legal"
CONF

RUST_LOG=warn "$bin" run --config "$work/rampart.toml" >"$work/rampart.log" 2>&1 &
pid=$!
# Ready when the page port accepts connections (polled, 20 s at most).
ready=""
for _ in $(seq 200); do
  if python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$page" 2>/dev/null; then
    ready=1
    break
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { cat "$work/rampart.log" >&2; echo "rampart did not start" >&2; exit 1; }

shoot() {
  local lang=$1 accept=$2 profile
  profile=$(mktemp -d "$work/profile.XXXXXX")
  # --accept-lang sets Accept-Language in headless mode; the MAP rule stands in for the DNS
  # answer that sent the browser to the block address. Bounded: a hung browser is killed.
  HOME="$profile" timeout -k 5 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
    --no-first-run --disable-background-networking --disable-component-update --disable-sync \
    --disable-extensions --hide-scrollbars --user-data-dir="$profile" \
    --host-resolver-rules="MAP $host 127.0.0.1:$page" --accept-lang="$accept" \
    --window-size=1000,640 --screenshot="$out/blockpage-$lang.png" "http://$host/" \
    >"$work/chromium-$lang.log" 2>&1 || { cat "$work/chromium-$lang.log" >&2; exit 1; }
  [ -s "$out/blockpage-$lang.png" ] || { echo "no screenshot for $lang" >&2; exit 1; }
  echo "$out/blockpage-$lang.png"
}
shoot en "en-US,en"
shoot vi "vi-VN,vi"
