//! Iterative resolution from the root hints, written for throughput: the recursive mode of
//! [`super::upstream::Upstream`].
//!
//! * **Delegation cache.** Zone cut → NS host names with their addresses (glue in the bailiwick
//!   of the server that gave the referral, or addresses resolved for NS names without usable
//!   glue, kept in their own cache). Entries keep their TTL, clamped to
//!   [`MIN_TTL`]..=[`MAX_TTL`]; both caches are bounded. Every question starts at the deepest
//!   cached cut, keyed by the lower-cased wire form of the name so that the lookup walks the
//!   suffixes of one buffer without allocating.
//! * **Iteration.** Referrals must go strictly down from the zone that was asked and contain the
//!   question name (at most [`MAX_REFERRALS`] of them); CNAMEs are followed inside a response
//!   while the target stays in the bailiwick of the answering zone and by a new iteration
//!   otherwise (at most [`MAX_CNAMES`], loops refused). QNAME minimisation (RFC 9156,
//!   relaxed): servers above the last known cut are asked for the NS of one more label, never
//!   the full name, and a name found not to be a cut is remembered. Records outside the bailiwick of the
//!   zone that was asked are ignored. Lame answers (REFUSED, SERVFAIL, upward or sideways
//!   referrals, undecodable packets) and timeouts move on to the next server; a truncated UDP
//!   answer is asked again over TCP from the same server.
//! * **Transport.** A few UDP sockets shared by all queries, each with one receive task that
//!   hands a response to the waiting query when the ID, the source address and the question
//!   all match (one `sendto` and one `recvfrom` per exchange). Query IDs are random; the
//!   number of queries in flight is bounded (the excess waits for a slot).
//! * **Coalescing.** Identical questions (name, type, class) asked while one is being resolved
//!   wait for its result instead of being sent again.
//!
//! Not done here: DNSSEC (no DO bit, nothing is validated), 0x20 case randomization, source
//! port randomization per query (the socket pool's ports are random but fixed), priming the
//! root NS set (the hints are used as they are), and caching final
//! answers (the handler's answer cache does that).

use std::{
    cell::Cell,
    collections::HashMap,
    io::IoSliceMut,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use dashmap::DashMap;
use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{DNSClass, Name, RData, Record, RecordType},
};
use ipnet::IpNet;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{TcpStream, UdpSocket},
    sync::{Semaphore, oneshot, watch},
};

use super::cache::Answer;

/// Referrals followed for one name before giving up.
pub const MAX_REFERRALS: usize = 20;
/// CNAMEs followed for one question.
pub const MAX_CNAMES: usize = 8;
/// How deep the resolution of NS names without glue may nest.
const MAX_DEPTH: u8 = 4;
/// Bounds for the TTL of cached delegations and NS addresses.
pub const MIN_TTL: u32 = 5;
pub const MAX_TTL: u32 = 86_400;
/// How long an NS name that has no address is remembered as such.
const NEGATIVE_ADDR_TTL: u32 = 30;
/// Longest wait for one server before the next is tried.
const SERVER_TIMEOUT: Duration = Duration::from_millis(800);
/// How long a server that timed out is tried after the others.
const PENALTY: Duration = Duration::from_secs(5);
/// Queries in flight at once (UDP and TCP); more wait for a slot.
const MAX_OUTSTANDING: usize = 4096;
/// UDP sockets per address family.
const SOCKETS: usize = 4;
/// Cached zones / NS host names before a sweep.
const MAX_ZONES: usize = 200_000;
/// How long a name found by QNAME minimisation not to be a cut is remembered as such.
const NO_CUT_TTL: Duration = Duration::from_secs(3600);
/// Servers remembered as recently silent.
const MAX_PENALISED: usize = 10_000;
/// EDNS payload size we advertise (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;
const RECV_BUFFER: usize = 4 << 20;
/// Responses read per `recvmmsg`, and the longest read (we advertise 1232 bytes).
const RECV_BATCH: usize = 16;
const RECV_MAX: usize = 4096;

/// What can go wrong resolving one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IterError {
    /// Every server that could be asked timed out.
    Timeout,
    Failed(String),
}

impl std::fmt::Display for IterError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Timeout => f.write_str("no server answered in time"),
            Self::Failed(s) => f.write_str(s),
        }
    }
}

fn failed(s: impl Into<String>) -> IterError {
    IterError::Failed(s.into())
}

/// Settings of the iterator.
#[derive(Debug, Clone)]
pub struct IterConfig {
    pub roots: Vec<IpAddr>,
    /// Port every authority is asked on (53 except in labs).
    pub port: u16,
    /// Servers never asked.
    pub deny: Vec<IpNet>,
    /// The caller's overall deadline, to size the per-server timeout.
    pub deadline: Duration,
}

/// Resolutions in flight, by question: their result once there is one.
type Inflight = DashMap<(Name, RecordType, DNSClass), watch::Receiver<Shared>, Hasher>;
/// Keys come from the network, but the seed is random per process.
type Hasher = foldhash::fast::RandomState;
type Shared = Option<Result<Answer, IterError>>;

/// The iterative resolver.
pub struct Iterative {
    inner: Arc<Inner>,
    inflight: Inflight,
}

impl std::fmt::Debug for Iterative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iterative")
            .field("zones", &self.inner.zones.len())
            .finish()
    }
}

impl Iterative {
    pub fn new(config: IterConfig) -> Self {
        let server_timeout = SERVER_TIMEOUT
            .min(config.deadline / 3)
            .max(Duration::from_millis(50));
        let roots: Vec<IpAddr> = config
            .roots
            .iter()
            .copied()
            .filter(|ip| !config.deny.iter().any(|n| n.contains(ip)))
            .collect();
        let root = Arc::new(Zone {
            name: Name::root(),
            ns: vec![NsHost {
                name: Name::root(),
                wire: wire_name(&Name::root()),
                glue: roots,
            }],
            expires: None,
        });
        Self {
            inner: Arc::new(Inner {
                root,
                zones: DashMap::with_hasher(Hasher::default()),
                addrs: DashMap::with_hasher(Hasher::default()),
                penalised: DashMap::with_hasher(Hasher::default()),
                deny: config.deny,
                server_timeout,
                transport: Transport::new(config.port),
            }),
            inflight: DashMap::with_hasher(Hasher::default()),
        }
    }

