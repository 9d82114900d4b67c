//! DNS over TLS and DNS over HTTPS: the same answers as UDP (allowed, blocked, large), metrics
//! labelled by protocol, certificate reload without dropping open connections, and clear
//! errors for bad certificate files. Certificates are made here with rcgen: a test CA and a
//! leaf for "dns.test" and 127.0.0.1.

use std::{net::SocketAddr, sync::Arc};

use data_encoding::BASE64URL_NOPAD;
use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use rampart::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::support::*;

/// A test certificate authority.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM, plus the DER the server should present.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Rampart test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for dns.test and 127.0.0.1 valid until `not_after` (midnight UTC).
    fn leaf(&self, serial: u64, not_after: (i32, u8, u8)) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["dns.test".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("dns.test #{serial}"));
        params.serial_number = Some(serial.into());
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A Rampart with the standard lists, DoT and DoH on 127.0.0.1:0 and `leaf` as certificate.
async fn tls_server(h: &Hierarchy, leaf: &Leaf) -> TestServer {
    tls_server_with(h, leaf, "").await
}

/// The same, with extra lines for the `[tls]` table.
async fn tls_server_with(h: &Hierarchy, leaf: &Leaf, tls_lines: &str) -> TestServer {
    let (mut files, lists) = standard_lists();
    files.push(("tls.crt", leaf.cert_pem.clone()));
    files.push(("tls.key", leaf.key_pem.clone()));
    let extra = format!(
        "[tls]\ncertificate = \"tls.crt\"\nkey = \"tls.key\"\ndot_listen = [\"127.0.0.1:0\"]\ndoh_listen = [\"127.0.0.1:0\"]\n{tls_lines}\n{lists}"
    );
    TestServer::start(
        h,
        Setup {
            files,
            extra,
            ..Setup::default()
        },
    )
    .await
}

fn running(s: &TestServer) -> &rampart::app::Running {
    s.running.as_ref().expect("running")
}

fn client_config(ca: &Ca, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem().as_bytes()).unwrap())
        .unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// A verified DoT connection to "dns.test" at `addr`.
async fn dot_connect(ca: &Ca, addr: SocketAddr) -> TlsStream<TcpStream> {
    let connector = TlsConnector::from(client_config(ca, &[b"dot"]));
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(
        DEADLINE,
        connector.connect(ServerName::try_from("dns.test").unwrap(), tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake succeeds and the certificate verifies")
}

/// The leaf certificate the server presented on this connection.
fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .expect("a certificate")[0]
        .to_vec()
}

async fn dot_exchange(stream: &mut TlsStream<TcpStream>, query: &Message) -> Message {
    let bytes = query.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let reply = tokio::time::timeout(DEADLINE, async {
        stream.write_all(&framed).await.unwrap();
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut buf).await.unwrap();
        buf
    })
    .await
    .expect("DoT answer within the deadline");
    let m = Message::from_vec(&reply).expect("a decodable DoT response");
    assert_eq!(m.metadata.id, query.metadata.id, "response ID matches");
    m
}

