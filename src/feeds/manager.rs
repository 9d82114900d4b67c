//! Keeping lists current: one task per list checks its source (a file's size and mtime, an HTTP
//! feed with conditional requests), compiles a new version on a blocking thread, and swaps just
//! that list into the policy with `ArcSwap`, so queries never wait and only one list is ever held
//! twice.
//!
//! Safety rules, in the order they apply:
//! - a failed fetch, a refused file (empty, HTML, not UTF-8) or a failed compile keeps the last
//!   good version in service and is reported (`/v1/lists`, metrics, log);
//! - a version that shrinks the list by more than `max_shrink` is held back until an operator
//!   accepts it (`POST /v1/lists/NAME/accept`);
//! - every version put in service is saved in the state folder with its validators, so a
//!   restart without network still filters; at start-up with neither, `on_missing` decides.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    http::{self, Fetched},
    xfr::{self, Transfer, Zone},
};
use crate::{
    config::{GroupConfig, ListConfig, OnMissing, Source},
    metrics::Metrics,
    policy::{CompiledList, Snapshot},
};

/// What `/v1/lists` shows for one list.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedStatus {
    pub name: String,
    /// The file path or URL.
    pub source: String,
    pub format: String,
    /// Rules and distinct names in service.
    pub entries: usize,
    pub names: usize,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// SOA serial of a zone-transfer list in service.
    pub serial: Option<u32>,
    /// Unix seconds of the last successful check (new version or confirmed unchanged).
    pub last_success: Option<u64>,
    /// Seconds since then.
    pub age_seconds: Option<u64>,
    pub last_error: Option<String>,
    /// A new version held back because it shrinks the list too much.
    pub held: Option<Held>,
    /// True while serving without this list (nothing could be loaded).
    pub missing: bool,
    pub refreshes: u64,
    pub failures: u64,
}

/// What `/v1/enforcement` shows for one list: proof of which version is enforced since when.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Enforcement {
    pub name: String,
    /// The file path, URL or zone transfer source.
    pub source: String,
    pub format: String,
    /// SOA serial (zone transfers) and HTTP validators of the version in service.
    pub serial: Option<u32>,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// `sha256:` and the hex SHA-256 of the version's text as loaded (for a zone transfer, the
    /// zone as rendered to the saved copy), so an operator can prove which file is enforced.
    pub content_hash: Option<String>,
    /// Rules and distinct names in service.
    pub entries: usize,
    pub names: usize,
    /// Unix seconds at which this version went into service.
    pub active_since: Option<u64>,
    /// Queries this list blocked since then.
    pub hits_since_activation: u64,
    /// Unix seconds of the version's publication, when known: the NOTIFY that announced it,
    /// the HTTP Last-Modified of the download, the file's modification time.
    pub published_at: Option<f64>,
    /// Seconds from publication to enforcement (new snapshot in service).
    pub publication_to_enforcement_seconds: Option<f64>,
    /// True while serving without this list (nothing could be loaded).
    pub missing: bool,
}

/// When and what a list version went into service as.
#[derive(Debug, Clone, Default)]
struct Activation {
    at: u64,
    /// Filled in by a blocking thread once the file is hashed (a 100 MB list takes a fraction
    /// of a second, which start-up does not wait for).
    content_hash: Arc<std::sync::OnceLock<String>>,
    /// The list's blocked-queries counter at activation.
    hits_before: u64,
    published_at: Option<f64>,
    delay: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Held {
    pub names: usize,
    pub current_names: usize,
    pub reason: String,
}

/// Validators and time of the saved copy, next to it in the state folder.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedMeta {
    etag: Option<String>,
    last_modified: Option<String>,
    #[serde(default)]
    serial: Option<u32>,
    saved_at: u64,
}

struct FeedState {
    status: FeedStatus,
    /// Size and mtime of a file source when last loaded: unchanged files are not recompiled.
    file_stamp: Option<(u64, SystemTime)>,
    /// A compiled version waiting for `accept`, and the file it came from.
    held: Option<(Arc<CompiledList>, PathBuf)>,
    /// The zone of a zone-transfer list as last put in service (the base for IXFR).
    zone: Option<Zone>,
    /// The zone a held-back version came from.
    held_zone: Option<Zone>,
    /// When a NOTIFY arrived that has not yet led to a version in service (monotonic, and the
    /// wall clock for reports).
    notified_at: Option<(std::time::Instant, SystemTime)>,
    /// The version in service, for `/v1/enforcement`.
    activation: Option<Activation>,
    /// A file list loaded at start-up, to be saved as the last good copy once serving.
    start_copy: Option<(PathBuf, PathBuf)>,
}

