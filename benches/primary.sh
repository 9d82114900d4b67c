# Shared by the bench scripts (source it): a BIND primary on loopback serving one RPZ zone with
# a TSIG key, NOTIFYing the given ports at once. Needs Debian's bind9, bind9-utils, bind9-dnsutils.
#
#   start_primary DIR PORT ZONE SECRET NOTIFY_PORT…   # starts named; sets PRIMARY_PID
#   zone_update PORT ZONE SECRET "update add x.ZONE. 60 CNAME ."

start_primary() {
  local dir=$1 port=$2 zone=$3 secret=$4
  shift 4
  local also="" p
  for p in "$@"; do also="$also 127.0.0.1 port $p;"; done
  cat > "$dir/primary.zone" <<ZONE
\$TTL 60
@ SOA localhost. root.localhost. 1 3600 600 86400 60
  NS localhost.
seed.primary.test CNAME .
ZONE
  cat > "$dir/named.conf" <<CONF
key "bench" { algorithm hmac-sha256; secret "$secret"; };
options {
  directory "$dir";
  pid-file "$dir/named.pid";
  session-keyfile "$dir/session.key";
  listen-on port $port { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify explicit;
  notify-delay 0;      // the default waits 5 s before notifying
  notify-rate 1000;    // the default (20/s) spaces notifies to many nodes out
};
zone "$zone" {
  type primary;
  file "$dir/primary.zone";
  allow-transfer { key bench; };
  allow-update { key bench; };
  also-notify {$also };
};
CONF
  # PRIMARY_CPUS pins named (and nsupdate) away from the server under test: in production the
  # primary is another machine.
  ${PRIMARY_CPUS:+taskset -c "$PRIMARY_CPUS"} chrt -i 0 named -g -c "$dir/named.conf" -n 1 > "$dir/named.log" 2>&1 &
  PRIMARY_PID=$!
  local _
  for _ in $(seq 200); do
    dig +short +time=1 +tries=1 @127.0.0.1 -p "$port" "$zone" SOA >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "named did not start; see $dir/named.log" >&2
  return 1
}

zone_update() {
  local port=$1 zone=$2 secret=$3 update=$4
  printf 'server 127.0.0.1 %s\nzone %s\n%s\nsend\n' "$port" "$zone" "$update" \
    | ${PRIMARY_CPUS:+taskset -c "$PRIMARY_CPUS"} nsupdate -y "hmac-sha256:bench:$secret"
}
