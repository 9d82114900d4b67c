//! Access control: which client addresses may query at all.
//!
//! The `allow` and `deny` networks of `[access]` are flattened at load time into sorted,
//! disjoint address ranges, each with its decision (the longest covering prefix's, deny on an
//! exact tie, denied where nothing covers). A lookup is one binary search over a few integers:
//! no allocation and no hashing, cheap enough to run for every UDP packet before the fast path.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::{AccessConfig, DenyAction};

/// One address family's ranges: `starts[i]..starts[i + 1]` has decision `allowed[i]`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Ranges {
    starts: Vec<u128>,
    allowed: Vec<bool>,
}

/// A prefix as an inclusive range of the family's address space.
#[derive(Debug, Clone, Copy)]
struct Prefix {
    start: u128,
    end: u128,
    len: u8,
    allowed: bool,
}

impl Ranges {
    /// Flatten nested-or-disjoint prefixes (CIDR blocks never partly overlap) with one sweep:
    /// outer blocks come before the blocks inside them, and a stack holds the open ones.
    fn build(mut prefixes: Vec<Prefix>) -> Self {
        prefixes.sort_by_key(|p| (p.start, p.len, p.allowed));
        // The same prefix in both lists: deny (sorted first) wins.
        prefixes.dedup_by(|later, first| later.start == first.start && later.len == first.len);
        let mut out = Ranges::default();
        out.emit(0, false);
        let mut open: Vec<Prefix> = Vec::new();
        for p in prefixes {
            while let Some(top) = open.last().copied()
                && top.end < p.start
            {
                open.pop();
                out.emit(top.end + 1, open.last().is_some_and(|o| o.allowed));
            }
            out.emit(p.start, p.allowed);
            open.push(p);
        }
        while let Some(top) = open.pop() {
            if let Some(after) = top.end.checked_add(1) {
                out.emit(after, open.last().is_some_and(|o| o.allowed));
            }
        }
        out
    }

    /// Record that the decision from `at` on is `allowed`.
    fn emit(&mut self, at: u128, allowed: bool) {
        if self.starts.last() == Some(&at) {
            self.starts.pop();
            self.allowed.pop();
        }
        if self.allowed.last() != Some(&allowed) {
            self.starts.push(at);
            self.allowed.push(allowed);
        }
    }

    fn allows(&self, addr: u128) -> bool {
        let i = self.starts.partition_point(|&s| s <= addr);
        i > 0 && self.allowed[i - 1]
    }
}

/// The compiled `[access]` table.
#[derive(Debug, Clone)]
pub struct AccessTable {
    v4: Ranges,
    v6: Ranges,
    action: DenyAction,
}

impl AccessTable {
    pub fn new(config: &AccessConfig) -> Self {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        let lists = [(&config.allow, true), (&config.deny, false)];
        for (nets, allowed) in lists {
            for net in nets {
                match canonical_net(*net) {
                    IpNet::V4(n) => {
                        let (start, end) = (u32::from(n.network()), u32::from(n.broadcast()));
                        v4.push(Prefix {
                            start: start.into(),
                            end: end.into(),
                            len: n.prefix_len(),
                            allowed,
                        });
                    }
                    IpNet::V6(n) => v6.push(Prefix {
                        start: u128::from(n.network()),
                        end: u128::from(n.broadcast()),
                        len: n.prefix_len(),
                        allowed,
                    }),
                }
            }
        }
        Self {
            v4: Ranges::build(v4),
            v6: Ranges::build(v6),
            action: config.action,
        }
    }

    /// What to do with a query from `client`: `None` when it may query.
    #[inline]
    pub fn denied(&self, client: IpAddr) -> Option<DenyAction> {
        let allowed = match client.to_canonical() {
            IpAddr::V4(a) => self.v4.allows(u32::from(a).into()),
            IpAddr::V6(a) => self.v6.allows(u128::from(a)),
        };
        (!allowed).then_some(self.action)
    }
}