    /// Resolve one question; identical questions in flight share one resolution.
    pub async fn resolve(&self, query: &Query) -> Result<Answer, IterError> {
        let key = (
            query.name().clone(),
            query.query_type(),
            query.query_class(),
        );
        let tx = loop {
            let mut rx = match self.inflight.entry(key.clone()) {
                dashmap::Entry::Occupied(e) => e.get().clone(),
                dashmap::Entry::Vacant(v) => {
                    let (tx, rx) = watch::channel(None);
                    v.insert(rx);
                    break tx;
                }
            };
            let done = rx.wait_for(Option::is_some).await.map(|v| v.clone());
            match done {
                Ok(v) => return v.expect("waited for Some"),
                // The resolving query was dropped (its deadline passed): take over.
                Err(_) => tokio::task::yield_now().await,
            }
        };
        // Declared after `tx`, so it goes first when this future is dropped.
        let _guard = InflightGuard {
            map: &self.inflight,
            key: &key,
        };
        let result = self
            .inner
            .resolve(query.name(), query.query_type(), query.query_class(), 0)
            .await;
        tx.send_replace(Some(result.clone()));
        result
    }
}

struct InflightGuard<'a> {
    map: &'a Inflight,
    key: &'a (Name, RecordType, DNSClass),
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.map.remove(self.key);
    }
}

/// A zone cut and its name servers.
#[derive(Debug)]
struct Zone {
    name: Name,
    ns: Vec<NsHost>,
    /// None: never (the root hints).
    expires: Option<Instant>,
}

#[derive(Debug, Clone)]
struct NsHost {
    name: Name,
    wire: Box<[u8]>,
    /// Glue addresses in bailiwick that the deny list allows (empty: resolve the name).
    glue: Vec<IpAddr>,
}

struct AddrEntry {
    addrs: Vec<IpAddr>,
    expires: Instant,
}

struct Inner {
    root: Arc<Zone>,
    /// Zone cuts by lower-cased wire name.
    zones: DashMap<Box<[u8]>, Arc<Zone>, Hasher>,
    /// Addresses of NS host names resolved separately, by lower-cased wire name.
    addrs: DashMap<Box<[u8]>, AddrEntry, Hasher>,
    /// Servers that timed out recently, until when they are tried last.
    penalised: DashMap<IpAddr, Instant, Hasher>,
    deny: Vec<IpNet>,
    server_timeout: Duration,
    transport: Transport,
}

/// What a response means for the question.
#[derive(Debug)]
pub(crate) struct Classified {
    /// CNAMEs followed inside this response, in order.
    pub chain: Vec<Record>,
    /// The name the rest applies to (the last CNAME target, or the question name).
    pub name: Name,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The records of the asked type at `name`.
    Answer(Vec<Record>),
    /// NXDOMAIN or NODATA, with the SOA when there was one.
    Negative {
        rcode: ResponseCode,
        soa: Vec<Record>,
    },
    /// Ask the servers of this zone next.
    Referral(Delegation),
    /// The chain left the answering zone's bailiwick (or stopped there without data): iterate
    /// again for `name`.
    Restart,
    /// Not usable: try another server.
    Lame(&'static str),
}

#[derive(Debug)]
pub(crate) struct Delegation {
    pub zone: Name,
    /// NS host names with their in-bailiwick glue.
    pub ns: Vec<(Name, Vec<IpAddr>)>,
    pub ttl: u32,
}

/// Interpret `msg`, the answer of a server of `zone` to (`qname`, `qtype`).
pub(crate) fn classify(msg: &Message, zone: &Name, qname: &Name, qtype: RecordType) -> Classified {
    let mut out = Classified {
        chain: Vec::new(),
        name: qname.clone(),
        kind: Kind::Lame("no usable data"),
    };
    let rcode = msg.metadata.response_code;
    if rcode != ResponseCode::NoError && rcode != ResponseCode::NXDomain {
        out.kind = Kind::Lame("error rcode");
        return out;
    }
    // Follow the answer section from the question name.
    let mut name = qname.clone();
    let mut hops = 0;
    loop {
        if !zone.zone_of(&name) {
            out.name = name;
            out.kind = Kind::Restart;
            return out;
        }
        let data: Vec<Record> = msg
            .answers
            .iter()
            .filter(|r| r.name == name && (r.record_type() == qtype || qtype == RecordType::ANY))
            .cloned()
            .collect();
        if !data.is_empty() {
            out.kind = if qtype == RecordType::NS && name.num_labels() > zone.num_labels() {
                // The parent's NS set for a child zone, given as an answer (some servers do):
                // a referral, so that the child is asked.
                Kind::Referral(delegation(msg, &data, zone, &name))
            } else {
                Kind::Answer(data)
            };
            out.name = name;
            return out;
        }
        let cname = msg.answers.iter().find_map(|r| match &r.data {
            RData::CNAME(target) if r.name == name => Some((r, target.0.clone())),
            _ => None,
        });
        let Some((record, target)) = cname else { break };
        hops += 1;
        if hops > MAX_CNAMES || target == *qname || out.chain.iter().any(|r| r.name == target) {
            out.kind = Kind::Lame("CNAME loop");
            return out;
        }
        out.chain.push(record.clone());
        name = target;
    }
    out.name = name.clone();
    let soa: Vec<Record> = msg
        .authorities
        .iter()
        .filter(|r| {
            r.record_type() == RecordType::SOA && r.name.zone_of(&name) && zone.zone_of(&r.name)
        })
        .cloned()
        .collect();
    if rcode == ResponseCode::NXDomain {
        out.kind = Kind::Negative { rcode, soa };
        return out;
    }
    if !soa.is_empty() {
        out.kind = Kind::Negative { rcode, soa };
        return out;
    }
    // A referral: NS records for a zone strictly below the one asked, containing the name.
    let child = msg
        .authorities
        .iter()
        .filter(|r| {
            r.record_type() == RecordType::NS
                && r.name.num_labels() > zone.num_labels()
                && zone.zone_of(&r.name)
                && r.name.zone_of(&name)
        })
        .map(|r| &r.name)
        .max_by_key(|n| n.num_labels());
    if let Some(child) = child {
        out.kind = Kind::Referral(delegation(msg, &msg.authorities, zone, child));
        return out;
    }
    if !out.chain.is_empty() {
        // Chain ended in bailiwick without data, SOA or referral: ask again from the top.
        out.kind = Kind::Restart;
    } else if msg.metadata.authoritative
        && msg.answers.is_empty()
        && !msg
            .authorities
            .iter()
            .any(|r| r.record_type() == RecordType::NS)
    {
        // NODATA without an SOA. With NS records it is rather a referral to the zone that
        // was asked (a server that does not serve it, even with AA set): lame.
        out.kind = Kind::Negative {
            rcode,
            soa: Vec::new(),
        };
    }
    out
}

/// The delegation to `child` given by the NS records among `records`, with the glue from the
/// additional section that lies in the bailiwick of `zone` (the zone that was asked).
fn delegation(msg: &Message, records: &[Record], zone: &Name, child: &Name) -> Delegation {
    let mut ttl = u32::MAX;
    let mut ns: Vec<(Name, Vec<IpAddr>)> = Vec::new();
    for r in records {
        if let RData::NS(host) = &r.data
            && r.name == *child
            && !ns.iter().any(|(n, _)| *n == host.0)
        {
            ttl = ttl.min(r.ttl);
            ns.push((host.0.clone(), Vec::new()));
        }
    }
    for r in &msg.additionals {
        let ip = match &r.data {
            RData::A(a) => IpAddr::V4(a.0),
            RData::AAAA(a) => IpAddr::V6(a.0),
            _ => continue,
        };
        // Glue only for the NS names, and only where the answering zone is authoritative.
        if !zone.zone_of(&r.name) {
            continue;
        }
        if let Some((_, glue)) = ns.iter_mut().find(|(n, _)| *n == r.name)
            && !glue.contains(&ip)
        {
            ttl = ttl.min(r.ttl);
            glue.push(ip);
        }
    }
    Delegation {
        zone: child.clone(),
        ns,
        ttl,
    }
}

/// Lower-cased uncompressed wire form of a name.
fn wire_name(name: &Name) -> Box<[u8]> {
    let mut out = Vec::with_capacity(name.len() + 2);
    for label in name.iter() {
        out.push(label.len() as u8);
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    out.push(0);
    out.into_boxed_slice()
}

/// Offsets of the labels of a wire name: each is the start of an ancestor's wire form.
fn label_starts(wire: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let len = *wire.get(pos)? as usize;
        if len == 0 {
            return None;
        }
        let at = pos;
        pos += 1 + len;
        Some(at)
    })
}

