//! The query log: one JSON line per recorded query (blocked ones with the list, line, category
//! and reference that decided them), rotated by size and age, optionally mirrored to a dnstap
//! collector; and `rampart log search` over the current and rotated files.
//!
//! The query path never waits for it. A query that is to be recorded becomes one fixed-size
//! [`Entry`] (no allocation unless dnstap wants the response bytes), pushed with `try_send`
//! into a bounded `std::sync::mpsc::sync_channel`: a lock-free array queue (the channel is
//! crossbeam's array flavour inside std), one compare-and-swap per push and no lock shared
//! between the UDP workers. When the queue is full the entry is dropped and counted in
//! `rampart_query_log_dropped_total{sink="queue"}`. Everything that costs (the wall clock
//! formatting, the list lookups, privacy hashing, JSON, file writes, rotation, dnstap
//! encoding) happens on one writer thread of its own, never on a tokio worker. With the log
//! off, `DnsHandler::query_log` is `None` and the query path pays one branch.
//!
//! Measured (`cargo bench --bench fast_path -- blocked_synthesized`, on the shared 2-core
//! development VM, so the writer thread competes with the bench for the CPU): a synthesized block
//! answer 256 ns without the log, 363 ns with `mode = "all"`, i.e. about 105 ns per recorded
//! query for building the 416-byte entry (the query copied inline), the push, and the
//! writer's share of a shared machine. `benches/querylog.sh` measures the same over real UDP.

pub mod dnstap;
pub mod search;
mod writer;

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc::{SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tracing::warn;

use crate::{
    config::{ClientPrivacy, QueryLogConfig, QueryLogMode},
    metrics::Outcome,
    policy::{Match, Snapshot},
};

/// Bytes of the query kept in an entry: a whole query up to this size (nearly all are), else
/// its header and question (a question is at most 12 + 255 + 4 bytes).
pub const QUERY_INLINE: usize = 272;

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
    Https,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Https => "https",
        }
    }

    pub fn from_label(label: &str) -> Self {
        match label {
            "tcp" => Self::Tcp,
            "tls" => Self::Tls,
            "https" => Self::Https,
            _ => Self::Udp,
        }
    }
}

/// One recorded query, as the query path hands it over: plain data of a fixed size, so that
/// a push is a copy into a preallocated queue slot.
#[derive(Clone)]
pub struct Entry {
    /// When the query was read (for the UDP fast path: when its batch was), ns since 1970.
    pub time_ns: u64,
    /// Time taken to answer, in microseconds (0: not measured, the fast path's batch).
    pub elapsed_us: u32,
    pub client: SocketAddr,
    pub transport: Transport,
    pub outcome: Outcome,
    /// The response code sent; None when nothing was sent (RPZ DROP).
    pub rcode: Option<u16>,
    /// The policy generation the query was answered under.
    pub generation: u64,
    /// The block list that decided (index into the snapshot's lists), with the rule when the
    /// query path knew it (a blocked packet-cache hit only knows the list; the writer looks the
    /// rule up again).
    pub blocked: Option<(usize, Option<Match>)>,
    /// The allow list that let the name through.
    pub allowed_by: Option<usize>,
    query_len: u16,
    query: [u8; QUERY_INLINE],
    /// The response sent, kept only when dnstap is on.
    pub response: Option<Box<[u8]>>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("client", &self.client)
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

impl Entry {
    pub fn new(time_ns: u64, client: SocketAddr, transport: Transport, query: &[u8]) -> Self {
        let mut e = Self {
            time_ns,
            elapsed_us: 0,
            client,
            transport,
            outcome: Outcome::Allowed,
            rcode: None,
            generation: 0,
            blocked: None,
            allowed_by: None,
            query_len: 0,
            query: [0; QUERY_INLINE],
            response: None,
        };
        let keep = if query.len() <= QUERY_INLINE {
            query.len()
        } else {
            // Too long to keep whole (large EDNS options): the header and the question, with
            // the counts saying so.
            match question_end(query) {
                Some(end) if end <= QUERY_INLINE => end,
                _ => query.len().min(12),
            }
        };
        e.query[..keep].copy_from_slice(&query[..keep]);
        if keep < query.len() && keep >= 12 {
            let qd = if keep > 12 { 1u16 } else { 0 };
            e.query[4..6].copy_from_slice(&qd.to_be_bytes());
            e.query[6..12].fill(0);
        }
        e.query_len = keep as u16;
        e
    }

