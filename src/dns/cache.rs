//! The answer cache in front of the resolver (both modes): resolved answers keyed by
//! (lower-cased name, type, class), kept for their TTL clamped to the configured bounds, and
//! served with TTLs counted down.
//!
//! `DashMap` shards the map so concurrent queries rarely contend. Eviction is deliberately
//! simple: when the cache is full, expired entries are swept, and if that is not enough an
//! arbitrary tenth goes. It bounds memory without a per-hit LRU write on the hot path.

use std::{
    sync::Arc,
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

    /// A fresh copy of the cached answer with TTLs reduced by the time it has been held.
    pub fn get(&self, name: &LowerName, rtype: RecordType, class: DNSClass) -> Option<Answer> {
        if self.config.size == 0 {
            return None;
        }
        let key = Key {
            name: name.clone(),
            rtype,
            class,
        };
        let entry = self.map.get(&key)?.value().clone();
        let now = Instant::now();
        if now >= entry.expires {
            self.map.remove_if(&key, |_, e| Arc::ptr_eq(e, &entry));
            return None;
        }
        let age = u32::try_from(now.duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = entry.answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age).max(1);
        }
        Some(answer)
    }

    /// Store an answer for as long as its records allow. SERVFAIL and other errors are not
    /// cached; negative answers live for the SOA's negative TTL (RFC 2308), capped by
    /// `negative_ttl`, and are not cached without an SOA.
    pub fn insert(&self, name: &LowerName, rtype: RecordType, class: DNSClass, answer: &Answer) {
        if self.config.size == 0 {
            return;
        }
        let Some(ttl) = self.cache_ttl(answer) else {
            return;
        };
        if ttl == 0 {
            return;
        }
        if self.map.len() >= self.config.size {
            self.make_room();
        }
        let now = Instant::now();
        let mut answer = answer.clone();
        // Stored records carry the clamped TTL so clients never see more than we keep.
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
        {
            r.ttl = r.ttl.min(ttl).max(1);
        }
        self.map.insert(
            Key {
                name: name.clone(),
                rtype,
                class,
            },
            Arc::new(Entry {
                answer,
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
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

    fn make_room(&self) {
        let now = Instant::now();
        make_room(&self.map, self.config.size, |e| e.expires > now);
    }

    /// Drop expired entries (called periodically so idle memory is returned).
    pub fn sweep(&self) {
        let now = Instant::now();
        self.map.retain(|_, e| e.expires > now);
    }
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

    fn cfg(size: usize) -> CacheConfig {
        CacheConfig {
            size,
            packet_size: 0,
            min_ttl: 0,
            max_ttl: 3600,
            negative_ttl: 300,
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
        c.insert(&n, RecordType::A, DNSClass::IN, &a("www.example.", 99_999));
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
        c.insert(&n, RecordType::A, DNSClass::IN, &a("x.example.", 0));
        assert!(c.is_empty());
        let mut s = a("x.example.", 60);
        s.rcode = ResponseCode::ServFail;
        c.insert(&n, RecordType::A, DNSClass::IN, &s);
        assert!(c.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let c = Cache::new(cfg(100));
        for i in 0..1000 {
            let name = format!("h{i}.example.");
            let n = LowerName::from(Name::from_ascii(&name).unwrap());
            c.insert(&n, RecordType::A, DNSClass::IN, &a(&name, 60));
        }
        assert!(c.len() <= 100);
    }
}