fn clamp_ttl(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl.clamp(MIN_TTL, MAX_TTL)))
}

impl Inner {
    fn denied(&self, ip: &IpAddr) -> bool {
        self.deny.iter().any(|n| n.contains(ip))
    }

    fn penalise(&self, ip: IpAddr) {
        let now = Instant::now();
        if self.penalised.len() >= MAX_PENALISED {
            self.penalised.retain(|_, t| *t > now);
            if self.penalised.len() >= MAX_PENALISED {
                // All recent: forget them rather than grow (they are only an ordering hint).
                self.penalised.clear();
            }
        }
        self.penalised.insert(ip, now + PENALTY);
    }

    /// The deepest cached zone cut at or above the name (a `labels`-label name), and the
    /// number of labels of the deepest name known to be in that zone (the cut itself, or a
    /// name below it that QNAME minimisation found not to be a cut).
    fn deepest_cut(&self, wire: &[u8], labels: usize) -> (Arc<Zone>, usize) {
        let now = Instant::now();
        for (i, at) in label_starts(wire).enumerate() {
            let suffix = &wire[at..];
            if let Some(zone) = self.zones.get(suffix) {
                if zone.expires.is_none_or(|t| t > now) {
                    return (zone.clone(), labels - i);
                }
                drop(zone);
                self.zones.remove(suffix);
            }
        }
        (self.root.clone(), 0)
    }

    /// Remember that `wire` (below `zone`'s cut) is no cut: questions under it skip the probe.
    /// Kept no longer than the zone's own entry nor [`NO_CUT_TTL`].
    fn store_no_cut(&self, wire: &[u8], zone: &Zone) {
        if self.zones.len() >= MAX_ZONES {
            return;
        }
        let limit = Instant::now() + NO_CUT_TTL;
        let entry = Zone {
            name: zone.name.clone(),
            ns: zone.ns.clone(),
            expires: Some(zone.expires.map_or(limit, |t| t.min(limit))),
        };
        self.zones.insert(wire.into(), Arc::new(entry));
    }

    fn store_zone(&self, d: &Delegation) -> Arc<Zone> {
        let zone = Arc::new(Zone {
            name: d.zone.clone(),
            ns: d
                .ns
                .iter()
                .map(|(name, glue)| NsHost {
                    name: name.clone(),
                    wire: wire_name(name),
                    glue: glue.iter().copied().filter(|ip| !self.denied(ip)).collect(),
                })
                .collect(),
            expires: Some(Instant::now() + clamp_ttl(d.ttl)),
        });
        if self.zones.len() >= MAX_ZONES {
            let now = Instant::now();
            self.zones.retain(|_, z| z.expires.is_none_or(|t| t > now));
            if self.zones.len() >= MAX_ZONES {
                self.zones.clear();
            }
        }
        self.zones.insert(wire_name(&d.zone), zone.clone());
        zone
    }

    fn cached_addrs(&self, host: &NsHost) -> Option<Vec<IpAddr>> {
        let entry = self.addrs.get(&host.wire)?;
        (entry.expires > Instant::now()).then(|| entry.addrs.clone())
    }

