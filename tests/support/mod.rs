//! Test support: a real authoritative DNS hierarchy on loopback (root, TLD and leaf zones served
//! by in-process hickory authorities), a Rampart server started on port 0, and a small DNS
//! client that speaks real UDP and TCP.
//!
//! The recursor reaches every authority on one port (`authority_port`), so the hierarchy lives
//! on several 127.0.0.0/8 addresses that share a port picked at run time; nothing uses a fixed
//! port, so tests run in parallel.

#![allow(dead_code)]

pub mod bind;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, MX, NS, SOA},
    },
};
use hickory_server::{
    Server,
    net::runtime::Time,
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    store::in_memory::InMemoryZoneHandler,
    zone_handler::{AxfrPolicy, Catalog, ZoneType},
};
use rampart::{app, config::Config};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Generous bound for anything that should be quick; tests poll, they never sleep-and-hope.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub fn name(s: &str) -> Name {
    Name::from_str(s).expect("valid test name")
}

fn rec(owner: &str, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name(owner), ttl, data)
}

fn soa(origin: &str) -> Record {
    rec(
        origin,
        3600,
        RData::SOA(SOA::new(
            name("ns.nic."),
            name("hostmaster.nic."),
            1,
            3600,
            600,
            86400,
            300,
        )),
    )
}

fn ns(owner: &str, target: &str) -> Record {
    rec(owner, 3600, RData::NS(NS(name(target))))
}

fn a(owner: &str, ip: Ipv4Addr) -> Record {
    rec(owner, 300, RData::A(A(ip)))
}

/// Queries seen by the hierarchy, by (lower-case name, type).
#[derive(Clone, Default)]
pub struct QueryLog(Arc<Mutex<HashMap<(String, RecordType), usize>>>);

impl QueryLog {
    pub fn count(&self, qname: &str, rtype: RecordType) -> usize {
        let key = (qname.to_ascii_lowercase(), rtype);
        *self.0.lock().unwrap().get(&key).unwrap_or(&0)
    }
}

/// A catalog that records every question it is asked, and ignores every one while `cut` is set.
struct Counting {
    catalog: Catalog,
    log: QueryLog,
    cut: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        if self.cut.load(Ordering::Acquire) {
            // Unreachable: the query is dropped unanswered.
            return ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: HeaderCounts::default(),
            });
        }
        for q in request.queries.queries() {
            let key = (q.name().to_string().to_ascii_lowercase(), q.query_type());
            *self.log.0.lock().unwrap().entry(key).or_default() += 1;
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// Addresses of the lab hierarchy.
pub const ROOT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
pub const TLD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
pub const LEAF_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
/// Accepts queries and never answers: the "upstream times out" case.
pub const SILENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// The data served by the leaf zone `corp.test.`.
pub const WWW_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
pub const WWW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
pub const ADS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 30);
pub const OK_ADS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
/// Served by the leaf authority for `glueless.test.` and `mixed.test.`.
pub const GLUELESS_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 60);
pub const MIXED_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 61);
/// Addresses of `huge.corp.test.`.
pub const HUGE: u8 = 100;

fn zone(origin: &str, records: Vec<Record>) -> Arc<InMemoryZoneHandler> {
    let mut z = InMemoryZoneHandler::empty(name(origin), ZoneType::Primary, AxfrPolicy::Deny);
    for r in records {
        assert!(z.upsert_mut(r, 1), "record accepted");
    }
    Arc::new(z)
}

/// A running hierarchy: `.` → `test.` → `corp.test.` (answers) and `slow.test.` (silent).
pub struct Hierarchy {
    pub port: u16,
    pub log: QueryLog,
    pub root_hints: PathBuf,
    /// While set, every authority drops every query (see [`Hierarchy::set_reachable`]).
    cut: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
    _servers: Vec<Server<Counting>>,
    _silent: (UdpSocket, TcpListener),
}

