//! The UDP fast path answers exactly as the general path: the same questions go to a server
//! with `fast_path = true` (first ask fills the packet cache or is synthesized in wire form,
//! the second is a packet-cache hit) and to one with `fast_path = false`, and the wire
//! responses must be byte-identical apart from the ID and the TTLs.

use hickory_proto::rr::RecordType;
use rampart::dns::wire;

use crate::support::*;

/// Raw query bytes with the name spelt exactly as given.
fn raw_query(
    id: u16,
    qname: &str,
    qtype: RecordType,
    edns: Option<(u16, bool)>,
    rd: bool,
) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[
        u8::from(rd),
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ]);
    for label in qname.split('.').filter(|l| !l.is_empty()) {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&u16::from(qtype).to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    if let Some((payload, dnssec)) = edns {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&payload.to_be_bytes());
        p.extend_from_slice(&[0, 0, if dnssec { 0x80 } else { 0 }, 0, 0, 0]);
    }
    p
}

/// A response with ID and TTLs zeroed.
fn normalized(mut r: Vec<u8>) -> Vec<u8> {
    let index = wire::index_response(&r).expect("a response we can index");
    r[0] = 0;
    r[1] = 0;
    for at in index.ttl_offsets {
        wire::put_u32(&mut r, usize::from(at), 0);
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_and_general_paths_answer_alike() {
    let h = Hierarchy::start().await;
    let (mut files, mut lists) = standard_lists();
    // RPZ local data: the answers of big feeds (several addresses, both families, wildcard).
    files.push((
        "local.rpz",
        "$ORIGIN local.rpz.\n@ SOA ns. h. 1 1 1 1 1\n@ NS ns.\n\
         two.corp.test A 192.0.2.91\ntwo.corp.test A 192.0.2.92\n\
         two.corp.test AAAA 2001:db8::91\n*.two.corp.test A 192.0.2.93\n\
         only4.corp.test A 192.0.2.94\nredirect.corp.test CNAME www.corp.test.\n\
         text.corp.test TXT \"why\"\ntext.corp.test A 192.0.2.95\n"
            .to_string(),
    ));
    lists.push_str("\n[[lists]]\nname = \"local\"\npath = \"local.rpz\"\nformat = \"rpz\"\n");
    let start = |fast: bool| {
        let files = files.clone();
        let extra = lists.clone();
        let h = &h;
        async move {
            TestServer::start(
                h,
                Setup {
                    files,
                    extra,
                    server: format!("fast_path = {fast}"),
                    ..Setup::default()
                },
            )
            .await
        }
    };
    let fast = start(true).await;
    let general = start(false).await;

    let questions: Vec<(&str, RecordType)> = vec![
        // Resolved upstream, then served from the packet cache.
        ("www.corp.test.", RecordType::A),
        ("WwW.CoRp.TeSt.", RecordType::AAAA),
        ("corp.test.", RecordType::MX),
        ("alias.corp.test.", RecordType::A),
        ("nothing.corp.test.", RecordType::A),
        ("www.corp.test.", RecordType::TXT),
        // Allow-listed under a blocked name.
        ("ok.ads.corp.test.", RecordType::A),
        // Blocked: address, subdomain, NODATA, NXDOMAIN list, mixed case.
        ("ads.corp.test.", RecordType::A),
        ("x.ads.corp.test.", RecordType::AAAA),
        ("deep.x.Ads.Corp.Test.", RecordType::MX),
        ("tracker.test.", RecordType::TXT),
        ("sub.adnet.test.", RecordType::A),
        ("ADNET.test.", RecordType::AAAA),
        // RPZ local data: two addresses, one, none of the type (NODATA), a wildcard, a CNAME.
        ("two.corp.test.", RecordType::A),
        ("Two.Corp.Test.", RecordType::AAAA),
        ("two.corp.test.", RecordType::MX),
        ("x.two.corp.test.", RecordType::A),
        ("only4.corp.test.", RecordType::AAAA),
        ("redirect.corp.test.", RecordType::A),
        ("text.corp.test.", RecordType::TXT),
        ("text.corp.test.", RecordType::A),
    ];
    let variants = [
        (None, true),
        (Some((1232, false)), true),
        (Some((4096, true)), true),
        (Some((512, false)), false),
        (None, false),
    ];
    let mut compared = 0;
    let mut id = 100u16;
    for (qname, qtype) in &questions {
        for (edns, rd) in variants {
            id = id.wrapping_add(1);
            let q = raw_query(id, qname, *qtype, edns, rd);
            let expected = exchange_bytes(general.dns, Transport::Udp, &q).await;
            // Ask the fast server twice: the first answer fills the packet cache (or is
            // synthesized), the second is served from it.
            for round in 0..2 {
                let got = exchange_bytes(fast.dns, Transport::Udp, &q).await;
                assert_eq!(&got[..2], &q[..2], "ID echoed for {qname} {qtype}");
                assert_eq!(
                    normalized(got),
                    normalized(expected.clone()),
                    "{qname} {qtype} edns={edns:?} rd={rd} round {round}: fast and general responses differ"
                );
                compared += 1;
            }
        }
    }
    assert_eq!(compared, questions.len() * variants.len() * 2);

    // The second round of each question was a packet-cache hit.
    let m = fast.metrics().await;
    assert!(metric_sum(&m, "rampart_packet_cache_entries", &[]) >= 0.0);
    let hits = metric_sum(&m, "rampart_queries_total", &["outcome=\"cache_hit\""]);
    assert!(hits >= 6.0 * variants.len() as f64, "cache hits: {hits}");
    fast.stop().await;
    general.stop().await;
}

/// After a list update, packet-cache entries whose name the new policy decides as before are
/// served again (revalidated), while a name the update blocks, and a CNAME whose target it
/// blocks, are blocked at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_updates_keep_unaffected_entries_and_block_affected_ones_at_once() {
    let h = Hierarchy::start().await;
    let s = TestServer::start(
        &h,
        Setup {
            files: vec![("live.txt", "unrelated.test\n".to_string())],
            extra: "[[lists]]\nname = \"live\"\npath = \"live.txt\"\nformat = \"plain\"\nrefresh = \"50ms\"\n"
                .into(),
            ..Setup::default()
        },
    )
    .await;
    let compiles = |m: &str| metric_sum(m, "rampart_list_compiles_total", &["list=\"live\""]);
    let update = |content: &'static str| {
        let s = &s;
        async move {
            let before = compiles(&s.metrics().await);
            std::fs::write(s.dir.path().join("live.txt"), content).unwrap();
            assert!(
                eventually(|| async { compiles(&s.metrics().await) > before }).await,
                "list version compiled"
            );
            // The version is in service once /v1/check sees it.
            let first = content.lines().last().unwrap().to_string();
            assert!(
                eventually(|| async {
                    http_get(s.admin, &format!("/v1/check?name={first}"))
                        .await
                        .1
                        .contains("\"blocked\"")
                })
                .await
            );
        }
    };
    for _ in 0..2 {
        for q in ["www.corp.test.", "alias.corp.test."] {
            let m = ask(s.dns, Transport::Udp, q, RecordType::A).await;
            assert_eq!(a_records(&m), vec![WWW_V4], "{q}");
        }
    }
    // An update that does not concern them: same answers.
    update("unrelated.test\nother.test\n").await;
    for q in ["www.corp.test.", "alias.corp.test."] {
        let m = ask(s.dns, Transport::Udp, q, RecordType::A).await;
        assert_eq!(a_records(&m), vec![WWW_V4], "{q} after an unrelated update");
    }
    // An update that blocks the target: both blocked at once (the alias through its CNAME).
    update("unrelated.test\nwww.corp.test\n").await;
    let m = ask(s.dns, Transport::Udp, "www.corp.test.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![std::net::Ipv4Addr::LOCALHOST]);
    let m = ask(s.dns, Transport::Udp, "alias.corp.test.", RecordType::A).await;
    assert!(
        !a_records(&m).contains(&WWW_V4),
        "the alias's cached answer must not survive its target being blocked: {m:?}"
    );
    s.stop().await;
}

/// Prefetch: a name asked for in the last tenth of its TTL is answered from the cache and
/// refreshed upstream in the background once, so it never expires while it is popular.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn popular_names_are_refreshed_before_they_expire() {
    let h = Hierarchy::start().await;
    let s = TestServer::start(
        &h,
        Setup {
            extra: "[cache]\nmax_ttl = \"10s\"\nttl_jitter = 0.0\n".into(),
            ..Setup::default()
        },
    )
    .await;
    let q = "www.corp.test.";
    let asked = || h.log.count(q, RecordType::A);
    let m = ask(s.dns, Transport::Udp, q, RecordType::A).await;
    assert_eq!(m.answers.first().map(|r| r.ttl), Some(10));
    let first = asked();
    assert!(first >= 1);
    // From the packet cache while fresh: nobody asks upstream.
    ask(s.dns, Transport::Udp, q, RecordType::A).await;
    assert_eq!(asked(), first);
    // In the last tenth of the TTL: still answered at once from the cache, and one refresh.
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_millis(9_200) {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let m = ask(s.dns, Transport::Udp, q, RecordType::A).await;
    assert!(m.answers.first().is_some_and(|r| r.ttl == 1), "{m:?}");
    assert!(
        eventually(|| async { asked() == first + 1 }).await,
        "one upstream refresh: {} queries",
        asked()
    );
    assert!(
        eventually(|| async {
            metric_sum(&s.metrics().await, "rampart_prefetches_total", &[]) == 1.0
        })
        .await
    );
    // After the old copy's expiry the refreshed one answers: no query waits on upstream.
    while started.elapsed() < std::time::Duration::from_millis(10_500) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let m = ask(s.dns, Transport::Udp, q, RecordType::A).await;
    assert!(!m.answers.is_empty());
    assert_eq!(asked(), first + 1, "served from the refreshed copy");
    s.stop().await;
}
