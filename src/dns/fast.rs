//! The UDP fast path, in front of the general (hickory message) path: a plain query is read in
//! place, served from the packet cache when it can be, and a name the policy blocks with the
//! block address, NXDOMAIN, NODATA or RPZ local addresses is answered by writing the response
//! bytes directly. Every other query (and every packet-cache miss of an allowed name) goes to
//! the general path, which fills the packet cache (blocked answers it writes included).
//!
//! Synthesized bytes are exactly what the general path sends for the same question (hickory's
//! encoding, name compression included); `tests/fast_path.rs` compares the two on the wire.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use hickory_proto::rr::RData;
use prometheus::local::{LocalHistogram, LocalIntCounter};

use super::{
    ede::{self, Ede},
    handler::DnsHandler,
    packet_cache::Tally,
    wire::{self, CLASS_IN, HEADER, QueryView, TYPE_A, TYPE_AAAA, TYPE_ANY},
};
use crate::{
    metrics::{Outcome, qtype_index, qtype_labels},
    policy::{Decision, Match, Snapshot, Trigger, Verdict},
    querylog::{Entry, QueryLog, Transport, now_ns},
};

/// A worker's own counters for what the fast path answers, flushed to the shared metrics once
/// per batch: per-query atomic updates of labelled series cost more than a cache hit.
pub struct Tallies {
    /// `rampart_queries_total{protocol="udp"}`: [qtype index][cache_hit, blocked].
    queries: Vec<[LocalIntCounter; 2]>,
    duration: LocalHistogram,
    /// Fast answers since the last batch ended (their duration is the batch's).
    pending: u32,
    /// The snapshot generation the per-list counters below belong to.
    generation: u64,
    blocked: Vec<LocalIntCounter>,
    allowed: Vec<LocalIntCounter>,
    /// The query log, when it is on.
    log: Option<FastLog>,
}

/// A worker's side of the query log: what the last fast answer was (set by `count`, taken by
/// [`Tallies::log_reply`] once the worker knows the client's port and the response bytes) and
/// the wall-clock time of the batch, read once per batch rather than once per query.
struct FastLog {
    log: Arc<QueryLog>,
    last: Option<(Tally, Option<Match>, u64)>,
    batch_time: Option<u64>,
}

impl std::fmt::Debug for Tallies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tallies").finish_non_exhaustive()
    }
}

impl Tallies {
    fn count(
        &mut self,
        fast: &FastPath,
        snapshot: &Snapshot,
        qtype: u16,
        tally: Tally,
        rule: Option<Match>,
    ) {
        if let Some(log) = &mut self.log {
            log.last = Some((tally, rule, snapshot.generation));
        }
        if snapshot.generation != self.generation {
            self.flush_lists();
            let m = &fast.handler.metrics;
            let names = || snapshot.lists.iter().map(|l| l.info.name.as_str());
            self.blocked = names().map(|n| m.blocked_counter(n).local()).collect();
            self.allowed = names().map(|n| m.allowlisted_counter(n).local()).collect();
            self.generation = snapshot.generation;
        }
        if let Some(c) = tally.blocked_by.and_then(|i| self.blocked.get(i)) {
            c.inc();
        }
        if let Some(c) = tally.allowed_by.and_then(|i| self.allowed.get(i)) {
            c.inc();
        }
        let outcome = usize::from(tally.outcome == Outcome::Blocked);
        self.queries[qtype_index(qtype)][outcome].inc();
        self.pending += 1;
    }

    fn flush_lists(&mut self) {
        for c in self.blocked.iter().chain(&self.allowed) {
            c.flush();
        }
    }

    /// Record the fast answer just given (`response`, to `client`) in the query log, if it is
    /// on and wants it. One branch when it is off.
    #[inline]
    pub fn log_reply(&mut self, request: &[u8], client: SocketAddr, response: &[u8]) {
        let Some(log) = &mut self.log else { return };
        let Some((tally, m, generation)) = log.last.take() else {
            return;
        };
        if !log.log.wants(tally.outcome) {
            return;
        }
        let time = *log.batch_time.get_or_insert_with(now_ns);
        let mut e = Entry::new(time, client, Transport::Udp, request);
        e.outcome = tally.outcome;
        e.rcode = response.get(3).map(|b| u16::from(b & 0x0f));
        e.generation = generation;
        e.blocked = tally.blocked_by.map(|list| (list, m));
        e.allowed_by = tally.allowed_by;
        // With dnstap on, the response is copied for it (one allocation); otherwise the entry
        // is a fixed-size copy into the queue.
        if log.log.keeps_responses() {
            e.response = Some(response.into());
        }
        log.log.push(e);
    }