fn doh_client(ca: &Ca, addr: SocketAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("dns.test", addr)
        .timeout(DEADLINE)
        .build()
        .unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Doh {
    Get,
    Post,
}

async fn doh_exchange(
    client: &reqwest::Client,
    addr: SocketAddr,
    how: Doh,
    query: &Message,
) -> Message {
    let bytes = query.to_vec().unwrap();
    let url = format!("https://dns.test:{}/dns-query", addr.port());
    let request = match how {
        Doh::Get => client.get(format!("{url}?dns={}", BASE64URL_NOPAD.encode(&bytes))),
        Doh::Post => client
            .post(&url)
            .header("content-type", "application/dns-message")
            .body(bytes),
    };
    let response = request.send().await.expect("DoH request succeeds");
    assert_eq!(response.status(), 200, "{how:?}");
    assert_eq!(
        response.version(),
        reqwest::Version::HTTP_2,
        "HTTP/2 by ALPN"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/dns-message"
    );
    let body = response.bytes().await.unwrap();
    let m = Message::from_vec(&body).expect("a decodable DoH response");
    assert_eq!(m.metadata.id, query.metadata.id, "response ID matches");
    m
}

/// What must agree between transports: RCODE and the answer records (TTLs aside).
fn essence(m: &Message) -> (ResponseCode, Vec<String>) {
    let mut answers: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
        .collect();
    answers.sort();
    (m.metadata.response_code, answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_and_doh_answer_like_udp_and_are_labelled_by_protocol() {
    let h = Hierarchy::start().await;
    let ca = Ca::new();
    let s = tls_server(&h, &ca.leaf(1, (2031, 1, 1))).await;
    let (dot_addr, doh_addr) = (running(&s).dot_addrs[0], running(&s).doh_addrs[0]);
    let mut dot = dot_connect(&ca, dot_addr).await;
    let doh = doh_client(&ca, doh_addr);
    let before = s.metrics().await;

    let questions = [
        ("www.corp.test.", RecordType::A),
        ("www.corp.test.", RecordType::AAAA),
        ("nosuch.corp.test.", RecordType::A),
        ("ads.corp.test.", RecordType::A), // blocked (hosts list)
        ("adnet.test.", RecordType::A),    // blocked, NXDOMAIN (adblock list)
        ("ok.ads.corp.test.", RecordType::A), // allow list beats the block
    ];
    for (qname, rtype) in questions {
        let udp = ask(s.dns, Transport::Udp, qname, rtype).await;
        let want = essence(&udp);
        let q = query_message(qname, rtype, true);
        // Several times each, on one DoT connection and one HTTP/2 connection.
        for _ in 0..2 {
            let m = dot_exchange(&mut dot, &q).await;
            assert_eq!(essence(&m), want, "DoT {qname} {rtype}");
            assert!(m.edns.is_some(), "EDNS answered over DoT");
            for how in [Doh::Get, Doh::Post] {
                let m = doh_exchange(&doh, doh_addr, how, &q).await;
                assert_eq!(essence(&m), want, "DoH {how:?} {qname} {rtype}");
            }
        }
    }
    let blocked = ask(s.dns, Transport::Udp, "ads.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&blocked), vec![std::net::Ipv4Addr::LOCALHOST]);
    let m = dot_exchange(&mut dot, &query_message("adnet.test.", RecordType::A, true)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);

    // A 60-address answer: truncated over UDP without EDNS, whole over TLS and HTTPS.
    let q = query_message("big.corp.test.", RecordType::A, false);
    let m = dot_exchange(&mut dot, &q).await;
    assert!(!m.metadata.truncation, "no TC over DoT");
    assert_eq!(a_records(&m).len(), 60);
    let m = doh_exchange(&doh, doh_addr, Doh::Post, &q).await;
    assert!(!m.metadata.truncation, "no TC over DoH");
    assert_eq!(a_records(&m).len(), 60);

    let after = s.metrics().await;
    let moved = |protocol: &str, outcome: &str| {
        let labels = [
            format!("protocol=\"{protocol}\""),
            format!("outcome=\"{outcome}\""),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        metric_sum(&after, "rampart_queries_total", &labels)
            - metric_sum(&before, "rampart_queries_total", &labels)
    };
    // 6 questions twice, plus adnet and big over DoT; GET and POST for each over DoH, plus big.
    assert_eq!(moved("tls", "blocked"), 2.0 * 2.0 + 1.0);
    assert_eq!(moved("https", "blocked"), 2.0 * 2.0 * 2.0);
    let total = |p: &str| {
        metric_sum(&after, "rampart_queries_total", &[p])
            - metric_sum(&before, "rampart_queries_total", &[p])
    };
    assert_eq!(total("protocol=\"tls\""), 6.0 * 2.0 + 2.0);
    assert_eq!(total("protocol=\"https\""), 6.0 * 2.0 * 2.0 + 1.0);
    assert_eq!(
        metric_sum(
            &after,
            "rampart_tls_certificate_expiry_timestamp_seconds",
            &[]
        ),
        1_924_992_000.0,
        "notAfter 2031-01-01T00:00:00Z"
    );
    crate::metrics::promtool_check(&after);
    // The default query log (blocked queries) has them too, by protocol.
    let log = s.dir.path().join("log/queries.log");
    let logged = |protocol: &str| {
        let field = format!("\"protocol\":\"{protocol}\"");
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&field) && l.contains("\"outcome\":\"blocked\""))
            .count()
    };
    let ok = eventually(|| async { logged("tls") == 5 && logged("https") == 8 }).await;
    assert!(ok, "tls {}, https {}", logged("tls"), logged("https"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_answers_pipelined_queries_as_they_complete() {
    let h = Hierarchy::start().await;
    let ca = Ca::new();
    let s = tls_server(&h, &ca.leaf(1, (2031, 1, 1))).await;
    let mut dot = dot_connect(&ca, running(&s).dot_addrs[0]).await;
    // A query to a silent authority (SERVFAIL after resolver.timeout), then a quick one, in
    // one write: the quick answer must not wait behind the slow one (RFC 7858 section 3.3).
    let slow = query_message("www.slow.test.", RecordType::A, true);
    let quick = query_message("www.corp.test.", RecordType::A, true);
    let mut framed = Vec::new();
    for q in [&slow, &quick] {
        let bytes = q.to_vec().unwrap();
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(&bytes);
    }
    dot.write_all(&framed).await.unwrap();
    let mut read_one = async || {
        let mut len = [0u8; 2];
        dot.read_exact(&mut len).await.unwrap();
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        dot.read_exact(&mut buf).await.unwrap();
        Message::from_vec(&buf).unwrap()
    };
    let first = tokio::time::timeout(DEADLINE, read_one()).await.unwrap();
    assert_eq!(
        first.metadata.id, quick.metadata.id,
        "the quick answer comes first"
    );
    assert_eq!(a_records(&first), vec![WWW_V4]);
    let second = tokio::time::timeout(DEADLINE, read_one()).await.unwrap();
    assert_eq!(second.metadata.id, slow.metadata.id);
    assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doh_rejects_bad_requests_with_http_errors() {
    let h = Hierarchy::start().await;
    let ca = Ca::new();
    let s = tls_server(&h, &ca.leaf(1, (2031, 1, 1))).await;
    let addr = running(&s).doh_addrs[0];
    let client = doh_client(&ca, addr);
    let base = format!("https://dns.test:{}", addr.port());
    let status = |r: reqwest::Response| r.status().as_u16();
    let get = |path: String| client.get(format!("{base}{path}")).send();
    assert_eq!(status(get("/dns-query".into()).await.unwrap()), 400);
    assert_eq!(status(get("/dns-query?dns=***".into()).await.unwrap()), 400);
    assert_eq!(
        status(get("/dns-query?dns=AAAA".into()).await.unwrap()),
        400
    );
    let q = BASE64URL_NOPAD.encode(
        &query_message("www.corp.test.", RecordType::A, true)
            .to_vec()
            .unwrap(),
    );
    assert_eq!(status(get(format!("/other?dns={q}")).await.unwrap()), 404);
    let r = client
        .post(format!("{base}/dns-query"))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 415);
    let r = client
        .put(format!("{base}/dns-query"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 405);
    // The server still answers on the same connection.
    let m = doh_exchange(
        &client,
        addr,
        Doh::Get,
        &query_message("www.corp.test.", RecordType::A, true),
    )
    .await;
    assert_eq!(a_records(&m), vec![WWW_V4]);

    // Clients without HTTP/2 get HTTP/1.1.
    let http1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .resolve("dns.test", addr)
        .http1_only()
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let r = http1
        .get(format!("{base}/dns-query?dns={q}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_11);
    assert_eq!(r.status(), 200);
    let m = Message::from_vec(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(a_records(&m), vec![WWW_V4]);
    s.stop().await;
}

/// Read until the server closes the connection; true if it did within the deadline.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(DEADLINE, async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await,
        Ok(())
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed() {
    let h = Hierarchy::start().await;
    let ca = Ca::new();
    let s = tls_server_with(
        &h,
        &ca.leaf(1, (2031, 1, 1)),
        "handshake_timeout = \"200ms\"\nidle_timeout = \"400ms\"",
    )
    .await;
    let (dot_addr, doh_addr) = (running(&s).dot_addrs[0], running(&s).doh_addrs[0]);

    // No handshake at all: dropped after handshake_timeout.
    for addr in [dot_addr, doh_addr] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let started = std::time::Instant::now();
        assert!(
            closed_by_server(&mut tcp).await,
            "{addr}: silent client dropped"
        );
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    }

    // A DoT client that answers one query and then goes quiet: closed after idle_timeout,
    // after its answer was delivered.
    let mut dot = dot_connect(&ca, dot_addr).await;
    let q = query_message("www.corp.test.", RecordType::A, true);
    assert_eq!(a_records(&dot_exchange(&mut dot, &q).await), vec![WWW_V4]);
    let started = std::time::Instant::now();
    assert!(
        closed_by_server(&mut dot).await,
        "idle DoT connection closed"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));

    // An idle HTTP/2 connection: the server says goodbye (GOAWAY, then close).
    let connector = TlsConnector::from(client_config(&ca, &[b"h2"]));
    let tcp = TcpStream::connect(doh_addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("dns.test").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    assert!(
        closed_by_server(&mut tls).await,
        "idle DoH connection closed"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_and_counted() {
    let h = Hierarchy::start().await;
    let ca = Ca::new();
    let s = tls_server_with(&h, &ca.leaf(1, (2031, 1, 1)), "max_connections = 1").await;
    let (dot_addr, doh_addr) = (running(&s).dot_addrs[0], running(&s).doh_addrs[0]);
    let q = query_message("www.corp.test.", RecordType::A, true);
    let mut first = dot_connect(&ca, dot_addr).await;
    assert_eq!(a_records(&dot_exchange(&mut first, &q).await), vec![WWW_V4]);

    // The limit covers DoT and DoH together.
    for addr in [dot_addr, doh_addr] {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        assert!(closed_by_server(&mut tcp).await, "{addr}: over the limit");
    }
    let text = s.metrics().await;
    assert_eq!(
        metric_sum(&text, "rampart_tls_connections_rejected_total", &[]),
        2.0
    );
    assert_eq!(metric_sum(&text, "rampart_tls_connections", &[]), 1.0);
    // The first connection is unaffected; once it closes, a new one is accepted.
    assert_eq!(a_records(&dot_exchange(&mut first, &q).await), vec![WWW_V4]);
    drop(first);
    assert!(
        eventually(|| async {
            metric_sum(&s.metrics().await, "rampart_tls_connections", &[]) == 0.0
        })
        .await
    );
    let mut again = dot_connect(&ca, dot_addr).await;
    assert_eq!(a_records(&dot_exchange(&mut again, &q).await), vec![WWW_V4]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_reload_serves_new_handshakes_and_keeps_open_connections() {
    let h = Hierarchy::start().await;
    let ca = Ca::new();
    let first = ca.leaf(1, (2031, 1, 1));
    let s = tls_server(&h, &first).await;
    let addr = running(&s).dot_addrs[0];
    let q = query_message("www.corp.test.", RecordType::A, true);

    let mut old = dot_connect(&ca, addr).await;
    assert_eq!(presented(&old), first.der);
    assert_eq!(a_records(&dot_exchange(&mut old, &q).await), vec![WWW_V4]);

    // New files in place, then the reload SIGHUP triggers.
    let second = ca.leaf(2, (2032, 2, 2));
    std::fs::write(s.dir.path().join("tls.crt"), &second.cert_pem).unwrap();
    std::fs::write(s.dir.path().join("tls.key"), &second.key_pem).unwrap();
    running(&s).reload_tls().expect("reload succeeds");

    let mut new = dot_connect(&ca, addr).await;
    assert_eq!(
        presented(&new),
        second.der,
        "a new connection gets the new certificate"
    );
    assert_eq!(a_records(&dot_exchange(&mut new, &q).await), vec![WWW_V4]);
    // The connection opened before the reload still answers, with its original session.
    assert_eq!(presented(&old), first.der);
    assert_eq!(a_records(&dot_exchange(&mut old, &q).await), vec![WWW_V4]);
    // DoH shares the certificate.
    let doh_addr = running(&s).doh_addrs[0];
    let m = doh_exchange(&doh_client(&ca, doh_addr), doh_addr, Doh::Get, &q).await;
    assert_eq!(a_records(&m), vec![WWW_V4]);

    let text = s.metrics().await;
    assert_eq!(
        metric_sum(&text, "rampart_tls_reloads_total", &["result=\"ok\""]),
        2.0,
        "the start-up load and the reload"
    );
    assert_eq!(
        metric_sum(
            &text,
            "rampart_tls_certificate_expiry_timestamp_seconds",
            &[]
        ),
        1_959_292_800.0,
        "notAfter 2032-02-02T00:00:00Z"
    );

    // A broken certificate file: the reload fails, the old certificate stays.
    std::fs::write(
        s.dir.path().join("tls.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
    )
    .unwrap();
    let err = running(&s).reload_tls().expect_err("a broken file fails");
    assert!(err.to_string().contains("tls.crt"), "{err}");
    // A certificate with somebody else's key: refused too.
    let third = ca.leaf(3, (2033, 3, 3));
    std::fs::write(s.dir.path().join("tls.crt"), &third.cert_pem).unwrap();
    let err = running(&s).reload_tls().expect_err("a key mismatch fails");
    assert!(err.to_string().contains("does not belong"), "{err}");

    let mut after = dot_connect(&ca, addr).await;
    assert_eq!(
        presented(&after),
        second.der,
        "the last good certificate stays"
    );
    assert_eq!(a_records(&dot_exchange(&mut after, &q).await), vec![WWW_V4]);
    assert_eq!(a_records(&dot_exchange(&mut old, &q).await), vec![WWW_V4]);
    let text = s.metrics().await;
    assert_eq!(
        metric_sum(&text, "rampart_tls_reloads_total", &["result=\"error\""]),
        2.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "rampart_tls_certificate_expiry_timestamp_seconds",
            &[]
        ),
        1_959_292_800.0,
        "the expiry of the certificate still in service"
    );
    s.stop().await;
}

#[test]
fn bad_certificate_configuration_names_the_key_and_file() {
    let ca = Ca::new();
    let leaf = ca.leaf(1, (2031, 1, 1));
    let other = ca.leaf(2, (2031, 1, 1));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write("good.crt", &leaf.cert_pem);
    write("good.key", &leaf.key_pem);
    write("other.key", &other.key_pem);
    write("empty.crt", "");
    write("garbage.key", "hello\n");
    let path = dir.path().join("rampart.toml");
    let load = |cert: &str, key: &str| {
        Config::from_toml(
            &format!(
                "[tls]\ncertificate = \"{cert}\"\nkey = \"{key}\"\ndot_listen = [\"127.0.0.1:0\"]\n"
            ),
            &path,
        )
    };
    assert!(load("good.crt", "good.key").is_ok());
    for (cert, key, want) in [
        (
            "missing.crt",
            "good.key",
            ["tls.certificate", "missing.crt"],
        ),
        ("empty.crt", "good.key", ["tls.certificate", "empty.crt"]),
        ("good.crt", "garbage.key", ["tls.key", "garbage.key"]),
        ("good.crt", "other.key", ["tls.key", "does not belong"]),
    ] {
        let err = load(cert, key).expect_err("invalid").to_string();
        for w in want {
            assert!(err.contains(w), "{cert} {key}: {err}");
        }
    }
    let err = Config::from_toml("[tls]\ndoh_listen = [\"127.0.0.1:0\"]\n", &path)
        .expect_err("a listener without a certificate")
        .to_string();
    assert!(err.contains("tls.certificate"), "{err}");
}
