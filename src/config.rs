//! Configuration: the TOML file an operator writes (`RawConfig`, read with serde and
//! `deny_unknown_fields`) and the validated `Config` the rest of the server uses.
//!
//! Every mistake is reported with the key that holds it (`resolver.mode`, `lists[2].path`), never
//! turned into a silent default. Relative paths in the file are resolved against the directory
//! the config file sits in, so `rampart run` behaves the same from any working directory.
//! `config/default.toml` documents every key and is loaded by a test so it cannot rot.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::policy::formats::Format;

/// A configuration error, always naming the key (or the file) it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Raw form: exactly what the file says. Defaults live here so `config/default.toml` and the
// built-in defaults cannot disagree silently (a test compares them).
// ---------------------------------------------------------------------------------------------

/// The file as written. Field docs are the reference; `config/default.toml` repeats them.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    /// Where Rampart answers DNS clients.
    pub server: RawServer,
    /// How names that are not blocked get resolved.
    pub resolver: RawResolver,
    /// The answer cache in front of the resolver.
    pub cache: RawCache,
    /// What a blocked name is answered with.
    pub block: RawBlock,
    /// The metrics / admin HTTP endpoint.
    pub admin: RawAdmin,
    /// Block lists and allow lists, in the order they are consulted.
    pub lists: Vec<RawList>,
    /// Client groups: which lists apply to which client networks.
    pub groups: Vec<RawGroup>,
    /// Where the last good copy of every list is kept.
    pub state: RawState,
    /// Which client networks may query.
    pub access: RawAccess,
    /// Per-client and per-prefix query rate limits (UDP).
    pub rate_limit: RateLimitConfig,
    /// Limits of the DNS-over-TCP listener.
    pub tcp: TcpConfig,
    /// Encrypted listeners: DNS over TLS and DNS over HTTPS.
    pub tls: RawTls,
    /// The block page server (HTTP) and per-category block addresses.
    pub block_page: RawBlockPage,
    /// The query log (JSON lines) and dnstap.
    pub query_log: RawQueryLog,
}

/// `[query_log]`, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueryLog {
    /// "blocked" (every blocked or rewritten query), "all" or "off".
    pub mode: String,
    /// JSON-lines file (relative to the config file's folder). Empty: no file.
    pub path: String,
    /// Rotate the file when it reaches this size: bytes, or a string like "100MiB" (0: never).
    pub rotate_size: ByteSize,
    /// Rotate the file when it is this old ("0s": never).
    #[serde(with = "humantime_serde")]
    pub rotate_every: Duration,
    /// Rotated files kept (0: no limit by count).
    pub keep: usize,
    /// Rotated files older than this are deleted ("0s": no limit by age).
    #[serde(with = "humantime_serde")]
    pub keep_for: Duration,
    /// Entries waiting for the writer; past it entries are dropped and counted.
    pub queue: usize,
    /// How the client address is written: "full", "truncated" (/24, /48) or "hashed".
    pub client: String,
    /// Key of the hashed client addresses (HMAC-SHA256); required with client = "hashed".
    pub hash_secret: String,
    /// dnstap collector: "unix:/path" or "tcp:IP:port". Empty: off.
    pub dnstap: String,
}

impl Default for RawQueryLog {
    fn default() -> Self {
        Self {
            mode: "blocked".into(),
            path: "log/queries.log".into(),
            rotate_size: ByteSize::Bytes(100 << 20),
            rotate_every: Duration::from_secs(86_400),
            keep: 30,
            keep_for: Duration::ZERO,
            queue: 16_384,
            client: "full".into(),
            hash_secret: String::new(),
            dnstap: String::new(),
        }
    }
}

/// A size in bytes: a number, or a string with a unit ("100MiB", "1GB", "512KiB").
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    /// The size in bytes, or a message saying what is wrong.
    pub fn bytes(&self) -> Result<u64, String> {
        let text = match self {
            Self::Bytes(n) => return Ok(*n),
            Self::Text(t) => t.trim(),
        };
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1000 * 1000,
            "mib" => 1 << 20,
            "g" | "gb" => 1000 * 1000 * 1000,
            "gib" => 1 << 30,
            _ => {
                return Err(format!(
                    "`{text}` is not a size like 104857600, \"100MiB\" or \"1GB\""
                ));
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(|| format!("`{text}` is not a size like 104857600, \"100MiB\" or \"1GB\""))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccess {
    /// Client networks (CIDR or bare address) that may query. The longest matching prefix of
    /// `allow` and `deny` decides (deny wins a tie); an address matching nothing is denied.
    pub allow: Vec<String>,
    /// Client networks that may not query.
    pub deny: Vec<String>,
    /// "refuse" (answer REFUSED) or "drop" (answer nothing).
    pub action: String,
}

impl Default for RawAccess {
    fn default() -> Self {
        Self {
            allow: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "100.64.0.0/10",
                "169.254.0.0/16",
                "fc00::/7",
                "fe80::/10",
            ]
            .map(String::from)
            .to_vec(),
            deny: Vec::new(),
            action: "refuse".into(),
        }
    }
}

/// `[rate_limit]`, as written and as validated (a qps of 0 turns that bucket off).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Queries per second one client address may send over UDP (0: no per-client limit).
    pub client_qps: u32,
    /// Queries a client may send at once before `client_qps` applies.
    pub client_burst: u32,
    /// Queries per second all clients of one prefix may send together (0: no limit).
    pub prefix_qps: u32,
    /// Burst of a prefix.
    pub prefix_burst: u32,
    /// Prefix length grouping IPv4 clients.
    pub ipv4_prefix: u8,
    /// Prefix length grouping IPv6 clients.
    pub ipv6_prefix: u8,
    /// Every `slip`-th limited query gets an empty truncated answer (TC=1), the others none
    /// (0: never, 1: always).
    pub slip: u32,
    /// Most client and prefix buckets tracked; idle ones are evicted first.
    pub max_tracked: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            client_qps: 200,
            client_burst: 400,
            prefix_qps: 2000,
            prefix_burst: 4000,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            slip: 2,
            max_tracked: 1_000_000,
        }
    }
}