/// The list updater. Cheap to share (`Arc`).
pub struct Feeds {
    lists: Vec<ListConfig>,
    groups: Vec<GroupConfig>,
    policy: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    states: Vec<Mutex<FeedState>>,
    triggers: Vec<tokio::sync::Notify>,
    /// One refresh of a list at a time.
    running: Vec<tokio::sync::Mutex<()>>,
    /// Serialises read-modify-write of the snapshot (one list replaced at a time).
    swap: tokio::sync::Mutex<()>,
    client: reqwest::Client,
}

impl std::fmt::Debug for Feeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feeds")
            .field("lists", &self.lists.len())
            .finish()
    }
}

fn unix_f64(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `sha256:` and the hex SHA-256 of a file, or None when it cannot be read.
fn hash_file(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).ok()?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    let digest = ctx.finish();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.as_ref() {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    Some(out)
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn source_text(s: &Source) -> String {
    match s {
        Source::File(p) => p.display().to_string(),
        Source::Http { url, .. } => url.clone(),
        Source::Xfr(x) => format!("xfr://{}/{}", x.source.primary, x.source.zone),
    }
}

fn meta_path(state: &Path) -> PathBuf {
    state.with_extension("meta.json")
}

/// What became of a NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyResult {
    /// A refresh of the zone's list was triggered.
    Accepted,
    /// The zone is known but the sender may not notify it.
    Refused,
    /// No list is fed by that zone.
    UnknownZone,
}

/// Outcome of checking a source once.
enum Checked {
    Unchanged,
    New {
        list: Box<CompiledList>,
        /// The file the new version was compiled from (to be saved as the last good copy).
        file: PathBuf,
        etag: Option<String>,
        last_modified: Option<String>,
        /// For zone transfers: the zone the version was rendered from.
        zone: Option<Box<Zone>>,
    },
}

impl Feeds {
    pub fn new(
        lists: Vec<ListConfig>,
        groups: Vec<GroupConfig>,
        policy: Arc<ArcSwap<Snapshot>>,
        metrics: Metrics,
    ) -> Arc<Self> {
        let states = lists
            .iter()
            .map(|l| {
                Mutex::new(FeedState {
                    status: FeedStatus {
                        name: l.name.clone(),
                        source: source_text(&l.source),
                        ..FeedStatus::default()
                    },
                    file_stamp: None,
                    held: None,
                    zone: None,
                    held_zone: None,
                    notified_at: None,
                    activation: None,
                    start_copy: None,
                })
            })
            .collect();
        Arc::new(Self {
            triggers: lists.iter().map(|_| tokio::sync::Notify::new()).collect(),
            running: lists.iter().map(|_| tokio::sync::Mutex::new(())).collect(),
            states,
            lists,
            groups,
            policy,
            metrics,
            swap: tokio::sync::Mutex::new(()),
            client: http::client(),
        })
    }

    fn state(&self, i: usize) -> std::sync::MutexGuard<'_, FeedState> {
        // A poisoned lock only means a panic elsewhere; the state itself is still usable.
        self.states[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.lists.iter().position(|l| l.name == name)
    }

    /// Load every list for start-up and put the snapshot in service. File sources load from the
    /// file (falling back to the saved copy when the file is refused); HTTP sources load from
    /// the saved copy when there is one (and refresh in the background), else fetch now.
    pub async fn initial_load(&self) -> anyhow::Result<()> {
        let mut compiled = Vec::with_capacity(self.lists.len());
        for i in 0..self.lists.len() {
            let list = self.load_at_start(i).await?;
            compiled.push(Arc::new(list));
        }
        let snapshot = Snapshot::assemble(compiled, &self.groups);
        self.metrics.set_lists(&snapshot);
        let snapshot = Arc::new(snapshot);
        self.policy.store(snapshot.clone());
        for i in 0..self.lists.len() {
            if let Some((from, to)) = self.state(i).start_copy.take() {
                drop(tokio::task::spawn_blocking(move || save_copy(&from, &to)));
            }
        }
        for (i, list) in snapshot.lists.iter().enumerate() {
            if !self.state(i).status.missing {
                let published = self.published(i);
                self.activate(i, list, published);
            }
            self.publish_metrics(i);
        }
        Ok(())
    }

    async fn load_at_start(&self, i: usize) -> anyhow::Result<CompiledList> {
        let list = &self.lists[i];
        let saved = list.state_path.is_file();
        let first = match &list.source {
            Source::File(path) => {
                let c = compile(list, path.clone()).await;
                if c.info.error.is_none() {
                    let mut s = self.state(i);
                    s.file_stamp = file_stamp(path);
                    // Saved once every list is in service: copying a 100 MB list is not worth
                    // delaying start-up for.
                    s.start_copy = Some((path.clone(), list.state_path.clone()));
                }
                Some(c)
            }
            Source::Http { .. } | Source::Xfr(_) if saved => None,
            Source::Http { .. } | Source::Xfr(_) => match self.check(i).await {
                Ok(Checked::New {
                    list: c,
                    file,
                    etag,
                    last_modified,
                    zone,
                }) => {
                    {
                        let mut s = self.state(i);
                        s.status.etag = etag.clone();
                        s.status.last_modified = last_modified.clone();
                        s.status.serial = zone.as_ref().map(|z| z.serial());
                        s.zone = zone.map(|z| *z);
                    }
                    self.promote(i, &file, etag, last_modified).await;
                    Some(*c)
                }
                Ok(Checked::Unchanged) => None,
                Err((reason, message)) => {
                    self.record_failure(i, reason, &message);
                    None
                }
            },
        };
        let first = match first {
            Some(c) if c.info.error.is_none() => {
                self.record_success(i, &c);
                return Ok(c);
            }
            Some(c) => {
                let e = c.info.error.clone().unwrap_or_default();
                self.record_failure(i, "parse", &e);
                Some(c)
            }
            None => None,
        };
        if saved {
            let c = compile(list, list.state_path.clone()).await;
            if c.info.error.is_none() {
                let meta = read_meta(&list.state_path);
                {
                    let mut s = self.state(i);
                    s.status.etag = meta.etag;
                    s.status.last_modified = meta.last_modified;
                    s.status.serial = meta.serial;
                }
                self.record_success(i, &c);
                if let Some(f) = first {
                    warn!(list = %list.name, error = ?f.info.error, "source refused; serving the saved copy");
                } else {
                    info!(list = %list.name, path = %list.state_path.display(), "serving the saved copy");
                }
                return Ok(c);
            }
        }
        match list.on_missing {
            OnMissing::RefuseStart => anyhow::bail!(
                "list `{}`: neither its source nor a saved copy could be loaded ({}), and on_missing = \"refuse_start\"",
                list.name,
                self.state(i).status.last_error.clone().unwrap_or_default()
            ),
            OnMissing::ServeWithout => {
                warn!(list = %list.name, "serving without this list: no source and no saved copy");
                self.state(i).status.missing = true;
                let mut empty = list.clone();
                empty.path = PathBuf::new();
                let mut c = compile(&empty, PathBuf::new()).await;
                c.info.error = self.state(i).status.last_error.clone();
                Ok(c)
            }
        }
    }

    /// Start one refresh task per list.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.lists.len())
            .map(|i| {
                let feeds = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let period = feeds.lists[i].refresh;
                    // The first tick fires at once: a feed served from its saved copy at start-up
                    // is brought up to date right away (a file source costs one stat).
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = shutdown.cancelled() => break,
                            _ = tick.tick() => {}
                            _ = feeds.triggers[i].notified() => {}
                        }
                        feeds.refresh(i).await;
                    }
                })
            })
            .collect()
    }

    /// A NOTIFY for `zone` from `from`: when a zone-transfer list has that zone and `from` may
    /// notify, its task checks the primary at once. The NOTIFY itself is not trusted beyond
    /// that: the transfer it triggers is authenticated (TSIG) on its own.
    pub fn notify(&self, zone: &hickory_proto::rr::Name, from: std::net::IpAddr) -> NotifyResult {
        let mut known = false;
        for (i, list) in self.lists.iter().enumerate() {
            let Source::Xfr(x) = &list.source else {
                continue;
            };
            // `Name` compares case-insensitively.
            if x.source.zone != *zone {
                continue;
            }
            known = true;
            if x.notify_from.iter().any(|n| n.contains(&from)) {
                self.state(i)
                    .notified_at
                    .get_or_insert_with(|| (std::time::Instant::now(), SystemTime::now()));
                self.triggers[i].notify_one();
                self.metrics.notifies.with_label_values(&["accepted"]).inc();
                return NotifyResult::Accepted;
            }
        }
        let result = if known {
            NotifyResult::Refused
        } else {
            NotifyResult::UnknownZone
        };
        let label = match result {
            NotifyResult::Refused => "refused",
            _ => "unknown_zone",
        };
        self.metrics.notifies.with_label_values(&[label]).inc();
        result
    }

    /// Ask every list's task to check its source now (SIGHUP).
    pub fn trigger_all(&self) {
        for t in &self.triggers {
            t.notify_one();
        }
    }

    /// Check one list's source now and apply the result; returns the list's status after.
    pub async fn refresh(&self, i: usize) -> FeedStatus {
        let _one = self.running[i].lock().await;
        match self.check(i).await {
            Ok(Checked::Unchanged) => {
                let mut s = self.state(i);
                s.status.last_success = Some(now_unix());
                s.status.last_error = None;
                s.status.refreshes += 1;
            }
            Ok(Checked::New {
                list,
                file,
                etag,
                last_modified,
                zone,
            }) => self.offer(i, list, file, etag, last_modified, zone).await,
            Err((reason, message)) => self.record_failure(i, reason, &message),
        }
        self.metrics.list_refreshed(&self.lists[i].name);
        self.publish_metrics(i);
        self.status(i)
    }

    /// Fetch/compile a new version if the source changed.
    async fn check(&self, i: usize) -> Result<Checked, (&'static str, String)> {
        let list = &self.lists[i];
        match &list.source {
            Source::File(path) => {
                let stamp = file_stamp(path);
                if stamp.is_some() && stamp == self.state(i).file_stamp {
                    return Ok(Checked::Unchanged);
                }
                let c = compile(list, path.clone()).await;
                self.metrics.list_compiled(&list.name);
                // Remember this version even when it fails: it is retried only once the file
                // changes again, not on every tick.
                self.state(i).file_stamp = stamp;
                if let Some(e) = &c.info.error {
                    return Err(("parse", e.clone()));
                }
                Ok(Checked::New {
                    list: Box::new(c),
                    file: path.clone(),
                    etag: None,
                    last_modified: None,
                    zone: None,
                })
            }
            Source::Xfr(x) => {
                let current = self.state(i).zone.clone();
                let zone = match &current {
                    Some(z) => {
                        // The SOA query is cheap; transfer only when the serial moved.
                        let serial = xfr::soa_serial(&x.source)
                            .await
                            .map_err(|e| (xfr_reason(&e), e.to_string()))?;
                        if serial == z.serial() {
                            return Ok(Checked::Unchanged);
                        }
                        match xfr::fetch(&x.source, Some(z))
                            .await
                            .map_err(|e| (xfr_reason(&e), e.to_string()))?
                        {
                            Transfer::UpToDate => return Ok(Checked::Unchanged),
                            Transfer::Full(zone) => zone,
                            Transfer::Incremental(diffs) => {
                                let mut zone = z.clone();
                                for d in &diffs {
                                    zone.apply(d).map_err(|e| ("xfr", e.to_string()))?;
                                }
                                zone
                            }
                        }
                    }
                    None => match xfr::fetch(&x.source, None)
                        .await
                        .map_err(|e| (xfr_reason(&e), e.to_string()))?
                    {
                        Transfer::Full(zone) => zone,
                        _ => return Err(("xfr", "the primary did not send the zone".into())),
                    },
                };
                let (c, incoming) = self
                    .compile_incoming(list, zone.to_zone_text().into_bytes())
                    .await?;
                Ok(Checked::New {
                    list: Box::new(c),
                    file: incoming,
                    etag: None,
                    last_modified: None,
                    zone: Some(Box::new(zone)),
                })
            }
            Source::Http {
                url,
                timeout,
                max_size,
            } => {
                let (etag, modified) = {
                    let s = self.state(i);
                    (s.status.etag.clone(), s.status.last_modified.clone())
                };
                let fetched = http::fetch(
                    &self.client,
                    url,
                    etag.as_deref(),
                    modified.as_deref(),
                    *timeout,
                    *max_size,
                )
                .await
                .map_err(|e| (e.reason, e.message))?;
                let (bytes, etag, last_modified) = match fetched {
                    Fetched::NotModified => return Ok(Checked::Unchanged),
                    Fetched::Body {
                        bytes,
                        etag,
                        last_modified,
                    } => (bytes, etag, last_modified),
                };
                let (c, incoming) = self.compile_incoming(list, bytes).await?;
                Ok(Checked::New {
                    list: Box::new(c),
                    file: incoming,
                    etag,
                    last_modified,
                    zone: None,
                })
            }
        }
    }

    /// Write a downloaded or transferred version next to the saved copy and compile it; a version
    /// that does not compile is deleted again.
    async fn compile_incoming(
        &self,
        list: &ListConfig,
        bytes: Vec<u8>,
    ) -> Result<(CompiledList, PathBuf), (&'static str, String)> {
        let incoming = list.state_path.with_extension("incoming");
        write_blocking(&incoming, bytes).await?;
        let c = compile(list, incoming.clone()).await;
        self.metrics.list_compiled(&list.name);
        if let Some(e) = &c.info.error {
            let _ = std::fs::remove_file(&incoming);
            return Err(("parse", e.clone()));
        }
        Ok((c, incoming))
    }

    /// A new version passed every check but the shrink rule: apply it, or hold it back.
    async fn offer(
        &self,
        i: usize,
        list: Box<CompiledList>,
        file: PathBuf,
        etag: Option<String>,
        last_modified: Option<String>,
        zone: Option<Box<Zone>>,
    ) {
        let current = self.policy.load().lists.get(i).map_or(0, |l| l.info.names);
        let max_shrink = self.lists[i].max_shrink;
        let floor = (current as f64 * (1.0 - max_shrink)).ceil() as usize;
        if current > 0 && max_shrink < 1.0 && list.info.names < floor {
            let reason = format!(
                "new version has {} names, {:.0}% fewer than the {current} in service (max_shrink {:.0}%); accept it with POST /v1/lists/{}/accept",
                list.info.names,
                100.0 * (1.0 - list.info.names as f64 / current as f64),
                max_shrink * 100.0,
                self.lists[i].name
            );
            warn!(list = %self.lists[i].name, "held back: {reason}");
            let mut s = self.state(i);
            s.status.held = Some(Held {
                names: list.info.names,
                current_names: current,
                reason: reason.clone(),
            });
            s.status.last_error = Some(reason);
            s.status.refreshes += 1;
            // Validators are kept for the held version so the next poll does not refetch it.
            s.status.etag = etag;
            s.status.last_modified = last_modified;
            s.held = Some((Arc::from(list), file));
            s.held_zone = zone.map(|z| *z);
            self.metrics.list_failed(&self.lists[i].name, "shrink_held");
            return;
        }
        if let Some(zone) = zone {
            let mut s = self.state(i);
            s.status.serial = Some(zone.serial());
            s.zone = Some(*zone);
        }
        self.put_in_service(i, Arc::from(list), &file, etag, last_modified)
            .await;
    }

    /// Confirm a held-back version.
    pub async fn accept(&self, i: usize) -> Result<FeedStatus, String> {
        let _one = self.running[i].lock().await;
        let held = self.state(i).held.take();
        {
            let mut s = self.state(i);
            if let Some(zone) = s.held_zone.take() {
                s.status.serial = Some(zone.serial());
                s.zone = Some(zone);
            }
        }
        let Some((list, file)) = held else {
            return Err(format!(
                "list `{}` has no version waiting to be accepted",
                self.lists[i].name
            ));
        };
        let (etag, modified) = {
            let s = self.state(i);
            (s.status.etag.clone(), s.status.last_modified.clone())
        };
        self.put_in_service(i, list, &file, etag, modified).await;
        self.publish_metrics(i);
        Ok(self.status(i))
    }

    async fn put_in_service(
        &self,
        i: usize,
        list: Arc<CompiledList>,
        file: &Path,
        etag: Option<String>,
        last_modified: Option<String>,
    ) {
        let names = list.info.names;
        self.promote(i, file, etag.clone(), last_modified.clone())
            .await;
        {
            let _swap = self.swap.lock().await;
            let current = self.policy.load_full();
            let mut lists = current.lists.clone();
            if let Some(slot) = lists.get_mut(i) {
                *slot = list.clone();
            }
            let snapshot = Snapshot::assemble(lists, &self.groups);
            self.metrics.set_lists(&snapshot);
            let old = self.policy.swap(Arc::new(snapshot));
            drop(current);
            retire(old);
        }
        {
            let mut s = self.state(i);
            s.held = None;
            s.status.held = None;
            s.status.missing = false;
            s.status.etag = etag;
            s.status.last_modified = last_modified;
        }
        self.record_success(i, &list);
        let notified = self.state(i).notified_at.take();
        if let Some((t, _)) = notified {
            self.metrics.notify_to_service(t.elapsed());
        }
        let published = notified
            .map(|(_, at)| unix_f64(at))
            .or_else(|| self.published(i));
        self.activate(i, &list, published);
        info!(list = %self.lists[i].name, names, "new version in service");
    }

    /// When the version of list `i` now described by its status was published, as far as the
    /// source tells: HTTP Last-Modified, or a file's modification time.
    fn published(&self, i: usize) -> Option<f64> {
        let modified = self.state(i).status.last_modified.clone();
        if let Some(t) = modified.and_then(|m| httpdate::parse_http_date(&m).ok()) {
            return Some(unix_f64(t));
        }
        match &self.lists[i].source {
            Source::File(path) => std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .map(unix_f64),
            _ => None,
        }
    }

    /// Record that `list` went into service now: its content hash (computed on a low-priority
    /// thread, not awaited), the list's blocked counter (hits are counted from here) and the
    /// delay since publication.
    fn activate(&self, i: usize, list: &CompiledList, published_at: Option<f64>) {
        let at = SystemTime::now();
        let path = if list.info.path.is_file() {
            list.info.path.clone()
        } else {
            self.lists[i].state_path.clone()
        };
        let content_hash = Arc::new(std::sync::OnceLock::new());
        let cell = content_hash.clone();
        // On a thread of its own at the lowest normal priority (nice 19, not idle: it must not
        // starve), so hashing a 100 MB list never competes with start-up or the query workers
        // for a core; it still finishes promptly on a machine with time to spare.
        let spawned = std::thread::Builder::new()
            .name("rampart-hash".into())
            .spawn(move || {
                let _ = thread_priority::set_current_thread_priority(
                    thread_priority::ThreadPriority::Min,
                );
                if let Some(h) = hash_file(&path) {
                    let _ = cell.set(h);
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start a thread to hash the list: {e}");
        }
        let activation = Activation {
            at: unix_f64(at) as u64,
            content_hash,
            hits_before: self.metrics.blocked_counter(&self.lists[i].name).get(),
            published_at,
            delay: published_at.map(|p| (unix_f64(at) - p).max(0.0)),
        };
        self.state(i).activation = Some(activation);
    }

    /// Proof of enforcement for every list.
    pub fn enforcements(&self) -> Vec<Enforcement> {
        (0..self.lists.len()).map(|i| self.enforcement(i)).collect()
    }

    fn enforcement(&self, i: usize) -> Enforcement {
        let name = &self.lists[i].name;
        let hits_now = self.metrics.blocked_counter(name).get();
        let s = self.state(i);
        let a = s.activation.clone().unwrap_or_default();
        Enforcement {
            name: name.clone(),
            source: s.status.source.clone(),
            format: s.status.format.clone(),
            serial: s.status.serial,
            etag: s.status.etag.clone(),
            last_modified: s.status.last_modified.clone(),
            content_hash: a.content_hash.get().cloned(),
            entries: s.status.entries,
            names: s.status.names,
            active_since: s.activation.as_ref().map(|a| a.at),
            hits_since_activation: hits_now.saturating_sub(a.hits_before),
            published_at: a.published_at,
            publication_to_enforcement_seconds: a.delay,
            missing: s.status.missing,
        }
    }

    /// Save the file a version came from as the last good copy, with its validators.
    /// Save the file a version came from as the last good copy, with its validators. File I/O
    /// (a copy of a large list takes milliseconds) runs on a blocking thread, not a query
    /// worker.
    async fn promote(
        &self,
        i: usize,
        file: &Path,
        etag: Option<String>,
        last_modified: Option<String>,
    ) {
        let state = self.lists[i].state_path.clone();
        let name = self.lists[i].name.clone();
        let file = file.to_path_buf();
        let meta = SavedMeta {
            etag,
            last_modified,
            serial: self.state(i).zone.as_ref().map(|z| z.serial()),
            saved_at: now_unix(),
        };
        let saved = tokio::task::spawn_blocking(move || {
            if file != state {
                if file.extension().is_some_and(|e| e == "incoming") {
                    if let Err(e) = std::fs::rename(&file, &state) {
                        warn!(list = %name, error = %e, "cannot save the last good copy");
                    }
                } else {
                    save_copy(&file, &state);
                }
            }
            if let Ok(text) = serde_json::to_string(&meta) {
                let _ = std::fs::write(meta_path(&state), text);
            }
        })
        .await;
        if let Err(e) = saved {
            warn!(list = %self.lists[i].name, error = %e, "saving the last good copy failed");
        }
    }

    fn record_success(&self, i: usize, list: &CompiledList) {
        let mut s = self.state(i);
        s.status.entries = list.info.entries;
        s.status.names = list.info.names;
        s.status.format = list.info.format.to_string();
        s.status.last_success = Some(now_unix());
        if s.held.is_none() {
            s.status.last_error = None;
        }
        s.status.refreshes += 1;
    }

    fn record_failure(&self, i: usize, reason: &'static str, message: &str) {
        warn!(list = %self.lists[i].name, reason, "refresh failed, keeping the version in service: {message}");
        let mut s = self.state(i);
        s.status.last_error = Some(message.to_string());
        s.status.failures += 1;
        s.status.refreshes += 1;
        drop(s);
        self.metrics.list_failed(&self.lists[i].name, reason);
    }

    /// One list's status, with its age computed now.
    pub fn status(&self, i: usize) -> FeedStatus {
        let mut st = self.state(i).status.clone();
        st.age_seconds = st.last_success.map(|t| now_unix().saturating_sub(t));
        st
    }

    pub fn statuses(&self) -> Vec<FeedStatus> {
        (0..self.lists.len()).map(|i| self.status(i)).collect()
    }

    /// Refresh the per-list gauges (also called before every /metrics scrape, for the ages).
    pub fn publish_metrics(&self, i: usize) {
        let st = self.status(i);
        if let Some(serial) = st.serial {
            self.metrics.list_serial(&st.name, serial);
        }
        self.metrics
            .list_state(&st.name, st.last_success, st.held.is_some(), st.missing);
        let e = self.enforcement(i);
        if let Some(at) = e.active_since {
            self.metrics.list_enforcement(
                &e.name,
                at,
                e.hits_since_activation,
                e.publication_to_enforcement_seconds,
            );
        }
    }

    pub fn publish_all_metrics(&self) {
        for i in 0..self.lists.len() {
            self.publish_metrics(i);
        }
    }
}

/// Work for the compiler thread.
type Job = Box<dyn FnOnce() + Send>;

/// The thread that compiles list versions, one at a time, under SCHED_IDLE: a million-name
/// list takes a quarter of a second of CPU, and on a resolver's cores the query workers must
/// win every contended moment of it (measured with benches/reload.sh on 2 cores: p99 during
/// swaps went from ~5x the steady p99 at nice 10 to ~1.3-2.5x). An idle-class thread can starve
/// on a saturated machine, so `compile` stops waiting after `COMPILE_PATIENCE` and compiles at
/// normal priority instead: a list update is never lost to load.
fn compiler() -> &'static Mutex<std::sync::mpsc::Sender<Job>> {
    static SENDER: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<Job>>> =
        std::sync::OnceLock::new();
    SENDER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("rampart-compile".into())
            .spawn(move || {
                // Crossplatform 22 is niceness 10 for the normal scheduling policy.
                let lowered = thread_priority::unix::set_thread_priority_and_policy(
                    thread_priority::unix::thread_native_id(),
                    thread_priority::ThreadPriority::Min,
                    thread_priority::unix::ThreadSchedulePolicy::Normal(
                        thread_priority::unix::NormalThreadSchedulePolicy::Idle,
                    ),
                )
                .map_err(|e| format!("{e:?}"));
                if let Err(e) = lowered {
                    warn!("cannot lower the list compiler's priority: {e}");
                }
                for job in rx {
                    job();
                }
            });
        if let Err(e) = spawned {
            warn!("cannot start the list compiler thread: {e}");
        }
        Mutex::new(tx)
    })
}

