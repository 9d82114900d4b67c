//! The writer thread: entries off the queue become JSON lines in a large buffer, written to the
//! log file (rotated by size and age, old files deleted by count and age) and encoded as dnstap
//! frames for the dnstap sender.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{Receiver, TryRecvError},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use std::os::unix::fs::OpenOptionsExt;

use arc_swap::ArcSwap;
use hickory_proto::rr::RecordType;
use prometheus::IntCounter;
use serde::Serialize;
use tracing::warn;

use super::{Entry, LogMetrics, canonical_ip, dnstap, question, truncate};
use crate::{
    config::{ClientPrivacy, QueryLogConfig},
    policy::{Decision, Match, Snapshot, Trigger},
};

/// How long the writer sleeps when the queue is empty.
const POLL: Duration = Duration::from_millis(2);
/// Buffered JSON is written out at least this often.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// After a failed open, the next try.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// The file buffer: large, so a busy log costs one write(2) per megabyte.
const BUFFER: usize = 1 << 20;
/// Policy snapshots kept for entries answered under an earlier generation.
const SNAPSHOTS: usize = 8;

pub(super) struct Writer {
    file: Option<FileSink>,
    dnstap: Option<dnstap::Sender>,
    privacy: Privacy,
    snapshots: Snapshots,
    line: Vec<u8>,
}

enum Privacy {
    Full,
    Truncated,
    Hashed(ring::hmac::Key),
}

impl Writer {
    pub(super) fn new(
        config: &QueryLogConfig,
        policy: Arc<ArcSwap<Snapshot>>,
        metrics: LogMetrics,
        dnstap: Option<dnstap::Sender>,
    ) -> Self {
        Self {
            file: config
                .path
                .as_ref()
                .map(|path| FileSink::new(path.clone(), config, &metrics)),
            dnstap,
            privacy: match &config.client {
                ClientPrivacy::Full => Privacy::Full,
                ClientPrivacy::Truncated => Privacy::Truncated,
                ClientPrivacy::Hashed(secret) => {
                    Privacy::Hashed(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
                }
            },
            snapshots: Snapshots {
                policy,
                recent: VecDeque::new(),
            },
            line: Vec::with_capacity(1024),
        }
    }

    /// Drain the queue, then sleep `POLL` when it was empty. The writer never blocks in
    /// `recv`: a receiver waiting on the channel makes every `try_send` on the query path wake
    /// it (a futex call and a context switch per entry, which cost 11 % of the queries a
    /// single core answered at full speed with mode "all"), while polling costs the query path
    /// nothing and delays log lines by at most `POLL`.
    pub(super) fn run(mut self, rx: Receiver<Entry>, stop: Arc<AtomicBool>) {
        loop {
            let stopping = stop.load(Ordering::Acquire);
            let mut handled = 0usize;
            let disconnected = loop {
                match rx.try_recv() {
                    Ok(entry) => {
                        self.handle(entry);
                        handled += 1;
                        if handled >= 65_536 {
                            break false;
                        }
                    }
                    Err(TryRecvError::Empty) => break false,
                    Err(TryRecvError::Disconnected) => break true,
                }
            };
            if let Some(f) = &mut self.file {
                f.tick(false);
            }
            if disconnected {
                break;
            }
            if stopping {
                for entry in rx.try_iter() {
                    self.handle(entry);
                }
                break;
            }
            if handled == 0 {
                std::thread::sleep(POLL);
            }
        }
        if let Some(f) = &mut self.file {
            f.tick(true);
        }
    }

    fn handle(&mut self, entry: Entry) {
        let Some((qname, canonical, qtype)) = question(entry.query()) else {
            return;
        };
        let client = canonical_ip(entry.client.ip());
        let client_label = match &self.privacy {
            Privacy::Full => client.to_string(),
            Privacy::Truncated => match truncate(client) {
                IpAddr::V4(v4) => format!("{v4}/24"),
                IpAddr::V6(v6) => format!("{v6}/48"),
            },
            Privacy::Hashed(key) => super::hashed(key, client),
        };
        // Only entries that name a list need the policy.
        let snapshot = (entry.blocked.is_some() || entry.allowed_by.is_some())
            .then(|| self.snapshots.get(entry.generation));
        let mut record = Record {
            time: humantime::format_rfc3339_millis(
                UNIX_EPOCH + Duration::from_nanos(entry.time_ns),
            )
            .to_string(),
            client: &client_label,
            protocol: entry.transport.label(),
            qname: &qname,
            qtype: qtype_name(qtype),
            outcome: entry.outcome.label(),
            rcode: entry.rcode.map(rcode_name),
            list: None,
            line: None,
            rule: None,
            trigger: None,
            category: None,
            reference: None,
            basis: None,
            allowlist: None,
        };
        if let Some((list, m)) = entry.blocked
            && let Some(snapshot) = &snapshot
            && let Some(compiled) = snapshot.lists.get(list)
        {
            // A packet-cache hit knows only the list: look the rule up again, under the
            // snapshot the answer came from.
            let m = m.or_else(|| {
                let group = snapshot.group_of(client);
                match snapshot
                    .evaluate(&snapshot.prepare(&canonical), Some(client), group)
                    .decision
                {
                    Decision::Blocked(m) if m.list == list => Some(m),
                    _ => None,
                }
            });
            record.list = Some(&compiled.info.name);
            record.basis = Some(compiled.info.basis.as_str());
            let provenance = m.and_then(|m| compiled.provenance(&m.hit));
            record.category = provenance
                .and_then(|p| p.category.as_deref())
                .or(compiled.info.category.as_deref());
            record.reference = provenance
                .and_then(|p| p.reference.as_deref())
                .or(compiled.info.reference.as_deref());
            if let Some(m) = m {
                record.line = Some(m.hit.payload.line);
                record.trigger = Some(trigger_label(m));
                if m.hit.suffix_len > 0 && m.trigger == Trigger::QName {
                    let text = String::from_utf8_lossy(
                        &canonical[canonical.len().saturating_sub(m.hit.suffix_len)..],
                    )
                    .into_owned();
                    record.rule = Some(text);
                }
            }
        }
        if let Some(i) = entry.allowed_by
            && let Some(snapshot) = &snapshot
        {
            record.allowlist = snapshot.lists.get(i).map(|l| l.info.name.as_str());
        }
        if let Some(f) = &mut self.file {
            self.line.clear();
            if serde_json::to_writer(&mut self.line, &record).is_ok() {
                self.line.push(b'\n');
                f.write(&self.line);
            }
        }
        if let Some(d) = &self.dnstap {
            let (address, port) = match &self.privacy {
                Privacy::Full => (Some(client), Some(entry.client.port())),
                Privacy::Truncated => (Some(truncate(client)), None),
                Privacy::Hashed(_) => (None, None),
            };
            d.send(&entry, address, port);
        }
    }
}

/// One JSON line.
#[derive(Serialize)]
struct Record<'a> {
    time: String,
    client: &'a str,
    protocol: &'static str,
    qname: &'a str,
    qtype: String,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rcode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    /// The listed name that matched (the query name or a parent).
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    basis: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowlist: Option<&'a str>,
}

