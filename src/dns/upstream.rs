//! Upstream resolution for names the policy lets through: full recursion from the root hints
//! ([`super::iterate`]) or forwarding to configured resolvers (hickory's `NameServerPool`,
//! which also coalesces identical in-flight questions).
//!
//! Both modes return the same [`Answer`] (rcode + answer + authority records), so the cache and
//! the answer builder never care which mode produced it. The configured deadline wraps the
//! whole resolution: past it the caller gets [`UpstreamError::Timeout`] and answers SERVFAIL.
//!
//! Resolutions in flight are bounded ([`Upstream::admit`]): `resolver.max_outstanding` in all
//! and `resolver.max_outstanding_per_client` per client address. A cache miss over a bound is
//! not queued; the caller answers it at once (stale, or SERVFAIL). Nothing here spawns a task
//! per query, so a resolution that is dropped at its deadline leaves nothing behind.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use prometheus::IntGauge;

use hickory_resolver::{
    NameServerPool, PoolContext, TlsConfig,
    config::{ConnectionConfig, NameServerConfig, ProtocolConfig, ResolverOpts},
    net::{
        DnsError, NetError,
        runtime::TokioRuntimeProvider,
        xfer::{DnsHandle, FirstAnswer},
    },
    proto::op::{DnsRequestOptions, Query, ResponseCode},
    recursor::RecursorOptions,
};

use super::{
    cache::Answer,
    iterate::{IterConfig, IterError, Iterative},
};
use crate::config::{ResolverConfig, ResolverMode};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream failure: {0}")]
    Failed(String),
    /// Not sent: too many resolutions in flight.
    #[error("too many upstream queries in flight ({})", .0.label())]
    Limited(Limited),
}

impl UpstreamError {
    /// Low-cardinality reason for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Failed(_) => "error",
            Self::Limited(_) => "limited",
        }
    }
}

/// Which bound refused a resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// `resolver.max_outstanding`.
    Global,
    /// `resolver.max_outstanding_per_client`.
    Client,
}

impl Limited {
    pub fn label(self) -> &'static str {
        match self {
            Self::Global => "global",
            Self::Client => "client",
        }
    }
}

/// Counts of resolutions in flight, in all and per client address. The per-client map holds
/// only clients with something in flight, so it never has more than `max` entries.
struct Outstanding {
    max: usize,
    per_client: usize,
    total: AtomicUsize,
    clients: DashMap<IpAddr, usize, foldhash::fast::RandomState>,
}

/// One admitted resolution; dropping it (when the resolution ends or is abandoned) frees its
/// slots.
pub struct Permit {
    owner: Arc<Outstanding>,
    client: IpAddr,
    gauge: IntGauge,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let dashmap::Entry::Occupied(mut e) = self.owner.clients.entry(self.client) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
        self.owner.total.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

impl Outstanding {
    fn new(max: usize, per_client: usize) -> Self {
        Self {
            max,
            per_client,
            total: AtomicUsize::new(0),
            clients: DashMap::with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The client's own bound is checked first, so a client over it is told so even when
    /// the global bound is reached too.
    fn admit(self: &Arc<Self>, client: IpAddr, gauge: &IntGauge) -> Result<Permit, Limited> {
        let global = || {
            if self.total.fetch_add(1, Ordering::AcqRel) >= self.max {
                self.total.fetch_sub(1, Ordering::AcqRel);
                return Err(Limited::Global);
            }
            Ok(())
        };
        // The entry stays locked until the count is settled.
        match self.clients.entry(client) {
            dashmap::Entry::Occupied(mut e) => {
                if *e.get() >= self.per_client {
                    return Err(Limited::Client);
                }
                global()?;
                *e.get_mut() += 1;
            }
            dashmap::Entry::Vacant(v) => {
                global()?;
                v.insert(1);
            }
        }
        gauge.inc();
        Ok(Permit {
            owner: self.clone(),
            client,
            gauge: gauge.clone(),
        })
    }
}

/// Errors building the upstream from config (bad root hints and the like).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("root hints {path}: {message}")]
    RootHints { path: String, message: String },
    #[error("cannot set up the recursor: {0}")]
    Recursor(String),
}

/// The IANA root servers (named.root, as published by IANA), used when no root hints file is
/// configured.
const IANA_ROOTS: &[IpAddr] = &[
    IpAddr::V4(Ipv4Addr::new(198, 41, 0, 4)),
    IpAddr::V4(Ipv4Addr::new(170, 247, 170, 2)),
    IpAddr::V4(Ipv4Addr::new(192, 33, 4, 12)),
    IpAddr::V4(Ipv4Addr::new(199, 7, 91, 13)),
    IpAddr::V4(Ipv4Addr::new(192, 203, 230, 10)),
    IpAddr::V4(Ipv4Addr::new(192, 5, 5, 241)),
    IpAddr::V4(Ipv4Addr::new(192, 112, 36, 4)),
    IpAddr::V4(Ipv4Addr::new(198, 97, 190, 53)),
    IpAddr::V4(Ipv4Addr::new(192, 36, 148, 17)),
    IpAddr::V4(Ipv4Addr::new(192, 58, 128, 30)),
    IpAddr::V4(Ipv4Addr::new(193, 0, 14, 129)),
    IpAddr::V4(Ipv4Addr::new(199, 7, 83, 42)),
    IpAddr::V4(Ipv4Addr::new(202, 12, 27, 33)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xba3e, 0, 0, 0, 2, 0x30)),
    IpAddr::V6(Ipv6Addr::new(0x2801, 0x1b8, 0x10, 0, 0, 0, 0, 0xb)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2, 0, 0, 0, 0, 0xc)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2d, 0, 0, 0, 0, 0xd)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0xa8, 0, 0, 0, 0, 0xe)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x2f, 0, 0, 0, 0, 0xf)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x12, 0, 0, 0, 0, 0xd0d)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x1, 0, 0, 0, 0, 0x53)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fe, 0, 0, 0, 0, 0, 0x53)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x503, 0xc27, 0, 0, 0, 2, 0x30)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x7fd, 0, 0, 0, 0, 0, 1)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0x500, 0x9f, 0, 0, 0, 0, 0x42)),
    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdc3, 0, 0, 0, 0, 0, 0x35)),
];

