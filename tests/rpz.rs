//! Response policy zones end to end: every trigger and action, precedence between zones,
//! `*.name` against `name`, PASSTHRU, CNAME-chain and response-IP rewriting, client-IP triggers,
//! policy override and log-only mode, over real UDP and TCP against the loopback hierarchy.

use std::{net::Ipv4Addr, time::Duration};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

use crate::support::*;

/// Zone 1: one rule of every kind. Zone 2 (consulted after it) disagrees on purpose. Zone 3 is
/// log-only. Zone 4 overrides every action with the block page address.
const ZONE1: &str = r#"$TTL 60
$ORIGIN rpz1.
@ SOA localhost. root.localhost. 7 3600 600 86400 60
  NS localhost.
ads.corp.test        CNAME .
*.wild.corp.test     CNAME *.
drop.corp.test       CNAME rpz-drop.
tcp.corp.test        CNAME rpz-tcp-only.
local.corp.test      A     192.0.2.99
local.corp.test      TXT   "blocked by policy"
safe.corp.test       CNAME www.corp.test.
pass.corp.test       CNAME rpz-passthru.
prec.corp.test       A     192.0.2.77
32.31.2.0.192.rpz-ip CNAME .
32.9.0.0.127.rpz-client-ip CNAME .
"#;

const ZONE2: &str = r#"$ORIGIN rpz2.
@ SOA localhost. root.localhost. 1 3600 600 86400 60
pass.corp.test       CNAME .
prec.corp.test       CNAME .
www.corp.test        A     192.0.2.88
"#;

const ZONE3: &str = "$ORIGIN rpz3.\nlogged.corp.test CNAME .\n";
const ZONE4: &str = "$ORIGIN rpz4.\nover.corp.test CNAME .\n";

async fn rpz_server(h: &Hierarchy) -> TestServer {
    TestServer::start(
        h,
        Setup {
            files: vec![
                ("z1.rpz", ZONE1.into()),
                ("z2.rpz", ZONE2.into()),
                ("z3.rpz", ZONE3.into()),
                ("z4.rpz", ZONE4.into()),
            ],
            extra: r#"
[[lists]]
name = "z1"
path = "z1.rpz"
format = "rpz"

[[lists]]
name = "z2"
path = "z2.rpz"

[[lists]]
name = "z3"
path = "z3.rpz"
format = "rpz"
mode = "log_only"

[[lists]]
name = "z4"
path = "z4.rpz"
format = "rpz"
policy = "block_address"
"#
            .into(),
            ..Setup::default()
        },
    )
    .await
}

fn has_soa(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpz_triggers_and_actions() {
    let h = Hierarchy::start().await;
    let s = rpz_server(&h).await;
    for t in [Transport::Udp, Transport::Tcp] {
        // NXDOMAIN (`CNAME .`) for the exact name only.
        let m = ask(s.dns, t, "ads.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{t:?}");
        assert!(has_soa(&m));
        let m = ask(s.dns, t, "x.ads.corp.test.", RecordType::A).await;
        assert_eq!(
            a_records(&m),
            vec![ADS_V4],
            "{t:?}: an exact trigger leaves children alone"
        );

        // `*.name` (`CNAME *.` = NODATA) covers subdomains, not the name itself.
        let m = ask(s.dns, t, "x.wild.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert!(m.answers.is_empty(), "{t:?}: NODATA");
        let m = ask(s.dns, t, "wild.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 53)], "{t:?}");

        // Local data: the asked type, NODATA for others.
        let m = ask(s.dns, t, "local.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 99)], "{t:?}");
        let m = ask(s.dns, t, "local.corp.test.", RecordType::TXT).await;
        assert_eq!(m.answers.len(), 1);
        assert!(matches!(&m.answers[0].data, RData::TXT(_)));
        let m = ask(s.dns, t, "local.corp.test.", RecordType::MX).await;
        assert!(m.answers.is_empty() && m.metadata.response_code == ResponseCode::NoError);

        // A CNAME rewrite answers the CNAME and the resolved target (never a bare CNAME).
        let m = ask(s.dns, t, "safe.corp.test.", RecordType::A).await;
        assert!(
            m.answers
                .iter()
                .any(|r| matches!(&r.data, RData::CNAME(c) if c.0 == name("www.corp.test."))),
            "{t:?}: {m:?}"
        );
        assert_eq!(a_records(&m), vec![WWW_V4], "{t:?}");

        // PASSTHRU in zone 1 beats the NXDOMAIN of zone 2.
        let m = ask(s.dns, t, "pass.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 50)], "{t:?}");
        // The first zone that matches wins: zone 1's local data, not zone 2's NXDOMAIN.
        let m = ask(s.dns, t, "prec.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 77)], "{t:?}");
        // A zone consulted later still applies where the earlier ones are silent.
        let m = ask(s.dns, t, "www.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 88)], "{t:?}");

        // CNAME-chain rewriting: cloak → ads.corp.test, whose name zone 1 blocks.
        let m = ask(s.dns, t, "cloak.corp.test.", RecordType::A).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "{t:?}: {m:?}"
        );
        assert!(a_records(&m).is_empty());

        // RESPONSE-IP: ip31 resolves to 192.0.2.31, listed under rpz-ip.
        let m = ask(s.dns, t, "ip31.corp.test.", RecordType::A).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "{t:?}: {m:?}"
        );

        // Policy override: zone 4 says NXDOMAIN, the list's policy turns it into the block page.
        let m = ask(s.dns, t, "over.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![Ipv4Addr::LOCALHOST], "{t:?}");
    }

    // TCP-ONLY: truncated empty answer over UDP, the real answer over TCP.
    let q = query_message("tcp.corp.test.", RecordType::A, true);
    let m = exchange(s.dns, Transport::Udp, &q).await;
    assert!(m.metadata.truncation && m.answers.is_empty());
    let m = ask(s.dns, Transport::Tcp, "tcp.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 56)]);

    // DROP: no answer at all (over UDP the client times out; over TCP nothing arrives).
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let q = query_message("drop.corp.test.", RecordType::A, true);
    sock.send_to(&q.to_vec().unwrap(), s.dns).await.unwrap();
    let mut buf = [0u8; 512];
    let got = tokio::time::timeout(Duration::from_millis(700), sock.recv_from(&mut buf)).await;
    assert!(got.is_err(), "DROP sends nothing");

    // Log-only: zone 3 matches, is counted and logged, the name resolves normally.
    let m = ask(s.dns, Transport::Udp, "logged.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 52)]);
    let metrics = s.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "rampart_log_only_matches_total", &["list=\"z3\""]),
        1.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpz_client_ip_trigger() {
    let h = Hierarchy::start().await;
    let s = rpz_server(&h).await;
    let listed = Ipv4Addr::new(127, 0, 0, 9);
    for t in [Transport::Udp, Transport::Tcp] {
        // 127.0.0.9 is listed under rpz-client-ip: every name is NXDOMAIN for it...
        let m = ask_from(listed, s.dns, t, "www.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{t:?}");
        // ... and nobody else.
        let m = ask_from(
            Ipv4Addr::LOCALHOST,
            s.dns,
            t,
            "x.ads.corp.test.",
            RecordType::A,
        )
        .await;
        assert_eq!(a_records(&m), vec![ADS_V4], "{t:?}");
    }
    s.stop().await;
}