    /// End of a batch that took `elapsed` from reading to answering: record that as the
    /// duration of each fast answer in it, and publish the counts.
    pub fn finish_batch(&mut self, elapsed: Duration) {
        if let Some(log) = &mut self.log {
            log.batch_time = None;
        }
        let secs = elapsed.as_secs_f64();
        for _ in 0..std::mem::take(&mut self.pending) {
            self.duration.observe(secs);
        }
        self.duration.flush();
        for pair in &self.queries {
            pair[0].flush();
            pair[1].flush();
        }
        self.flush_lists();
    }
}

/// What the fast path did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fast {
    /// A response of this many bytes is in the output buffer.
    Reply(usize),
    /// The same, from a packet-cache entry to refresh in the background (prefetch).
    ReplyAndPrefetch(usize),
    /// Not for the fast path: hand it to the general path.
    General,
}

/// The fast path; one per server, shared by the UDP workers.
#[derive(Debug)]
pub struct FastPath {
    handler: Arc<DnsHandler>,
}

/// The SOA MNAME of synthesized negative answers, and where its `rampart.invalid.` suffix
/// starts (RNAME points there), as the general path's `answer::soa` writes them.
const MNAME: &[u8] = b"\x06policy\x07rampart\x07invalid\x00";
const MNAME_SUFFIX: usize = 7;
const RNAME_LABEL: &[u8] = b"\x0ahostmaster";

impl FastPath {
    pub fn new(handler: Arc<DnsHandler>) -> Self {
        Self { handler }
    }

    pub fn handler(&self) -> &Arc<DnsHandler> {
        &self.handler
    }

    /// Counters for one worker.
    pub fn tallies(&self) -> Tallies {
        let m = &self.handler.metrics;
        Tallies {
            queries: qtype_labels()
                .map(|q| {
                    [
                        m.query_counter(q, "udp", Outcome::CacheHit).local(),
                        m.query_counter(q, "udp", Outcome::Blocked).local(),
                    ]
                })
                .collect(),
            duration: m.duration_histogram("udp").local(),
            pending: 0,
            generation: 0,
            blocked: Vec::new(),
            allowed: Vec::new(),
            log: self.handler.query_log.clone().map(|log| FastLog {
                log,
                last: None,
                batch_time: None,
            }),
        }
    }

