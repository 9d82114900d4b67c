//! Every Prometheus collector Rampart exports, registered once on a `Registry` that is passed
//! in (no globals, so tests can run several servers in one process).
//!
//! Labels stay low-cardinality: outcome, qtype (a fixed set, the rest is "other"), protocol and
//! list name. A domain name or a client address never becomes a label.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::policy::Snapshot;

/// What happened to one query; the one value metrics (and later the query log) read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered from the policy: a blocked name.
    Blocked,
    /// Answered from the cache.
    CacheHit,
    /// Resolved upstream and answered.
    Allowed,
    /// Upstream failed or timed out.
    ServFail,
    /// Refused (class or query type we do not serve).
    Refused,
    /// Malformed request or unsupported opcode.
    FormErr,
    NotImp,
    /// A NOTIFY from a zone-transfer primary, acknowledged.
    Notify,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Self::Blocked => "blocked",
            Self::CacheHit => "cache_hit",
            Self::Allowed => "allowed",
            Self::ServFail => "servfail",
            Self::Refused => "refused",
            Self::FormErr => "formerr",
            Self::NotImp => "notimp",
            Self::Notify => "notify",
        }
    }
}

/// The collectors, cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    queries: IntCounterVec,
    blocked: IntCounterVec,
    allowlisted: IntCounterVec,
    log_only: IntCounterVec,
    duration: HistogramVec,
    pub cache_entries: IntGauge,
    list_entries: IntGaugeVec,
    list_rejected: IntGaugeVec,
    list_skipped: IntGaugeVec,
    pub upstream_errors: IntCounterVec,
    pub policy_names: IntGaugeVec,
    pub upstream_duration: Histogram,
    list_refreshes: IntCounterVec,
    list_failures: IntCounterVec,
    list_compiles: IntCounterVec,
    list_last_success: IntGaugeVec,
    list_age: IntGaugeVec,
    list_active_since: IntGaugeVec,
    list_hits_since_activation: IntGaugeVec,
    list_publication_delay: GaugeVec,
    list_held: IntGaugeVec,
    list_missing: IntGaugeVec,
    list_serial: IntGaugeVec,
    notify_to_service: Histogram,
    pub notifies: IntCounterVec,
    udp_dropped: IntCounterVec,
    /// Time a UDP worker spent on one batch of datagrams.
    pub udp_batch: Histogram,
    /// For a batch that filled the read buffer (datagrams were waiting): the time since the
    /// worker finished the batch before, i.e. how long it was away from the socket.
    pub udp_away: Histogram,
    pub packet_cache_entries: IntGauge,
    /// `{protocol, action}`: queries from networks `[access]` denies.
    pub access_denied: IntCounterVec,
    /// `{scope, action}`: UDP queries over a `[rate_limit]` bucket.
    pub rate_limited: IntCounterVec,
    pub rate_limit_buckets: IntGauge,
    /// `{reason}`: TCP connections closed at once on accept.
    pub tcp_rejected: IntCounterVec,
    /// `{reason}`: TCP connections ended, by why.
    pub tcp_closed: IntCounterVec,
    pub tcp_connections: IntGauge,
    /// Serve-stale and the bounds on upstream resolutions.
    pub upstream_bounds: UpstreamBounds,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// The query types given their own label value; everything else is "other".
const QTYPES: &[&str] = &[
    "A", "AAAA", "CNAME", "MX", "TXT", "NS", "SOA", "PTR", "SRV", "HTTPS", "SVCB", "CAA", "DS",
    "DNSKEY", "ANY", "NAPTR",
];

pub fn qtype_label(rtype: hickory_proto::rr::RecordType) -> &'static str {
    let s: &'static str = rtype.into();
    QTYPES.iter().copied().find(|q| *q == s).unwrap_or("other")
}

/// The position of a query type's label in [`qtype_labels`], from its number, without going
/// through strings (the fast path counts every query).
pub fn qtype_index(code: u16) -> usize {
    match code {
        1 => 0,
        28 => 1,
        5 => 2,
        15 => 3,
        16 => 4,
        2 => 5,
        6 => 6,
        12 => 7,
        33 => 8,
        65 => 9,
        64 => 10,
        257 => 11,
        43 => 12,
        48 => 13,
        255 => 14,
        35 => 15,
        _ => QTYPES.len(),
    }
}