    fn store_addrs(&self, host: &NsHost, addrs: Vec<IpAddr>, ttl: u32) {
        if self.addrs.len() >= MAX_ZONES {
            let now = Instant::now();
            self.addrs.retain(|_, e| e.expires > now);
            if self.addrs.len() >= MAX_ZONES {
                self.addrs.clear();
            }
        }
        self.addrs.insert(
            host.wire.clone(),
            AddrEntry {
                addrs,
                expires: Instant::now() + clamp_ttl(ttl),
            },
        );
    }

    async fn resolve(
        self: &Arc<Self>,
        qname: &Name,
        qtype: RecordType,
        qclass: DNSClass,
        depth: u8,
    ) -> Result<Answer, IterError> {
        let mut chain: Vec<Record> = Vec::new();
        let mut current = qname.clone();
        'names: loop {
            let wire = wire_name(&current);
            let labels = usize::from(current.num_labels());
            let (mut zone, mut known) = self.deepest_cut(&wire, labels);
            // QNAME minimisation (RFC 9156, relaxed): while the name is more than one label
            // below the zone, ask for the next label down (type NS, as hickory's recursor did,
            // so a blocked parent name is never asked for an address) to find the next cut; once
            // that gives anything but a referral, ask the full question of this zone.
            for _ in 0..MAX_REFERRALS {
                if labels > known + 1 {
                    let skip = labels - known - 1;
                    let at = label_starts(&wire).nth(skip).unwrap_or(0);
                    let probe = current.trim_to(known + 1);
                    match self
                        .ask_zone(&zone, &probe, &wire[at..], RecordType::NS, qclass, depth)
                        .await
                    {
                        Ok(Classified {
                            kind: Kind::Referral(d),
                            name,
                            ..
                        }) if name == probe => {
                            zone = self.store_zone(&d);
                            known = usize::from(zone.name.num_labels());
                            continue;
                        }
                        Err(IterError::Timeout) => return Err(IterError::Timeout),
                        // An answer: no cut there. Ask the full question.
                        Ok(_) => self.store_no_cut(&wire[at..], &zone),
                        // No usable answer: ask the full question.
                        Err(_) => {}
                    }
                }
                let step = self
                    .ask_zone(&zone, &current, &wire, qtype, qclass, depth)
                    .await?;
                for r in &step.chain {
                    if let RData::CNAME(target) = &r.data
                        && (target.0 == *qname || chain.iter().any(|c| c.name == target.0))
                    {
                        return Err(failed("CNAME loop"));
                    }
                }
                chain.extend(step.chain);
                if chain.len() > MAX_CNAMES {
                    return Err(failed("too many CNAMEs"));
                }
                match step.kind {
                    Kind::Answer(records) => {
                        chain.extend(records);
                        return Ok(Answer {
                            rcode: ResponseCode::NoError,
                            answers: chain,
                            authorities: Vec::new(),
                        });
                    }
                    Kind::Negative { rcode, soa } => {
                        return Ok(Answer {
                            rcode,
                            answers: chain,
                            authorities: soa,
                        });
                    }
                    Kind::Restart => {
                        current = step.name;
                        continue 'names;
                    }
                    Kind::Referral(d) => {
                        if step.name != current {
                            // The referral is for a CNAME target: iterate for it.
                            self.store_zone(&d);
                            current = step.name;
                            continue 'names;
                        }
                        zone = self.store_zone(&d);
                        known = usize::from(zone.name.num_labels());
                    }
                    Kind::Lame(_) => unreachable!("ask_zone retries lame servers"),
                }
            }
            return Err(failed("too many referrals"));
        }
    }

    /// Ask the servers of `zone` until one gives a usable answer.
    async fn ask_zone(
        self: &Arc<Self>,
        zone: &Zone,
        qname: &Name,
        wire: &[u8],
        qtype: RecordType,
        qclass: DNSClass,
        depth: u8,
    ) -> Result<Classified, IterError> {
        let mut tried: Vec<IpAddr> = Vec::new();
        let mut timed_out: Vec<IpAddr> = Vec::new();
        let mut retried = false;
        let mut only_timeouts = true;
        let mut last = String::from("no server could be asked");
        // Hosts with known addresses first, in random order; recently silent servers last.
        let mut known: Vec<IpAddr> = Vec::new();
        let mut glueless: Vec<&NsHost> = Vec::new();
        for host in &zone.ns {
            let addrs = if host.glue.is_empty() {
                self.cached_addrs(host)
            } else {
                Some(host.glue.clone())
            };
            match addrs {
                Some(a) => known.extend(a),
                None => glueless.push(host),
            }
        }
        shuffle(&mut known);
        if !self.penalised.is_empty() {
            // Taken from the end: the penalised ones go to the front.
            let now = Instant::now();
            known.sort_by_key(|ip| self.penalised.get(ip).is_none_or(|t| *t <= now));
        }
        let mut candidates = known;
        let mut next_host = 0usize;
        loop {
            while let Some(ip) = candidates.pop() {
                if tried.contains(&ip) || !self.transport.supports(&ip) {
                    continue;
                }
                tried.push(ip);
                match self.exchange(ip, wire, qtype, qclass).await {
                    Ok(msg) => {
                        let step = classify(&msg, &zone.name, qname, qtype);
                        match step.kind {
                            Kind::Lame(why) => {
                                only_timeouts = false;
                                last = why.into();
                            }
                            _ => return Ok(step),
                        }
                    }
                    Err(IterError::Timeout) => {
                        self.penalise(ip);
                        timed_out.push(ip);
                        last = "timeout".into();
                    }
                    Err(IterError::Failed(e)) => {
                        only_timeouts = false;
                        last = e;
                    }
                }
            }
            // Out of addresses: resolve the next NS name that has none; then give the servers
            // that timed out a second chance (the caller's deadline bounds all this).
            let Some(host) = glueless.get(next_host) else {
                if retried || timed_out.is_empty() {
                    break;
                }
                retried = true;
                candidates = std::mem::take(&mut timed_out);
                tried.retain(|ip| !candidates.contains(ip));
                continue;
            };
            next_host += 1;
            if depth + 1 >= MAX_DEPTH || zone.name.zone_of(&host.name) {
                // Too deep, or a name inside the zone itself without glue: unreachable.
                continue;
            }
            let addrs = self.host_addrs((*host).clone(), depth + 1).await;
            candidates = addrs;
            shuffle(&mut candidates);
        }
        if only_timeouts && !tried.is_empty() {
            return Err(IterError::Timeout);
        }
        Err(failed(format!("servers of {} failed: {last}", zone.name)))
    }

    /// Addresses of an NS host name that came without glue (cached). Boxed: it recurses.
    fn host_addrs(
        self: &Arc<Self>,
        host: NsHost,
        depth: u8,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<IpAddr>> + Send + 'static>> {
        let this = self.clone();
        Box::pin(async move {
            if let Some(a) = this.cached_addrs(&host) {
                return a;
            }
            let mut addrs = Vec::new();
            let mut ttl = u32::MAX;
            let mut types = vec![RecordType::A];
            if this.transport.v6_possible() {
                types.push(RecordType::AAAA);
            }
            for rtype in types {
                if let Ok(answer) = this.resolve(&host.name, rtype, DNSClass::IN, depth).await {
                    for r in &answer.answers {
                        let ip = match &r.data {
                            RData::A(a) => IpAddr::V4(a.0),
                            RData::AAAA(a) => IpAddr::V6(a.0),
                            _ => continue,
                        };
                        ttl = ttl.min(r.ttl);
                        addrs.push(ip);
                    }
                }
                addrs.retain(|ip| !this.denied(ip));
                if !addrs.is_empty() {
                    break;
                }
            }
            if addrs.is_empty() {
                ttl = NEGATIVE_ADDR_TTL;
            }
            this.store_addrs(&host, addrs.clone(), ttl);
            addrs
        })
    }

    /// One exchange with one server: UDP, then TCP when the answer was truncated.
    async fn exchange(
        &self,
        ip: IpAddr,
        wire: &[u8],
        qtype: RecordType,
        qclass: DNSClass,
    ) -> Result<Message, IterError> {
        let server = SocketAddr::new(ip, self.transport.port);
        let qtype = u16::from(qtype);
        let qclass = u16::from(qclass);
        let raw = self
            .transport
            .udp(server, wire, qtype, qclass, self.server_timeout)
            .await?;
        // TC (checked before decoding: a cut datagram need not decode): ask again over TCP.
        if raw[2] & 0x02 == 0 {
            return Message::from_vec(&raw).map_err(|e| failed(e.to_string()));
        }
        let raw = self
            .transport
            .tcp(server, wire, qtype, qclass, self.server_timeout)
            .await?;
        Message::from_vec(&raw).map_err(|e| failed(e.to_string()))
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        // Not expected; fall back to the clock.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.as_nanos() as u64 | 1;
    }
    u64::from_le_bytes(b) | 1
}