fn trigger_label(m: Match) -> &'static str {
    match m.trigger {
        Trigger::QName => "qname",
        Trigger::ClientIp => "client_ip",
        Trigger::CnameTarget => "cname_target",
        Trigger::ResponseIp => "response_ip",
    }
}

fn qtype_name(code: u16) -> String {
    match RecordType::from(code) {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    }
}

pub(crate) fn rcode_name(code: u16) -> String {
    match code {
        0 => "NOERROR".into(),
        1 => "FORMERR".into(),
        2 => "SERVFAIL".into(),
        3 => "NXDOMAIN".into(),
        4 => "NOTIMP".into(),
        5 => "REFUSED".into(),
        16 => "BADVERS".into(),
        n => format!("RCODE{n}"),
    }
}

/// Recent policy snapshots by generation: an entry is explained with the lists it was
/// answered under, even if a list was swapped since. An entry older than every snapshot kept
/// (more than `SNAPSHOTS` swaps behind the writer) is explained with the oldest kept.
struct Snapshots {
    policy: Arc<ArcSwap<Snapshot>>,
    recent: VecDeque<Arc<Snapshot>>,
}

impl Snapshots {
    fn get(&mut self, generation: u64) -> Arc<Snapshot> {
        if let Some(s) = self.recent.iter().find(|s| s.generation == generation) {
            return s.clone();
        }
        let current = self.policy.load_full();
        if self
            .recent
            .back()
            .is_none_or(|s| s.generation != current.generation)
        {
            self.recent.push_back(current.clone());
            if self.recent.len() > SNAPSHOTS {
                self.recent.pop_front();
            }
        }
        self.recent
            .iter()
            .find(|s| s.generation == generation)
            .or_else(|| self.recent.iter().find(|s| s.generation > generation))
            .cloned()
            .unwrap_or(current)
    }
}