/// `[tcp]`, as written and as validated.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Most open DNS-over-TCP connections in all.
    pub max_connections: usize,
    /// Most open connections from one client address.
    pub max_connections_per_client: usize,
    /// Queries answered on one connection before it is closed (0: no limit).
    pub max_queries_per_connection: usize,
    /// Pipelined queries of one connection answered at once.
    pub max_in_flight_per_connection: usize,
    /// A message whose first byte has arrived must be complete within this time.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_connections_per_client: 32,
            max_queries_per_connection: 1000,
            max_in_flight_per_connection: 16,
            message_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// PEM certificate chain, leaf first (relative to the config file's folder).
    pub certificate: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key: String,
    /// DNS-over-TLS (RFC 7858) addresses, typically `"[::]:853"`. Empty: off.
    pub dot_listen: Vec<String>,
    /// DNS-over-HTTPS (RFC 8484) addresses, typically `"[::]:443"`. Empty: off.
    pub doh_listen: Vec<String>,
    /// The DoH URL path.
    pub doh_path: String,
    /// A client that has not finished the TLS handshake by then is disconnected.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// An encrypted connection with no query for this long (and none in progress) is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most encrypted connections open at once (DoT and DoH together); more are closed at once.
    pub max_connections: usize,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            certificate: String::new(),
            key: String::new(),
            dot_listen: Vec::new(),
            doh_listen: Vec::new(),
            doh_path: "/dns-query".into(),
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    /// Folder for the last good copy of every list (relative to the config file's folder), so a
    /// restart without network still filters.
    pub dir: String,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            dir: "state".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    /// Unique name; "default" names the group of clients outside every network.
    pub name: String,
    /// Client networks (CIDR) in this group; the longest matching prefix wins.
    #[serde(default)]
    pub networks: Vec<String>,
    /// Names of the lists applied to this group, in the order they are consulted.
    pub lists: Vec<String>,
    /// Optional answer for every block in this group, overriding each list's `action`.
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// Addresses to listen on; each gets a UDP socket and a TCP listener.
    pub listen: Vec<String>,
    /// Largest UDP response we send to EDNS clients (bytes, 512..=4096). 1232 avoids IP
    /// fragmentation on every common path (DNS flag day 2020).
    pub max_udp_payload: u16,
    /// A TCP connection that sends nothing for this long is closed.
    #[serde(with = "humantime_serde")]
    pub tcp_idle_timeout: Duration,
    /// UDP worker threads, each with its own SO_REUSEPORT socket per address; 0 means one per
    /// CPU core.
    pub workers: usize,
    /// Answer plain queries from the packet cache and blocked names in wire form, before the
    /// general path. Off only to compare the two.
    pub fast_path: bool,
    /// Receive and send buffer of each UDP socket, in bytes (the kernel may cap it at
    /// net.core.rmem_max / wmem_max).
    pub udp_buffer: usize,
    /// After binding its sockets as root, switch to this user (empty: stay as started). The
    /// state folder is handed to that user first.
    pub user: String,
    /// Group to switch to with `user` (empty: the user's primary group).
    pub group: String,
    /// On SIGTERM, stop accepting and give queries in flight this long to finish.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: vec!["127.0.0.1:5353".into()],
            max_udp_payload: 1232,
            tcp_idle_timeout: Duration::from_secs(10),
            workers: 0,
            fast_path: true,
            udp_buffer: 4 << 20,
            user: String::new(),
            group: String::new(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawResolver {
    /// "recursive" (iterate from the root) or "forward" (send to `forward.upstreams`).
    pub mode: String,
    /// Deadline for resolving one query upstream; past it the client gets SERVFAIL.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Upstream resolutions in flight at once; more are answered at once (stale or SERVFAIL).
    pub max_outstanding: usize,
    /// Upstream resolutions in flight at once for one client address.
    pub max_outstanding_per_client: usize,
    pub recursive: RawRecursive,
    pub forward: RawForward,
}

impl Default for RawResolver {
    fn default() -> Self {
        Self {
            mode: "recursive".into(),
            timeout: Duration::from_secs(5),
            max_outstanding: 10_000,
            max_outstanding_per_client: 100,
            recursive: RawRecursive::default(),
            forward: RawForward::default(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRecursive {
    /// Root hints file (named.root format). Empty: the built-in IANA root servers.
    pub root_hints: String,
    /// Port of root and authoritative servers. 53 on the Internet; other values are for lab
    /// and test hierarchies only.
    pub authority_port: u16,
    /// Networks the recursor may never send queries to. Default: loopback, private,
    /// link-local and reserved ranges, so a hostile delegation cannot aim Rampart at the
    /// operator's own network.
    pub deny_servers: Option<Vec<String>>,
}

impl Default for RawRecursive {
    fn default() -> Self {
        Self {
            root_hints: String::new(),
            authority_port: 53,
            deny_servers: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawForward {
    /// Upstream resolvers, "IP" or "IP:port".
    pub upstreams: Vec<String>,
    /// "udp" (falls back to TCP for truncated answers) or "tcp" (TCP only).
    pub protocol: String,
    /// Per-upstream query timeout.
    #[serde(with = "humantime_serde")]
    pub server_timeout: Duration,
}

impl Default for RawForward {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            protocol: "udp".into(),
            server_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCache {
    /// Most answers kept (0 disables the cache).
    pub size: usize,
    /// Positive answers are kept at least this long (raises tiny upstream TTLs).
    #[serde(with = "humantime_serde")]
    pub min_ttl: Duration,
    /// Positive answers are kept at most this long.
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
    /// NXDOMAIN / NODATA answers are kept at most this long (RFC 2308).
    #[serde(with = "humantime_serde")]
    pub negative_ttl: Duration,
    /// Most ready UDP responses kept by the fast path (0 disables it).
    pub packet_size: usize,
    /// How long expired answers are kept to be served when upstreams fail (RFC 8767; 0s: off).
    #[serde(with = "humantime_serde")]
    pub serve_stale: Duration,
    /// TTL of stale answers, and how long after a failed refresh a stale answer is served
    /// without asking upstream again.
    #[serde(with = "humantime_serde")]
    pub stale_ttl: Duration,
    /// Serve the stale answer if a refresh takes longer than this, and let the refresh finish
    /// in the background (RFC 8767 client response timer; 0s: wait for the resolver deadline).
    #[serde(with = "humantime_serde")]
    pub stale_answer_after: Duration,
    /// Up to this fraction is taken off each cached TTL of 10 s or more, at random, so names
    /// fetched together do not all expire (and get refetched) in the same second.
    pub ttl_jitter: f64,
    /// Refresh a popular answer in the background when it is asked for in the last tenth of
    /// its TTL, so it never expires under load.
    pub prefetch: bool,
}

impl Default for RawCache {
    fn default() -> Self {
        Self {
            size: 100_000,
            min_ttl: Duration::ZERO,
            max_ttl: Duration::from_secs(86_400),
            negative_ttl: Duration::from_secs(3_600),
            packet_size: 100_000,
            serve_stale: Duration::from_secs(86_400),
            stale_ttl: Duration::from_secs(30),
            stale_answer_after: Duration::ZERO,
            ttl_jitter: 0.1,
            prefetch: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawBlock {
    /// Answer to A queries for a blocked name (the block page address). Empty: NODATA.
    pub ipv4: String,
    /// Answer to AAAA queries for a blocked name. Empty: NODATA.
    pub ipv6: String,
    /// TTL of synthesized block answers.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for RawBlock {
    fn default() -> Self {
        Self {
            ipv4: "127.0.0.1".into(),
            ipv6: "::1".into(),
            ttl: Duration::from_secs(60),
        }
    }
}

/// `[block_page]`, as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RawBlockPage {
    /// HTTP addresses of the block page server. Empty: off.
    pub listen: Vec<String>,
    /// Operator name shown on the pages.
    pub operator: String,
    /// Contact shown on the block page (email, phone).
    pub contact: String,
    /// Where a subscriber can appeal a block (http(s):// or mailto:).
    pub appeal_url: String,
    /// Folder with operator templates overriding the built-in ones. Empty: built-in only.
    pub templates: String,
    /// URL in the `Link: <URL>; rel="blocked-by"` header of 451 answers. Empty: `appeal_url`.
    pub legal_link: String,
    /// Categories answered with their own block addresses.
    pub categories: Vec<RawCategoryAddress>,
}

/// One `[[block_page.categories]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCategoryAddress {
    /// The category, as lists and CSV feeds name it (compared without regard to case).
    pub name: String,
    /// A answer for blocked names of this category. Empty: `[block] ipv4`.
    #[serde(default)]
    pub ipv4: String,
    /// AAAA answer for blocked names of this category. Empty: `[block] ipv6`.
    #[serde(default)]
    pub ipv6: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    /// Address of the HTTP endpoint for /metrics, /health and the /v1 API. Empty disables it.
    pub listen: String,
    /// Bearer token required by the mutating API calls (refresh, accept). Empty: they are
    /// refused.
    pub token: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9153".into(),
            token: String::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawList {
    /// Short unique name, used in logs, metrics and `lists check`.
    pub name: String,
    /// File to load (reloaded when it changes); relative paths are relative to the config
    /// file's directory. Exactly one of `path` and `url` is set.
    #[serde(default)]
    pub path: Option<String>,
    /// HTTP(S) URL polled every `refresh` (ETag / If-Modified-Since, gzip).
    #[serde(default)]
    pub url: Option<String>,
    /// An RPZ zone kept current by zone transfer (AXFR, then IXFR on NOTIFY and on `refresh`).
    #[serde(default)]
    pub xfr: Option<RawXfr>,
    /// How often the source is checked for a new version.
    #[serde(default, with = "humantime_serde")]
    pub refresh: Option<Duration>,
    /// Give up on a download after this long.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest download accepted, in bytes (after decompression).
    #[serde(default = "default_max_size")]
    pub max_size: u64,
    /// A new version with fewer entries than (1 - max_shrink) × the current one is held back
    /// until an operator accepts it (POST /v1/lists/NAME/accept). 1.0 disables the check.
    #[serde(default = "default_max_shrink")]
    pub max_shrink: f64,
    /// At start-up with neither a saved copy nor a reachable source: "serve_without" (serve,
    /// and report the list as missing in metrics) or "refuse_start".
    #[serde(default = "default_on_missing")]
    pub on_missing: String,
    /// "plain", "hosts", "adblock", "wildcard", "dnsmasq", "rpz" or "csv"; absent: detected
    /// from the file's first lines.
    #[serde(default)]
    pub format: Option<Format>,
    /// "block" (default) or "allow": an allow list exempts names from every block list.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// "subtree" (default: the name and all its subdomains) or "exact" (the name only).
    #[serde(default = "default_match", rename = "match")]
    pub match_: String,
    /// "block_address" (default), "nxdomain", "nodata", "refused", "drop" or "tcp_only": the
    /// answer for rules that do not carry their own (RPZ and dnsmasq rules do).
    #[serde(default = "default_action")]
    pub action: String,
    /// "given" (default: each rule's own action, else `action`), or an action that replaces
    /// every rule's (like BIND's `policy` per response-policy zone), including "passthru".
    #[serde(default = "default_policy")]
    pub policy: String,
    /// "enforce" (default) or "log_only": matches are counted and logged but not applied, to
    /// try a new feed safely.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Category of the list's entries (`malware`, `gambling`, …), shown by `lists check`;
    /// entries of CSV feeds may carry their own.
    #[serde(default)]
    pub category: Option<String>,
    /// Why this list blocks: "policy" (default: the operator's own policy), "legal" (an order
    /// of an authority; block page status 451, EDE 16 Censored) or "security" (malware,
    /// phishing; block page status 403, EDE 15 Blocked).
    #[serde(default = "default_basis")]
    pub basis: String,
    /// The legal reference or reason shown for this list's entries (the number of the
    /// decision ordering the block, a URL); entries of CSV feeds may carry their own.
    #[serde(default)]
    pub reference: Option<String>,
}

fn default_basis() -> String {
    "policy".into()
}

/// Zone-transfer source of a list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawXfr {
    /// The primary server, "IP" (port 53) or "IP:port".
    pub primary: String,
    /// The zone to transfer, e.g. "rpz.example.".
    pub zone: String,
    /// TSIG key name (HMAC-SHA256); set with `tsig_secret`.
    #[serde(default)]
    pub tsig_key: Option<String>,
    /// TSIG secret, base64 as in BIND's `secret "…";`.
    #[serde(default)]
    pub tsig_secret: Option<String>,
    /// Addresses allowed to send NOTIFY for this zone; default: the primary's address.
    #[serde(default)]
    pub notify_from: Option<Vec<String>>,
}

fn default_fetch_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_size() -> u64 {
    256 * 1024 * 1024
}
fn default_max_shrink() -> f64 {
    0.5
}
fn default_on_missing() -> String {
    "serve_without".into()
}
fn default_policy() -> String {
    "given".into()
}
fn default_mode() -> String {
    "enforce".into()
}

fn default_kind() -> String {
    "block".into()
}
fn default_match() -> String {
    "subtree".into()
}
fn default_action() -> String {
    "block_address".into()
}

// ---------------------------------------------------------------------------------------------
// Validated form.
// ---------------------------------------------------------------------------------------------

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from (for messages), if any.
    pub source: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub max_udp_payload: u16,
    pub tcp_idle_timeout: Duration,
    /// UDP worker threads (resolved: at least 1).
    pub workers: usize,
    pub fast_path: bool,
    pub udp_buffer: usize,
    /// User (and group) to run as after binding; None: stay as started.
    pub run_as: Option<(String, Option<String>)>,
    pub shutdown_grace: Duration,
    pub resolver: ResolverConfig,
    pub cache: CacheConfig,
    pub block: BlockConfig,
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token for the mutating admin calls; None: they are refused.
    pub admin_token: Option<String>,
    /// Folder for the last good copy of every list.
    pub state_dir: PathBuf,
    pub lists: Vec<ListConfig>,
    /// Client groups; `groups[0]` is the default group.
    pub groups: Vec<GroupConfig>,
    pub access: AccessConfig,
    pub rate_limit: RateLimitConfig,
    pub tcp: TcpConfig,
    pub tls: TlsConfig,
    pub block_page: BlockPageConfig,
    pub query_log: QueryLogConfig,
}

/// Which queries the query log records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryLogMode {
    Off,
    /// Blocked and rewritten queries.
    Blocked,
    All,
}

/// How client addresses appear in the query log and dnstap.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientPrivacy {
    Full,
    /// IPv4 to its /24, IPv6 to its /48.
    Truncated,
    /// A keyed hash (HMAC-SHA256 with this secret) instead of the address.
    Hashed(Vec<u8>),
}

impl fmt::Debug for ClientPrivacy {
    // The secret stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Full => "Full",
            Self::Truncated => "Truncated",
            Self::Hashed(_) => "Hashed",
        })
    }
}

/// Where dnstap frames go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnstapTarget {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// Validated `[query_log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryLogConfig {
    pub mode: QueryLogMode,
    /// The JSON-lines file; None: no file.
    pub path: Option<PathBuf>,
    /// Rotate at this size in bytes (0: never).
    pub rotate_size: u64,
    /// Rotate when the file is this old (zero: never).
    pub rotate_every: Duration,
    /// Rotated files kept (0: any number).
    pub keep: usize,
    /// Rotated files older than this are deleted (zero: never).
    pub keep_for: Duration,
    /// Bounded queue between the query path and the writer (at least 1).
    pub queue: usize,
    pub client: ClientPrivacy,
    pub dnstap: Option<DnstapTarget>,
}

impl QueryLogConfig {
    /// Whether anything is logged at all.
    pub fn enabled(&self) -> bool {
        self.mode != QueryLogMode::Off && (self.path.is_some() || self.dnstap.is_some())
    }
}

/// Validated `[block_page]` (its category addresses live in [`BlockConfig::categories`]).
#[derive(Debug, Clone, Default)]
pub struct BlockPageConfig {
    /// HTTP addresses; empty: the page server is off.
    pub listen: Vec<SocketAddr>,
    pub operator: String,
    pub contact: String,
    pub appeal_url: String,
    /// The `rel="blocked-by"` link of 451 answers (resolved: `legal_link`, else `appeal_url`);
    /// empty: no Link header.
    pub legal_link: String,
    /// The page templates, built-in ones replaced by the operator's where given.
    pub templates: crate::blockpage::Templates,
}

/// What happens to a query from a network that may not query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyAction {
    /// A REFUSED answer.
    Refuse,
    /// No answer (over TCP: the connection is closed).
    Drop,
}

impl DenyAction {
    pub fn label(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Drop => "drop",
        }
    }
}

/// Validated `[access]`.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub allow: Vec<ipnet::IpNet>,
    pub deny: Vec<ipnet::IpNet>,
    pub action: DenyAction,
}

