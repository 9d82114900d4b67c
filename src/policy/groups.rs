//! Client groups: which lists apply to which clients. Networks (IPv4 and IPv6 CIDRs) map to named
//! groups; the longest matching prefix wins; clients outside every network get the default group.
//!
//! Lookup is one hash probe per prefix length that occurs in the configuration, longest first, so
//! its cost is bounded by the address length (33 or 129 lengths at most, a handful in practice),
//! never by the number of networks.

use std::{collections::HashMap, net::IpAddr};

use ipnet::IpNet;

/// Index of a group in the configuration; 0 is the default group.
pub type GroupId = usize;

/// A longest-prefix-match map from IPv4/IPv6 networks to values: client groups, and the RPZ
/// client-IP and response-IP triggers.
#[derive(Debug, Clone)]
pub struct PrefixMap<T> {
    v4: Family<T>,
    v6: Family<T>,
}

impl<T> Default for PrefixMap<T> {
    fn default() -> Self {
        Self {
            v4: Family::default(),
            v6: Family::default(),
        }
    }
}

#[derive(Debug, Clone)]
struct Family<T> {
    /// Prefix lengths present, longest first.
    lengths: Vec<u8>,
    /// (prefix length, network bits) → value. foldhash: these keys are hashed once per prefix
    /// length on every query, and SipHash costs more than the probe itself.
    nets: HashMap<(u8, u128), T, foldhash::fast::RandomState>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Self {
            lengths: Vec::new(),
            nets: HashMap::default(),
        }
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        all & !((1u128 << (width - len)) - 1)
    }
}

impl<T> Family<T> {
    fn lookup(&self, addr: u128, width: u8) -> Option<&T> {
        self.lengths
            .iter()
            .find_map(|&len| self.nets.get(&(len, addr & mask(len, width))))
    }
}

impl<T> PrefixMap<T> {
    /// Add a network. Returns false, keeping the first value, when exactly this network is
    /// already present.
    pub fn insert(&mut self, net: IpNet, value: T) -> bool {
        let net = net.trunc();
        let v6 = matches!(net, IpNet::V6(_));
        let width = if v6 { 128 } else { 32 };
        let key = (
            net.prefix_len(),
            bits(net.network()) & mask(net.prefix_len(), width),
        );
        let family = if v6 { &mut self.v6 } else { &mut self.v4 };
        if family.nets.contains_key(&key) {
            return false;
        }
        if !family.lengths.contains(&key.0) {
            family.lengths.push(key.0);
            family.lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        family.nets.insert(key, value);
        true
    }

    /// The value of the longest network containing `ip` (IPv4-mapped IPv6 counts as IPv4).
    pub fn get(&self, ip: IpAddr) -> Option<&T> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match ip {
            IpAddr::V4(_) => self.v4.lookup(bits(ip), 32),
            IpAddr::V6(_) => self.v6.lookup(bits(ip), 128),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.v4.nets.is_empty() && self.v6.nets.is_empty()
    }

    pub fn len(&self) -> usize {
        self.v4.nets.len() + self.v6.nets.len()
    }
}

/// The compiled network → group map; clients outside every network are in group 0.
#[derive(Debug, Default, Clone)]
pub struct GroupMap(PrefixMap<GroupId>);

impl GroupMap {
    /// Add a network for a group. Returns false when exactly this network is already mapped
    /// (configuration validation reports that before it gets here).
    pub fn insert(&mut self, net: IpNet, group: GroupId) -> bool {
        self.0.insert(net, group)
    }

    /// The group of a client address.
    pub fn group_of(&self, ip: IpAddr) -> GroupId {
        self.0.get(ip).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, GroupId)]) -> GroupMap {
        let mut m = GroupMap::default();
        for (net, g) in entries {
            assert!(m.insert(net.parse().unwrap(), *g));
        }
        m
    }

    #[test]
    fn longest_prefix_wins() {
        let m = map(&[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.3/32", 3),
            ("2001:db8::/32", 1),
            ("2001:db8:1::/48", 2),
            ("0.0.0.0/0", 4),
        ]);
        let g = |s: &str| m.group_of(s.parse().unwrap());
        assert_eq!(g("10.9.9.9"), 1);
        assert_eq!(g("10.1.9.9"), 2);
        assert_eq!(g("10.1.2.3"), 3);
        assert_eq!(g("192.0.2.1"), 4);
        assert_eq!(g("::ffff:10.1.2.3"), 3, "v4-mapped counts as v4");
        assert_eq!(g("2001:db8:1::5"), 2);
        assert_eq!(g("2001:db8:2::5"), 1);
        assert_eq!(g("2001:db9::1"), 0, "default group");
    }

    #[test]
    fn host_bits_are_ignored_and_duplicates_reported() {
        let mut m = GroupMap::default();
        assert!(m.insert("10.1.2.3/16".parse().unwrap(), 1));
        assert!(!m.insert("10.1.0.0/16".parse().unwrap(), 2));
        assert_eq!(m.group_of("10.1.200.1".parse().unwrap()), 1);
        assert_eq!(mask(0, 32), 0);
        assert_eq!(mask(32, 32), u128::from(u32::MAX));
        assert_eq!(mask(128, 128), u128::MAX);
    }
}
