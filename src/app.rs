//! Wiring and lifecycle: loads the lists, binds the sockets, starts the DNS server and the
//! admin endpoint, and stops them on request.
//!
//! `start` returns a [`Running`] server with the addresses it actually bound, so tests pass
//! port 0 and learn the ports; `main` waits for a signal and calls [`Running::shutdown`].

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use hickory_server::Server;
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    admin, blockpage,
    config::{Config, ListKind},
    dns::{
        cache::Cache,
        fast::FastPath,
        handler,
        handler::{DnsHandler, SharedHandler},
        limits::Limits,
        packet_cache::PacketCache,
        tcp, tls, udp,
        upstream::Upstream,
    },
    feeds::manager::Feeds,
    metrics::Metrics,
    policy::{Snapshot, formats::SkipReason},
    querylog::QueryLog,
};

/// A started server.
pub struct Running {
    /// The DNS addresses bound (UDP and TCP share each one).
    pub dns_addrs: Vec<SocketAddr>,
    /// The admin HTTP address, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// DNS-over-TLS and DNS-over-HTTPS addresses bound.
    pub dot_addrs: Vec<SocketAddr>,
    pub doh_addrs: Vec<SocketAddr>,
    /// Block page (HTTP) addresses bound; empty when `[block_page] listen` is.
    pub block_page_addrs: Vec<SocketAddr>,
    /// The TLS certificate in service, if an encrypted listener runs.
    certs: Option<Arc<tls::CertStore>>,
    pub metrics: Metrics,
    pub policy: Arc<ArcSwap<Snapshot>>,
    /// The list updater (SIGHUP asks it to check every source).
    pub feeds: Arc<Feeds>,
    shutdown: CancellationToken,
    serving: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
    workers: Option<udp::Workers>,
    limits: Arc<Limits>,
    /// How long queries in flight get to finish once shutdown starts.
    grace: Duration,
    query_log: Option<Arc<QueryLog>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("dns_addrs", &self.dns_addrs)
            .field("admin_addr", &self.admin_addr)
            .field("block_page_addrs", &self.block_page_addrs)
            .finish_non_exhaustive()
    }
}

/// The query pipeline for `config` around a policy (used by `start`, and by the benches to
/// run the pipeline in-process).
pub fn build_handler(
    config: &Config,
    policy: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    feeds: Option<Arc<Feeds>>,
) -> anyhow::Result<Arc<DnsHandler>> {
    build_handler_with_log(config, policy, metrics, feeds, None)
}

/// [`build_handler`] with the query log the server records to.
pub fn build_handler_with_log(
    config: &Config,
    policy: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
    feeds: Option<Arc<Feeds>>,
    query_log: Option<Arc<QueryLog>>,
) -> anyhow::Result<Arc<DnsHandler>> {
    let upstream = Upstream::new(&config.resolver).context("setting up the resolver")?;
    Ok(Arc::new(DnsHandler {
        policy,
        cache: Arc::new(Cache::new(config.cache.clone())),
        upstream,
        block: config.block.clone(),
        max_udp_payload: config.max_udp_payload,
        feeds,
        packets: Arc::new(PacketCache::new(
            config.cache.packet_size,
            config.cache.prefetch,
        )),
        limits: Arc::new(Limits::new(config, &metrics)),
        metrics,
        query_log,
        fills: Default::default(),
    }))
}