/// The encrypted listeners, validated (the certificate and key were loaded once).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificate chain and key files; None when no encrypted listener is configured.
    pub files: Option<crate::dns::tls::CertFiles>,
    pub dot_listen: Vec<SocketAddr>,
    pub doh_listen: Vec<SocketAddr>,
    pub doh_path: String,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// Where a list comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A local file, reloaded when it changes.
    File(PathBuf),
    /// An HTTP(S) URL, polled.
    Http {
        url: String,
        timeout: Duration,
        max_size: u64,
    },
    /// An RPZ zone by AXFR/IXFR from a primary.
    Xfr(Box<XfrConfig>),
}

/// A zone-transfer source, validated.
#[derive(Debug, Clone)]
pub struct XfrConfig {
    pub source: crate::feeds::xfr::XfrSource,
    /// Who may send NOTIFY for the zone.
    pub notify_from: Vec<ipnet::IpNet>,
}

impl PartialEq for XfrConfig {
    fn eq(&self, other: &Self) -> bool {
        self.source.primary == other.source.primary && self.source.zone == other.source.zone
    }
}

/// What to do at start-up when a list has neither a saved copy nor a reachable source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    ServeWithout,
    RefuseStart,
}

/// A validated client group.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub name: String,
    pub networks: Vec<ipnet::IpNet>,
    /// Indices into `Config::lists`, in the order they are consulted.
    pub lists: Vec<usize>,
    pub action: Option<Action>,
}

#[derive(Debug, Clone)]
pub struct ResolverConfig {
    pub mode: ResolverMode,
    pub timeout: Duration,
    /// Upstream resolutions in flight at once (at least 1).
    pub max_outstanding: usize,
    /// ...and for one client address (at least 1).
    pub max_outstanding_per_client: usize,
}

#[derive(Debug, Clone)]
pub enum ResolverMode {
    Recursive {
        /// None: the built-in IANA root servers.
        root_hints: Option<PathBuf>,
        authority_port: u16,
        /// None: hickory's recommended filter list.
        deny_servers: Option<Vec<ipnet::IpNet>>,
    },
    Forward {
        upstreams: Vec<SocketAddr>,
        tcp_only: bool,
        server_timeout: Duration,
    },
}