/// xorshift64*: fast, seeded per thread from the system's CSPRNG.
fn random() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = (random() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// A query in flight on a UDP socket.
struct Pending {
    /// Tells this query from a later one that reuses the ID.
    token: u64,
    server: SocketAddr,
    /// Lower-cased wire name, type and class, as sent.
    question: Box<[u8]>,
    tx: oneshot::Sender<Vec<u8>>,
}

struct UdpChan {
    sock: UdpSocket,
    pending: Mutex<HashMap<u16, Pending>>,
}

struct Transport {
    port: u16,
    permits: Semaphore,
    next: AtomicUsize,
    v4: OnceLock<Result<Vec<Arc<UdpChan>>, String>>,
    v6: OnceLock<Result<Vec<Arc<UdpChan>>, String>>,
}

/// Removes a pending query when its exchange ends or is dropped.
struct PendingGuard<'a> {
    chan: &'a UdpChan,
    id: u16,
    token: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.chan.pending.lock().expect("pending lock");
        // The receive task removes answered queries; by then the ID may be someone else's.
        if pending.get(&self.id).is_some_and(|p| p.token == self.token) {
            pending.remove(&self.id);
        }
    }
}

/// Build a query: random ID, no RD, one question, EDNS with our payload size.
fn build_query(id: u16, wire: &[u8], qtype: u16, qclass: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(12 + wire.len() + 4 + 11);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    q.extend_from_slice(wire);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    // OPT: root owner, type 41, class = payload size, TTL 0, no options.
    q.extend_from_slice(&[0, 0, 41]);
    q.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
    q.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    q
}

/// Does `packet` answer the question (`question` = lower-cased wire name, type, class)?
fn answers_question(packet: &[u8], question: &[u8]) -> bool {
    if packet.len() < 12 + question.len() || packet[2] & 0x80 == 0 || packet[4..6] != [0, 1] {
        return false;
    }
    packet[12..12 + question.len()]
        .iter()
        .zip(question)
        .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

fn question_bytes(wire: &[u8], qtype: u16, qclass: u16) -> Box<[u8]> {
    let mut q = Vec::with_capacity(wire.len() + 4);
    q.extend_from_slice(wire);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&qclass.to_be_bytes());
    q.into_boxed_slice()
}

impl Transport {
    fn new(port: u16) -> Self {
        Self {
            port,
            permits: Semaphore::new(MAX_OUTSTANDING),
            next: AtomicUsize::new(0),
            v4: OnceLock::new(),
            v6: OnceLock::new(),
        }
    }