/// Every `qtype` label value, in [`qtype_index`] order ("other" last).
pub fn qtype_labels() -> impl Iterator<Item = &'static str> {
    QTYPES.iter().copied().chain(std::iter::once("other"))
}

impl Metrics {
    pub fn new(registry: Registry) -> Result<Self, prometheus::Error> {
        let queries = IntCounterVec::new(
            Opts::new(
                "rampart_queries_total",
                "DNS queries answered, by query type, protocol and outcome.",
            ),
            &["qtype", "protocol", "outcome"],
        )?;
        let blocked = IntCounterVec::new(
            Opts::new(
                "rampart_blocked_queries_total",
                "Queries answered with a block, by the list whose rule matched.",
            ),
            &["list"],
        )?;
        let allowlisted = IntCounterVec::new(
            Opts::new(
                "rampart_allowlisted_queries_total",
                "Queries exempted from blocking by an allow rule, by list.",
            ),
            &["list"],
        )?;
        let log_only = IntCounterVec::new(
            Opts::new(
                "rampart_log_only_matches_total",
                "Matches of lists in log-only mode (counted and logged, not applied), by list.",
            ),
            &["list"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "rampart_query_duration_seconds",
                "Time from receiving a query to handing its answer to the socket.",
            )
            .buckets(vec![
                0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["protocol"],
        )?;
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                "rampart_upstream_duration_seconds",
                "Time spent resolving cache misses upstream (recursion or forwarding).",
            )
            .buckets(vec![
                0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let cache_entries = IntGauge::new(
            "rampart_cache_entries",
            "Answers currently held in the cache.",
        )?;
        let list_entries = IntGaugeVec::new(
            Opts::new(
                "rampart_list_entries",
                "Rules loaded from each list (before de-duplication across lists).",
            ),
            &["list", "kind"],
        )?;
        let list_rejected = IntGaugeVec::new(
            Opts::new(
                "rampart_list_rejected_lines",
                "Lines of each list skipped as malformed or invalid at the last load.",
            ),
            &["list"],
        )?;
        let list_skipped = IntGaugeVec::new(
            Opts::new(
                "rampart_list_skipped_lines",
                "Lines of each list not turned into rules at the last load, by reason \
                 (malformed, invalid_name, ip_address, unsupported, localhost).",
            ),
            &["list", "reason"],
        )?;
        let policy_names = IntGaugeVec::new(
            Opts::new(
                "rampart_policy_names",
                "Distinct names in the compiled policy, by set (block or allow).",
            ),
            &["set"],
        )?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "rampart_upstream_errors_total",
                "Upstream resolutions that failed, by reason.",
            ),
            &["reason"],
        )?;
        let udp_dropped = IntCounterVec::new(
            Opts::new(
                "rampart_udp_dropped_total",
                "UDP datagrams not served by the pipeline, by reason (oversized request: dropped; \
                 overload: too many queries waiting for the general path, answered SERVFAIL at \
                 once; send: the reply could not be sent).",
            ),
            &["reason"],
        )?;
        let udp_batch = Histogram::with_opts(
            HistogramOpts::new(
                "rampart_udp_batch_seconds",
                "Time a UDP worker spent on one batch of datagrams, from the read to the replies \
                 sent.",
            )
            .buckets(vec![0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 1.0]),
        )?;
        let udp_away = Histogram::with_opts(
            HistogramOpts::new(
                "rampart_udp_away_seconds",
                "For each batch that filled a UDP worker's read buffer (datagrams were waiting in \
                 the socket): how long since the worker finished its previous batch. Long times \
                 mean the worker was not running (starved of CPU) while queries queued.",
            )
            .buckets(vec![0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 1.0]),
        )?;
        registry.register(Box::new(udp_batch.clone()))?;
        registry.register(Box::new(udp_away.clone()))?;
        let packet_cache_entries = IntGauge::new(
            "rampart_packet_cache_entries",
            "Ready UDP responses held by the fast path's packet cache.",
        )?;
        let list_refreshes = IntCounterVec::new(
            Opts::new(
                "rampart_list_refreshes_total",
                "Checks of each list's source (file or feed).",
            ),
            &["list"],
        )?;
        let list_failures = IntCounterVec::new(
            Opts::new(
                "rampart_list_refresh_failures_total",
                "List checks that did not put a new version in service, by reason (connect, \
                 timeout, http_status, too_large, body, parse, state, shrink_held).",
            ),
            &["list", "reason"],
        )?;
        let list_compiles = IntCounterVec::new(
            Opts::new(
                "rampart_list_compiles_total",
                "Times each list was parsed and compiled (an unchanged source is not).",
            ),
            &["list"],
        )?;
        let list_last_success = IntGaugeVec::new(
            Opts::new(
                "rampart_list_last_success_timestamp_seconds",
                "Unix time of each list's last successful check.",
            ),
            &["list"],
        )?;
        let list_age = IntGaugeVec::new(
            Opts::new(
                "rampart_list_age_seconds",
                "Seconds since each list's last successful check.",
            ),
            &["list"],
        )?;
        let list_active_since = IntGaugeVec::new(
            Opts::new(
                "rampart_list_active_since_timestamp_seconds",
                "Unix time at which the version of each list now in service went into service.",
            ),
            &["list"],
        )?;
        let list_hits_since_activation = IntGaugeVec::new(
            Opts::new(
                "rampart_list_hits_since_activation",
                "Queries each list blocked since its version in service went into service.",
            ),
            &["list"],
        )?;
        let list_publication_delay = GaugeVec::new(
            Opts::new(
                "rampart_list_publication_to_enforcement_seconds",
                "For the version of each list in service: seconds from its publication (NOTIFY \
                 received, HTTP Last-Modified, file modification time) to its enforcement.",
            ),
            &["list"],
        )?;
        let list_held = IntGaugeVec::new(
            Opts::new(
                "rampart_list_held",
                "1 while a new version of the list is held back for shrinking too much.",
            ),
            &["list"],
        )?;
        let list_missing = IntGaugeVec::new(
            Opts::new(
                "rampart_list_missing",
                "1 while serving without the list (neither its source nor a saved copy loaded).",
            ),
            &["list"],
        )?;
        let list_serial = IntGaugeVec::new(
            Opts::new(
                "rampart_list_serial",
                "SOA serial of each zone-transfer list in service.",
            ),
            &["list"],
        )?;
        let notify_to_service = Histogram::with_opts(
            HistogramOpts::new(
                "rampart_notify_to_service_seconds",
                "Time from a NOTIFY to the new version of the zone in service.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )?;
        let notifies = IntCounterVec::new(
            Opts::new(
                "rampart_notifies_total",
                "NOTIFY messages received, by result (accepted, refused, unknown_zone).",
            ),
            &["result"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "rampart_build_info",
                "Always 1; labels carry the version of the running binary.",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(queries.clone()))?;
        registry.register(Box::new(blocked.clone()))?;
        registry.register(Box::new(allowlisted.clone()))?;
        registry.register(Box::new(log_only.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(cache_entries.clone()))?;
        registry.register(Box::new(list_entries.clone()))?;
        registry.register(Box::new(list_rejected.clone()))?;
        registry.register(Box::new(list_skipped.clone()))?;
        registry.register(Box::new(policy_names.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(build_info))?;
        registry.register(Box::new(list_refreshes.clone()))?;
        registry.register(Box::new(list_failures.clone()))?;
        registry.register(Box::new(list_compiles.clone()))?;
        registry.register(Box::new(list_last_success.clone()))?;
        registry.register(Box::new(list_age.clone()))?;
        registry.register(Box::new(list_active_since.clone()))?;
        registry.register(Box::new(list_hits_since_activation.clone()))?;
        registry.register(Box::new(list_publication_delay.clone()))?;
        registry.register(Box::new(list_held.clone()))?;
        registry.register(Box::new(list_missing.clone()))?;
        registry.register(Box::new(list_serial.clone()))?;
        registry.register(Box::new(notify_to_service.clone()))?;
        registry.register(Box::new(notifies.clone()))?;
        registry.register(Box::new(udp_dropped.clone()))?;
        registry.register(Box::new(packet_cache_entries.clone()))?;
        let access_denied = IntCounterVec::new(
            Opts::new(
                "rampart_access_denied_total",
                "Queries from client networks that [access] does not allow, by protocol and \
                 action (refuse: answered REFUSED, drop: not answered or connection closed).",
            ),
            &["protocol", "action"],
        )?;
        let rate_limited = IntCounterVec::new(
            Opts::new(
                "rampart_rate_limited_total",
                "UDP queries over a rate limit, by the bucket that ran out (client or prefix) \
                 and action (drop: not answered, slip: empty truncated answer).",
            ),
            &["scope", "action"],
        )?;
        let rate_limit_buckets = IntGauge::new(
            "rampart_rate_limit_buckets",
            "Client and prefix rate-limit buckets held (as of the last sweep).",
        )?;
        let tcp_rejected = IntCounterVec::new(
            Opts::new(
                "rampart_tcp_rejected_total",
                "TCP connections closed on accept, by reason (total, per_client: connection \
                 limits reached; access: client denied with action drop).",
            ),
            &["reason"],
        )?;
        let tcp_closed = IntCounterVec::new(
            Opts::new(
                "rampart_tcp_closed_total",
                "Accepted TCP connections ended, by reason (client, idle, incomplete, \
                 query_limit, malformed, write, denied, shutdown).",
            ),
            &["reason"],
        )?;
        let tcp_connections =
            IntGauge::new("rampart_tcp_connections", "Open DNS-over-TCP connections.")?;
        registry.register(Box::new(access_denied.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(rate_limit_buckets.clone()))?;
        registry.register(Box::new(tcp_rejected.clone()))?;
        registry.register(Box::new(tcp_closed.clone()))?;
        registry.register(Box::new(tcp_connections.clone()))?;
        for protocol in ["udp", "tcp"] {
            for action in ["refuse", "drop"] {
                access_denied.with_label_values(&[protocol, action]);
            }
        }
        for scope in ["client", "prefix"] {
            for action in ["drop", "slip"] {
                rate_limited.with_label_values(&[scope, action]);
            }
        }
        for reason in ["total", "per_client", "access"] {
            tcp_rejected.with_label_values(&[reason]);
        }

        // Pre-create the common series so dashboards see zeros rather than gaps.
        for reason in ["timeout", "error"] {
            upstream_errors.with_label_values(&[reason]);
        }
        for reason in ["oversized", "overload", "send"] {
            udp_dropped.with_label_values(&[reason]);
        }
        let upstream_bounds = UpstreamBounds::register(&registry)?;
        Ok(Self {
            registry,
            queries,
            blocked,
            allowlisted,
            log_only,
            duration,
            cache_entries,
            list_entries,
            list_rejected,
            list_skipped,
            upstream_errors,
            policy_names,
            upstream_duration,
            list_refreshes,
            list_failures,
            list_compiles,
            list_last_success,
            list_age,
            list_active_since,
            list_hits_since_activation,
            list_publication_delay,
            list_held,
            list_missing,
            list_serial,
            notify_to_service,
            notifies,
            udp_dropped,
            udp_batch,
            udp_away,
            packet_cache_entries,
            access_denied,
            rate_limited,
            rate_limit_buckets,
            tcp_rejected,
            tcp_closed,
            tcp_connections,
            upstream_bounds,
        })
    }

    /// Record one answered query.
    pub fn observe(
        &self,
        qtype: &'static str,
        protocol: &'static str,
        outcome: Outcome,
        elapsed: std::time::Duration,
    ) {
        self.queries
            .with_label_values(&[qtype, protocol, outcome.label()])
            .inc();
        self.duration
            .with_label_values(&[protocol])
            .observe(elapsed.as_secs_f64());
    }

    /// One series of `rampart_queries_total`, for callers that count locally and flush.
    pub fn query_counter(&self, qtype: &str, protocol: &str, outcome: Outcome) -> IntCounter {
        self.queries
            .with_label_values(&[qtype, protocol, outcome.label()])
    }

    /// The query-duration histogram of one protocol.
    pub fn duration_histogram(&self, protocol: &str) -> Histogram {
        self.duration.with_label_values(&[protocol])
    }

    pub fn blocked_counter(&self, list: &str) -> IntCounter {
        self.blocked.with_label_values(&[list])
    }

    pub fn allowlisted_counter(&self, list: &str) -> IntCounter {
        self.allowlisted.with_label_values(&[list])
    }

    pub fn udp_dropped(&self, reason: &str) {
        self.udp_dropped.with_label_values(&[reason]).inc();
    }

    pub fn blocked_by(&self, list: &str) {
        self.blocked.with_label_values(&[list]).inc();
    }

    pub fn log_only_match(&self, list: &str) {
        self.log_only.with_label_values(&[list]).inc();
    }

    pub fn allowlisted_by(&self, list: &str) {
        self.allowlisted.with_label_values(&[list]).inc();
    }

    pub fn notify_to_service(&self, elapsed: std::time::Duration) {
        self.notify_to_service.observe(elapsed.as_secs_f64());
    }

    pub fn list_serial(&self, list: &str, serial: u32) {
        self.list_serial
            .with_label_values(&[list])
            .set(i64::from(serial));
    }

    pub fn list_refreshed(&self, list: &str) {
        self.list_refreshes.with_label_values(&[list]).inc();
    }

    pub fn list_compiled(&self, list: &str) {
        self.list_compiles.with_label_values(&[list]).inc();
    }

    pub fn list_failed(&self, list: &str, reason: &str) {
        self.list_failures.with_label_values(&[list, reason]).inc();
    }

    /// Per-list update state: last success (unix seconds), held shrink, serving without it.
    pub fn list_state(&self, list: &str, last_success: Option<u64>, held: bool, missing: bool) {
        if let Some(t) = last_success {
            self.list_last_success
                .with_label_values(&[list])
                .set(t as i64);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.list_age
                .with_label_values(&[list])
                .set(now.saturating_sub(t) as i64);
        }
        self.list_held
            .with_label_values(&[list])
            .set(i64::from(held));
        self.list_missing
            .with_label_values(&[list])
            .set(i64::from(missing));
        self.list_refreshes.with_label_values(&[list]);
        self.list_compiles.with_label_values(&[list]);
    }

    /// Per-list proof of enforcement: when the version in service went into service, what it
    /// blocked since, and how long after its publication it was enforced.
    pub fn list_enforcement(
        &self,
        list: &str,
        active_since: u64,
        hits: u64,
        publication_delay: Option<f64>,
    ) {
        self.list_active_since
            .with_label_values(&[list])
            .set(active_since as i64);
        self.list_hits_since_activation
            .with_label_values(&[list])
            .set(hits as i64);
        if let Some(d) = publication_delay {
            self.list_publication_delay
                .with_label_values(&[list])
                .set(d);
        }
    }

    /// Publish the per-list figures of a freshly loaded snapshot.
    pub fn set_lists(&self, snapshot: &Snapshot) {
        self.list_entries.reset();
        self.list_rejected.reset();
        self.list_skipped.reset();
        for l in snapshot.lists.iter().map(|l| &l.info) {
            let kind = match l.kind {
                crate::config::ListKind::Block => "block",
                crate::config::ListKind::Allow => "allow",
            };
            self.list_entries
                .with_label_values(&[l.name.as_str(), kind])
                .set(l.entries as i64);
            self.list_rejected
                .with_label_values(&[l.name.as_str()])
                .set(l.rejected as i64);
            for (reason, n) in &l.skipped_by_reason {
                self.list_skipped
                    .with_label_values(&[l.name.as_str(), reason])
                    .set(*n as i64);
            }
            if l.kind == crate::config::ListKind::Block {
                self.blocked.with_label_values(&[l.name.as_str()]);
            }
        }
        let (block, allow) = snapshot.sizes();
        self.policy_names
            .with_label_values(&["block"])
            .set(block as i64);
        self.policy_names
            .with_label_values(&["allow"])
            .set(allow as i64);
    }

    /// The text exposition format served on `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let encoder = TextEncoder::new();
        // Encoding into a Vec cannot fail for I/O reasons; an error would be a collector bug,
        // which we surface as an empty body rather than a panic on the admin path.
        if encoder.encode(&self.registry.gather(), &mut buf).is_err() {
            buf.clear();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Serve-stale answers and the bounds on upstream resolutions in flight.
#[derive(Clone)]
pub struct UpstreamBounds {
    /// Stale answers served (RFC 8767).
    pub stale_answers: IntCounter,
    /// Background refreshes of popular answers about to expire.
    pub prefetches: IntCounter,
    /// Upstream resolutions in flight.
    pub outstanding: IntGauge,
    limited: IntCounterVec,
}

impl UpstreamBounds {
    fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let stale_answers = IntCounter::new(
            "rampart_stale_answers_total",
            "Expired cached answers served because upstream could not refresh them (RFC 8767).",
        )?;
        let prefetches = IntCounter::new(
            "rampart_prefetches_total",
            "Answers asked for in the last tenth of their TTL and refreshed upstream in the \
             background (cache.prefetch).",
        )?;
        let outstanding = IntGauge::new(
            "rampart_upstream_outstanding",
            "Upstream resolutions (cache misses) in flight.",
        )?;
        let limited = IntCounterVec::new(
            Opts::new(
                "rampart_upstream_limited_total",
                "Cache misses not sent upstream because too many were in flight, by scope \
                 (global: resolver.max_outstanding, client: resolver.max_outstanding_per_client).",
            ),
            &["scope"],
        )?;
        registry.register(Box::new(stale_answers.clone()))?;
        registry.register(Box::new(prefetches.clone()))?;
        registry.register(Box::new(outstanding.clone()))?;
        registry.register(Box::new(limited.clone()))?;
        for scope in ["global", "client"] {
            limited.with_label_values(&[scope]);
        }
        Ok(Self {
            stale_answers,
            prefetches,
            outstanding,
            limited,
        })
    }

    /// A cache miss refused by the `scope` ("global" or "client") bound.
    pub fn limited(&self, scope: &str) {
        self.limited.with_label_values(&[scope]).inc();
    }
}

/// The encrypted listeners' collectors, registered only when a DoT or DoH listener is
/// configured (so a server without TLS exports no certificate expiry to alert on).
#[derive(Clone)]
pub struct TlsMetrics {
    /// Certificate (re)loads by result ("ok", "error").
    pub reloads: IntCounterVec,
    /// notAfter of the leaf certificate in service, as Unix time.
    pub expiry: IntGauge,
    /// Encrypted connections open now.
    pub connections: IntGauge,
    /// Connections closed at once because `tls.max_connections` were open.
    pub rejected: IntCounter,
}

impl TlsMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reloads = IntCounterVec::new(
            Opts::new(
                "rampart_tls_reloads_total",
                "TLS certificate loads (start-up and reloads), by result (ok, error: the old one stays).",
            ),
            &["result"],
        )?;
        let expiry = IntGauge::new(
            "rampart_tls_certificate_expiry_timestamp_seconds",
            "notAfter of the TLS leaf certificate in service, as Unix time.",
        )?;
        let connections = IntGauge::new(
            "rampart_tls_connections",
            "DNS-over-TLS and DNS-over-HTTPS connections open now.",
        )?;
        let rejected = IntCounter::new(
            "rampart_tls_connections_rejected_total",
            "Encrypted connections closed at once because tls.max_connections were open.",
        )?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(expiry.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        Ok(Self {
            reloads,
            expiry,
            connections,
            rejected,
        })
    }
}

/// The block page server's collectors, registered only when `[block_page] listen` is set.
#[derive(Clone)]
pub struct BlockPageMetrics {
    /// `{status}`: requests answered, by HTTP status.
    requests: IntCounterVec,
}

impl BlockPageMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "rampart_block_page_requests_total",
                "Block page requests, by HTTP status (451: a legal list's block, 403: another \
                 block, 200: neutral page for hosts not blocked, 204: favicon, 405: method).",
            ),
            &["status"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        for status in ["200", "403", "451"] {
            requests.with_label_values(&[status]);
        }
        Ok(Self { requests })
    }

    /// Count one request answered with `status`.
    pub fn request(&self, status: u16) {
        // The statuses the page server answers with; anything else would be a bug.
        let label = match status {
            200 => "200",
            204 => "204",
            403 => "403",
            405 => "405",
            451 => "451",
            _ => "other",
        };
        self.requests.with_label_values(&[label]).inc();
    }
}
