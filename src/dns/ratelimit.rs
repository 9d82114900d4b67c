//! Query rate limits per client address and per client prefix (UDP).
//!
//! Each bucket is one integer, GCRA style: its "theoretical arrival time" in nanoseconds since
//! the limiter started. A query is allowed when pushing that time one interval (1 s / qps)
//! later keeps it within `burst` intervals of now; a bucket whose time is in the past is full,
//! so it carries no state and is the first to go when a shard is full. Buckets live in
//! sharded hash maps under plain mutexes; a client's bucket and its prefix's share a shard
//! (the shard is picked by the prefix), so a query takes one lock. The hasher is seeded at
//! random, so spoofed sources cannot aim at one slot.
//!
//! Memory is bounded by `max_tracked`. A shard that is full of active buckets keeps them and
//! does not track new addresses until some go idle: the buckets that are limiting someone
//! (a reflection victim whose address is being spoofed, a busy client) are never evicted to
//! make room for a flood of new spoofed sources, each of which sends too little to matter on
//! its own (their prefixes' buckets still count them once tracked).

use std::{
    collections::HashMap,
    hash::BuildHasher,
    net::IpAddr,
    sync::{Mutex, PoisonError},
    time::Instant,
};

use arc_swap::ArcSwap;
use foldhash::fast::RandomState;

use crate::config::RateLimitConfig;

/// Number of shards (a power of two).
const SHARDS: usize = 64;
/// A full shard sweeps out its idle buckets at most this often (ns).
const SWEEP_EVERY: u64 = 100_000_000;
/// `Key::kind` of a client's own bucket (prefix buckets carry their prefix length).
const CLIENT: u8 = u8::MAX;

/// Which bucket ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Client,
    Prefix,
}

impl Scope {
    pub fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Prefix => "prefix",
        }
    }
}

/// The verdict on one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Within the limits.
    Pass,
    /// Over a limit: send nothing.
    Drop(Scope),
    /// Over a limit, and this one slips: send an empty truncated answer.
    Slip(Scope),
}

/// One bucket's rate in integer nanoseconds.
#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Time one query costs.
    interval: u64,
    /// How far ahead of now the bucket's time may run: burst × interval.
    tolerance: u64,
}

impl Rate {
    fn new(qps: u32, burst: u32) -> Option<Self> {
        (qps > 0).then(|| {
            let interval = (1_000_000_000 / u64::from(qps)).max(1);
            Self {
                interval,
                tolerance: interval * u64::from(burst.max(1)),
            }
        })
    }

    /// The bucket's next time if this query is allowed, or None if it is over the limit.
    #[inline]
    fn admit(self, tat: u64, now: u64) -> Option<u64> {
        let next = tat.max(now) + self.interval;
        (next - now <= self.tolerance).then_some(next)
    }
}

/// The settings in force (swapped whole on reload).
#[derive(Debug)]
pub struct Settings {
    client: Option<Rate>,
    prefix: Option<Rate>,
    ipv4_prefix: u8,
    ipv6_prefix: u8,
    slip: u32,
    /// Most buckets per shard.
    shard_cap: usize,
}

impl Settings {
    pub fn new(c: &RateLimitConfig) -> Self {
        Self {
            client: Rate::new(c.client_qps, c.client_burst),
            prefix: Rate::new(c.prefix_qps, c.prefix_burst),
            ipv4_prefix: c.ipv4_prefix,
            ipv6_prefix: c.ipv6_prefix,
            slip: c.slip,
            shard_cap: c.max_tracked.div_ceil(SHARDS).max(1),
        }
    }

    /// Nothing to check.
    pub fn off(&self) -> bool {
        self.client.is_none() && self.prefix.is_none()
    }
}

/// 24 bytes (a `u128` would align the key to 16 and make it 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    /// The address (IPv4 as IPv4-mapped IPv6), masked for a prefix: high and low halves.
    addr: [u64; 2],
    kind: u8,
}