/// Read the addresses out of a root hints file (named.root format): every A and AAAA record.
pub fn parse_root_hints(text: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(pos) = tokens
            .iter()
            .position(|t| t.eq_ignore_ascii_case("A") || t.eq_ignore_ascii_case("AAAA"))
        else {
            continue;
        };
        let Some(addr) = tokens.get(pos + 1) else {
            return Err(format!("line {}: record without an address", n + 1));
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("line {}: `{addr}` is not an IP address", n + 1))?;
        out.push(ip);
    }
    if out.is_empty() {
        return Err("no A or AAAA records found".into());
    }
    Ok(out)
}

enum Mode {
    Recursive(Box<Iterative>),
    Forward(NameServerPool<TokioRuntimeProvider>),
}

/// Resolves cache misses. Cheap to clone (shared inside), so a refresh can outlive the query
/// that started it.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    mode: Mode,
    deadline: Duration,
    outstanding: Arc<Outstanding>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("deadline", &self.inner.deadline)
            .finish()
    }
}

impl Upstream {
    pub fn new(config: &ResolverConfig) -> Result<Self, SetupError> {
        let mode = match &config.mode {
            ResolverMode::Recursive {
                root_hints,
                authority_port,
                deny_servers,
            } => {
                let roots = match root_hints {
                    None => IANA_ROOTS.to_vec(),
                    Some(path) => read_root_hints(path)?,
                };
                // Without the key: hickory's recommended filter list, as before.
                let deny = match deny_servers {
                    Some(deny) => deny.clone(),
                    None => RecursorOptions::default().deny_server,
                };
                Mode::Recursive(Box::new(Iterative::new(IterConfig {
                    roots,
                    port: *authority_port,
                    deny,
                    deadline: config.timeout,
                })))
            }
            ResolverMode::Forward {
                upstreams,
                tcp_only,
                server_timeout,
            } => {
                let servers = upstreams
                    .iter()
                    .map(|addr| forward_server(*addr, *tcp_only));
                let mut options = ResolverOpts::default();
                options.timeout = *server_timeout;
                options.attempts = 2;
                options.cache_size = 0;
                options.preserve_intermediates = true;
                options.recursion_desired = true;
                let tls = TlsConfig::new().map_err(|e| SetupError::Recursor(e.to_string()))?;
                let cx = Arc::new(PoolContext::new(options, tls));
                Mode::Forward(NameServerPool::from_config(
                    servers,
                    cx,
                    TokioRuntimeProvider::default(),
                ))
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                mode,
                deadline: config.timeout,
                outstanding: Arc::new(Outstanding::new(
                    config.max_outstanding,
                    config.max_outstanding_per_client,
                )),
            }),
        })
    }

    /// A slot for one resolution for `client`, or the bound that refuses it. `gauge` follows
    /// the number in flight.
    pub fn admit(&self, client: IpAddr, gauge: &IntGauge) -> Result<Permit, Limited> {
        self.inner.outstanding.admit(client, gauge)
    }

    /// Resolutions in flight.
    pub fn outstanding(&self) -> usize {
        self.inner.outstanding.total.load(Ordering::Acquire)
    }

    /// The deadline of one resolution (`resolver.timeout`).
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }

    /// Resolve one question within the deadline.
    pub async fn resolve(&self, query: Query) -> Result<Answer, UpstreamError> {
        let deadline = self.inner.deadline;
        match tokio::time::timeout(deadline, self.resolve_inner(query)).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout(deadline)),
        }
    }

    async fn resolve_inner(&self, query: Query) -> Result<Answer, UpstreamError> {
        match &self.inner.mode {
            Mode::Recursive(iterative) => iterative.resolve(&query).await.map_err(|e| match e {
                IterError::Timeout => UpstreamError::Timeout(self.inner.deadline),
                IterError::Failed(s) => UpstreamError::Failed(s),
            }),
            Mode::Forward(pool) => {
                let mut options = DnsRequestOptions::default();
                options.recursion_desired = true;
                options.use_edns = true;
                match pool.lookup(query, options).first_answer().await {
                    Ok(response) => {
                        let message = response.into_message();
                        match message.metadata.response_code {
                            ResponseCode::NoError | ResponseCode::NXDomain => Ok(Answer {
                                rcode: message.metadata.response_code,
                                answers: message.answers,
                                authorities: message.authorities,
                            }),
                            other => {
                                Err(UpstreamError::Failed(format!("upstream answered {other}")))
                            }
                        }
                    }
                    Err(NetError::Dns(DnsError::NoRecordsFound(no_records))) => {
                        let rcode = no_records.response_code;
                        match rcode {
                            ResponseCode::NoError | ResponseCode::NXDomain => Ok(Answer {
                                rcode,
                                answers: Vec::new(),
                                authorities: no_records
                                    .soa
                                    .map(|soa| vec![soa.into_record_of_rdata()])
                                    .unwrap_or_default(),
                            }),
                            other => {
                                Err(UpstreamError::Failed(format!("upstream answered {other}")))
                            }
                        }
                    }
                    Err(e) => Err(UpstreamError::Failed(e.to_string())),
                }
            }
        }
    }
}