/// Load the lists, bind everything and start serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let metrics = Metrics::new(prometheus::Registry::new()).context("registering metrics")?;

    // Lists load from their sources (or the saved copies) before anything binds; compiling
    // runs on blocking threads, off the async workers.
    let policy = Arc::new(ArcSwap::from_pointee(Snapshot::empty()));
    let feeds = Feeds::new(
        config.lists.clone(),
        config.groups.clone(),
        policy.clone(),
        metrics.clone(),
    );
    feeds.initial_load().await?;
    log_lists(&policy.load());

    let query_log = QueryLog::start(&config.query_log, policy.clone(), &metrics.registry)
        .context("starting the query log")?;
    let handler = build_handler_with_log(
        &config,
        policy.clone(),
        metrics.clone(),
        Some(feeds.clone()),
        query_log.clone(),
    )?;
    let (cache, packets) = (handler.cache.clone(), handler.packets.clone());
    let limits = handler.limits.clone();

    // UDP and plain TCP through our own listeners (UDP: fast path, then the same handler);
    // hickory-server runs the other transports' listeners (count them in `hickory_listeners`).
    let mut server = Server::new(SharedHandler(handler.clone()));
    let hickory_listeners = 0usize;
    let mut dns_addrs = Vec::new();
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    for addr in &config.listen {
        let (udp, tcp) = bind_pair(*addr, config.workers, config.udp_buffer)
            .await
            .with_context(|| format!("binding DNS listener {addr}"))?;
        dns_addrs.push(udp[0].local_addr()?);
        udp_sockets.extend(udp);
        tcp_listeners.push(tcp);
    }
    let fast = Arc::new(FastPath::new(handler.clone()));
    let workers = udp::Workers::start(
        udp_sockets,
        fast,
        config.fast_path,
        tokio::runtime::Handle::current(),
    )
    .context("starting the UDP workers")?;

    let shutdown = CancellationToken::new();
    let serving = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();

    let encrypted = tls::start(&config.tls, handler.clone(), &metrics, shutdown.clone()).await?;
    tasks.extend(encrypted.tasks);

    let admin_addr = match config.admin_listen {
        Some(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding admin listener {addr}"))?;
            let bound = listener.local_addr()?;
            let state = admin::AdminState {
                metrics: metrics.clone(),
                serving: serving.clone(),
                feeds: feeds.clone(),
                policy: policy.clone(),
                token: config.admin_token.clone(),
            };
            let token = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = admin::serve(listener, state, token).await {
                    warn!(error = %e, "admin endpoint stopped");
                }
            }));
            Some(bound)
        }
        None => None,
    };

    let pages = blockpage::start(&config, policy.clone(), &metrics, shutdown.clone()).await?;
    tasks.extend(pages.tasks);

    let grace = config.shutdown_grace;
    {
        let (token, handler) = (shutdown.clone(), handler.clone());
        let idle = config.tcp_idle_timeout;
        tasks.push(tokio::spawn(async move {
            // Stop accepting on shutdown; queries in flight get the grace period to finish.
            let serving = tcp::serve(tcp_listeners, handler, idle, token.clone());
            tokio::pin!(serving);
            tokio::select! {
                () = &mut serving => {}
                () = token.cancelled() => {
                    let _ = tokio::time::timeout(grace, serving).await;
                }
            }
        }));
    }
    if hickory_listeners > 0 {
        let token = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {
                    // Stop accepting and give in-flight queries the grace period to finish.
                    let _ = tokio::time::timeout(grace, server.shutdown_gracefully()).await;
                }
                result = server.block_until_done() => {
                    if let Err(e) = result {
                        warn!(error = %e, "DNS server stopped");
                    }
                }
            }
        }));
    }
    {
        let (token, cache, m, policy) = (shutdown.clone(), cache, metrics.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(handler::CACHE_SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        cache.sweep();
                        m.cache_entries.set(cache.len() as i64);
                        let current = policy.load().generation;
                        let p = packets.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            p.sweep(current);
                        })
                        .await;
                        m.packet_cache_entries.set(packets.len() as i64);
                        let l = limits.clone();
                        if let Ok(n) = tokio::task::spawn_blocking(move || l.rate.sweep()).await {
                            m.rate_limit_buckets.set(n as i64);
                        }
                    }
                }
            }
        }));
    }

    tasks.extend(feeds.spawn(shutdown.clone()));
    serving.store(true, Ordering::Release);
    let snapshot = policy.load();
    let (block_names, allow_names) = snapshot.sizes();
    info!(
        dns = ?dns_addrs,
        admin = ?admin_addr,
        mode = config.resolver.mode.label(),
        lists = %lists_summary(&snapshot),
        block_names,
        allow_names,
        policy_mib = format_args!("{:.1}", snapshot.heap_bytes() as f64 / (1024.0 * 1024.0)),
        "rampart serving on UDP and TCP"
    );
    drop(snapshot);

    Ok(Running {
        dns_addrs,
        admin_addr,
        dot_addrs: encrypted.dot_addrs,
        doh_addrs: encrypted.doh_addrs,
        block_page_addrs: pages.addrs,
        certs: encrypted.certs,
        metrics,
        policy,
        feeds,
        shutdown,
        serving,
        tasks,
        workers: Some(workers),
        limits: handler.limits.clone(),
        grace,
        query_log,
    })
}

impl Running {
    /// Put the `[access]`, `[rate_limit]` and `[tcp]` settings of `config` in force (SIGHUP);
    /// rate-limit buckets and open connections are kept.
    pub fn reload_limits(&self, config: &Config) {
        self.limits.reload(config);
        info!("access control and rate limits reloaded");
    }