impl Key {
    fn new(addr: u128, kind: u8) -> Self {
        Self {
            addr: [(addr >> 64) as u64, addr as u64],
            kind,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Theoretical arrival time (ns since the limiter's epoch).
    tat: u64,
    /// Queries limited by this bucket, for `slip`.
    limited: u32,
}

#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<Key, Bucket, RandomState>,
    last_sweep: u64,
}

impl Shard {
    /// Whether one more bucket fits: when full, drop the idle ones (a full bucket carries no
    /// state), at most every `SWEEP_EVERY` so a flood cannot make every query scan the shard.
    fn has_room(&mut self, cap: usize, now: u64) -> bool {
        if self.buckets.len() < cap {
            return true;
        }
        if now.saturating_sub(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.buckets.retain(|_, b| b.tat > now);
        }
        self.buckets.len() < cap
    }

    fn tat(&self, key: &Key) -> u64 {
        self.buckets.get(key).map_or(0, |b| b.tat)
    }

    /// Charge an allowed query to the bucket. A new bucket that does not fit is not kept
    /// (see the module doc).
    fn charge(&mut self, key: Key, tat: u64, cap: usize, now: u64) {
        if let Some(b) = self.buckets.get_mut(&key) {
            b.tat = tat;
        } else if self.has_room(cap, now) {
            self.buckets.insert(key, Bucket { tat, limited: 0 });
        }
    }

    /// Count a limited query against the bucket; true when it slips.
    fn limited(&mut self, key: Key, slip: u32) -> bool {
        let Some(b) = self.buckets.get_mut(&key) else {
            return slip == 1;
        };
        b.limited = b.limited.wrapping_add(1);
        slip != 0 && b.limited.is_multiple_of(slip)
    }
}

/// The rate limiter, shared by the UDP workers.
#[derive(Debug)]
pub struct RateLimiter {
    settings: ArcSwap<Settings>,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    epoch: Instant,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let hasher = RandomState::default();
        Self {
            settings: ArcSwap::from_pointee(Settings::new(config)),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::with_hasher(hasher),
                        last_sweep: 0,
                    })
                })
                .collect(),
            hasher,
            epoch: Instant::now(),
        }
    }

    /// Put new settings in force; buckets are kept.
    pub fn reload(&self, config: &RateLimitConfig) {
        self.settings
            .store(std::sync::Arc::new(Settings::new(config)));
    }

    /// The settings in force (load once per batch of queries).
    pub fn settings(&self) -> arc_swap::Guard<std::sync::Arc<Settings>> {
        self.settings.load()
    }

    /// `when` as the limiter's clock (nanoseconds since it started).
    pub fn clock(&self, when: Instant) -> u64 {
        when.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Check and charge one query from `client` at `now` (see [`RateLimiter::clock`]).
    pub fn check(&self, settings: &Settings, client: IpAddr, now: u64) -> Limit {
        if settings.off() {
            return Limit::Pass;
        }
        let (addr, bits, prefix_len) = match client.to_canonical() {
            IpAddr::V4(a) => (u128::from(a.to_ipv6_mapped()), 32u32, settings.ipv4_prefix),
            IpAddr::V6(a) => (u128::from(a), 128, settings.ipv6_prefix),
        };
        let host_bits = bits - u32::from(prefix_len);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        let client_key = Key::new(addr, CLIENT);
        let prefix_key = Key::new(addr & mask, prefix_len);
        let shard = self.hasher.hash_one(prefix_key) as usize & (SHARDS - 1);
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cap = settings.shard_cap;
        // Both buckets must have room before either is charged.
        let client = match settings.client {
            None => None,
            Some(rate) => match rate.admit(shard.tat(&client_key), now) {
                Some(tat) => Some(tat),
                None => return limited(&mut shard, client_key, Scope::Client, settings.slip),
            },
        };
        let prefix = match settings.prefix {
            None => None,
            Some(rate) => match rate.admit(shard.tat(&prefix_key), now) {
                Some(tat) => Some(tat),
                None => return limited(&mut shard, prefix_key, Scope::Prefix, settings.slip),
            },
        };
        if let Some(tat) = client {
            shard.charge(client_key, tat, cap, now);
        }
        if let Some(tat) = prefix {
            shard.charge(prefix_key, tat, cap, now);
        }
        Limit::Pass
    }

    /// Drop idle buckets everywhere; returns how many are left.
    pub fn sweep(&self) -> usize {
        self.sweep_at(self.clock(Instant::now()))
    }

    fn sweep_at(&self, now: u64) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let mut s = s.lock().unwrap_or_else(PoisonError::into_inner);
                s.buckets.retain(|_, b| b.tat > now);
                s.buckets.shrink_to_fit();
                s.buckets.len()
            })
            .sum()
    }
}

