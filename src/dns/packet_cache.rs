//! The packet cache of the UDP fast path: ready wire responses keyed by the question (lower-case
//! name, type, class), the EDNS/DO/CD bits and the client group. A hit copies the bytes, puts in
//! the client's ID, question spelling, RD/CD bits and EDNS payload size, and ages the TTLs: no
//! message decode, no allocation.
//!
//! Every entry carries the policy generation it was answered under and is only served under the
//! same one, so a list update applies to the very next query. An entry from an older generation
//! whose answer depends only on the policy's decision for its question name (no CNAME or DNAME
//! to follow, no RESPONSE-IP rules) is revalidated instead of dropped: when the new policy
//! decides that name as before, the entry moves to the new generation and is served. Without
//! this, every list update (every few seconds with busy feeds) would send every popular name
//! back through the general path at once. Other stale entries are overwritten or swept. Answers that depend on more than the key (CLIENT-IP rules, log-only matches, DROP,
//! TC) are never stored; see `DnsHandler::answer_udp`.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use dashmap::DashMap;

use super::wire::{self, ResponseIndex};
use crate::metrics::Outcome;

/// What a served answer counts as in the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub outcome: Outcome,
    /// The list that blocked the name (index into the snapshot of the entry's generation).
    pub blocked_by: Option<usize>,
    /// The allowlist that let the name through.
    pub allowed_by: Option<usize>,
}

#[derive(Debug)]
struct Entry {
    wire: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    opt_payload_at: Option<u16>,
    question_end: u16,
    /// Atomic so a revalidated entry moves to the new generation under the shard's read lock.
    generation: AtomicU64,
    /// The answer depends on nothing but the policy's decision for the question name.
    revalidatable: bool,
    /// The response's smallest TTL when stored, in seconds.
    ttl: u32,
    /// A prefetch of this entry was asked for (once per entry).
    prefetched: AtomicBool,
    stored: Instant,
    expires: Instant,
    tally: Tally,
}

/// A served hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub len: usize,
    pub tally: Tally,
    /// The entry is in the last tenth of its life and still asked for: refresh it now, in the
    /// background, so it never expires under load (see [`PREFETCH_MIN_TTL`]).
    pub prefetch: bool,
}

/// Entries whose TTL was at least this long (seconds) are prefetched when hit in the last tenth
/// of their life, as BIND and Unbound do: without it every popular name expires and is asked
/// upstream by all its clients' queries at once, and names fetched together (after a start)
/// expire together.
pub const PREFETCH_MIN_TTL: u32 = 10;

pub struct PacketCache {
    map: DashMap<Box<[u8]>, Entry, foldhash::fast::RandomState>,
    capacity: usize,
    prefetch: bool,
}

impl std::fmt::Debug for PacketCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketCache")
            .field("entries", &self.map.len())
            .finish()
    }
}

impl PacketCache {
    /// A cache of at most `capacity` responses; `prefetch`: report hits to refresh (see
    /// [`Hit::prefetch`]).
    pub fn new(capacity: usize, prefetch: bool) -> Self {
        Self {
            map: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            capacity,
            prefetch,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Serve `request` from the cache into `out`: the response for `key` if it was stored under
    /// `generation` (or under an older one and `revalidate` accepts its tally for this one), is
    /// still fresh at `now` and fits in `limit` bytes. `advertised` is the EDNS payload size to
    /// put in the response's OPT record (it follows the client's).
    #[allow(clippy::too_many_arguments)]
    pub fn serve(
        &self,
        key: &[u8],
        generation: u64,
        now: Instant,
        limit: usize,
        advertised: u16,
        request: &[u8],
        out: &mut [u8],
        revalidate: impl FnOnce(&Tally) -> bool,
    ) -> Option<Hit> {
        if self.capacity == 0 {
            return None;
        }
        let e = self.map.get(key)?;
        let len = e.wire.len();
        if now >= e.expires || len > limit || len > out.len() {
            return None;
        }
        let stored_under = e.generation.load(Ordering::Relaxed);
        if stored_under != generation {
            // Only forward: an entry never moves back to an older snapshot.
            if stored_under > generation || !e.revalidatable || !revalidate(&e.tally) {
                return None;
            }
            e.generation.store(generation, Ordering::Relaxed);
        }
        let qend = usize::from(e.question_end);
        if request.len() < qend {
            return None;
        }
        let out = &mut out[..len];
        out.copy_from_slice(&e.wire);
        // ID, then RD and CD as the client sent them, then the question as the client spelt it.
        out[..2].copy_from_slice(&request[..2]);
        out[2] = (out[2] & !0x01) | (request[2] & 0x01);
        out[3] = (out[3] & !0x10) | (request[3] & 0x10);
        out[wire::HEADER..qend].copy_from_slice(&request[wire::HEADER..qend]);
        let age = u32::try_from(now.duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        if age > 0 {
            for &at in e.ttl_offsets.iter() {
                let at = usize::from(at);
                let ttl = wire::get_u32(&e.wire, at);
                wire::put_u32(out, at, ttl.saturating_sub(age).max(1));
            }
        }
        if let Some(at) = e.opt_payload_at {
            let at = usize::from(at);
            out[at..at + 2].copy_from_slice(&advertised.to_be_bytes());
        }
        let prefetch = self.prefetch
            && e.ttl >= PREFETCH_MIN_TTL
            && e.tally.outcome == Outcome::CacheHit
            && e.expires.duration_since(now) * 10 < Duration::from_secs(u64::from(e.ttl))
            && !e.prefetched.load(Ordering::Relaxed)
            && !e.prefetched.swap(true, Ordering::Relaxed);
        Some(Hit {
            len,
            tally: e.tally,
            prefetch,
        })
    }

    /// Store a response we sent (indexed by `wire::index_response`) under `key`, for as long as
    /// its smallest TTL. Responses without records (nothing to say how long they hold) are not
    /// stored. `revalidatable`: the response depends on nothing but the policy's decision for
    /// the question name (see the module documentation).
    pub fn store(
        &self,
        key: &[u8],
        response: &[u8],
        index: ResponseIndex,
        generation: u64,
        tally: Tally,
        revalidatable: bool,
    ) {
        if self.capacity == 0 {
            return;
        }
        let Some(ttl) = index.min_ttl.filter(|&t| t > 0) else {
            return;
        };
        let Ok(question_end) = u16::try_from(index.question_end) else {
            return;
        };
        if self.map.len() >= self.capacity {
            self.make_room();
        }
        let now = Instant::now();
        self.map.insert(
            key.into(),
            Entry {
                wire: response.into(),
                ttl_offsets: index.ttl_offsets.into_boxed_slice(),
                opt_payload_at: index.opt_payload_at,
                question_end,
                generation: AtomicU64::new(generation),
                revalidatable,
                ttl,
                prefetched: AtomicBool::new(false),
                stored: now,
                expires: now + Duration::from_secs(u64::from(ttl)),
                tally,
            },
        );
    }

    fn make_room(&self) {
        let now = Instant::now();
        super::cache::make_room(&self.map, self.capacity, |e| e.expires > now);
    }

    /// Drop expired entries and ones from policy generations other than `current` that cannot
    /// be revalidated, which can never be served again.
    pub fn sweep(&self, current: u64) {
        let now = Instant::now();
        self.map.retain(|_, e| {
            e.expires > now && (e.revalidatable || e.generation.load(Ordering::Relaxed) == current)
        });
    }
}