/// An IPv4-mapped network (`::ffff:10.0.0.0/104`) as the IPv4 network it is.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(n) = net
        && n.prefix_len() >= 96
        && let Some(v4) = n.network().to_ipv4_mapped()
        && let Ok(v4) = ipnet::Ipv4Net::new(v4, n.prefix_len() - 96)
    {
        return IpNet::V4(v4);
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(allow: &[&str], deny: &[&str]) -> AccessTable {
        let nets = |l: &[&str]| l.iter().map(|n| n.parse().unwrap()).collect();
        AccessTable::new(&AccessConfig {
            allow: nets(allow),
            deny: nets(deny),
            action: DenyAction::Refuse,
        })
    }

    fn allowed(t: &AccessTable, ip: &str) -> bool {
        t.denied(ip.parse().unwrap()).is_none()
    }

    #[test]
    fn the_longest_prefix_decides() {
        let t = table(&["10.0.0.0/8", "10.1.2.0/24"], &["10.1.0.0/16"]);
        for (ip, want) in [
            ("10.0.0.1", true),
            ("10.255.255.255", true),
            ("10.1.0.0", false),
            ("10.1.1.255", false),
            ("10.1.2.0", true),
            ("10.1.2.255", true),
            ("10.1.3.0", false),
            ("10.1.255.255", false),
            ("10.2.0.0", true),
            ("9.255.255.255", false),
            ("11.0.0.0", false),
            ("0.0.0.0", false),
            ("255.255.255.255", false),
        ] {
            assert_eq!(allowed(&t, ip), want, "{ip}");
        }
    }

    #[test]
    fn deny_wins_an_exact_tie_and_nothing_matching_is_denied() {
        let t = table(&["192.0.2.0/24", "0.0.0.0/0"], &["192.0.2.0/24"]);
        assert!(!allowed(&t, "192.0.2.7"));
        assert!(allowed(&t, "198.51.100.1"));
        let empty = table(&[], &[]);
        assert!(!allowed(&empty, "127.0.0.1"));
        assert!(!allowed(&empty, "::1"));
        assert_eq!(
            empty.denied("::1".parse().unwrap()),
            Some(DenyAction::Refuse)
        );
    }

    #[test]
    fn ipv6_and_the_whole_space() {
        let t = table(&["::/0", "2001:db8::/32"], &["2001:db8:1::/48", "ff00::/8"]);
        assert!(allowed(&t, "2001:db8::1"));
        assert!(!allowed(&t, "2001:db8:1::1"));
        assert!(allowed(&t, "2001:db8:2::1"));
        assert!(!allowed(&t, "ff02::1"));
        assert!(!allowed(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert!(allowed(&t, "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
        assert!(allowed(&t, "::"));
        // IPv4 is its own table.
        assert!(!allowed(&t, "10.0.0.1"));
        let all = table(&["0.0.0.0/0"], &["255.255.255.255/32"]);
        assert!(allowed(&all, "255.255.255.254"));
        assert!(!allowed(&all, "255.255.255.255"));
    }

    #[test]
    fn ipv4_mapped_clients_and_networks_count_as_ipv4() {
        let t = table(&["10.0.0.0/8", "::ffff:192.0.2.0/120"], &["::/0"]);
        assert!(allowed(&t, "::ffff:10.9.8.7"));
        assert!(allowed(&t, "10.9.8.7"));
        assert!(allowed(&t, "192.0.2.9"));
        assert!(allowed(&t, "::ffff:192.0.2.9"));
        assert!(!allowed(&t, "::ffff:11.0.0.1"));
        // Denying all of IPv6 does not deny mapped IPv4 clients.
        assert!(!allowed(&t, "2001:db8::1"));
    }

    #[test]
    fn the_default_allows_only_local_networks() {
        let c = crate::config::Config::from_toml("", std::path::Path::new("x.toml")).unwrap();
        let t = AccessTable::new(&c.access);
        for ip in [
            "127.0.0.1",
            "127.0.0.9",
            "::1",
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.0.1",
        ] {
            assert!(allowed(&t, ip), "{ip}");
        }
        for ip in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::2",
            "::ffff:8.8.8.8",
        ] {
            assert!(!allowed(&t, ip), "{ip}");
        }
    }

    #[test]
    fn ranges_are_minimal() {
        let t = table(&["10.0.0.0/8", "10.1.0.0/16"], &[]);
        assert_eq!(t.v4.starts.len(), 3, "{:?}", t.v4);
    }
}