fn limited(shard: &mut Shard, key: Key, scope: Scope, slip: u32) -> Limit {
    if shard.limited(key, slip) {
        Limit::Slip(scope)
    } else {
        Limit::Drop(scope)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(client: (u32, u32), prefix: (u32, u32), slip: u32, max: usize) -> RateLimitConfig {
        RateLimitConfig {
            client_qps: client.0,
            client_burst: client.1,
            prefix_qps: prefix.0,
            prefix_burst: prefix.1,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            slip,
            max_tracked: max,
        }
    }

    const SEC: u64 = 1_000_000_000;

    fn run(l: &RateLimiter, ip: &str, now: u64, n: usize) -> Vec<Limit> {
        let s = l.settings();
        (0..n)
            .map(|_| l.check(&s, ip.parse().unwrap(), now))
            .collect()
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate() {
        let l = RateLimiter::new(&config((10, 5), (0, 0), 2, 1000));
        let r = run(&l, "10.0.0.1", SEC, 9);
        assert!(r[..5].iter().all(|&v| v == Limit::Pass), "{r:?}");
        assert_eq!(
            &r[5..],
            &[
                Limit::Drop(Scope::Client),
                Limit::Slip(Scope::Client),
                Limit::Drop(Scope::Client),
                Limit::Slip(Scope::Client)
            ]
        );
        // Another client is not affected.
        assert_eq!(run(&l, "10.0.0.2", SEC, 1), [Limit::Pass]);
        // 10 qps: one query per 100 ms comes back.
        assert_eq!(run(&l, "10.0.0.1", SEC + SEC / 10, 1), [Limit::Pass]);
        assert_ne!(run(&l, "10.0.0.1", SEC + SEC / 10, 1), [Limit::Pass]);
        // After a long pause the whole burst is back.
        let r = run(&l, "10.0.0.1", 10 * SEC, 6);
        assert_eq!(r.iter().filter(|&&v| v == Limit::Pass).count(), 5);
    }

    #[test]
    fn a_prefix_limits_its_clients_together() {
        let l = RateLimiter::new(&config((100, 100), (10, 4), 0, 1000));
        let s = l.settings();
        let verdicts: Vec<Limit> = (1..=6)
            .map(|i| l.check(&s, format!("192.0.2.{i}").parse().unwrap(), SEC))
            .collect();
        assert_eq!(
            verdicts.iter().filter(|&&v| v == Limit::Pass).count(),
            4,
            "{verdicts:?}"
        );
        assert_eq!(verdicts[5], Limit::Drop(Scope::Prefix));
        // Another /24 is separate; IPv6 /56 neighbours share a prefix.
        assert_eq!(run(&l, "192.0.3.1", SEC, 1), [Limit::Pass]);
        let v6: Vec<Limit> = (1..=5)
            .map(|i| l.check(&s, format!("2001:db8:0:{i}::1").parse().unwrap(), SEC))
            .collect();
        assert_eq!(v6[4], Limit::Drop(Scope::Prefix), "{v6:?}");
        // An IPv4-mapped client is its IPv4 self.
        assert_eq!(
            run(&l, "::ffff:192.0.2.77", SEC, 1),
            [Limit::Drop(Scope::Prefix)]
        );
    }

    #[test]
    fn slip_one_always_slips_and_zero_never() {
        let always = RateLimiter::new(&config((1, 1), (0, 0), 1, 1000));
        let r = run(&always, "10.0.0.1", SEC, 4);
        assert_eq!(&r[1..], &[Limit::Slip(Scope::Client); 3]);
        let never = RateLimiter::new(&config((1, 1), (0, 0), 0, 1000));
        let r = run(&never, "10.0.0.1", SEC, 4);
        assert_eq!(&r[1..], &[Limit::Drop(Scope::Client); 3]);
    }

    #[test]
    fn off_and_reload() {
        let l = RateLimiter::new(&config((0, 0), (0, 0), 2, 1000));
        assert!(
            run(&l, "10.0.0.1", SEC, 1000)
                .iter()
                .all(|&v| v == Limit::Pass)
        );
        l.reload(&config((1, 2), (0, 0), 2, 1000));
        let r = run(&l, "10.0.0.1", SEC, 3);
        assert_eq!(r[2], Limit::Drop(Scope::Client));
    }

    #[test]
    fn tracked_buckets_are_bounded_and_limited_ones_stay() {
        let max = 640;
        let l = RateLimiter::new(&config((1, 1), (0, 0), 0, max));
        let s = l.settings();
        let victim: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(l.check(&s, victim, SEC), Limit::Pass);
        for i in 0..20_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            // Every one is new and active (a spoofed flood)...
            assert_eq!(l.check(&s, ip, SEC + u64::from(i)), Limit::Pass);
            // ...and the address being limited stays limited.
            if i % 1000 == 0 {
                assert_eq!(
                    l.check(&s, victim, SEC + u64::from(i)),
                    Limit::Drop(Scope::Client)
                );
            }
        }
        let tracked: usize = l
            .shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum();
        assert!(tracked <= max, "{tracked}");
        // Once the flood's buckets are idle, new addresses are tracked again.
        let later: IpAddr = "10.200.0.1".parse().unwrap();
        assert_eq!(l.check(&s, later, 10 * SEC), Limit::Pass);
        assert_eq!(l.check(&s, later, 10 * SEC), Limit::Drop(Scope::Client));
        assert_eq!(l.sweep_at(100 * SEC), 0);
    }
}