    /// The query's wire bytes (whole, or its header and question when it was long).
    pub fn query(&self) -> &[u8] {
        &self.query[..usize::from(self.query_len)]
    }
}

/// End of the (single, uncompressed) question of a DNS message.
fn question_end(msg: &[u8]) -> Option<usize> {
    let mut pos = 12;
    loop {
        let len = usize::from(*msg.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
    }
    (pos + 4 <= msg.len()).then_some(pos + 4)
}

/// The question of a message: (presentation name without the final dot, the policy's
/// canonical name bytes, QTYPE). None when there is no readable question.
pub fn question(msg: &[u8]) -> Option<(String, Vec<u8>, u16)> {
    if msg.len() < 12 || u16::from_be_bytes([msg[4], msg[5]]) == 0 {
        return None;
    }
    let end = question_end(msg)?;
    let mut text = String::new();
    let mut canonical = Vec::new();
    let mut pos = 12;
    while msg[pos] != 0 {
        let len = usize::from(msg[pos]);
        if !canonical.is_empty() {
            text.push('.');
            canonical.push(b'.');
        }
        for &b in &msg[pos + 1..pos + 1 + len] {
            match b {
                b'.' | b'\\' => {
                    text.push('\\');
                    text.push(char::from(b));
                }
                0x21..=0x7e => text.push(char::from(b)),
                _ => text.push_str(&format!("\\{b:03}")),
            }
            canonical.push(match b {
                b'.' => 0,
                _ => b.to_ascii_lowercase(),
            });
        }
        pos += 1 + len;
    }
    if text.is_empty() {
        text.push('.');
    }
    let qtype = u16::from_be_bytes([msg[end - 4], msg[end - 3]]);
    Some((text, canonical, qtype))
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// How a client address is written under `privacy`.
pub fn client_label(privacy: &ClientPrivacy, ip: IpAddr) -> String {
    let ip = canonical_ip(ip);
    match privacy {
        ClientPrivacy::Full => ip.to_string(),
        ClientPrivacy::Truncated => match truncate(ip) {
            IpAddr::V4(v4) => format!("{v4}/24"),
            IpAddr::V6(v6) => format!("{v6}/48"),
        },
        ClientPrivacy::Hashed(secret) => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
            hashed(&key, ip)
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The /24 (IPv4) or /48 (IPv6) network of an address.
pub fn truncate(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & 0xffff_ff00).into()),
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 80) - 1)).into()),
    }
}

/// The first 64 bits of HMAC-SHA256(secret, address bytes), in hex.
fn hashed(key: &ring::hmac::Key, ip: IpAddr) -> String {
    let tag = match ip {
        IpAddr::V4(v4) => ring::hmac::sign(key, &v4.octets()),
        IpAddr::V6(v6) => ring::hmac::sign(key, &v6.octets()),
    };
    tag.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The query log's counters, registered with the server's registry.
#[derive(Clone)]
pub struct LogMetrics {
    pub written: IntCounterVec,
    pub dropped: IntCounterVec,
    pub errors: IntCounterVec,
    pub rotations: IntCounter,
}

impl LogMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let written = IntCounterVec::new(
            Opts::new(
                "rampart_query_log_written_total",
                "Query log entries written, by sink (file: JSON lines; dnstap: frames).",
            ),
            &["sink"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "rampart_query_log_dropped_total",
                "Query log entries dropped rather than wait, by sink (queue: the writer thread \
                 fell behind, as behind a slow disk; file: no file could be opened; dnstap: the \
                 collector is away or slow).",
            ),
            &["sink"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "rampart_query_log_errors_total",
                "Query log sink errors (open, write, rename, connect, handshake), by sink.",
            ),
            &["sink"],
        )?;
        let rotations = IntCounter::new(
            "rampart_query_log_rotations_total",
            "Query log files rotated (renamed with a timestamp).",
        )?;
        registry.register(Box::new(written.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(rotations.clone()))?;
        for sink in ["queue", "file", "dnstap"] {
            dropped.with_label_values(&[sink]);
        }
        for sink in ["file", "dnstap"] {
            written.with_label_values(&[sink]);
            errors.with_label_values(&[sink]);
        }
        Ok(Self {
            written,
            dropped,
            errors,
            rotations,
        })
    }
}

/// The query path's handle on the log.
pub struct QueryLog {
    all: bool,
    responses: bool,
    tx: SyncSender<Entry>,
    dropped: IntCounter,
    /// Asks the writer to write what is queued and end.
    stop: Arc<AtomicBool>,
    /// Asks the dnstap sender to end; it also ends when the writer is gone.
    stop_dnstap: Arc<AtomicBool>,
    /// The writer thread, then the dnstap sender's.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog")
            .field("all", &self.all)
            .finish_non_exhaustive()
    }
}