    /// Answer `req` from `client` into `out` if the fast path can.
    pub fn answer(
        &self,
        req: &[u8],
        client: IpAddr,
        now: Instant,
        out: &mut [u8],
        tallies: &mut Tallies,
    ) -> Fast {
        let Some(q) = wire::parse_query(req) else {
            return Fast::General;
        };
        // Zone transfers, OPT as a question and other classes are refused by the general path.
        if q.qclass != CLASS_IN || matches!(q.qtype, 41 | 251 | 252) {
            return Fast::General;
        }
        let (limit, advertised) = match q.edns {
            None => (512, 0),
            Some(e) if e.version == 0 => {
                let a = self.handler.advertised_payload(e.payload);
                (usize::from(a), a)
            }
            Some(_) => return Fast::General,
        };
        let h = &self.handler;
        let snapshot = h.policy.load();
        let group = snapshot.group_of(client);
        if !snapshot.client_rules {
            let mut key = [0u8; wire::MAX_KEY];
            let key_len = wire::cache_key(req, &q, group as u16, &mut key);
            // An entry stored under an older policy is served again when the current policy
            // decides its name as before (no block, the same allow rule, nothing to log).
            let revalidate = |tally: &Tally| {
                if snapshot.response_rules || tally.outcome != Outcome::CacheHit {
                    return false;
                }
                let mut name = [0u8; 256];
                let name_len = wire::policy_name(req, &q, &mut name);
                let name = &name[..name_len];
                if name.is_empty() || name.contains(&0) {
                    return false;
                }
                let evaluation = snapshot.evaluate(&snapshot.prepare(name), Some(client), group);
                if evaluation.logged.is_some() || tally.blocked_by.is_some() {
                    return false;
                }
                match evaluation.decision {
                    Decision::Pass => tally.allowed_by.is_none(),
                    Decision::Allowed(m) => tally.allowed_by == Some(m.list),
                    Decision::Blocked(_) | Decision::Passthru(_) => false,
                }
            };
            if let Some(hit) = h.packets.serve(
                &key[..key_len],
                snapshot.generation,
                now,
                limit,
                advertised,
                req,
                out,
                revalidate,
            ) {
                tallies.count(self, &snapshot, q.qtype, hit.tally, None);
                if hit.prefetch {
                    return Fast::ReplyAndPrefetch(hit.len);
                }
                return Fast::Reply(hit.len);
            }
        }

        // A miss: answer blocked names here, pass everything else on.
        let mut name = [0u8; 256];
        let name_len = wire::policy_name(req, &q, &mut name);
        let name = &name[..name_len];
        // Dots inside labels and names under `invalid.` (which the SOA MNAME would compress
        // against) are rare enough to leave to the general path.
        if name.is_empty() || name.contains(&0) || ends_with_label(name, b"invalid") {
            return Fast::General;
        }
        let evaluation = snapshot.evaluate(&snapshot.prepare(name), Some(client), group);
        if evaluation.logged.is_some() {
            return Fast::General;
        }
        let Decision::Blocked(m) = evaluation.decision else {
            return Fast::General;
        };
        if m.trigger != Trigger::QName {
            return Fast::General;
        }
        let block = &h.block;
        let mut addresses = Addresses::default();
        let rcode = match snapshot.verdict(m, group) {
            Verdict::BlockAddress => {
                // A category's own address where `[[block_page.categories]]` gives one: a
                // scan of a few borrowed strings, no allocation.
                match (q.qtype, block.addresses(snapshot.category(m))) {
                    (TYPE_A, (Some(a), _)) => addresses.push(&a.octets()),
                    (TYPE_AAAA, (_, Some(a))) => addresses.push(&a.octets()),
                    _ => true,
                };
                0
            }
            Verdict::NoData => 0,
            Verdict::NxDomain => 3,
            // RPZ local data: the records of the asked type answer; with none of that type
            // (and no CNAME, which the general path follows) the name has no data of it.
            Verdict::Local(records) => {
                if q.qtype == TYPE_ANY {
                    return Fast::General;
                }
                for r in records {
                    let fits = match (r, q.qtype) {
                        (RData::A(a), TYPE_A) => addresses.push(&a.0.octets()),
                        (RData::AAAA(a), TYPE_AAAA) => addresses.push(&a.0.octets()),
                        (RData::CNAME(_), _) => return Fast::General,
                        // Data of the asked type that is not an address: the general path.
                        _ if u16::from(r.record_type()) == q.qtype => return Fast::General,
                        _ => true,
                    };
                    if !fits {
                        return Fast::General;
                    }
                }
                0
            }
            _ => return Fast::General,
        };
        // Negative answers carry the SOA of the listed name (a suffix of the query name).
        let zone = addresses.is_empty().then(|| zone_offset(req, &q, name, m));
        // Why, for clients that sent EDNS (RFC 8914), written straight from the snapshot.
        let ede = q
            .edns
            .is_some()
            .then(|| Ede::of(&snapshot, m, group))
            .flatten();
        let len = synthesize(
            req,
            &q,
            rcode,
            &addresses,
            zone,
            block.ttl,
            advertised,
            ede.as_ref(),
            out,
        );
        self.blocked(&snapshot, &q, m, len, tallies)
    }

    /// Count and send a synthesized block answer. It is not stored in the packet cache:
    /// writing it costs about what a cache hit does (`cargo bench --bench fast_path`: 140 ns
    /// against 90 ns), while storing one costs ~1.3 us (three allocations, a shard write lock,
    /// and eviction churn, since blocked names in a flood are mostly one-off subdomains).
    fn blocked(
        &self,
        snapshot: &Snapshot,
        q: &QueryView,
        m: Match,
        len: Option<usize>,
        tallies: &mut Tallies,
    ) -> Fast {
        let Some(len) = len else {
            return Fast::General;
        };
        let tally = Tally {
            outcome: Outcome::Blocked,
            blocked_by: Some(m.list),
            allowed_by: None,
        };
        tallies.count(self, snapshot, q.qtype, tally, Some(m));
        Fast::Reply(len)
    }
}

/// The address records of a synthesized answer (at most `MAX` of them; more go to the general
/// path).
#[derive(Default)]
struct Addresses {
    data: [[u8; 16]; Addresses::MAX],
    lens: [u8; Addresses::MAX],
    count: usize,
}

impl Addresses {
    const MAX: usize = 8;

    /// Add one; false when full.
    fn push(&mut self, octets: &[u8]) -> bool {
        if self.count == Self::MAX {
            return false;
        }
        self.data[self.count][..octets.len()].copy_from_slice(octets);
        self.lens[self.count] = octets.len() as u8;
        self.count += 1;
        true
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.count).map(|i| &self.data[i][..usize::from(self.lens[i])])
    }
}

fn ends_with_label(name: &[u8], label: &[u8]) -> bool {
    name.len() >= label.len()
        && name[name.len() - label.len()..].eq_ignore_ascii_case(label)
        && (name.len() == label.len() || name[name.len() - label.len() - 1] == b'.')
}

