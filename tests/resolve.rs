//! End to end over real sockets: recursion and forwarding against the loopback hierarchy,
//! blocking, allow lists, name forms, caching, timeouts, truncation and malformed input.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RData, RecordType},
};

use crate::support::*;

const BLOCK_V4: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const BLOCK_V6: Ipv6Addr = Ipv6Addr::LOCALHOST;

async fn server(h: &Hierarchy, mode: Mode) -> TestServer {
    let (files, extra) = standard_lists();
    TestServer::start(
        h,
        Setup {
            mode,
            files,
            extra,
            ..Setup::default()
        },
    )
    .await
}

fn assert_resolver_flags(m: &Message) {
    assert!(m.metadata.recursion_available, "RA set");
    assert!(!m.metadata.authoritative, "AA clear");
    assert_eq!(m.queries.len(), 1, "question echoed");
    assert!(m.edns.is_some(), "EDNS echoed");
}

async fn allowed_names_resolve(s: &TestServer) {
    for t in [Transport::Udp, Transport::Tcp] {
        let m = ask(s.dns, t, "www.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert_eq!(a_records(&m), vec![WWW_V4], "{t:?}");
        assert_resolver_flags(&m);

        let m = ask(s.dns, t, "www.corp.test.", RecordType::AAAA).await;
        assert_eq!(aaaa_records(&m), vec![WWW_V6], "{t:?}");

        let m = ask(s.dns, t, "corp.test.", RecordType::MX).await;
        assert!(
            m.answers.iter().any(
                |r| matches!(&r.data, RData::MX(mx) if mx.exchange == name("mail.corp.test."))
            ),
            "{t:?}: MX answer: {m:?}"
        );

        let m = ask(s.dns, t, "nosuch.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{t:?}");
        assert!(
            m.authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA),
            "NXDOMAIN carries the SOA"
        );
    }
    // A CNAME is returned with the rest of its chain.
    let m = ask(s.dns, Transport::Udp, "alias.corp.test.", RecordType::A).await;
    assert!(
        m.answers
            .iter()
            .any(|r| r.record_type() == RecordType::CNAME)
    );
    assert_eq!(a_records(&m), vec![WWW_V4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recursive_lookup_returns_authoritative_data() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    allowed_names_resolve(&s).await;
    // The recursion really went through root and TLD.
    assert!(h.log.count("www.corp.test.", RecordType::A) >= 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_lookup_returns_authoritative_data() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Forward).await;
    allowed_names_resolve(&s).await;
    s.stop().await;
}

async fn blocking_behaves(s: &TestServer, h: &Hierarchy) {
    for t in [Transport::Udp, Transport::Tcp] {
        // The listed name and its subdomains get the block address, in every casing.
        for qname in [
            "ads.corp.test.",
            "x.ads.corp.test.",
            "Ex.AdS.CoRp.TeSt.",
            "ADS.CORP.TEST.",
        ] {
            let m = ask(s.dns, t, qname, RecordType::A).await;
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::NoError,
                "{t:?} {qname}"
            );
            assert_eq!(a_records(&m), vec![BLOCK_V4], "{t:?} {qname}");
            assert_eq!(m.answers[0].ttl, 60, "default block TTL");
            assert!(
                m.queries[0].name().eq_case(&name(qname)),
                "question echoed as asked: {}",
                m.queries[0].name()
            );
            assert_resolver_flags(&m);

            let m = ask(s.dns, t, qname, RecordType::AAAA).await;
            assert_eq!(aaaa_records(&m), vec![BLOCK_V6], "{t:?} {qname}");

            // Other types: NODATA with an SOA for negative caching.
            for other in [RecordType::MX, RecordType::TXT, RecordType::HTTPS] {
                let m = ask(s.dns, t, qname, other).await;
                assert_eq!(m.metadata.response_code, ResponseCode::NoError);
                assert!(m.answers.is_empty(), "{t:?} {qname} {other}: NODATA");
                assert!(
                    m.authorities
                        .iter()
                        .any(|r| r.record_type() == RecordType::SOA),
                    "NODATA carries an SOA"
                );
            }
        }
        // Names in a list written with upper case and a trailing dot.
        for qname in [
            "tracker.test.",
            "TRACKER.TEST.",
            "deep.sub.tracker.test.",
            "other.test.",
        ] {
            let m = ask(s.dns, t, qname, RecordType::A).await;
            assert_eq!(a_records(&m), vec![BLOCK_V4], "{t:?} {qname}");
        }
        // An allow-listed subdomain of a blocked name resolves upstream.
        let m = ask(s.dns, t, "ok.ads.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![OK_ADS_V4], "{t:?}");
        // Per-list action: the adblock list answers NXDOMAIN.
        let m = ask(s.dns, t, "www.adnet.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(
            m.authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA)
        );
        // A name that merely ends in a listed name's text is not a subdomain.
        let m = ask(s.dns, t, "notads.corp.test.", RecordType::A).await;
        assert_eq!(
            m.metadata.response_code,
            ResponseCode::NXDomain,
            "upstream answer"
        );
    }
    // Blocked names never reached the upstream.
    assert_eq!(h.log.count("ads.corp.test.", RecordType::A), 0);
    assert_eq!(h.log.count("x.ads.corp.test.", RecordType::A), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_names_get_the_block_answer_recursive() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    blocking_behaves(&s, &h).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_names_get_the_block_answer_forward() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Forward).await;
    blocking_behaves(&s, &h).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_lists_and_unset_block_addresses() {
    let h = Hierarchy::start().await;
    let s = TestServer::start(
        &h,
        Setup {
            files: vec![("exact.txt", "ads.corp.test\n".into())],
            extra: r#"
[block]
ipv6 = ""
ttl = "5m"

[[lists]]
name = "exact"
path = "exact.txt"
format = "plain"
match = "exact"
"#
            .into(),
            ..Setup::default()
        },
    )
    .await;
    let m = ask(s.dns, Transport::Udp, "ads.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![BLOCK_V4]);
    assert_eq!(m.answers[0].ttl, 300, "configured block TTL");
    let m = ask(s.dns, Transport::Udp, "ads.corp.test.", RecordType::AAAA).await;
    assert!(m.answers.is_empty(), "no IPv6 block address: NODATA");
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // An exact rule leaves subdomains alone.
    let m = ask(s.dns, Transport::Udp, "x.ads.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![ADS_V4]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_query_is_served_from_cache() {
    let h = Hierarchy::start().await;
    for mode in [Mode::Recursive, Mode::Forward] {
        let s = server(&h, mode).await;
        let before = h.log.count("cached.corp.test.", RecordType::A);
        let first = ask(s.dns, Transport::Udp, "cached.corp.test.", RecordType::A).await;
        let second = ask(s.dns, Transport::Tcp, "cached.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&first), a_records(&second));
        assert_eq!(
            h.log.count("cached.corp.test.", RecordType::A) - before,
            1,
            "the upstream saw exactly one query"
        );
        assert!(
            second.answers[0].ttl <= first.answers[0].ttl,
            "TTL counts down"
        );
        let metrics = s.metrics().await;
        assert_eq!(
            metric_sum(
                &metrics,
                "rampart_queries_total",
                &["outcome=\"cache_hit\""]
            ),
            1.0
        );
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_questions_in_flight_share_one_upstream_query() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let dns = s.dns;
        set.spawn(async move { ask(dns, Transport::Udp, "www.corp.test.", RecordType::A).await });
    }
    while let Some(m) = set.join_next().await {
        assert_eq!(a_records(&m.unwrap()), vec![WWW_V4]);
    }
    assert_eq!(
        h.log.count("www.corp.test.", RecordType::A),
        1,
        "one upstream query for 20 concurrent identical questions"
    );
    // QNAME minimisation: root and TLD were asked for the next label only.
    assert_eq!(h.log.count("test.", RecordType::NS), 1);
    assert_eq!(h.log.count("corp.test.", RecordType::NS), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qname_minimisation_probes_a_name_once() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    let m = ask(s.dns, Transport::Udp, "x.wild.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 54)]);
    // wild.corp.test. is no zone cut: remembered, so the next name below it is asked directly.
    let m = ask(s.dns, Transport::Udp, "y.wild.corp.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(h.log.count("wild.corp.test.", RecordType::NS), 1);
    assert_eq!(h.log.count("corp.test.", RecordType::NS), 1);
    assert_eq!(h.log.count("y.wild.corp.test.", RecordType::A), 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iteration_handles_glueless_cross_zone_lame_and_large() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    // The zone's only NS is named in another zone and has no glue: resolved first.
    let m = ask(s.dns, Transport::Udp, "www.glueless.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![GLUELESS_V4]);
    // A CNAME into another zone: followed there, the chain comes back whole.
    let m = ask(s.dns, Transport::Udp, "cross.corp.test.", RecordType::A).await;
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(a_records(&m), vec![GLUELESS_V4]);
    // A silent and a refusing server before the good one: still answered in time.
    for _ in 0..3 {
        let m = ask(s.dns, Transport::Udp, "www.mixed.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![MIXED_V4], "{m:?}");
    }
    let m = ask(s.dns, Transport::Udp, "nosuch.mixed.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // Too big for the resolver's UDP size: the authority truncates, the resolver asks over TCP.
    let m = ask(s.dns, Transport::Tcp, "huge.corp.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(a_records(&m).len(), usize::from(HUGE));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_gives_servfail_within_the_deadline() {
    let h = Hierarchy::start().await;
    let s = TestServer::start(
        &h,
        Setup {
            timeout: "1s",
            ..Setup::default()
        },
    )
    .await;
    for t in [Transport::Udp, Transport::Tcp] {
        let started = Instant::now();
        let m = ask(s.dns, t, "www.slow.test.", RecordType::A).await;
        let elapsed = started.elapsed();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail, "{t:?}");
        assert!(
            elapsed < Duration::from_millis(1500),
            "{t:?}: SERVFAIL after {elapsed:?}, configured timeout 1 s"
        );
    }
    let metrics = s.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "rampart_upstream_errors_total",
            &["reason=\"timeout\""]
        ),
        2.0
    );
    // The server is still healthy for other names.
    let m = ask(s.dns, Transport::Udp, "www.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![WWW_V4]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_truncate_over_udp_and_complete_over_tcp() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    // No EDNS: 512 bytes at most, so the 60-address answer is truncated.
    let q = query_message("big.corp.test.", RecordType::A, false);
    let m = exchange(s.dns, Transport::Udp, &q).await;
    assert!(m.metadata.truncation, "TC set without EDNS");
    // EDNS with 1232 bytes: it fits.
    let m = ask(s.dns, Transport::Udp, "big.corp.test.", RecordType::A).await;
    assert!(!m.metadata.truncation);
    assert_eq!(a_records(&m).len(), 60);
    // TCP: always complete.
    let m = exchange(s.dns, Transport::Tcp, &q).await;
    assert!(!m.metadata.truncation);
    assert_eq!(a_records(&m).len(), 60);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_do_not_hurt() {
    let h = Hierarchy::start().await;
    let s = server(&h, Mode::Recursive).await;
    // A header claiming one question, followed by garbage: FORMERR (or silence), never a crash.
    let mut junk = vec![0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    junk.extend_from_slice(&[0xff; 40]);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&junk, s.dns).await.unwrap();
    let mut buf = [0u8; 512];
    if let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_secs(1), sock.recv_from(&mut buf)).await
    {
        let m = Message::from_vec(&buf[..n]).expect("a decodable FORMERR");
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
    sock.send_to(&[1, 2, 3], s.dns).await.unwrap();
    // Still serving.
    let m = ask(s.dns, Transport::Udp, "ads.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![BLOCK_V4]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_groups_choose_the_lists_and_the_answer() {
    let h = Hierarchy::start().await;
    let (files, mut extra) = standard_lists();
    extra.push_str(
        r#"
[[groups]]
name = "default"
lists = ["adnet"]

[[groups]]
name = "kids"
networks = ["127.0.0.9/32", "fd00::/8"]
lists = ["hosts", "adnet"]
action = "nxdomain"
"#,
    );
    let s = TestServer::start(
        &h,
        Setup {
            files,
            extra,
            ..Setup::default()
        },
    )
    .await;
    let kid = Ipv4Addr::new(127, 0, 0, 9);
    let other = Ipv4Addr::new(127, 0, 0, 1);
    for t in [Transport::Udp, Transport::Tcp] {
        // Default group: the hosts list does not apply, the adnet list does.
        let m = ask_from(other, s.dns, t, "ads.corp.test.", RecordType::A).await;
        assert_eq!(a_records(&m), vec![ADS_V4], "{t:?}");
        let m = ask_from(other, s.dns, t, "adnet.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // The kids group: both lists, and its own block answer.
        let m = ask_from(kid, s.dns, t, "ads.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{t:?}");
        assert!(m.answers.is_empty());
    }
    s.stop().await;
}