/// The longest a replaced snapshot is kept waiting for the queries that still hold it (longer
/// than any query lives: the resolver deadline).
const RETIRE_AFTER: Duration = Duration::from_secs(15);
/// How often a replaced snapshot is checked for remaining holders.
const RETIRE_POLL: Duration = Duration::from_millis(50);

/// Free a replaced snapshot on a blocking thread once no query holds it any more. Freeing a
/// million-name list returns tens of MB to the kernel, which stalls the freeing thread for
/// milliseconds; on a query worker that showed up as lost queries and a p99 spike at every
/// swap. It is freed as soon as the queries that loaded it are done (usually at once) rather
/// than after a fixed wait: with lists replaced every few seconds a fixed 15 s kept three or
/// four old copies alive, and resident memory rose and fell by a list's size with the timing.
fn retire(old: Arc<Snapshot>) {
    tokio::spawn(async move {
        // The snapshot has left the ArcSwap, so no new query can take it: its strong count
        // only goes down (arc-swap settles borrowed guards into counts when it swaps).
        let started = tokio::time::Instant::now();
        while Arc::strong_count(&old) > 1 && started.elapsed() < RETIRE_AFTER {
            tokio::time::sleep(RETIRE_POLL).await;
        }
        let _ = tokio::task::spawn_blocking(move || drop(old)).await;
    });
}