/// Offset in `req` of the first label of the listed name that matched (a suffix of the query
/// name, `suffix_len` bytes of its dotted form).
fn zone_offset(req: &[u8], q: &QueryView, name: &[u8], m: Match) -> usize {
    let suffix = m.hit.suffix_len.min(name.len());
    if suffix == 0 {
        return HEADER;
    }
    let zone_labels = name[name.len() - suffix..]
        .iter()
        .filter(|&&b| b == b'.')
        .count()
        + 1;
    let total_labels = name.iter().filter(|&&b| b == b'.').count() + 1;
    let mut pos = HEADER;
    for _ in 0..total_labels.saturating_sub(zone_labels) {
        if pos >= q.qname_end {
            break;
        }
        pos += 1 + usize::from(req[pos]);
    }
    pos
}

/// Write a block response: the question as asked, then either the address records (owner =
/// the query name) or an SOA for `zone` (an offset of a suffix of the query name in `req`) in
/// the authority section, then an OPT record if the query had one (carrying `ede`), encoded as
/// hickory encodes the general path's answer. Returns the length, or None if `out` is too
/// small.
#[allow(clippy::too_many_arguments)]
fn synthesize(
    req: &[u8],
    q: &QueryView,
    rcode: u8,
    addresses: &Addresses,
    zone: Option<usize>,
    ttl: u32,
    advertised: u16,
    ede: Option<&Ede>,
    out: &mut [u8],
) -> Option<usize> {
    let ede_len = ede.map_or(0, |e| 4 + e.data_len());
    let qend = q.question_end();
    let qname = &req[HEADER..q.qname_end];
    let need = qend
        + addresses
            .iter()
            .map(|a| qname.len() + 10 + a.len())
            .sum::<usize>()
        + zone.map_or(0, |z| {
            (q.qname_end - z) + 10 + MNAME.len() + RNAME_LABEL.len() + 2 + 20
        })
        + if q.edns.is_some() { 11 + ede_len } else { 0 };
    if need > out.len() {
        return None;
    }
    out[0] = req[0];
    out[1] = req[1];
    out[2] = 0x80 | (req[2] & 0x01);
    out[3] = 0x80 | (req[3] & 0x10) | rcode;
    let counts = [
        1u16,
        addresses.count as u16,
        u16::from(zone.is_some()),
        u16::from(q.edns.is_some()),
    ];
    for (i, c) in counts.iter().enumerate() {
        out[4 + 2 * i..6 + 2 * i].copy_from_slice(&c.to_be_bytes());
    }
    out[HEADER..qend].copy_from_slice(&req[HEADER..qend]);
    let mut pos = qend;
    let mut put = |bytes: &[u8], pos: &mut usize| {
        out[*pos..*pos + bytes.len()].copy_from_slice(bytes);
        *pos += bytes.len();
    };
    // The first owner is written in full (the question is not a compression target in
    // hickory's encoder); later ones point at it.
    let first_owner = pos;
    for (i, a) in addresses.iter().enumerate() {
        if i == 0 {
            put(qname, &mut pos);
        } else {
            put(&(0xc000 | first_owner as u16).to_be_bytes(), &mut pos);
        }
        put(&req[q.qname_end..q.qname_end + 2], &mut pos);
        put(&CLASS_IN.to_be_bytes(), &mut pos);
        put(&ttl.to_be_bytes(), &mut pos);
        put(&(a.len() as u16).to_be_bytes(), &mut pos);
        put(a, &mut pos);
    }
    if let Some(z) = zone {
        put(&req[z..q.qname_end], &mut pos);
        put(&6u16.to_be_bytes(), &mut pos);
        put(&CLASS_IN.to_be_bytes(), &mut pos);
        put(&ttl.to_be_bytes(), &mut pos);
        let rdlen = MNAME.len() + RNAME_LABEL.len() + 2 + 20;
        put(&(rdlen as u16).to_be_bytes(), &mut pos);
        let mname_at = pos;
        put(MNAME, &mut pos);
        put(RNAME_LABEL, &mut pos);
        put(
            &(0xc000 | (mname_at + MNAME_SUFFIX) as u16).to_be_bytes(),
            &mut pos,
        );
        for v in [1u32, 3600, 600, 86_400, ttl] {
            put(&v.to_be_bytes(), &mut pos);
        }
    }
    if q.edns.is_some() {
        put(&[0, 0, 41], &mut pos);
        put(&advertised.to_be_bytes(), &mut pos);
        put(&[0, 0, 0, 0], &mut pos);
        put(&(ede_len as u16).to_be_bytes(), &mut pos);
        if let Some(e) = ede {
            put(&ede::OPTION.to_be_bytes(), &mut pos);
            put(&(e.data_len() as u16).to_be_bytes(), &mut pos);
            pos += e.write_data(&mut out[pos..]);
        }
    }
    Some(pos)
}