impl Hierarchy {
    pub async fn start() -> Self {
        let log = QueryLog::default();
        let cut = Arc::new(AtomicBool::new(false));
        let root = zone(
            ".",
            vec![
                soa("."),
                ns(".", "a.root-servers.nic."),
                a("a.root-servers.nic.", ROOT_IP),
                ns("test.", "ns.nic."),
                a("ns.nic.", TLD_IP),
            ],
        );
        let tld = zone(
            "test.",
            vec![
                soa("test."),
                ns("test.", "ns.nic."),
                ns("corp.test.", "ns-corp.test."),
                a("ns-corp.test.", LEAF_IP),
                ns("slow.test.", "ns-slow.test."),
                a("ns-slow.test.", SILENT_IP),
                // Its only server is named in another zone, without glue.
                ns("glueless.test.", "ns.corp.test."),
                // One silent server, one that refuses (the TLD's own, named outside this
                // zone without glue), one that answers.
                ns("mixed.test.", "ns-slow.test."),
                ns("mixed.test.", "ns.nic."),
                ns("mixed.test.", "ns-corp.test."),
            ],
        );
        let glueless = zone(
            "glueless.test.",
            vec![
                soa("glueless.test."),
                ns("glueless.test.", "ns.corp.test."),
                a("www.glueless.test.", GLUELESS_V4),
            ],
        );
        let mixed = zone(
            "mixed.test.",
            vec![
                soa("mixed.test."),
                ns("mixed.test.", "ns-corp.test."),
                a("www.mixed.test.", MIXED_V4),
            ],
        );
        let leaf = zone(
            "corp.test.",
            vec![
                soa("corp.test."),
                ns("corp.test.", "ns-corp.test."),
                a("www.corp.test.", WWW_V4),
                rec("www.corp.test.", 300, RData::AAAA(AAAA(WWW_V6))),
                rec(
                    "corp.test.",
                    300,
                    RData::MX(MX::new(10, name("mail.corp.test."))),
                ),
                a("mail.corp.test.", Ipv4Addr::new(192, 0, 2, 25)),
                rec(
                    "alias.corp.test.",
                    300,
                    RData::CNAME(CNAME(name("www.corp.test."))),
                ),
                a("cached.corp.test.", Ipv4Addr::new(192, 0, 2, 40)),
                a("fwd.corp.test.", Ipv4Addr::new(192, 0, 2, 41)),
                a("ads.corp.test.", ADS_V4),
                a("x.ads.corp.test.", ADS_V4),
                a("ok.ads.corp.test.", OK_ADS_V4),
                rec(
                    "ads.corp.test.",
                    300,
                    RData::MX(MX::new(10, name("mail.corp.test."))),
                ),
                // For the response-policy tests.
                a("ip31.corp.test.", Ipv4Addr::new(192, 0, 2, 31)),
                rec(
                    "cloak.corp.test.",
                    300,
                    RData::CNAME(CNAME(name("ads.corp.test."))),
                ),
                a("pass.corp.test.", Ipv4Addr::new(192, 0, 2, 50)),
                a("prec.corp.test.", Ipv4Addr::new(192, 0, 2, 51)),
                a("logged.corp.test.", Ipv4Addr::new(192, 0, 2, 52)),
                a("wild.corp.test.", Ipv4Addr::new(192, 0, 2, 53)),
                a("x.wild.corp.test.", Ipv4Addr::new(192, 0, 2, 54)),
                a("over.corp.test.", Ipv4Addr::new(192, 0, 2, 55)),
                a("tcp.corp.test.", Ipv4Addr::new(192, 0, 2, 56)),
                a("drop.corp.test.", Ipv4Addr::new(192, 0, 2, 57)),
                a("ns.corp.test.", LEAF_IP),
                rec(
                    "cross.corp.test.",
                    300,
                    RData::CNAME(CNAME(name("www.glueless.test."))),
                ),
            ]
            .into_iter()
            // 60 addresses: about 1 KB, more than fits in a 512-byte UDP answer.
            .chain((1..=60).map(|i| a("big.corp.test.", Ipv4Addr::new(198, 51, 100, i))))
            // 100 addresses: more than the resolver's 1232-byte EDNS size, so TCP it is.
            .chain((1..=HUGE).map(|i| a("huge.corp.test.", Ipv4Addr::new(203, 0, 113, i))))
            .collect(),
        );

        // One port for every authority: bind the root on port 0, then claim the same port on
        // the other addresses; start over if one of them is taken.
        for _ in 0..50 {
            let Ok(root_udp) = UdpSocket::bind((ROOT_IP, 0)).await else {
                continue;
            };
            let port = root_udp.local_addr().unwrap().port();
            let Some(rest) = bind_all(port).await else {
                continue;
            };
            let Ok(root_tcp) = TcpListener::bind((ROOT_IP, port)).await else {
                continue;
            };
            let [(tld_udp, tld_tcp), (leaf_udp, leaf_tcp), silent] = rest;

            let mut servers = Vec::new();
            for (zones, udp, tcp) in [
                (vec![root.clone()], root_udp, root_tcp),
                (vec![tld.clone()], tld_udp, tld_tcp),
                (
                    vec![leaf.clone(), glueless.clone(), mixed.clone()],
                    leaf_udp,
                    leaf_tcp,
                ),
            ] {
                let mut catalog = Catalog::new();
                for z in zones {
                    use hickory_server::zone_handler::ZoneHandler;
                    let origin = z.origin().clone();
                    catalog.upsert(origin, vec![z]);
                }
                let mut server = Server::new(Counting {
                    catalog,
                    log: log.clone(),
                    cut: cut.clone(),
                });
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 16);
                servers.push(server);
            }

            let dir = tempfile::tempdir().unwrap();
            let root_hints = dir.path().join("root.hints");
            std::fs::write(
                &root_hints,
                format!(
                    ".  3600000  NS  a.root-servers.nic.\na.root-servers.nic.  3600000  A  {ROOT_IP}\n"
                ),
            )
            .unwrap();
            return Self {
                port,
                log,
                root_hints,
                cut,
                _dir: dir,
                _servers: servers,
                _silent: silent,
            };
        }
        panic!("could not find a port free on all hierarchy addresses");
    }

    /// Make every authority of the lab answer (true) or drop every query unanswered (false),
    /// as if the network to them were cut.
    pub fn set_reachable(&self, reachable: bool) {
        self.cut.store(!reachable, Ordering::Release);
    }

    /// Address of the leaf authority (used as the upstream in forward mode).
    pub fn leaf_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(LEAF_IP), self.port)
    }
}