impl ResolverMode {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Recursive { .. } => "recursive",
            Self::Forward { .. } => "forward",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub size: usize,
    pub packet_size: usize,
    pub min_ttl: u32,
    pub max_ttl: u32,
    pub negative_ttl: u32,
    /// Expired answers are kept this long to be served when upstreams fail (zero: never).
    pub serve_stale: Duration,
    /// TTL of stale answers (at least 1).
    pub stale_ttl: u32,
    /// Refreshes of expired entries wait at most this long before the stale copy is served
    /// (zero: the resolver deadline).
    pub stale_answer_after: Duration,
    /// Largest fraction taken off a cached TTL at random (0: none).
    pub ttl_jitter: f64,
    /// Refresh answers asked for in the last tenth of their TTL in the background.
    pub prefetch: bool,
}

#[derive(Debug, Clone)]
pub struct BlockConfig {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub ttl: u32,
    /// Categories with their own block addresses (`[[block_page.categories]]`), few enough
    /// that a scan beats hashing; empty for most servers.
    pub categories: Vec<CategoryAddress>,
}

/// A category answered with its own block addresses, so the page server knows the category
/// from the address a request arrives on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryAddress {
    pub name: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl BlockConfig {
    /// The A and AAAA answers for a blocked name of `category`: the category's own addresses
    /// where it sets them, the `[block]` ones otherwise. No allocation: the UDP fast path
    /// calls this per blocked query.
    pub fn addresses(&self, category: Option<&str>) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        let own = category.and_then(|c| {
            self.categories
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(c))
        });
        match own {
            Some(a) => (a.ipv4.or(self.ipv4), a.ipv6.or(self.ipv6)),
            None => (self.ipv4, self.ipv6),
        }
    }

    /// The category whose own address is `ip`, if any (the page server's view).
    pub fn category_of(&self, ip: IpAddr) -> Option<&str> {
        self.categories
            .iter()
            .find(|a| match ip {
                IpAddr::V4(v4) => a.ipv4 == Some(v4),
                IpAddr::V6(v6) => a.ipv6 == Some(v6),
            })
            .map(|a| a.name.as_str())
    }
}

/// Why a list blocks: decides the block page's HTTP status and the Extended DNS Error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Basis {
    /// The operator's own policy (EDE 15 Blocked, HTTP 403).
    #[default]
    Policy,
    /// An order of an authority (EDE 16 Censored, HTTP 451 with `Link: rel="blocked-by"`).
    Legal,
    /// A security threat: malware, phishing (EDE 15 Blocked, HTTP 403).
    Security,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Policy => "policy",
            Basis::Legal => "legal",
            Basis::Security => "security",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Block,
    Allow,
}

/// What a block list answers for the names it lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The configured block address (A / AAAA), NODATA for other types.
    BlockAddress,
    NxDomain,
    NoData,
    Refused,
    /// No answer at all (RPZ DROP).
    Drop,
    /// Over UDP an empty truncated answer, so the client retries over TCP; over TCP resolved
    /// normally (RPZ TCP-ONLY).
    TcpOnly,
    /// Resolve normally and stop consulting later lists (RPZ PASSTHRU).
    Passthru,
}

impl Action {
    const NAMES: &[(&str, Action)] = &[
        ("block_address", Action::BlockAddress),
        ("nxdomain", Action::NxDomain),
        ("nodata", Action::NoData),
        ("refused", Action::Refused),
        ("drop", Action::Drop),
        ("tcp_only", Action::TcpOnly),
        ("passthru", Action::Passthru),
    ];
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, a)| a == self)
            .map_or("?", |(n, _)| n);
        f.write_str(name)
    }
}

#[derive(Debug, Clone)]
pub struct ListConfig {
    pub name: String,
    pub path: PathBuf,
    /// None: detected from the file.
    pub format: Option<Format>,
    pub kind: ListKind,
    pub exact: bool,
    /// The answer for rules without their own.
    pub action: Action,
    /// Replaces every rule's action when set (`policy` other than "given").
    pub policy: Option<Action>,
    /// Matches are counted and logged, not applied.
    pub log_only: bool,
    /// Category of the entries, unless an entry (CSV) says otherwise.
    pub category: Option<String>,
    /// Why the list blocks (block page status, Extended DNS Error code).
    pub basis: Basis,
    /// Legal reference of the entries, unless an entry (CSV) says otherwise.
    pub reference: Option<String>,
    /// Where new versions come from.
    pub source: Source,
    /// How often the source is checked.
    pub refresh: Duration,
    /// Largest accepted shrink before an operator must confirm (fraction).
    pub max_shrink: f64,
    pub on_missing: OnMissing,
    /// The last good copy in the state folder.
    pub state_path: PathBuf,
}

impl ListConfig {
    /// A block list with every option at its default (tools and tests).
    pub fn block(name: &str, path: PathBuf, format: Option<Format>) -> Self {
        Self {
            name: name.into(),
            path: path.clone(),
            format,
            kind: ListKind::Block,
            exact: false,
            action: Action::BlockAddress,
            policy: None,
            log_only: false,
            category: None,
            basis: Basis::Policy,
            reference: None,
            source: Source::File(path.clone()),
            refresh: Duration::from_secs(10),
            max_shrink: 0.5,
            on_missing: OnMissing::ServeWithout,
            state_path: path.with_extension("last-good"),
        }
    }
}

impl Config {
    /// Read, parse and validate a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate config text; `path` names it in errors and anchors relative paths.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        // serde_path_to_error tracks where in the document the failure happened, so the message
        // names the key (`lists[1].format`), not just "unknown variant".
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
            .map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let line = inner
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                let message = inner.message().trim_end().to_string();
                match (key.as_str(), line) {
                    (".", Some(line)) => ConfigError::Parse {
                        path: path.to_owned(),
                        message: format!("line {line}: {message}"),
                    },
                    (".", None) => ConfigError::Parse {
                        path: path.to_owned(),
                        message,
                    },
                    (_, Some(line)) => ConfigError::Invalid {
                        path: path.to_owned(),
                        key,
                        message: format!("{message} (line {line})"),
                    },
                    (_, None) => ConfigError::Invalid {
                        path: path.to_owned(),
                        key,
                        message,
                    },
                }
            })?;
        raw.validate(path)
    }
}