fn forward_server(addr: SocketAddr, tcp_only: bool) -> NameServerConfig {
    let mut udp = ConnectionConfig::new(ProtocolConfig::Udp);
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::new(ProtocolConfig::Tcp);
    tcp.port = addr.port();
    let connections = if tcp_only { vec![tcp] } else { vec![udp, tcp] };
    let mut config = NameServerConfig::udp_and_tcp(addr.ip());
    config.connections = connections;
    config.trust_negative_responses = true;
    config
}

fn read_root_hints(path: &Path) -> Result<Vec<IpAddr>, SetupError> {
    let err = |message: String| SetupError::RootHints {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    parse_root_hints(&text).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_hints_file() {
        let text = "; comment\n.  3600000  NS  A.ROOT-SERVERS.NET.\nA.ROOT-SERVERS.NET. 3600000 A 198.41.0.4\nA.ROOT-SERVERS.NET. 3600000 AAAA 2001:503:ba3e::2:30\n";
        let ips = parse_root_hints(text).unwrap();
        assert_eq!(ips.len(), 2);
        assert!(parse_root_hints("; nothing\n").is_err());
        assert!(parse_root_hints("x. 1 A nonsense\n").is_err());
    }

    #[test]
    fn outstanding_is_bounded_globally_and_per_client() {
        let o = Arc::new(Outstanding::new(3, 2));
        let gauge = IntGauge::new("g", "g").unwrap();
        let (a, b, c) = (
            IpAddr::from([192, 0, 2, 1]),
            IpAddr::from([192, 0, 2, 2]),
            IpAddr::from([192, 0, 2, 3]),
        );
        let a1 = o.admit(a, &gauge).unwrap();
        let a2 = o.admit(a, &gauge).unwrap();
        assert_eq!(o.admit(a, &gauge).err(), Some(Limited::Client));
        let b1 = o.admit(b, &gauge).unwrap();
        assert_eq!(o.admit(c, &gauge).err(), Some(Limited::Global));
        assert_eq!(gauge.get(), 3);
        drop(a1);
        let c1 = o.admit(c, &gauge).unwrap();
        assert_eq!(o.clients.len(), 3);
        drop((a2, b1, c1));
        assert_eq!(gauge.get(), 0);
        assert_eq!(o.total.load(Ordering::Acquire), 0);
        assert!(o.clients.is_empty(), "no entries left behind");
    }
}