/// The JSON-lines file with its rotation.
struct FileSink {
    path: PathBuf,
    out: Option<BufWriter<File>>,
    /// Bytes in the current file.
    size: u64,
    /// When the current file was started.
    opened: SystemTime,
    retry_at: Instant,
    last_flush: Instant,
    rotate_size: u64,
    rotate_every: Duration,
    keep: usize,
    keep_for: Duration,
    written: IntCounter,
    dropped: IntCounter,
    errors: IntCounter,
    rotations: IntCounter,
}

impl FileSink {
    /// The sink, with its file opened now: before the server drops root, so a log folder only
    /// root may write to still works until the first rotation.
    fn new(path: PathBuf, config: &QueryLogConfig, metrics: &LogMetrics) -> Self {
        let mut sink = Self {
            path,
            out: None,
            size: 0,
            opened: SystemTime::now(),
            retry_at: Instant::now(),
            last_flush: Instant::now(),
            rotate_size: config.rotate_size,
            rotate_every: config.rotate_every,
            keep: config.keep,
            keep_for: config.keep_for,
            written: metrics.written.with_label_values(&["file"]),
            dropped: metrics.dropped.with_label_values(&["file"]),
            errors: metrics.errors.with_label_values(&["file"]),
            rotations: metrics.rotations.clone(),
        };
        sink.open();
        sink
    }