async fn bind_all(port: u16) -> Option<[(UdpSocket, TcpListener); 3]> {
    let mut out = Vec::new();
    for ip in [TLD_IP, LEAF_IP, SILENT_IP] {
        let udp = UdpSocket::bind((ip, port)).await.ok()?;
        let tcp = TcpListener::bind((ip, port)).await.ok()?;
        out.push((udp, tcp));
    }
    out.try_into().ok()
}

/// What a test server is configured with, beyond the hierarchy.
pub struct Setup {
    pub mode: Mode,
    /// Extra TOML appended to the config (lists and overrides).
    pub extra: String,
    /// List files to write into the config folder: (file name, content).
    pub files: Vec<(&'static str, String)>,
    pub timeout: &'static str,
    /// admin.token (bearer token for the mutating API calls).
    pub admin_token: Option<&'static str>,
    /// DNS listen address; default 127.0.0.1:0.
    pub listen: Option<SocketAddr>,
    /// Extra lines for the `[server]` table.
    pub server: String,
    /// Extra lines for the `[resolver]` table.
    pub resolver: String,
}

pub enum Mode {
    Recursive,
    Forward,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            mode: Mode::Recursive,
            extra: String::new(),
            files: vec![],
            timeout: "2s",
            admin_token: None,
            listen: None,
            server: String::new(),
            resolver: String::new(),
        }
    }
}