    /// Apply a reloaded configuration (SIGHUP): access control, rate limits and TCP limits
    /// change at once and every list's source is checked now. Settings that need new sockets
    /// (listen addresses, workers) take effect at the next restart.
    pub fn reload(&self, config: &Config) {
        self.reload_limits(config);
        self.feeds.trigger_all();
    }

    /// Re-read the TLS certificate and key (SIGHUP). New connections get the new certificate,
    /// open ones keep theirs; on error the old one stays in service. Without encrypted
    /// listeners there is nothing to do.
    pub fn reload_tls(&self) -> anyhow::Result<()> {
        match &self.certs {
            Some(certs) => certs.reload(),
            None => Ok(()),
        }
    }

    /// Stop serving, draining: health turns red, the listeners stop accepting new queries,
    /// and queries already in flight get up to `server.shutdown_grace` to be answered.
    pub async fn shutdown(self) {
        self.serving.store(false, Ordering::Release);
        let deadline = tokio::time::Instant::now() + self.grace;
        self.shutdown.cancel();
        if let Some(w) = self.workers
            && let Ok(in_flight) = tokio::task::spawn_blocking(move || w.stop()).await
        {
            // The general path's tasks hold the socket and reply on it; wait for them.
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while in_flight.count() > 0 && tokio::time::Instant::now() < deadline {
                tick.tick().await;
            }
            if in_flight.count() > 0 {
                warn!(
                    queries = in_flight.count(),
                    "shutdown grace period over; unanswered UDP queries dropped"
                );
            }
        }
        for t in self.tasks {
            let _ = t.await;
        }
        // Last: every query answered above is in the log's queue; write it out.
        if let Some(log) = self.query_log {
            let _ = tokio::task::spawn_blocking(move || log.shutdown(Duration::from_secs(2))).await;
        }
    }
}

/// Bind a UDP socket and a TCP listener on the same address. With port 0 the OS picks the UDP
/// port and TCP must get the same one; if it is taken for TCP, try again with a new port.
async fn bind_pair(
    addr: SocketAddr,
    workers: usize,
    buffer: usize,
) -> anyhow::Result<(Vec<std::net::UdpSocket>, TcpListener)> {
    let attempts = if addr.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = udp::bind(addr, workers, buffer).context("UDP")?;
        let bound = udp[0].local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last_error = Some(e),
        }
    }
    match last_error {
        Some(e) => Err(e).context("TCP"),
        None => bail!("no attempt made"),
    }
}

/// One line per list, plus every skipped line that was kept (with file and line number), so
/// an operator can fix the list.
fn log_lists(snapshot: &Snapshot) {
    for l in snapshot.lists.iter().map(|l| &l.info) {
        let kind = match l.kind {
            ListKind::Block => "block",
            ListKind::Allow => "allow",
        };
        if let Some(error) = &l.error {
            warn!(list = %l.name, %error, "list not loaded; serving without it");
            continue;
        }
        debug!(
            list = %l.name,
            kind,
            path = %l.path.display(),
            entries = l.entries,
            rejected = l.rejected,
            unsupported = l.unsupported,
            load_ms = format_args!("{:.1}", l.load_time.as_secs_f64() * 1000.0),
            "list loaded"
        );
        // Mistakes in a list are warnings; deliberately unsupported lines and hosts-file
        // boilerplate are expected, so they only show at debug level.
        for (skipped, line) in l.skipped_sample.iter().zip(l.skipped_lines()) {
            if matches!(
                skipped.reason,
                SkipReason::Malformed(_) | SkipReason::InvalidName(_)
            ) {
                warn!("rejected {line}");
            } else {
                debug!("skipped {line}");
            }
        }
        if l.skipped_not_shown() > 0 {
            warn!(
                list = %l.name,
                "{} more skipped lines not shown; run `rampart lists check` for details",
                l.skipped_not_shown()
            );
        }
    }
}

/// "name: N entries, R rejected, T ms; …" for the start-up line.
fn lists_summary(snapshot: &Snapshot) -> String {
    let parts: Vec<String> = snapshot
        .lists
        .iter()
        .map(|l| &l.info)
        .map(|l| match &l.error {
            Some(_) => format!("{}: NOT LOADED", l.name),
            None => format!(
                "{}: {} entries, {} rejected, {:.1} ms",
                l.name,
                l.entries,
                l.rejected,
                l.load_time.as_secs_f64() * 1000.0
            ),
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join("; ")
    }
}