    fn open(&mut self) -> bool {
        if self.out.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = fs::create_dir_all(dir);
        }
        // Non-blocking only while opening: a FIFO nobody reads fails at once (and is tried
        // again later) instead of holding the writer in open(2).
        let opened = OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
            .open(&self.path)
            .and_then(|file| {
                nix::fcntl::fcntl(
                    &file,
                    nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_APPEND),
                )
                .map_err(std::io::Error::from)?;
                Ok(file)
            });
        match opened {
            Ok(file) => {
                let meta = file.metadata().ok();
                self.size = meta.as_ref().map_or(0, |m| m.len());
                self.opened = match &meta {
                    Some(m) if m.len() > 0 => m
                        .created()
                        .or_else(|_| m.modified())
                        .unwrap_or_else(|_| SystemTime::now()),
                    _ => SystemTime::now(),
                };
                self.out = Some(BufWriter::with_capacity(BUFFER, file));
                true
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot open the query log");
                self.errors.inc();
                self.retry_at = Instant::now() + REOPEN_AFTER;
                false
            }
        }
    }

    fn write(&mut self, line: &[u8]) {
        if !self.open() {
            self.dropped.inc();
            return;
        }
        if self.due(line.len() as u64) {
            self.rotate();
            if !self.open() {
                self.dropped.inc();
                return;
            }
        }
        let Some(out) = &mut self.out else { return };
        match out.write_all(line) {
            Ok(()) => {
                self.size += line.len() as u64;
                self.written.inc();
            }
            Err(e) => self.failed(&e),
        }
    }

    /// Whether the file must be rotated before `more` bytes are added.
    fn due(&self, more: u64) -> bool {
        (self.rotate_size > 0 && self.size > 0 && self.size + more > self.rotate_size) || self.old()
    }

    /// Whether the file has data and is older than `rotate_every`.
    fn old(&self) -> bool {
        !self.rotate_every.is_zero()
            && self.size > 0
            && self
                .opened
                .elapsed()
                .is_ok_and(|age| age >= self.rotate_every)
    }

    fn failed(&mut self, e: &std::io::Error) {
        warn!(path = %self.path.display(), error = %e, "cannot write the query log");
        self.errors.inc();
        // Reopen later; what the buffer held is lost.
        if let Some(out) = self.out.take() {
            let (_, _) = out.into_parts();
        }
        self.retry_at = Instant::now() + REOPEN_AFTER;
    }

    /// Flush what is buffered if it is time (or `now`), and rotate by age (a quiet log still
    /// rotates on time).
    fn tick(&mut self, now: bool) {
        // By age only: a file over the size limit is rotated by the next write, so the
        // current file is never missing between writes because of its size.
        if self.out.is_some() && self.old() {
            self.rotate();
        }
        if now || self.last_flush.elapsed() >= FLUSH_EVERY {
            self.last_flush = Instant::now();
            if let Some(out) = &mut self.out
                && let Err(e) = out.flush()
            {
                self.failed(&e);
            }
        }
    }

    /// Close the file, rename it to PATH.<UTC time>, and delete rotated files past `keep` and
    /// `keep_for`. The next write opens a new file.
    fn rotate(&mut self) {
        if let Some(mut out) = self.out.take()
            && let Err(e) = out.flush()
        {
            self.failed(&e);
        }
        let stamp = humantime::format_rfc3339_micros(SystemTime::now())
            .to_string()
            .replace(':', "-");
        let name = file_name(&self.path);
        let mut target = self.path.with_file_name(format!("{name}.{stamp}"));
        let mut n = 1;
        while target.exists() {
            target = self.path.with_file_name(format!("{name}.{stamp}-{n:03}"));
            n += 1;
        }
        match fs::rename(&self.path, &target) {
            Ok(()) => self.rotations.inc(),
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "cannot rotate the query log");
                self.errors.inc();
            }
        }
        self.size = 0;
        self.retain();
    }

    fn retain(&self) {
        let mut rotated = rotated_files(&self.path);
        // Newest first.
        rotated.reverse();
        for (i, path) in rotated.iter().enumerate() {
            let too_many = self.keep > 0 && i >= self.keep;
            let too_old = !self.keep_for.is_zero()
                && fs::metadata(path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > self.keep_for);
            if (too_many || too_old)
                && let Err(e) = fs::remove_file(path)
            {
                warn!(path = %path.display(), error = %e, "cannot delete an old query log");
                self.errors.inc();
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "queries.log".into(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The rotated files of the log at `path` (PATH.<time>), oldest first.
pub(crate) fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let name = file_name(path);
    let prefix = format!("{name}.");
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name().to_str().is_some_and(|n| {
                        n.strip_prefix(&prefix)
                            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                    })
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(dir: &Path, rotate_every: Duration, keep: usize, keep_for: Duration) -> FileSink {
        let config = QueryLogConfig {
            mode: crate::config::QueryLogMode::All,
            path: Some(dir.join("q.log")),
            rotate_size: 0,
            rotate_every,
            keep,
            keep_for,
            queue: 16,
            client: ClientPrivacy::Full,
            dnstap: None,
        };
        let metrics = LogMetrics::new(&prometheus::Registry::new()).unwrap();
        FileSink::new(dir.join("q.log"), &config, &metrics)
    }

    #[test]
    fn old_files_go_by_age_and_count_and_age_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let old = SystemTime::now() - Duration::from_secs(3 * 86_400);
        for (name, modified) in [
            ("q.log.2026-01-01T00-00-00.000000Z", Some(old)),
            ("q.log.2026-01-02T00-00-00.000000Z", None),
            ("q.log.2026-01-03T00-00-00.000000Z", None),
            ("q.log.notes", None),
            ("other.log.2026-01-01T00-00-00.000000Z", Some(old)),
        ] {
            let f = File::create(dir.path().join(name)).unwrap();
            if let Some(t) = modified {
                f.set_modified(t).unwrap();
            }
        }
        let mut s = sink(
            dir.path(),
            Duration::from_secs(3600),
            0,
            Duration::from_secs(86_400),
        );
        s.write(b"{}\n");
        assert!(!s.due(0));
        // An hour later (as far as the sink knows), the next tick rotates.
        s.opened -= Duration::from_secs(3601);
        s.tick(true);
        let names: Vec<String> = rotated_files(&dir.path().join("q.log"))
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(
            names[0], "q.log.2026-01-02T00-00-00.000000Z",
            "the old one is gone"
        );
        assert!(
            dir.path().join("q.log.notes").exists(),
            "not a rotated file"
        );
        assert!(
            dir.path()
                .join("other.log.2026-01-01T00-00-00.000000Z")
                .exists()
        );
        assert_eq!(s.rotations.get(), 1);
        // By count: keep the newest one.
        let mut s = sink(dir.path(), Duration::ZERO, 1, Duration::ZERO);
        s.write(b"{}\n");
        s.rotate();
        let left = rotated_files(&dir.path().join("q.log"));
        assert_eq!(left.len(), 1);
        assert_eq!(std::fs::read_to_string(&left[0]).unwrap(), "{}\n");
    }
}
