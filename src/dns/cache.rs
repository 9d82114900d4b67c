//! The answer cache in front of the resolver (both modes): resolved answers keyed by
//! (lower-cased name, type, class), kept for their TTL clamped to the configured bounds, and
//! served with TTLs counted down.
//!
//! `DashMap` shards the map so concurrent queries rarely contend. Eviction is deliberately
//! simple: when the cache is full, expired entries are swept, and if that is not enough an
//! arbitrary tenth goes. It bounds memory without a per-hit LRU write on the hot path.
//!
//! **Serve-stale** (RFC 8767): an expired entry is kept for `serve_stale` more and returned by
//! [`Cache::lookup`] as [`Lookup::Stale`], with every TTL set to `stale_ttl`. The handler
//! asks upstream as usual and answers the stale copy only when that fails (or its limits are
//! reached); after such a failure [`Cache::refresh_failed`] lets the entry be served without
//! asking upstream for `stale_ttl` (the RFC's failure recheck timer), so a dead upstream does
//! not cost every client the whole deadline. The sweep drops entries past the stale window,
//! and a full cache drops expired entries before live ones.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use hickory_proto::{
    op::ResponseCode,
    rr::{DNSClass, LowerName, RData, Record, RecordType},
};

use crate::config::CacheConfig;

/// A resolved answer as the upstream gave it.
#[derive(Debug, Clone)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: LowerName,
    rtype: RecordType,
    class: DNSClass,
}

#[derive(Debug)]
struct Entry {
    answer: Answer,
    stored: Instant,
    expires: Instant,
    /// Until when the entry is kept (`expires` plus the serve-stale window).
    keep_until: Instant,
    /// Milliseconds after `stored` until which the stale copy is served without asking
    /// upstream (set by a failed refresh; 0: never).
    recheck_until: AtomicU64,
}

/// What the cache holds for a question.
#[derive(Debug)]
pub enum Lookup {
    /// A live answer, TTLs counted down.
    Fresh(Answer),
    /// An expired answer inside the serve-stale window, TTLs set to `stale_ttl`: to be served
    /// only if upstream cannot refresh it. `refresh` is false while a recent failed refresh
    /// says not to ask upstream again yet (serve it at once).
    Stale {
        answer: Answer,
        refresh: bool,
    },
    Miss,
}

pub struct Cache {
    map: DashMap<Key, Arc<Entry>>,
    config: CacheConfig,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.map.len())
            .finish()
    }
}