/// The standard lists of these tests: a hosts block list, an adblock list and an allow list.
pub fn standard_lists() -> (Vec<(&'static str, String)>, String) {
    let files = vec![
        (
            "block.hosts",
            "# test block list\n0.0.0.0 ads.corp.test\n0.0.0.0 tracker.test  other.test # inline\nthis line is broken\n0.0.0.0 bad..name.test\n".to_string(),
        ),
        ("block.adblock", "! test\n||adnet.test^\n".to_string()),
        ("allow.txt", "ok.ads.corp.test\n".to_string()),
    ];
    let toml = r#"
[[lists]]
name = "hosts"
path = "block.hosts"
format = "hosts"

[[lists]]
name = "adnet"
path = "block.adblock"
format = "adblock"
action = "nxdomain"

[[lists]]
name = "allow"
path = "allow.txt"
format = "plain"
kind = "allow"
"#
    .to_string();
    (files, toml)
}

/// A Rampart server started in-process on loopback port 0.
pub struct TestServer {
    pub running: Option<app::Running>,
    pub dns: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start(h: &Hierarchy, setup: Setup) -> Self {
        let dir = tempfile::tempdir().unwrap();
        for (file, content) in &setup.files {
            std::fs::write(dir.path().join(file), content).unwrap();
        }
        let resolver = match setup.mode {
            Mode::Recursive => format!(
                "mode = \"recursive\"\ntimeout = \"{}\"\n{}\n[resolver.recursive]\nroot_hints = \"{}\"\nauthority_port = {}\ndeny_servers = []\n",
                setup.timeout,
                setup.resolver,
                h.root_hints.display(),
                h.port
            ),
            Mode::Forward => format!(
                "mode = \"forward\"\ntimeout = \"{}\"\n{}\n[resolver.forward]\nupstreams = [\"{}\"]\n",
                setup.timeout,
                setup.resolver,
                h.leaf_addr()
            ),
        };
        let text = format!(
            "[server]\nlisten = [\"{}\"]\n{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{}\"\n[resolver]\n{resolver}\n{}",
            setup
                .listen
                .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string()),
            setup.server,
            setup.admin_token.unwrap_or_default(),
            setup.extra
        );
        let path = dir.path().join("rampart.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).expect("test config is valid");
        let running = app::start(config).await.expect("server starts");
        let dns = running.dns_addrs[0];
        let admin = running.admin_addr.expect("admin enabled");
        Self {
            running: Some(running),
            dns,
            admin,
            dir,
        }
    }

    pub async fn metrics(&self) -> String {
        http_get(self.admin, "/metrics").await.1
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// A minimal HTTP/1.0 GET: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, None).await
}

/// A minimal HTTP/1.0 request with an optional bearer token: (status, body).
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(DEADLINE, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("{method} {path} HTTP/1.0\r\nHost: test\r\n{auth}Content-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf))
        .await
        .expect("read in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sum of a counter's samples whose label set contains all of `labels` (e.g. `outcome="blocked"`).
pub fn metric_sum(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.starts_with(metric)
                && l[metric.len()..].starts_with(['{', ' '])
                && labels.iter().all(|want| l.contains(want))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

pub fn query_message(qname: &str, rtype: RecordType, edns: bool) -> Message {
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(name(qname), rtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        m.set_edns(e);
    }
    m
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(1);
    NEXT.fetch_add(7919, Ordering::Relaxed)
}

/// Send one query and wait for its answer.
pub async fn ask(server: SocketAddr, t: Transport, qname: &str, rtype: RecordType) -> Message {
    exchange(server, t, &query_message(qname, rtype, true)).await
}

pub async fn exchange(server: SocketAddr, t: Transport, query: &Message) -> Message {
    let mut bytes = query.to_vec().unwrap();
    // hickory's encoder writes names in lower case; put the caller's casing back so tests
    // exercise mixed-case questions for real.
    if let Some(q) = query.queries.first() {
        let mut wire = Vec::new();
        for label in q.name().iter() {
            wire.push(label.len() as u8);
            wire.extend_from_slice(label);
        }
        wire.push(0);
        if bytes.len() >= 12 + wire.len() {
            bytes[12..12 + wire.len()].copy_from_slice(&wire);
        }
    }
    let reply = tokio::time::timeout(DEADLINE, exchange_bytes(server, t, &bytes))
        .await
        .expect("answer within the deadline");
    let m = Message::from_vec(&reply).expect("a decodable response");
    assert_eq!(m.metadata.id, query.metadata.id, "response ID matches");
    m
}

pub async fn exchange_bytes(server: SocketAddr, t: Transport, bytes: &[u8]) -> Vec<u8> {
    exchange_bytes_from(Ipv4Addr::LOCALHOST, server, t, bytes).await
}

/// Ask from a chosen loopback source address (client groups key on it).
pub async fn ask_from(
    source: Ipv4Addr,
    server: SocketAddr,
    t: Transport,
    qname: &str,
    rtype: RecordType,
) -> Message {
    let q = query_message(qname, rtype, true);
    let reply = tokio::time::timeout(
        DEADLINE,
        exchange_bytes_from(source, server, t, &q.to_vec().unwrap()),
    )
    .await
    .expect("answer within the deadline");
    Message::from_vec(&reply).expect("a decodable response")
}

pub async fn exchange_bytes_from(
    source: Ipv4Addr,
    server: SocketAddr,
    t: Transport,
    bytes: &[u8],
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match t {
        Transport::Udp => {
            let s = UdpSocket::bind((source, 0)).await.unwrap();
            s.send_to(bytes, server).await.unwrap();
            let mut buf = vec![0u8; 65535];
            let (n, _) = s.recv_from(&mut buf).await.unwrap();
            buf.truncate(n);
            buf
        }
        Transport::Tcp => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind((source, 0).into()).unwrap();
            let mut s = socket.connect(server).await.unwrap();
            let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(bytes);
            s.write_all(&framed).await.unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).await.unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).await.unwrap();
            buf
        }
    }
}

pub fn a_records(m: &Message) -> Vec<Ipv4Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(A(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

pub fn aaaa_records(m: &Message) -> Vec<Ipv6Addr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::AAAA(AAAA(ip)) => Some(*ip),
            _ => None,
        })
        .collect()
}

/// Poll `f` until it returns true or the deadline passes.
pub async fn eventually<F, Fut>(mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + DEADLINE;
    loop {
        if f().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
