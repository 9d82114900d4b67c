# Sourced by benches/sut.sh and benches/soak.sh: the networks Rampart's recursor may not query
# when it resolves the synthetic internet of ../shared/bench: the IPv4 space minus
# 127.53.0.0/16 (what peer.sh's dont_query computes for the other peers), and all of IPv6.
# shellcheck disable=SC2034
deny='"0.0.0.0/2", "64.0.0.0/3", "96.0.0.0/4", "112.0.0.0/5", "120.0.0.0/6", "124.0.0.0/7",
  "126.0.0.0/8", "127.0.0.0/11", "127.32.0.0/12", "127.48.0.0/14", "127.52.0.0/16",
  "127.54.0.0/15", "127.56.0.0/13", "127.64.0.0/10", "127.128.0.0/9", "128.0.0.0/1", "::/0"'