impl Cache {
    pub fn new(config: CacheConfig) -> Self {
        Self {
            map: DashMap::new(),
            config,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// How long a refresh of an expired entry may keep the client waiting (zero: until the
    /// resolver deadline).
    pub fn stale_answer_after(&self) -> Duration {
        self.config.stale_answer_after
    }

    /// A fresh copy of the cached answer with TTLs reduced by the time it has been held.
    pub fn get(&self, name: &LowerName, rtype: RecordType, class: DNSClass) -> Option<Answer> {
        match self.lookup(name, rtype, class) {
            Lookup::Fresh(answer) => Some(answer),
            Lookup::Stale { .. } | Lookup::Miss => None,
        }
    }

    /// The cached answer, fresh or (inside the serve-stale window) stale.
    pub fn lookup(&self, name: &LowerName, rtype: RecordType, class: DNSClass) -> Lookup {
        self.lookup_at(&key(name, rtype, class), Instant::now())
    }

    fn lookup_at(&self, key: &Key, now: Instant) -> Lookup {
        if self.config.size == 0 {
            return Lookup::Miss;
        }
        let Some(entry) = self.map.get(key).map(|e| e.value().clone()) else {
            return Lookup::Miss;
        };
        if now >= entry.keep_until {
            self.map.remove_if(key, |_, e| Arc::ptr_eq(e, &entry));
            return Lookup::Miss;
        }
        let mut answer = entry.answer.clone();
        let records = answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut());
        if now >= entry.expires {
            for r in records {
                r.ttl = self.config.stale_ttl;
            }
            let held = millis(now.duration_since(entry.stored));
            let refresh = held >= entry.recheck_until.load(Ordering::Relaxed);
            return Lookup::Stale { answer, refresh };
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        for r in records {
            r.ttl = r.ttl.saturating_sub(age).max(1);
        }
        Lookup::Fresh(answer)
    }

    /// Upstream could not refresh this expired entry: serve it without asking for `stale_ttl`.
    pub fn refresh_failed(&self, name: &LowerName, rtype: RecordType, class: DNSClass) {
        self.refresh_failed_at(&key(name, rtype, class), Instant::now());
    }

    fn refresh_failed_at(&self, key: &Key, now: Instant) {
        if let Some(entry) = self.map.get(key)
            && now >= entry.expires
        {
            let until = now + Duration::from_secs(u64::from(self.config.stale_ttl));
            entry.recheck_until.store(
                millis(until.duration_since(entry.stored)),
                Ordering::Relaxed,
            );
        }
    }

    /// Store an answer for as long as its records allow. SERVFAIL and other errors are not
    /// cached; negative answers live for the SOA's negative TTL (RFC 2308), capped by
    /// `negative_ttl`, and are not cached without an SOA.
    ///
    /// The records of `answer` get the TTLs stored, so the client that asked first is not told
    /// to keep them longer than the cache does (nor is the packet cache).
    pub fn insert(
        &self,
        name: &LowerName,
        rtype: RecordType,
        class: DNSClass,
        answer: &mut Answer,
    ) {
        if self.config.size == 0 {
            return;
        }
        let Some(ttl) = self.cache_ttl(answer) else {
            return;
        };
        if ttl == 0 {
            return;
        }
        let ttl = jittered(ttl, self.config.ttl_jitter);
        if self.map.len() >= self.config.size {
            self.make_room();
        }
        let now = Instant::now();
        let expires = now + Duration::from_secs(u64::from(ttl));
        // Stored records carry the clamped TTL so clients never see more than we keep.
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
        {
            r.ttl = r.ttl.min(ttl).max(1);
        }
        self.map.insert(
            key(name, rtype, class),
            Arc::new(Entry {
                answer: answer.clone(),
                stored: now,
                expires,
                keep_until: expires + self.config.serve_stale,
                recheck_until: AtomicU64::new(0),
            }),
        );
    }

    fn cache_ttl(&self, answer: &Answer) -> Option<u32> {
        let c = &self.config;
        match answer.rcode {
            ResponseCode::NoError if !answer.answers.is_empty() => {
                let min = answer.answers.iter().map(|r| r.ttl).min()?;
                Some(min.clamp(c.min_ttl, c.max_ttl))
            }
            ResponseCode::NoError | ResponseCode::NXDomain => {
                let soa = answer.authorities.iter().find_map(|r| match &r.data {
                    RData::SOA(soa) => Some((r.ttl, soa.minimum)),
                    _ => None,
                })?;
                Some(soa.0.min(soa.1).min(c.negative_ttl))
            }
            _ => None,
        }
    }

    /// Full: expired entries go first (stale ones included), then an arbitrary tenth.
    fn make_room(&self) {
        let now = Instant::now();
        make_room(&self.map, self.config.size, |e| e.expires > now);
    }

    /// Drop entries past their serve-stale window (called periodically so idle memory is
    /// returned).
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, now: Instant) {
        self.map.retain(|_, e| e.keep_until > now);
    }
}

/// `ttl` less up to `fraction` of it, at random, for TTLs of 10 s or more.
fn jittered(ttl: u32, fraction: f64) -> u32 {
    if ttl < 10 || fraction <= 0.0 {
        return ttl;
    }
    // splitmix64 over a counter: cheap, and good enough to spread expiries.
    static STATE: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);
    let mut z = STATE.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let spread = (f64::from(ttl) * fraction) as u64;
    ttl - (z % (spread + 1)) as u32
}