impl QueryLog {
    /// Start the writer (and the dnstap sender) for `config`; None when nothing is to be
    /// logged.
    pub fn start(
        config: &QueryLogConfig,
        policy: Arc<ArcSwap<Snapshot>>,
        registry: &Registry,
    ) -> anyhow::Result<Option<Arc<Self>>> {
        if !config.enabled() {
            return Ok(None);
        }
        let metrics = LogMetrics::new(registry)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue);
        let stop = Arc::new(AtomicBool::new(false));
        let stop_dnstap = Arc::new(AtomicBool::new(false));
        let mut dnstap_thread = None;
        let dnstap = match &config.dnstap {
            Some(target) => {
                let (sender, thread) = dnstap::Sender::start(
                    target.clone(),
                    config.queue,
                    metrics.clone(),
                    stop_dnstap.clone(),
                )?;
                dnstap_thread = Some(thread);
                Some(sender)
            }
            None => None,
        };
        let writer = writer::Writer::new(config, policy, metrics.clone(), dnstap);
        let stop_writer = stop.clone();
        let mut threads = vec![
            std::thread::Builder::new()
                .name("rampart-querylog".into())
                .spawn(move || writer.run(rx, stop_writer))?,
        ];
        threads.extend(dnstap_thread);
        Ok(Some(Arc::new(Self {
            all: config.mode == QueryLogMode::All,
            responses: config.dnstap.is_some(),
            tx,
            dropped: metrics.dropped.with_label_values(&["queue"]),
            stop,
            stop_dnstap,
            threads: Mutex::new(threads),
        })))
    }

    /// Whether a query with this outcome is recorded.
    #[inline]
    pub fn wants(&self, outcome: Outcome) -> bool {
        self.all || outcome == Outcome::Blocked
    }

    /// Whether entries should carry the response bytes (for dnstap).
    #[inline]
    pub fn keeps_responses(&self) -> bool {
        self.responses
    }

    /// Hand an entry to the writer, or drop and count it when the queue is full.
    #[inline]
    pub fn push(&self, entry: Entry) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(entry)
        {
            self.dropped.inc();
        }
    }

    /// Stop the writer: what is queued is written and the file flushed. Waits at most
    /// `grace` (a writer stuck on a sink that never drains is left behind).
    pub fn shutdown(&self, grace: Duration) {
        self.stop.store(true, Ordering::Release);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let end = Instant::now() + grace;
        for (i, t) in threads.into_iter().enumerate() {
            if i == 1 {
                // The writer is done (or stuck): the dnstap sender sends what it has and ends.
                self.stop_dnstap.store(true, Ordering::Release);
            }
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                warn!("the query log writer did not finish in time; its last entries may be lost");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[&str], qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    #[test]
    fn the_question_reads_back_in_presentation_and_canonical_form() {
        let q = query(&["WWW", "a.b", "Example"], 28);
        let (text, canonical, qtype) = question(&q).unwrap();
        assert_eq!(text, "WWW.a\\.b.Example");
        assert_eq!(canonical, b"www.a\0b.example");
        assert_eq!(qtype, 28);
        assert_eq!(question(&q[..14]), None);
    }

    #[test]
    fn long_queries_keep_their_question() {
        let mut q = query(&["ads", "example"], 1);
        q[11] = 1;
        q.extend(std::iter::repeat_n(0u8, 600));
        let e = Entry::new(0, "127.0.0.1:1".parse().unwrap(), Transport::Udp, &q);
        assert_eq!(e.query().len(), 12 + 13 + 4);
        assert_eq!(&e.query()[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(question(e.query()).unwrap().0, "ads.example");
    }

    #[test]
    fn entries_stay_small() {
        // Each queue slot holds one entry, allocated at start (`queue` slots); see the
        // `query_log.queue` documentation in config/default.toml.
        let size = std::mem::size_of::<Entry>();
        eprintln!("Entry: {size} bytes");
        assert!(size <= 448, "{size}");
    }

    #[test]
    fn privacy_modes() {
        let v4: IpAddr = "192.0.2.77".parse().unwrap();
        let v6: IpAddr = "2001:db8:1234:5678::1".parse().unwrap();
        assert_eq!(client_label(&ClientPrivacy::Full, v4), "192.0.2.77");
        assert_eq!(
            client_label(&ClientPrivacy::Full, "::ffff:192.0.2.77".parse().unwrap()),
            "192.0.2.77"
        );
        assert_eq!(client_label(&ClientPrivacy::Truncated, v4), "192.0.2.0/24");
        assert_eq!(
            client_label(&ClientPrivacy::Truncated, v6),
            "2001:db8:1234::/48"
        );
        let a = ClientPrivacy::Hashed(b"0123456789abcdef".to_vec());
        let b = ClientPrivacy::Hashed(b"another secret!!".to_vec());
        let h = client_label(&a, v4);
        assert_eq!(h.len(), 16);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(h, client_label(&a, v4), "stable under one secret");
        assert_ne!(h, client_label(&b, v4), "keyed");
        assert_ne!(h, client_label(&a, "192.0.2.78".parse().unwrap()));
    }
}