    fn supports(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(_) => self.v6_possible(),
        }
    }

    fn v6_possible(&self) -> bool {
        self.chans(true).is_ok()
    }

    /// The sockets of one family, opened on first use (inside the runtime).
    fn chans(&self, v6: bool) -> Result<&[Arc<UdpChan>], IterError> {
        let cell = if v6 { &self.v6 } else { &self.v4 };
        cell.get_or_init(|| open_sockets(v6))
            .as_deref()
            .map_err(|e| failed(e.clone()))
    }

    async fn udp(
        &self,
        server: SocketAddr,
        wire: &[u8],
        qtype: u16,
        qclass: u16,
        timeout: Duration,
    ) -> Result<Vec<u8>, IterError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let chans = self.chans(server.is_ipv6())?;
        let chan = &chans[self.next.fetch_add(1, Ordering::Relaxed) % chans.len()];
        let (tx, rx) = oneshot::channel();
        let token = random();
        let id = {
            let mut pending = chan.pending.lock().expect("pending lock");
            let mut id = random() as u16;
            while pending.contains_key(&id) {
                id = random() as u16;
            }
            pending.insert(
                id,
                Pending {
                    token,
                    server,
                    question: question_bytes(wire, qtype, qclass),
                    tx,
                },
            );
            id
        };
        let _guard = PendingGuard { chan, id, token };
        let query = build_query(id, wire, qtype, qclass);
        chan.sock
            .send_to(&query, server)
            .await
            .map_err(|e| failed(e.to_string()))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(_)) => Err(failed("receiver closed")),
            Err(_) => Err(IterError::Timeout),
        }
    }

    async fn tcp(
        &self,
        server: SocketAddr,
        wire: &[u8],
        qtype: u16,
        qclass: u16,
        timeout: Duration,
    ) -> Result<Vec<u8>, IterError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let id = random() as u16;
        let query = build_query(id, wire, qtype, qclass);
        let question = question_bytes(wire, qtype, qclass);
        let exchange = async {
            let mut stream = TcpStream::connect(server).await?;
            stream.set_nodelay(true)?;
            let mut out = Vec::with_capacity(query.len() + 2);
            out.extend_from_slice(&(query.len() as u16).to_be_bytes());
            out.extend_from_slice(&query);
            stream.write_all(&out).await?;
            loop {
                let len = stream.read_u16().await? as usize;
                let mut buf = vec![0u8; len];
                stream.read_exact(&mut buf).await?;
                if buf.len() >= 2
                    && buf[..2] == id.to_be_bytes()
                    && answers_question(&buf, &question)
                {
                    return Ok::<_, std::io::Error>(buf);
                }
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(raw)) => Ok(raw),
            Ok(Err(e)) => Err(failed(e.to_string())),
            Err(_) => Err(IterError::Timeout),
        }
    }
}

fn open_sockets(v6: bool) -> Result<Vec<Arc<UdpChan>>, String> {
    let mut out = Vec::with_capacity(SOCKETS);
    for _ in 0..SOCKETS {
        let bind: SocketAddr = if v6 {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        };
        let domain = if v6 {
            socket2::Domain::IPV6
        } else {
            socket2::Domain::IPV4
        };
        let sock = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))
            .map_err(|e| e.to_string())?;
        if v6 {
            sock.set_only_v6(true).map_err(|e| e.to_string())?;
        }
        // Best effort: a burst of answers should not overflow the default buffer.
        let _ = sock.set_recv_buffer_size(RECV_BUFFER);
        sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        sock.bind(&bind.into()).map_err(|e| e.to_string())?;
        let sock = UdpSocket::from_std(sock.into()).map_err(|e| e.to_string())?;
        let chan = Arc::new(UdpChan {
            sock,
            pending: Mutex::new(HashMap::new()),
        });
        tokio::spawn(receive(chan.clone()));
        out.push(chan);
    }
    Ok(out)
}