/// How long a compile may wait for idle CPU before it runs at normal priority.
const COMPILE_PATIENCE: Duration = Duration::from_secs(30);

/// Compile one list version on the compiler thread (falls back to tokio's blocking pool if that
/// thread is gone).
async fn compile(list: &ListConfig, path: PathBuf) -> CompiledList {
    let mut list = list.clone();
    list.path = path;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job_list = list.clone();
    let job: Job = Box::new(move || {
        let _ = tx.send(CompiledList::load(&job_list));
    });
    let sent = compiler()
        .lock()
        .map(|sender| sender.send(job).is_ok())
        .unwrap_or(false);
    if sent && let Ok(Ok(compiled)) = tokio::time::timeout(COMPILE_PATIENCE, rx).await {
        return compiled;
    }
    if sent {
        warn!(list = %list.name, "the idle-priority compiler is starved; compiling at normal priority");
    }
    tokio::task::spawn_blocking(move || CompiledList::load(&list))
        .await
        .unwrap_or_else(|e| {
            let mut c = CompiledList::load(&ListConfig::block("failed", PathBuf::new(), None));
            c.info.error = Some(format!("compile task failed: {e}"));
            c
        })
}

/// Metric reason for a failed zone transfer.
fn xfr_reason(e: &xfr::XfrError) -> &'static str {
    let text = e.to_string();
    if text.contains("TSIG") {
        "tsig"
    } else if text.contains("timed out") || text.contains("timeout") {
        "timeout"
    } else {
        "xfr"
    }
}

fn file_stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// Write a downloaded version to disk on a blocking thread (not a query worker).
async fn write_blocking(path: &Path, bytes: Vec<u8>) -> Result<(), (&'static str, String)> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&path, bytes)
            .map_err(|e| ("state", format!("cannot write {}: {e}", path.display())))
    })
    .await
    .map_err(|e| ("state", e.to_string()))?
}

/// Copy `from` to `to` through a temporary file and a rename, so a crash never leaves a torn
/// last good copy.
fn save_copy(from: &Path, to: &Path) {
    if let Some(dir) = to.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // A temporary name of its own, so two saves of one list never write the same file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = to.with_extension(format!("tmp{n}"));
    if std::fs::copy(from, &tmp).is_ok() {
        let _ = std::fs::rename(&tmp, to);
    } else {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn read_meta(state: &Path) -> SavedMeta {
    std::fs::read_to_string(meta_path(state))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// How long `refresh` waits at most when the API asks for it synchronously.
pub const API_REFRESH_DEADLINE: Duration = Duration::from_secs(120);