impl RawConfig {
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            key: key.to_string(),
            message,
        };
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            clean_path(&if p.is_absolute() { p } else { base.join(p) })
        };

        if self.server.listen.is_empty() {
            return Err(invalid(
                "server.listen",
                "at least one address is needed".into(),
            ));
        }
        let mut listen = Vec::new();
        for (i, a) in self.server.listen.iter().enumerate() {
            let addr = a.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    &format!("server.listen[{i}]"),
                    format!("`{a}` is not an address with port, like 127.0.0.1:53 or [::1]:53"),
                )
            })?;
            listen.push(addr);
        }
        if !(512..=4096).contains(&self.server.max_udp_payload) {
            return Err(invalid(
                "server.max_udp_payload",
                format!("{} is outside 512..=4096", self.server.max_udp_payload),
            ));
        }
        if self.server.workers > 1024 {
            return Err(invalid(
                "server.workers",
                format!("{} is more than 1024", self.server.workers),
            ));
        }
        if !self.server.group.is_empty() && self.server.user.is_empty() {
            return Err(invalid(
                "server.group",
                "is set without server.user; set both, or neither".into(),
            ));
        }
        if self.server.tcp_idle_timeout.is_zero() {
            return Err(invalid(
                "server.tcp_idle_timeout",
                "must be more than zero".into(),
            ));
        }

        let r = &self.resolver;
        if r.timeout.is_zero() {
            return Err(invalid("resolver.timeout", "must be more than zero".into()));
        }
        for (key, value) in [
            ("resolver.max_outstanding", r.max_outstanding),
            (
                "resolver.max_outstanding_per_client",
                r.max_outstanding_per_client,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        let mode = match r.mode.as_str() {
            "recursive" => {
                let rr = &r.recursive;
                if rr.authority_port == 0 {
                    return Err(invalid(
                        "resolver.recursive.authority_port",
                        "must not be 0".into(),
                    ));
                }
                let deny_servers = match &rr.deny_servers {
                    None => None,
                    Some(nets) => {
                        let mut out = Vec::new();
                        for (i, n) in nets.iter().enumerate() {
                            out.push(parse_net(n).ok_or_else(|| {
                                invalid(
                                    &format!("resolver.recursive.deny_servers[{i}]"),
                                    format!("`{n}` is not a network like 10.0.0.0/8 or fc00::/7"),
                                )
                            })?);
                        }
                        Some(out)
                    }
                };
                let root_hints = if rr.root_hints.is_empty() {
                    None
                } else {
                    let p = resolve(&rr.root_hints);
                    if !p.is_file() {
                        return Err(invalid(
                            "resolver.recursive.root_hints",
                            format!("file {} does not exist", p.display()),
                        ));
                    }
                    Some(p)
                };
                ResolverMode::Recursive {
                    root_hints,
                    authority_port: rr.authority_port,
                    deny_servers,
                }
            }
            "forward" => {
                let f = &r.forward;
                if f.upstreams.is_empty() {
                    return Err(invalid(
                        "resolver.forward.upstreams",
                        "forward mode needs at least one upstream server".into(),
                    ));
                }
                let mut upstreams = Vec::new();
                for (i, u) in f.upstreams.iter().enumerate() {
                    let addr = u
                        .parse::<SocketAddr>()
                        .ok()
                        .or_else(|| u.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
                        .ok_or_else(|| {
                            invalid(
                                &format!("resolver.forward.upstreams[{i}]"),
                                format!("`{u}` is not an IP address or IP:port"),
                            )
                        })?;
                    upstreams.push(addr);
                }
                let tcp_only = match f.protocol.as_str() {
                    "udp" => false,
                    "tcp" => true,
                    other => {
                        return Err(invalid(
                            "resolver.forward.protocol",
                            format!("`{other}` is not one of \"udp\", \"tcp\""),
                        ));
                    }
                };
                if f.server_timeout.is_zero() {
                    return Err(invalid(
                        "resolver.forward.server_timeout",
                        "must be more than zero".into(),
                    ));
                }
                ResolverMode::Forward {
                    upstreams,
                    tcp_only,
                    server_timeout: f.server_timeout,
                }
            }
            other => {
                return Err(invalid(
                    "resolver.mode",
                    format!("`{other}` is not one of \"recursive\", \"forward\""),
                ));
            }
        };

        let c = &self.cache;
        let secs = |key: &str, d: Duration| {
            u32::try_from(d.as_secs()).map_err(|_| invalid(key, "is too long".into()))
        };
        let cache = CacheConfig {
            size: c.size,
            packet_size: c.packet_size,
            min_ttl: secs("cache.min_ttl", c.min_ttl)?,
            max_ttl: secs("cache.max_ttl", c.max_ttl)?,
            negative_ttl: secs("cache.negative_ttl", c.negative_ttl)?,
            serve_stale: c.serve_stale,
            stale_ttl: secs("cache.stale_ttl", c.stale_ttl)?,
            stale_answer_after: c.stale_answer_after,
            ttl_jitter: c.ttl_jitter,
            prefetch: c.prefetch,
        };
        if !(0.0..=0.5).contains(&cache.ttl_jitter) {
            return Err(invalid(
                "cache.ttl_jitter",
                format!("{} is not a fraction between 0.0 and 0.5", cache.ttl_jitter),
            ));
        }
        if cache.stale_ttl == 0 {
            return Err(invalid("cache.stale_ttl", "must be at least 1s".into()));
        }
        if cache.min_ttl > cache.max_ttl {
            return Err(invalid(
                "cache.min_ttl",
                "is larger than cache.max_ttl".into(),
            ));
        }

        let b = &self.block;
        let ipv4 = match b.ipv4.as_str() {
            "" => None,
            s => Some(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| invalid("block.ipv4", format!("`{s}` is not an IPv4 address")))?,
            ),
        };
        let ipv6 = match b.ipv6.as_str() {
            "" => None,
            s => Some(
                s.parse::<Ipv6Addr>()
                    .map_err(|_| invalid("block.ipv6", format!("`{s}` is not an IPv6 address")))?,
            ),
        };
        let (block_page, categories) =
            validate_block_page(self.block_page, &resolve).map_err(|(k, m)| invalid(&k, m))?;
        let block = BlockConfig {
            ipv4,
            ipv6,
            ttl: secs("block.ttl", b.ttl)?,
            categories,
        };

        let admin_listen = match self.admin.listen.as_str() {
            "" => None,
            s => Some(s.parse::<SocketAddr>().map_err(|_| {
                invalid(
                    "admin.listen",
                    format!("`{s}` is not an address with port, like 127.0.0.1:9153"),
                )
            })?),
        };

        let mut lists: Vec<ListConfig> = Vec::new();
        for (i, l) in self.lists.into_iter().enumerate() {
            let key = |k: &str| format!("lists[{i}].{k}");
            if l.name.is_empty()
                || !l
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "`{}` must be non-empty and use only a-z, 0-9, - and _",
                        l.name
                    ),
                ));
            }
            if lists.iter().any(|o| o.name == l.name) {
                return Err(invalid(
                    &key("name"),
                    format!("`{}` is used by two lists", l.name),
                ));
            }
            let kind = match l.kind.as_str() {
                "block" => ListKind::Block,
                "allow" => ListKind::Allow,
                other => {
                    return Err(invalid(
                        &key("kind"),
                        format!("`{other}` is not one of \"block\", \"allow\""),
                    ));
                }
            };
            let exact = match l.match_.as_str() {
                "subtree" => false,
                "exact" => true,
                other => {
                    return Err(invalid(
                        &key("match"),
                        format!("`{other}` is not one of \"subtree\", \"exact\""),
                    ));
                }
            };
            let action = parse_action(&l.action).map_err(|m| invalid(&key("action"), m))?;
            if action == Action::Passthru {
                return Err(invalid(
                    &key("action"),
                    "a block list cannot pass everything through; use kind = \"allow\" or policy = \"passthru\"".into(),
                ));
            }
            let policy = match l.policy.as_str() {
                "given" => None,
                other => Some(
                    parse_action(other)
                        .map_err(|m| invalid(&key("policy"), format!("{m}, or \"given\"")))?,
                ),
            };
            let log_only = match l.mode.as_str() {
                "enforce" => false,
                "log_only" => true,
                other => {
                    return Err(invalid(
                        &key("mode"),
                        format!("`{other}` is not one of \"enforce\", \"log_only\""),
                    ));
                }
            };
            let state_path = resolve(&self.state.dir).join(format!("{}.list", l.name));
            let (source, path) = match (&l.path, &l.url, &l.xfr) {
                (None, None, Some(x)) => {
                    let xkey = |k: &str| format!("lists[{i}].xfr.{k}");
                    let primary = x
                        .primary
                        .parse::<SocketAddr>()
                        .ok()
                        .or_else(|| {
                            x.primary
                                .parse::<IpAddr>()
                                .ok()
                                .map(|ip| SocketAddr::new(ip, 53))
                        })
                        .ok_or_else(|| {
                            invalid(
                                &xkey("primary"),
                                format!("`{}` is not an IP address or IP:port", x.primary),
                            )
                        })?;
                    let mut zone = hickory_proto::rr::Name::from_ascii(&x.zone).map_err(|e| {
                        invalid(
                            &xkey("zone"),
                            format!("`{}` is not a zone name: {e}", x.zone),
                        )
                    })?;
                    zone.set_fqdn(true);
                    let tsig = match (&x.tsig_key, &x.tsig_secret) {
                        (None, None) => None,
                        (Some(k), Some(s)) => Some(
                            crate::feeds::xfr::TsigKey::new(k, s)
                                .map_err(|e| invalid(&xkey("tsig_secret"), e.to_string()))?,
                        ),
                        _ => {
                            return Err(invalid(
                                &xkey("tsig_key"),
                                "set both tsig_key and tsig_secret, or neither".into(),
                            ));
                        }
                    };
                    let notify_from = match &x.notify_from {
                        None => vec![ipnet::IpNet::from(primary.ip())],
                        Some(list) => {
                            let mut out = Vec::new();
                            for (j, n) in list.iter().enumerate() {
                                out.push(parse_net(n).ok_or_else(|| {
                                    invalid(
                                        &format!("lists[{i}].xfr.notify_from[{j}]"),
                                        format!("`{n}` is not an address or network"),
                                    )
                                })?);
                            }
                            out
                        }
                    };
                    let source = Source::Xfr(Box::new(XfrConfig {
                        source: crate::feeds::xfr::XfrSource {
                            primary,
                            zone,
                            tsig,
                            timeout: l.timeout,
                        },
                        notify_from,
                    }));
                    (source, state_path.clone())
                }
                (Some(p), None, None) => {
                    let path = resolve(p);
                    if !path.is_file() {
                        return Err(invalid(
                            &key("path"),
                            format!("file {} does not exist", path.display()),
                        ));
                    }
                    (Source::File(path.clone()), path)
                }
                (None, Some(url), None) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(invalid(
                            &key("url"),
                            format!("`{url}` is not an http:// or https:// URL"),
                        ));
                    }
                    let source = Source::Http {
                        url: url.clone(),
                        timeout: l.timeout,
                        max_size: l.max_size,
                    };
                    (source, state_path.clone())
                }
                _ => {
                    return Err(invalid(
                        &key("path"),
                        "set exactly one of `path` (a local file), `url` (an HTTP feed) and `xfr` (an RPZ zone transfer)".into(),
                    ));
                }
            };
            let refresh = l.refresh.unwrap_or(match source {
                Source::File(_) => Duration::from_secs(10),
                Source::Http { .. } => Duration::from_secs(300),
                Source::Xfr(_) => Duration::from_secs(60),
            });
            // A zone transfer always brings an RPZ zone.
            let format = if matches!(source, Source::Xfr(_)) {
                Some(Format::Rpz)
            } else {
                l.format
            };
            if refresh < Duration::from_millis(10) {
                return Err(invalid(&key("refresh"), "must be at least 10ms".into()));
            }
            if !(0.0..=1.0).contains(&l.max_shrink) {
                return Err(invalid(
                    &key("max_shrink"),
                    format!("{} is not a fraction between 0.0 and 1.0", l.max_shrink),
                ));
            }
            let basis = match l.basis.as_str() {
                "policy" => Basis::Policy,
                "legal" => Basis::Legal,
                "security" => Basis::Security,
                other => {
                    return Err(invalid(
                        &key("basis"),
                        format!("`{other}` is not one of \"policy\", \"legal\", \"security\""),
                    ));
                }
            };
            let on_missing = match l.on_missing.as_str() {
                "serve_without" => OnMissing::ServeWithout,
                "refuse_start" => OnMissing::RefuseStart,
                other => {
                    return Err(invalid(
                        &key("on_missing"),
                        format!("`{other}` is not one of \"serve_without\", \"refuse_start\""),
                    ));
                }
            };
            lists.push(ListConfig {
                name: l.name,
                path,
                format,
                kind,
                exact,
                action,
                policy,
                log_only,
                category: l.category,
                basis,
                reference: l.reference,
                source,
                refresh,
                max_shrink: l.max_shrink,
                on_missing,
                state_path,
            });
        }

        let groups = validate_groups(self.groups, &lists).map_err(|(k, m)| invalid(&k, m))?;
        let access = validate_access(&self.access).map_err(|(k, m)| invalid(&k, m))?;
        let rate_limit = validate_rate_limit(self.rate_limit).map_err(|(k, m)| invalid(&k, m))?;
        let tcp = validate_tcp(self.tcp).map_err(|(k, m)| invalid(&k, m))?;
        let tls = validate_tls(self.tls, &resolve).map_err(|(k, m)| invalid(&k, m))?;
        let query_log =
            validate_query_log(self.query_log, &resolve).map_err(|(k, m)| invalid(&k, m))?;

        Ok(Config {
            source: path.to_owned(),
            listen,
            max_udp_payload: self.server.max_udp_payload,
            tcp_idle_timeout: self.server.tcp_idle_timeout,
            workers: match self.server.workers {
                0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
                n => n,
            },
            fast_path: self.server.fast_path,
            udp_buffer: self.server.udp_buffer,
            run_as: Some(self.server.user)
                .filter(|u| !u.is_empty())
                .map(|u| (u, Some(self.server.group).filter(|g| !g.is_empty()))),
            shutdown_grace: self.server.shutdown_grace,
            resolver: ResolverConfig {
                mode,
                timeout: r.timeout,
                max_outstanding: r.max_outstanding,
                max_outstanding_per_client: r.max_outstanding_per_client,
            },
            cache,
            block,
            admin_listen,
            admin_token: Some(self.admin.token).filter(|t| !t.is_empty()),
            state_dir: resolve(&self.state.dir),
            lists,
            groups,
            access,
            rate_limit,
            tcp,
            tls,
            query_log,
            block_page,
        })
    }
}