fn key(name: &LowerName, rtype: RecordType, class: DNSClass) -> Key {
    Key {
        name: name.clone(),
        rtype,
        class,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Bound a cache map of `capacity` entries before an insert: drop the entries `live` rejects,
/// and if that is not enough an arbitrary tenth, so eviction costs no per-hit bookkeeping.
pub(super) fn make_room<K, V, S>(map: &DashMap<K, V, S>, capacity: usize, live: impl Fn(&V) -> bool)
where
    K: Eq + std::hash::Hash + Clone,
    S: std::hash::BuildHasher + Clone,
{
    map.retain(|_, v| live(v));
    let target = capacity - capacity / 10;
    if map.len() >= target {
        let excess = map.len() - target + 1;
        let victims: Vec<K> = map.iter().take(excess).map(|e| e.key().clone()).collect();
        for k in victims {
            map.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::{Name, rdata::A};

    #[test]
    fn jitter_takes_at_most_the_fraction_and_spreads() {
        assert_eq!(jittered(9, 0.1), 9);
        assert_eq!(jittered(300, 0.0), 300);
        let seen: std::collections::BTreeSet<u32> = (0..1000).map(|_| jittered(300, 0.1)).collect();
        assert!(seen.iter().all(|&t| (270..=300).contains(&t)), "{seen:?}");
        assert!(seen.len() > 20, "spread: {seen:?}");
    }

    fn cfg(size: usize) -> CacheConfig {
        CacheConfig {
            size,
            packet_size: 0,
            min_ttl: 0,
            max_ttl: 3600,
            negative_ttl: 300,
            serve_stale: Duration::from_secs(600),
            stale_ttl: 30,
            stale_answer_after: Duration::ZERO,
            ttl_jitter: 0.0,
            prefetch: false,
        }
    }

    fn a(name: &str, ttl: u32) -> Answer {
        Answer {
            rcode: ResponseCode::NoError,
            answers: vec![Record::from_rdata(
                Name::from_ascii(name).unwrap(),
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            )],
            authorities: vec![],
        }
    }

    #[test]
    fn stores_and_clamps() {
        let c = Cache::new(cfg(10));
        let n = LowerName::from(Name::from_ascii("Www.Example.").unwrap());
        c.insert(
            &n,
            RecordType::A,
            DNSClass::IN,
            &mut a("www.example.", 99_999),
        );
        let got = c.get(&n, RecordType::A, DNSClass::IN).unwrap();
        assert_eq!(got.answers[0].ttl, 3600);
        let lower = LowerName::from(Name::from_ascii("www.example.").unwrap());
        assert!(c.get(&lower, RecordType::A, DNSClass::IN).is_some());
        assert!(c.get(&lower, RecordType::AAAA, DNSClass::IN).is_none());
    }

    #[test]
    fn zero_ttl_and_servfail_not_cached() {
        let c = Cache::new(cfg(10));
        let n = LowerName::from(Name::from_ascii("x.example.").unwrap());
        c.insert(&n, RecordType::A, DNSClass::IN, &mut a("x.example.", 0));
        assert!(c.is_empty());
        let mut s = a("x.example.", 60);
        s.rcode = ResponseCode::ServFail;
        c.insert(&n, RecordType::A, DNSClass::IN, &mut s);
        assert!(c.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let c = Cache::new(cfg(100));
        for i in 0..1000 {
            let name = format!("h{i}.example.");
            let n = LowerName::from(Name::from_ascii(&name).unwrap());
            c.insert(&n, RecordType::A, DNSClass::IN, &mut a(&name, 60));
        }
        assert!(c.len() <= 100);
    }

    fn ttls(a: &Answer) -> Vec<u32> {
        a.answers.iter().map(|r| r.ttl).collect()
    }

    #[test]
    fn expired_entries_are_served_stale_within_the_window_then_dropped() {
        let c = Cache::new(cfg(10));
        let n = LowerName::from(Name::from_ascii("s.example.").unwrap());
        let k = key(&n, RecordType::A, DNSClass::IN);
        c.insert(&n, RecordType::A, DNSClass::IN, &mut a("s.example.", 60));
        let t0 = c.map.get(&k).unwrap().stored;

        let Lookup::Fresh(fresh) = c.lookup_at(&k, t0 + Duration::from_secs(10)) else {
            panic!("fresh at 10 s")
        };
        assert_eq!(ttls(&fresh), vec![50]);

        // Expired: stale, TTL = stale_ttl, refresh wanted; `get` sees nothing.
        let at = t0 + Duration::from_secs(61);
        let Lookup::Stale { answer, refresh } = c.lookup_at(&k, at) else {
            panic!("stale at 61 s")
        };
        assert_eq!(ttls(&answer), vec![30]);
        assert!(refresh);

        // A failed refresh: served without asking for stale_ttl, then asked again.
        c.refresh_failed_at(&k, at);
        let refresh_at = |secs| match c.lookup_at(&k, t0 + Duration::from_secs(secs)) {
            Lookup::Stale { refresh, .. } => refresh,
            other => panic!("stale expected at {secs} s: {other:?}"),
        };
        assert!(!refresh_at(62));
        assert!(!refresh_at(90));
        assert!(refresh_at(92));

        // The sweep keeps it inside the window and drops it after.
        c.sweep_at(t0 + Duration::from_secs(600));
        assert_eq!(c.len(), 1);
        c.sweep_at(t0 + Duration::from_secs(661));
        assert!(c.is_empty());

        // Past the window a lookup drops it too.
        c.insert(&n, RecordType::A, DNSClass::IN, &mut a("s.example.", 60));
        let t0 = c.map.get(&k).unwrap().stored;
        assert!(matches!(
            c.lookup_at(&k, t0 + Duration::from_secs(661)),
            Lookup::Miss
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn serve_stale_off_keeps_nothing_expired() {
        let mut config = cfg(10);
        config.serve_stale = Duration::ZERO;
        let c = Cache::new(config);
        let n = LowerName::from(Name::from_ascii("s.example.").unwrap());
        let k = key(&n, RecordType::A, DNSClass::IN);
        c.insert(&n, RecordType::A, DNSClass::IN, &mut a("s.example.", 60));
        let t0 = c.map.get(&k).unwrap().stored;
        assert!(matches!(
            c.lookup_at(&k, t0 + Duration::from_secs(60)),
            Lookup::Miss
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_cache_evicts_expired_entries_first() {
        let c = Cache::new(cfg(10));
        let now = Instant::now();
        for i in 0..10 {
            let name = format!("h{i}.example.");
            let n = LowerName::from(Name::from_ascii(&name).unwrap());
            c.insert(&n, RecordType::A, DNSClass::IN, &mut a(&name, 60));
            if i < 5 {
                // Make half of them stale.
                let k = key(&n, RecordType::A, DNSClass::IN);
                let e = c.map.get(&k).unwrap().clone();
                c.map.insert(
                    k,
                    Arc::new(Entry {
                        answer: e.answer.clone(),
                        stored: now - Duration::from_secs(120),
                        expires: now - Duration::from_secs(60),
                        keep_until: now + Duration::from_secs(600),
                        recheck_until: AtomicU64::new(0),
                    }),
                );
            }
        }
        let n = LowerName::from(Name::from_ascii("new.example.").unwrap());
        c.insert(&n, RecordType::A, DNSClass::IN, &mut a("new.example.", 60));
        assert_eq!(
            c.len(),
            6,
            "the five stale entries went, the live ones stayed"
        );
        for i in 5..10 {
            let n = LowerName::from(Name::from_ascii(format!("h{i}.example.")).unwrap());
            assert!(c.get(&n, RecordType::A, DNSClass::IN).is_some());
        }
    }
}