/// Hand every response to the query it answers; drop the rest. Reads batches with
/// `recvmmsg`, so a busy socket costs one system call for several responses.
async fn receive(chan: Arc<UdpChan>) {
    let mut bufs = vec![[0u8; RECV_MAX]; RECV_BATCH].into_boxed_slice();
    let mut got: Vec<(usize, bool, Option<SocketAddr>)> = Vec::with_capacity(RECV_BATCH);
    let fd = chan.sock.as_raw_fd();
    loop {
        if let Err(e) = chan.sock.readable().await {
            tracing::warn!(error = %e, "upstream socket");
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        got.clear();
        let read = chan.sock.try_io(Interest::READABLE, || {
            // Not kept across awaits: it is not `Send`.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(RECV_BATCH, None);
            let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let msgs = recvmmsg(
                fd,
                &mut headers,
                iovs.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(std::io::Error::from)?;
            for m in msgs {
                let cut = m.flags.contains(MsgFlags::MSG_TRUNC);
                got.push((
                    m.bytes.min(RECV_MAX),
                    cut,
                    m.address.as_ref().and_then(to_std),
                ));
            }
            Ok(())
        });
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // ICMP errors and the like: keep going, without spinning.
                tracing::trace!(error = %e, "upstream socket");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        }
        for (i, &(len, cut, from)) in got.iter().enumerate() {
            let Some(from) = from else { continue };
            dispatch(&chan, &bufs[i][..len], cut, from);
        }
    }
}

fn dispatch(chan: &UdpChan, packet: &[u8], cut: bool, from: SocketAddr) {
    if packet.len() < 12 {
        return;
    }
    let id = u16::from_be_bytes([packet[0], packet[1]]);
    let mut pending = chan.pending.lock().expect("pending lock");
    let matches = pending
        .get(&id)
        .is_some_and(|p| p.server == from && answers_question(packet, &p.question));
    if matches && let Some(p) = pending.remove(&id) {
        drop(pending);
        let mut packet = packet.to_vec();
        if cut {
            // Longer than we read (the server ignored our EDNS size): treat as truncated.
            packet[2] |= 0x02;
        }
        let _ = p.tx.send(packet);
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::rr::rdata::{A, CNAME, NS, SOA};

    use super::*;

    fn n(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    fn rec(owner: &str, data: RData) -> Record {
        Record::from_rdata(n(owner), 300, data)
    }

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        rec(owner, RData::A(A(Ipv4Addr::from(ip))))
    }

    fn ns(owner: &str, host: &str) -> Record {
        rec(owner, RData::NS(NS(n(host))))
    }

    fn cname(owner: &str, target: &str) -> Record {
        rec(owner, RData::CNAME(CNAME(n(target))))
    }

    fn soa(owner: &str) -> Record {
        rec(
            owner,
            RData::SOA(SOA::new(n("ns."), n("h."), 1, 1, 1, 1, 60)),
        )
    }

    fn response(rcode: ResponseCode) -> Message {
        let mut m = Message::response(1, hickory_proto::op::OpCode::Query);
        m.metadata.response_code = rcode;
        m
    }

    #[test]
    fn wire_names_and_suffixes() {
        let w = wire_name(&n("WwW.Example.COM."));
        assert_eq!(&*w, b"\x03www\x07example\x03com\x00");
        let suffixes: Vec<&[u8]> = label_starts(&w).map(|i| &w[i..]).collect();
        assert_eq!(
            suffixes,
            vec![
                &b"\x03www\x07example\x03com\x00"[..],
                b"\x07example\x03com\x00",
                b"\x03com\x00"
            ]
        );
        assert_eq!(label_starts(&wire_name(&Name::root())).count(), 0);
    }

    #[test]
    fn query_and_response_matching() {
        let w = wire_name(&n("a.test."));
        let q = build_query(0x1234, &w, 1, 1);
        let parsed = Message::from_vec(&q).unwrap();
        assert_eq!(parsed.metadata.id, 0x1234);
        assert!(!parsed.metadata.recursion_desired);
        assert_eq!(parsed.queries[0].name(), &n("a.test."));
        assert_eq!(parsed.max_payload(), EDNS_PAYLOAD);
        let question = question_bytes(&w, 1, 1);
        let mut resp = q.clone();
        assert!(!answers_question(&resp, &question), "not a response");
        resp[2] |= 0x80;
        assert!(answers_question(&resp, &question));
        resp[13] = b'A'; // case differs: still the question
        assert!(answers_question(&resp, &question));
        resp[13] = b'b';
        assert!(!answers_question(&resp, &question), "other name");
        let other_type = build_query(0x1234, &w, 28, 1);
        let mut other_type = other_type;
        other_type[2] |= 0x80;
        assert!(!answers_question(&other_type, &question), "other type");
    }

    #[test]
    fn referral_keeps_in_bailiwick_glue_only() {
        let mut m = response(ResponseCode::NoError);
        m.authorities = vec![
            ns("corp.test.", "ns1.corp.test."),
            ns("corp.test.", "ns.elsewhere.org."),
        ];
        m.additionals = vec![
            a("ns1.corp.test.", [192, 0, 2, 1]),
            // Glue outside the answering zone (test.): ignored.
            a("ns.elsewhere.org.", [192, 0, 2, 2]),
            // Not an NS name: ignored.
            a("www.corp.test.", [192, 0, 2, 3]),
        ];
        let c = classify(&m, &n("test."), &n("www.corp.test."), RecordType::A);
        let Kind::Referral(d) = c.kind else {
            panic!("referral expected: {c:?}")
        };
        assert_eq!(d.zone, n("corp.test."));
        assert_eq!(d.ns.len(), 2);
        assert_eq!(d.ns[0].1, vec![IpAddr::from([192, 0, 2, 1])]);
        assert!(d.ns[1].1.is_empty());
    }

    #[test]
    fn upward_and_sideways_referrals_are_lame() {
        for owner in ["test.", ".", "other.test.", "www.corp.test.x."] {
            let mut m = response(ResponseCode::NoError);
            m.authorities = vec![ns(owner, "ns.nic.")];
            let c = classify(&m, &n("test."), &n("www.corp.test."), RecordType::A);
            assert!(matches!(c.kind, Kind::Lame(_)), "{owner}: {c:?}");
        }
        let m = response(ResponseCode::Refused);
        let c = classify(&m, &n("test."), &n("www.corp.test."), RecordType::A);
        assert!(matches!(c.kind, Kind::Lame(_)));
    }

    #[test]
    fn answers_follow_cnames_within_bailiwick() {
        let mut m = response(ResponseCode::NoError);
        m.answers = vec![
            cname("alias.corp.test.", "www.corp.test."),
            a("www.corp.test.", [192, 0, 2, 10]),
            // Out of bailiwick data is never taken.
            a("evil.org.", [6, 6, 6, 6]),
        ];
        let c = classify(&m, &n("corp.test."), &n("alias.corp.test."), RecordType::A);
        assert_eq!(c.chain.len(), 1);
        let Kind::Answer(records) = c.kind else {
            panic!("{c:?}")
        };
        assert_eq!(records.len(), 1);

        // A target in another zone: restart there, even if the server sent its "data".
        let mut m = response(ResponseCode::NoError);
        m.answers = vec![
            cname("alias.corp.test.", "www.evil.org."),
            a("www.evil.org.", [6, 6, 6, 6]),
        ];
        let c = classify(&m, &n("corp.test."), &n("alias.corp.test."), RecordType::A);
        assert!(matches!(c.kind, Kind::Restart), "{c:?}");
        assert_eq!(c.name, n("www.evil.org."));
        assert_eq!(c.chain.len(), 1);
    }

    #[test]
    fn cname_loops_are_refused() {
        let mut m = response(ResponseCode::NoError);
        m.answers = vec![
            cname("a.corp.test.", "b.corp.test."),
            cname("b.corp.test.", "a.corp.test."),
        ];
        let c = classify(&m, &n("corp.test."), &n("a.corp.test."), RecordType::A);
        assert!(matches!(c.kind, Kind::Lame("CNAME loop")), "{c:?}");

        let mut m = response(ResponseCode::NoError);
        m.answers = (0..20)
            .map(|i| {
                cname(
                    &format!("c{i}.corp.test."),
                    &format!("c{}.corp.test.", i + 1),
                )
            })
            .collect();
        let c = classify(&m, &n("corp.test."), &n("c0.corp.test."), RecordType::A);
        assert!(
            matches!(c.kind, Kind::Lame("CNAME loop")),
            "long chain: {c:?}"
        );
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let mut m = response(ResponseCode::NXDomain);
        m.authorities = vec![soa("corp.test."), soa("evil.org.")];
        let c = classify(&m, &n("corp.test."), &n("nosuch.corp.test."), RecordType::A);
        let Kind::Negative { rcode, soa: soas } = c.kind else {
            panic!("{c:?}")
        };
        assert_eq!(rcode, ResponseCode::NXDomain);
        assert_eq!(soas.len(), 1, "only the SOA in bailiwick");

        let mut m = response(ResponseCode::NoError);
        m.authorities = vec![soa("corp.test.")];
        let c = classify(&m, &n("corp.test."), &n("www.corp.test."), RecordType::MX);
        assert!(matches!(
            c.kind,
            Kind::Negative {
                rcode: ResponseCode::NoError,
                ..
            }
        ));
        // A "referral" to the zone itself, even with AA set: lame.
        let mut m = response(ResponseCode::NoError);
        m.metadata.authoritative = true;
        m.authorities = vec![ns("corp.test.", "ns.nic.")];
        let c = classify(&m, &n("corp.test."), &n("www.corp.test."), RecordType::A);
        assert!(matches!(c.kind, Kind::Lame(_)), "{c:?}");
        // Authoritative and empty: NODATA even without an SOA.
        let mut m = response(ResponseCode::NoError);
        m.metadata.authoritative = true;
        let c = classify(&m, &n("corp.test."), &n("www.corp.test."), RecordType::A);
        assert!(matches!(c.kind, Kind::Negative { .. }), "{c:?}");
        // No SOA, no referral, not authoritative: lame.
        let m = response(ResponseCode::NoError);
        let c = classify(&m, &n("corp.test."), &n("www.corp.test."), RecordType::MX);
        assert!(matches!(c.kind, Kind::Lame(_)));
    }

    fn lab() -> Iterative {
        Iterative::new(IterConfig {
            roots: vec![IpAddr::from([127, 0, 0, 2]), IpAddr::from([10, 0, 0, 1])],
            port: 53,
            deny: vec!["10.0.0.0/8".parse().unwrap()],
            deadline: Duration::from_secs(1),
        })
    }

    #[test]
    fn delegation_cache_finds_the_deepest_cut() {
        let it = lab();
        let inner = &it.inner;
        assert_eq!(
            inner.root.ns[0].glue,
            vec![IpAddr::from([127, 0, 0, 2])],
            "deny applies to the roots"
        );
        assert_eq!(
            inner.server_timeout,
            Duration::from_secs(1) / 3,
            "a third of a short deadline"
        );
        let name = n("a.b.corp.test.");
        let wire = wire_name(&name);
        let (zone, known) = inner.deepest_cut(&wire, 4);
        assert!(zone.name.is_root());
        assert_eq!(known, 0);

        let corp = inner.store_zone(&Delegation {
            zone: n("corp.test."),
            ns: vec![(
                n("ns.corp.test."),
                vec![IpAddr::from([127, 0, 0, 4]), IpAddr::from([10, 1, 1, 1])],
            )],
            ttl: 3600,
        });
        assert_eq!(
            corp.ns[0].glue,
            vec![IpAddr::from([127, 0, 0, 4])],
            "denied glue dropped"
        );
        let (zone, known) = inner.deepest_cut(&wire, 4);
        assert_eq!(zone.name, n("corp.test."));
        assert_eq!(known, 2);

        // b.corp.test. found not to be a cut: same servers, deeper known name.
        let b = &wire[label_starts(&wire).nth(1).unwrap()..];
        inner.store_no_cut(b, &corp);
        let (zone, known) = inner.deepest_cut(&wire, 4);
        assert_eq!(zone.name, n("corp.test."));
        assert_eq!(known, 3);

        // Expired entries are not used (and are dropped).
        inner.zones.insert(
            wire_name(&n("b.corp.test.")),
            Arc::new(Zone {
                name: n("b.corp.test."),
                ns: Vec::new(),
                expires: Some(Instant::now() - Duration::from_secs(1)),
            }),
        );
        let (zone, known) = inner.deepest_cut(&wire, 4);
        assert_eq!((zone.name.clone(), known), (n("corp.test."), 2));
        assert!(!inner.zones.contains_key(b));
    }

    /// Questions to a server that never answers fail by themselves within the deadline, or are
    /// abandoned by their caller; either way no coalescing entry, pending exchange or task is
    /// left behind, and nothing is cached.
    #[tokio::test]
    async fn failed_and_abandoned_questions_leave_nothing_behind() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let deadline = Duration::from_millis(300);
        let it = Arc::new(Iterative::new(IterConfig {
            roots: vec![IpAddr::from([127, 0, 0, 1])],
            port,
            deny: Vec::new(),
            deadline,
        }));
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let ask = |i: usize| {
            let it = it.clone();
            async move {
                let q = Query::query(n(&format!("h{}.example.", i % 20)), RecordType::A);
                it.resolve(&q).await
            }
        };
        // 40 questions, 20 distinct (the rest coalesce): all fail on their own, in time.
        let started = Instant::now();
        let results = futures_join_all((0..40).map(ask)).await;
        assert!(
            results.iter().all(|r| matches!(r, Err(IterError::Timeout))),
            "{results:?}"
        );
        assert!(started.elapsed() < deadline * 2, "{:?}", started.elapsed());
        // 40 more, abandoned before any server timeout.
        for r in futures_join_all(
            (0..40).map(|i| tokio::time::timeout(Duration::from_millis(30), ask(i))),
        )
        .await
        {
            assert!(r.is_err(), "abandoned");
        }
        assert!(it.inflight.is_empty(), "coalescing map empty");
        let chans = it.inner.transport.chans(false).unwrap();
        assert!(
            chans.iter().all(|c| c.pending.lock().unwrap().is_empty()),
            "no pending exchanges"
        );
        assert_eq!(
            it.inner.transport.permits.available_permits(),
            MAX_OUTSTANDING
        );
        assert!(it.inner.zones.is_empty() && it.inner.addrs.is_empty());
        assert_eq!(it.inner.penalised.len(), 1, "the silent root, once");
        // Only the socket pool's receive tasks were added.
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            tasks + SOCKETS
        );
    }

    /// Run futures concurrently on the current task, in order.
    async fn futures_join_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
        let mut futures: Vec<_> = futures.map(Box::pin).collect();
        let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
                if slot.is_none() {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => *slot = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|v| v.expect("ready")).collect()
    }

    #[test]
    fn ttls_are_bounded() {
        assert_eq!(clamp_ttl(0), Duration::from_secs(u64::from(MIN_TTL)));
        assert_eq!(clamp_ttl(u32::MAX), Duration::from_secs(u64::from(MAX_TTL)));
        assert_eq!(clamp_ttl(300), Duration::from_secs(300));
    }

    #[test]
    fn random_ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..100).map(|_| random() as u16).collect();
        assert!(ids.len() > 90);
    }
}