fn validate_query_log(
    raw: RawQueryLog,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<QueryLogConfig, (String, String)> {
    let err = |k: &str, m: String| Err((format!("query_log.{k}"), m));
    let mode = match raw.mode.as_str() {
        "off" => QueryLogMode::Off,
        "blocked" => QueryLogMode::Blocked,
        "all" => QueryLogMode::All,
        other => {
            return err(
                "mode",
                format!("`{other}` is not one of \"blocked\", \"all\", \"off\""),
            );
        }
    };
    let rotate_size = match raw.rotate_size.bytes() {
        Ok(n) => n,
        Err(m) => return err("rotate_size", m),
    };
    if raw.queue == 0 {
        return err("queue", "must be at least 1".into());
    }
    if raw.queue > 16 << 20 {
        return err("queue", format!("{} is more than 16777216", raw.queue));
    }
    let client = match raw.client.as_str() {
        "full" => ClientPrivacy::Full,
        "truncated" => ClientPrivacy::Truncated,
        "hashed" if raw.hash_secret.len() < 16 => {
            return err(
                "hash_secret",
                "client = \"hashed\" needs a secret of at least 16 characters".into(),
            );
        }
        "hashed" => ClientPrivacy::Hashed(raw.hash_secret.into_bytes()),
        other => {
            return err(
                "client",
                format!("`{other}` is not one of \"full\", \"truncated\", \"hashed\""),
            );
        }
    };
    let dnstap = match raw.dnstap.as_str() {
        "" => None,
        s => {
            if let Some(path) = s.strip_prefix("unix:").filter(|p| !p.is_empty()) {
                Some(DnstapTarget::Unix(resolve(path)))
            } else if let Some(addr) = s.strip_prefix("tcp:").and_then(|a| a.parse().ok()) {
                Some(DnstapTarget::Tcp(addr))
            } else {
                return err(
                    "dnstap",
                    format!("`{s}` is not \"unix:/path/to/socket\" or \"tcp:IP:port\""),
                );
            }
        }
    };
    Ok(QueryLogConfig {
        mode,
        path: Some(raw.path)
            .filter(|p| !p.is_empty())
            .map(|p| resolve(&p)),
        rotate_size,
        rotate_every: raw.rotate_every,
        keep: raw.keep,
        keep_for: raw.keep_for,
        queue: raw.queue,
        client,
        dnstap,
    })
}

/// A URL an operator gives for the block page: http(s) (or mailto: where `mailto` is true),
/// with nothing that could break out of a header or an attribute.
fn check_url(key: &str, url: &str, mailto: bool) -> Result<(), (String, String)> {
    let scheme_ok = url.starts_with("https://")
        || url.starts_with("http://")
        || (mailto && url.starts_with("mailto:"));
    let chars_ok = url
        .chars()
        .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\' | '`'));
    if url.is_empty() || (scheme_ok && chars_ok) {
        Ok(())
    } else {
        Err((
            key.to_string(),
            format!(
                "`{url}` is not a URL starting with {} without spaces, quotes or angle brackets",
                if mailto {
                    "https://, http:// or mailto:"
                } else {
                    "https:// or http://"
                }
            ),
        ))
    }
}

fn validate_block_page(
    b: RawBlockPage,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<(BlockPageConfig, Vec<CategoryAddress>), (String, String)> {
    let mut listen = Vec::new();
    for (i, a) in b.listen.iter().enumerate() {
        listen.push(a.parse::<SocketAddr>().map_err(|_| {
            (
                format!("block_page.listen[{i}]"),
                format!("`{a}` is not an address with port, like 0.0.0.0:80 or [::]:80"),
            )
        })?);
    }
    check_url("block_page.appeal_url", &b.appeal_url, true)?;
    check_url("block_page.legal_link", &b.legal_link, false)?;
    let legal_link = if b.legal_link.is_empty() {
        b.appeal_url.clone()
    } else {
        b.legal_link
    };
    let templates = if b.templates.is_empty() {
        crate::blockpage::Templates::default()
    } else {
        let dir = resolve(&b.templates);
        crate::blockpage::Templates::load(&dir)
            .map_err(|e| ("block_page.templates".to_string(), e))?
    };
    let mut categories: Vec<CategoryAddress> = Vec::new();
    for (i, c) in b.categories.into_iter().enumerate() {
        let key = |k: &str| format!("block_page.categories[{i}].{k}");
        if c.name.trim().is_empty() {
            return Err((key("name"), "must not be empty".into()));
        }
        if categories
            .iter()
            .any(|o| o.name.eq_ignore_ascii_case(&c.name))
        {
            return Err((key("name"), format!("`{}` is listed twice", c.name)));
        }
        let ipv4 = match c.ipv4.as_str() {
            "" => None,
            s => Some(
                s.parse::<Ipv4Addr>()
                    .map_err(|_| (key("ipv4"), format!("`{s}` is not an IPv4 address")))?,
            ),
        };
        let ipv6 = match c.ipv6.as_str() {
            "" => None,
            s => Some(
                s.parse::<Ipv6Addr>()
                    .map_err(|_| (key("ipv6"), format!("`{s}` is not an IPv6 address")))?,
            ),
        };
        if ipv4.is_none() && ipv6.is_none() {
            return Err((key("ipv4"), "set ipv4, ipv6 or both".into()));
        }
        if let Some(o) = categories
            .iter()
            .find(|o| (ipv4.is_some() && o.ipv4 == ipv4) || (ipv6.is_some() && o.ipv6 == ipv6))
        {
            return Err((
                key(if ipv4.is_some() && o.ipv4 == ipv4 {
                    "ipv4"
                } else {
                    "ipv6"
                }),
                format!(
                    "the address is also category `{}`'s; the block page could not tell them apart",
                    o.name
                ),
            ));
        }
        categories.push(CategoryAddress {
            name: c.name,
            ipv4,
            ipv6,
        });
    }
    Ok((
        BlockPageConfig {
            listen,
            operator: b.operator,
            contact: b.contact,
            appeal_url: b.appeal_url,
            legal_link,
            templates,
        },
        categories,
    ))
}

fn validate_access(a: &RawAccess) -> Result<AccessConfig, (String, String)> {
    let nets = |key: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, n)| {
                parse_net(n).map(|n| n.trunc()).ok_or_else(|| {
                    (
                        format!("access.{key}[{i}]"),
                        format!("`{n}` is not a network like 10.0.0.0/8 or fc00::/7"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let action = match a.action.as_str() {
        "refuse" => DenyAction::Refuse,
        "drop" => DenyAction::Drop,
        other => {
            return Err((
                "access.action".into(),
                format!("`{other}` is not one of \"refuse\", \"drop\""),
            ));
        }
    };
    Ok(AccessConfig {
        allow: nets("allow", &a.allow)?,
        deny: nets("deny", &a.deny)?,
        action,
    })
}

fn validate_rate_limit(r: RateLimitConfig) -> Result<RateLimitConfig, (String, String)> {
    let err = |k: &str, m: &str| Err((format!("rate_limit.{k}"), m.to_string()));
    if r.client_qps > 0 && r.client_burst == 0 {
        return err("client_burst", "must be at least 1 when client_qps is set");
    }
    if r.prefix_qps > 0 && r.prefix_burst == 0 {
        return err("prefix_burst", "must be at least 1 when prefix_qps is set");
    }
    if r.ipv4_prefix > 32 {
        return err("ipv4_prefix", "must be 0..=32");
    }
    if r.ipv6_prefix > 128 {
        return err("ipv6_prefix", "must be 0..=128");
    }
    if r.max_tracked == 0 {
        return err("max_tracked", "must be at least 1");
    }
    Ok(r)
}

fn validate_tcp(t: TcpConfig) -> Result<TcpConfig, (String, String)> {
    for (key, value) in [
        ("max_connections", t.max_connections),
        ("max_connections_per_client", t.max_connections_per_client),
        (
            "max_in_flight_per_connection",
            t.max_in_flight_per_connection,
        ),
    ] {
        if value == 0 {
            return Err((format!("tcp.{key}"), "must be at least 1".into()));
        }
    }
    if t.message_timeout.is_zero() {
        return Err((
            "tcp.message_timeout".into(),
            "must be more than zero".into(),
        ));
    }
    Ok(t)
}

/// `[tls]`: addresses parse, timeouts are positive, and when a listener is configured the
/// certificate and key load and belong together.
fn validate_tls(
    raw: RawTls,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Result<TlsConfig, (String, String)> {
    let addrs = |key: &str, list: &[String]| {
        list.iter()
            .enumerate()
            .map(|(i, a)| {
                a.parse::<SocketAddr>().map_err(|_| {
                    (
                        format!("tls.{key}[{i}]"),
                        format!("`{a}` is not an address with port, like [::]:853"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let dot_listen = addrs("dot_listen", &raw.dot_listen)?;
    let doh_listen = addrs("doh_listen", &raw.doh_listen)?;
    if !raw.doh_path.starts_with('/') {
        return Err((
            "tls.doh_path".into(),
            format!("`{}` must start with /", raw.doh_path),
        ));
    }
    for (key, d) in [
        ("tls.handshake_timeout", raw.handshake_timeout),
        ("tls.idle_timeout", raw.idle_timeout),
    ] {
        if d.is_zero() {
            return Err((key.into(), "must be more than zero".into()));
        }
    }
    if raw.max_connections == 0 {
        return Err(("tls.max_connections".into(), "must be at least 1".into()));
    }
    let files = match (raw.certificate.as_str(), raw.key.as_str()) {
        ("", "") if dot_listen.is_empty() && doh_listen.is_empty() => None,
        ("", _) => {
            return Err((
                "tls.certificate".into(),
                "DoT/DoH listeners need a certificate and key (set tls.certificate and tls.key)"
                    .into(),
            ));
        }
        (_, "") => {
            return Err((
                "tls.key".into(),
                "a certificate needs its private key (set tls.key)".into(),
            ));
        }
        (cert, key) => {
            let files = crate::dns::tls::CertFiles {
                certificate: resolve(cert),
                key: resolve(key),
            };
            files.load().map_err(|e| (e.key.to_string(), e.message))?;
            Some(files)
        }
    };
    Ok(TlsConfig {
        files,
        dot_listen,
        doh_listen,
        doh_path: raw.doh_path,
        handshake_timeout: raw.handshake_timeout,
        idle_timeout: raw.idle_timeout,
        max_connections: raw.max_connections,
    })
}

fn parse_action(s: &str) -> Result<Action, String> {
    Action::NAMES
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, a)| *a)
        .ok_or_else(|| {
            let names: Vec<String> = Action::NAMES
                .iter()
                .map(|(n, _)| format!("\"{n}\""))
                .collect();
            format!("`{s}` is not one of {}", names.join(", "))
        })
}

/// Groups: names unique, lists known, networks valid and not claimed twice. The default group
/// (clients outside every network) comes first; unless configured it uses every list.
fn validate_groups(
    raw: Vec<RawGroup>,
    lists: &[ListConfig],
) -> Result<Vec<GroupConfig>, (String, String)> {
    let mut groups = vec![GroupConfig {
        name: "default".into(),
        networks: Vec::new(),
        lists: (0..lists.len()).collect(),
        action: None,
    }];
    let mut seen_nets: Vec<(ipnet::IpNet, String)> = Vec::new();
    for (i, g) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("groups[{i}].{k}");
        if g.name.is_empty() {
            return Err((key("name"), "must not be empty".into()));
        }
        let mut indices = Vec::new();
        for (j, l) in g.lists.iter().enumerate() {
            let Some(index) = lists.iter().position(|c| &c.name == l) else {
                return Err((
                    format!("groups[{i}].lists[{j}]"),
                    format!("no list named `{l}` is configured"),
                ));
            };
            indices.push(index);
        }
        let action = match &g.action {
            None => None,
            Some(a) => Some(parse_action(a).map_err(|m| (key("action"), m))?),
        };
        let mut networks = Vec::new();
        for (j, n) in g.networks.iter().enumerate() {
            let net = parse_net(n).ok_or_else(|| {
                (
                    format!("groups[{i}].networks[{j}]"),
                    format!("`{n}` is not a network like 10.0.0.0/8 or 2001:db8::/32"),
                )
            })?;
            let net = net.trunc();
            if let Some((_, other)) = seen_nets.iter().find(|(s, _)| *s == net) {
                return Err((
                    format!("groups[{i}].networks[{j}]"),
                    format!("{net} is already in group `{other}`"),
                ));
            }
            seen_nets.push((net, g.name.clone()));
            networks.push(net);
        }
        if g.name == "default" {
            if !networks.is_empty() {
                return Err((
                    key("networks"),
                    "the default group takes every client outside the other groups; it has no networks".into(),
                ));
            }
            groups[0].lists = indices;
            groups[0].action = action;
            continue;
        }
        if groups.iter().any(|o| o.name == g.name) {
            return Err((key("name"), format!("`{}` is used by two groups", g.name)));
        }
        if networks.is_empty() {
            return Err((key("networks"), "a group needs at least one network".into()));
        }
        groups.push(GroupConfig {
            name: g.name,
            networks,
            lists: indices,
            action,
        });
    }
    Ok(groups)
}

/// Drop `.` and `dir/..` pairs so messages show `blocklists/x.txt`, not
/// `config/../blocklists/x.txt`. Purely lexical; a leading `..` is kept.
fn clean_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// "10.0.0.0/8" or a bare address (a /32 or /128).
fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/default.toml")
    }

    #[test]
    fn default_config_loads_and_matches_the_built_in_defaults() {
        let c = Config::load(&default_path()).expect("config/default.toml is valid");
        assert_eq!(c.listen, vec!["127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(c.admin_listen, Some("127.0.0.1:9153".parse().unwrap()));
        assert!(matches!(
            c.resolver.mode,
            ResolverMode::Recursive {
                root_hints: None,
                authority_port: 53,
                deny_servers: None
            }
        ));
        assert_eq!(c.block.ipv4, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(c.block.ipv6, Some(Ipv6Addr::LOCALHOST));
        assert_eq!(c.block.ttl, 60);
        assert!(c.lists.len() >= 3);
        // Every value the file sets equals the built-in default, so documentation and code
        // cannot drift apart: an empty file yields the same settings (lists aside).
        let empty = Config::from_toml("", &default_path()).unwrap();
        assert_eq!(format!("{:?}", empty.resolver), format!("{:?}", c.resolver));
        assert_eq!(format!("{:?}", empty.cache), format!("{:?}", c.cache));
        assert_eq!(format!("{:?}", empty.block), format!("{:?}", c.block));
        assert_eq!(empty.listen, c.listen);
        assert_eq!(empty.max_udp_payload, c.max_udp_payload);
        assert_eq!(empty.tcp_idle_timeout, c.tcp_idle_timeout);
        assert_eq!(empty.admin_listen, c.admin_listen);
        assert_eq!(format!("{:?}", empty.access), format!("{:?}", c.access));
        assert_eq!(empty.rate_limit, c.rate_limit);
        assert_eq!(empty.tcp, c.tcp);
        assert_eq!(format!("{:?}", empty.tls), format!("{:?}", c.tls));
        // The log file's folder differs like the state folder's; everything else is equal.
        assert_eq!(
            QueryLogConfig {
                path: None,
                ..empty.query_log.clone()
            },
            QueryLogConfig {
                path: None,
                ..c.query_log.clone()
            }
        );
        assert!(
            c.query_log
                .path
                .as_ref()
                .is_some_and(|p| p.ends_with("log/queries.log"))
        );
        assert_eq!(c.query_log.rotate_size, 100 << 20);
        assert_eq!(
            format!("{:?}", empty.block_page),
            format!("{:?}", c.block_page)
        );
        assert!(c.block_page.listen.is_empty() && c.block.categories.is_empty());
        assert!(!c.lists[0].path.to_string_lossy().contains(".."));
    }

    #[test]
    fn an_unknown_key_in_any_table_is_an_error_naming_it() {
        let text = std::fs::read_to_string(default_path()).unwrap();
        let headers: Vec<usize> = text
            .match_indices('\n')
            .map(|(i, _)| i + 1)
            .filter(|&i| text[i..].starts_with('['))
            .collect();
        assert!(headers.len() >= 8, "every table is covered");
        for start in headers {
            let end = start + text[start..].find('\n').unwrap() + 1;
            let header = text[start..end].trim();
            let broken = format!("{}bogus_key = 1\n{}", &text[..end], &text[end..]);
            let err = Config::from_toml(&broken, &default_path())
                .expect_err(&format!("unknown key under {header} must fail"))
                .to_string();
            assert!(err.contains("bogus_key"), "{header}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            (
                "[server]\nmax_udp_payload = 100\n",
                "server.max_udp_payload",
            ),
            ("[resolver]\ntimeout = \"0s\"\n", "resolver.timeout"),
            (
                "[resolver]\nmode = \"forward\"\n[resolver.forward]\nupstreams = [\"x\"]\n",
                "resolver.forward.upstreams[0]",
            ),
            (
                "[resolver.recursive]\ndeny_servers = [\"nope\"]\n",
                "resolver.recursive.deny_servers[0]",
            ),
            (
                "[cache]\nmin_ttl = \"2h\"\nmax_ttl = \"1h\"\n",
                "cache.min_ttl",
            ),
            ("[block]\nipv6 = \"1.2.3.4\"\n", "block.ipv6"),
            ("[cache]\nstale_ttl = \"0s\"\n", "cache.stale_ttl"),
            (
                "[resolver]\nmax_outstanding_per_client = 0\n",
                "resolver.max_outstanding_per_client",
            ),
            ("[admin]\nlisten = \"9153\"\n", "admin.listen"),
            ("[access]\nallow = [\"10.0.0.0/33\"]\n", "access.allow[0]"),
            ("[access]\naction = \"ignore\"\n", "access.action"),
            ("[rate_limit]\nipv4_prefix = 33\n", "rate_limit.ipv4_prefix"),
            (
                "[rate_limit]\nclient_burst = 0\n",
                "rate_limit.client_burst",
            ),
            ("[tcp]\nmax_connections = 0\n", "tcp.max_connections"),
            ("[tcp]\nmessage_timeout = \"0s\"\n", "tcp.message_timeout"),
            ("[tls]\ndot_listen = [\"853\"]\n", "tls.dot_listen[0]"),
            ("[tls]\ndoh_listen = [\"[::]:443\"]\n", "tls.certificate"),
            ("[tls]\ncertificate = \"a.pem\"\n", "tls.key"),
            (
                "[tls]\ncertificate = \"nope.pem\"\nkey = \"nope.key\"\n",
                "tls.certificate",
            ),
            ("[tls]\ndoh_path = \"dns-query\"\n", "tls.doh_path"),
            ("[tls]\nidle_timeout = \"0s\"\n", "tls.idle_timeout"),
            ("[tls]\nmax_connections = 0\n", "tls.max_connections"),
            (
                "[server]\nmax_udp_payload = \"big\"\n",
                "server.max_udp_payload",
            ),
            ("[query_log]\nmode = \"some\"\n", "query_log.mode"),
            (
                "[query_log]\nrotate_size = \"10 parsecs\"\n",
                "query_log.rotate_size",
            ),
            ("[query_log]\nqueue = 0\n", "query_log.queue"),
            (
                "[query_log]\nclient = \"hashed\"\n",
                "query_log.hash_secret",
            ),
            ("[query_log]\nclient = \"masked\"\n", "query_log.client"),
            (
                "[query_log]\ndnstap = \"udp:1.2.3.4:6000\"\n",
                "query_log.dnstap",
            ),
            ("[block_page]\nlisten = [\"80\"]\n", "block_page.listen[0]"),
            (
                "[block_page]\nappeal_url = \"javascript:alert(1)\"\n",
                "block_page.appeal_url",
            ),
            (
                "[block_page]\nlegal_link = \"https://x/<a>\"\n",
                "block_page.legal_link",
            ),
            (
                "[block_page]\ntemplates = \"no-such-folder\"\n",
                "block_page.templates",
            ),
            (
                "[[block_page.categories]]\nname = \"g\"\nipv4 = \"::1\"\n",
                "block_page.categories[0].ipv4",
            ),
            (
                "[[block_page.categories]]\nname = \"g\"\n",
                "block_page.categories[0].ipv4",
            ),
            (
                "[[block_page.categories]]\nname = \"g\"\nipv4 = \"127.0.0.10\"\n[[block_page.categories]]\nname = \"G\"\nipv4 = \"127.0.0.11\"\n",
                "block_page.categories[1].name",
            ),
            (
                "[[block_page.categories]]\nname = \"g\"\nipv4 = \"127.0.0.10\"\n[[block_page.categories]]\nname = \"h\"\nipv4 = \"127.0.0.10\"\n",
                "block_page.categories[1].ipv4",
            ),
            (
                "[[block_page.categories]]\nname = \"g\"\nipv4 = \"127.0.0.10\"\ncolour = 1\n",
                "colour",
            ),
        ] {
            let err = Config::from_toml(text, &default_path())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn clean_path_is_lexical() {
        assert_eq!(
            clean_path(Path::new("config/../blocklists/a.txt")),
            PathBuf::from("blocklists/a.txt")
        );
        assert_eq!(clean_path(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(clean_path(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
