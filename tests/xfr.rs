//! Zone transfers against a real BIND 9 primary: AXFR and IXFR signed with TSIG HMAC-SHA256,
//! the zone text read back by the RPZ parser, diffs applied to exactly the zone a fresh AXFR
//! gives, a wrong key refused with a clear error, and BIND's NOTIFY recognised and answered.
//! Each test runs its own `named` on free loopback ports (see support/bind.rs); without BIND
//! installed they are skipped unless RAMPART_REQUIRE_BIND=1.

use std::{
    net::{Ipv4Addr, SocketAddr},
    str::FromStr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::Message,
    rr::{Name, RData, Record, rdata::A},
};
use rampart::{
    feeds::xfr::{self, Transfer, TsigKey, XfrError, XfrSource, Zone},
    policy::formats::{self, Format, RuleAction},
};
use tokio::net::UdpSocket;

use crate::support::bind;

use bind::{Bind, KEY_NAME, KEY_SECRET};

const ZONE: &str = r#"$TTL 300
@                    SOA   ns.rpz.test. admin.rpz.test. 1 3600 600 86400 60
                     NS    localhost.
bad.example          CNAME .
*.bad.example        CNAME .
nodata.example       CNAME *.
ok.example           CNAME rpz-passthru.
drop.example         CNAME rpz-drop.
walled.example       CNAME garden.example.net.
local.example        A     192.0.2.1
local.example        TXT   "blocked by policy"
32.1.2.0.192.rpz-ip  CNAME .
"#;

/// Records in ZONE besides the SOA.
const ZONE_RECORDS: usize = 10;

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn key() -> TsigKey {
    TsigKey::new(KEY_NAME, KEY_SECRET).unwrap()
}

fn source(bind: &Bind, tsig: Option<TsigKey>) -> XfrSource {
    XfrSource {
        primary: bind.addr,
        zone: name("rpz.test."),
        tsig,
        timeout: Duration::from_secs(10),
    }
}

/// A NOTIFY target for named, then named itself; None when BIND is not installed.
async fn start(zone: &str) -> Option<(Bind, UdpSocket)> {
    let notify = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = notify.local_addr().unwrap().port();
    let bind = Bind::start(zone, port).await?;
    Some((bind, notify))
}

async fn axfr(source: &XfrSource) -> Zone {
    match xfr::fetch(source, None).await {
        Ok(Transfer::Full(zone)) => zone,
        other => panic!("AXFR: {other:?}"),
    }
}

/// Records as a sorted list of master-file lines, to compare two zones as sets.
fn lines(zone: &Zone) -> Vec<String> {
    let mut lines: Vec<String> = zone.records.iter().map(Record::to_string).collect();
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axfr_with_tsig_returns_every_record_and_the_serial() {
    let Some((bind, _notify)) = start(ZONE).await else {
        return;
    };
    let source = source(&bind, Some(key()));
    let zone = axfr(&source).await;
    assert_eq!(zone.serial(), 1);
    assert_eq!(zone.soa.name, name("rpz.test."));
    assert_eq!(zone.records.len(), ZONE_RECORDS, "{:#?}", zone.records);
    assert_eq!(xfr::soa_serial(&source).await.unwrap(), 1);

    let text = zone.to_zone_text();
    let list = formats::parse(Format::Rpz, &text);
    assert_eq!(list.serial, Some(1));
    assert!(
        list.rejected().next().is_none(),
        "{:?}\n{text}",
        list.skipped
    );
    let rule = |n: &str, subdomains_only: bool| {
        list.rules
            .iter()
            .find(|r| r.name == n && r.subdomains_only == subdomains_only)
            .and_then(|r| r.action.clone())
            .unwrap_or_else(|| panic!("no rule for {n}:\n{text}"))
    };
    assert_eq!(rule("bad.example", false), RuleAction::NxDomain);
    assert_eq!(rule("bad.example", true), RuleAction::NxDomain);
    assert_eq!(rule("nodata.example", false), RuleAction::NoData);
    assert_eq!(rule("ok.example", false), RuleAction::Passthru);
    assert_eq!(rule("drop.example", false), RuleAction::Drop);
    assert_eq!(
        rule("walled.example", false),
        RuleAction::LocalData(
            vec![RData::CNAME(hickory_proto::rr::rdata::CNAME(name(
                "garden.example.net."
            )))]
            .into()
        )
    );
    let RuleAction::LocalData(data) = rule("local.example", false) else {
        panic!("local data")
    };
    assert_eq!(data.len(), 2, "{data:?}");
    assert!(data.contains(&RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))));
    assert_eq!(list.rules.len(), 7, "{:?}", list.rules);
    assert_eq!(list.ip_rules.len(), 1);

    // Without a key the zone is not ours to read: BIND refuses.
    let err = xfr::fetch(&self::source(&bind, None), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, XfrError::Refused(_)) && err.to_string().contains("REFUSED"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ixfr_after_updates_applies_to_exactly_the_new_zone() {
    let Some((bind, _notify)) = start(ZONE).await else {
        return;
    };
    let source = source(&bind, Some(key()));
    let v1 = axfr(&source).await;

    bind.nsupdate(
        "update delete bad.example.rpz.test. CNAME\n\
         update delete drop.example.rpz.test.\n\
         update add new.example.rpz.test. 300 CNAME .\n\
         update add local.example.rpz.test. 300 A 192.0.2.2",
    )
    .await;
    assert_eq!(xfr::soa_serial(&source).await.unwrap(), 2);

    let Transfer::Incremental(diffs) = xfr::fetch(&source, Some(&v1)).await.unwrap() else {
        panic!("an incremental transfer")
    };
    assert_eq!(diffs.len(), 1);
    assert_eq!((diffs[0].from_serial, diffs[0].to_serial), (1, 2));
    let mut v2 = v1.clone();
    for diff in &diffs {
        v2.apply(diff).unwrap();
    }
    let fresh = axfr(&source).await;
    assert_eq!(v2.serial(), 2);
    assert_eq!(lines(&v2), lines(&fresh));
    assert_eq!(v2.soa, fresh.soa);
    assert_eq!(v2.to_zone_text(), fresh.to_zone_text());

    // The removed names are gone from the zone and from the rules; the rest are intact.
    assert!(
        !v2.records
            .iter()
            .any(|r| r.name == name("drop.example.rpz.test."))
    );
    let list = formats::parse(Format::Rpz, &v2.to_zone_text());
    let names: Vec<(&str, bool)> = list
        .rules
        .iter()
        .map(|r| (r.name.as_str(), r.subdomains_only))
        .collect();
    assert!(!names.contains(&("bad.example", false)), "{names:?}");
    assert!(!names.contains(&("drop.example", false)), "{names:?}");
    assert!(names.contains(&("bad.example", true)), "{names:?}");
    assert!(names.contains(&("new.example", false)), "{names:?}");

    // Up to date now.
    assert_eq!(
        xfr::fetch(&source, Some(&v2)).await.unwrap(),
        Transfer::UpToDate
    );

    // Two versions behind: the diffs chain (or BIND condenses them) to the newest zone.
    bind.nsupdate(
        "update delete local.example.rpz.test. TXT\nupdate add later.example.rpz.test. 60 CNAME *.",
    )
    .await;
    let transfer = xfr::fetch(&source, Some(&v1)).await.unwrap();
    let Transfer::Incremental(diffs) = transfer else {
        panic!("an incremental transfer: {transfer:?}\n{}", bind.log())
    };
    assert_eq!(diffs.first().map(|d| d.from_serial), Some(1));
    assert_eq!(diffs.last().map(|d| d.to_serial), Some(3));
    let mut v3 = v1.clone();
    for diff in &diffs {
        v3.apply(diff).unwrap();
    }
    let fresh = axfr(&source).await;
    assert_eq!(lines(&v3), lines(&fresh));
    assert_eq!(v3.to_zone_text(), fresh.to_zone_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_a_clear_tsig_error() {
    let Some((bind, _notify)) = start(ZONE).await else {
        return;
    };
    let wrong_secret =
        TsigKey::new(KEY_NAME, "d3JvbmctZDNKdmJtY3RjM1ZqY21WMC1zZWNyZXQtIQ==").unwrap();
    let err = xfr::fetch(&source(&bind, Some(wrong_secret.clone())), None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, XfrError::Tsig(_)), "{text}");
    assert!(
        text.starts_with("TSIG verification failed:") && text.contains("secret"),
        "{text}"
    );
    let err = xfr::soa_serial(&source(&bind, Some(wrong_secret)))
        .await
        .unwrap_err();
    assert!(matches!(err, XfrError::Tsig(_)), "{err}");

    let unknown = TsigKey::new("not-a-key-bind-knows", KEY_SECRET).unwrap();
    let err = xfr::fetch(&source(&bind, Some(unknown)), None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, XfrError::Tsig(_)), "{text}");
    assert!(text.contains("not-a-key-bind-knows"), "{text}");
}

/// The next NOTIFY named sends: the raw message, its sender, and what it announces.
async fn next_notify(notify: &UdpSocket, bind: &Bind) -> (Vec<u8>, SocketAddr, Message) {
    let mut buf = vec![0u8; 4096];
    let Ok(received) =
        tokio::time::timeout(Duration::from_secs(20), notify.recv_from(&mut buf)).await
    else {
        panic!("named sent no NOTIFY; its log:\n{}", bind.log());
    };
    let (len, from) = received.unwrap();
    buf.truncate(len);
    let message = Message::from_vec(&buf).unwrap();
    (buf, from, message)
}

/// Polls named's log until it has a line containing `needle`.
async fn wait_for_log(bind: &Bind, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !bind.log().contains(needle) {
        assert!(
            Instant::now() < deadline,
            "named never logged {needle:?}; its log:\n{}",
            bind.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_after_an_update_is_recognised_and_answered() {
    let Some((bind, notify)) = start(ZONE).await else {
        return;
    };
    let key = key();
    // named writes addresses as 127.0.0.1#port.
    let target = format!("127.0.0.1#{}", notify.local_addr().unwrap().port());

    // named announces the zone when it loads. A response with a damaged MAC shows that named
    // checks the TSIG of NOTIFY responses, so the accepted one below means something.
    let (wire, from, message) = next_notify(&notify, &bind).await;
    xfr::verify_notify(&wire, &key).unwrap();
    assert_eq!(
        xfr::parse_notify(&message),
        Some((name("rpz.test."), Some(1)))
    );
    let mut damaged = xfr::notify_response(&message, Some(&key)).unwrap();
    let inside_mac = damaged.len() - 10;
    damaged[inside_mac] ^= 1;
    notify.send_to(&damaged, from).await.unwrap();
    wait_for_log(
        &bind,
        &format!("notify to {target} failed: tsig verify failure"),
    )
    .await;

    bind.nsupdate("update add notified.example.rpz.test. 300 CNAME .")
        .await;
    let (wire, from, message) = loop {
        let (wire, from, message) = next_notify(&notify, &bind).await;
        if xfr::parse_notify(&message).is_some_and(|(_, serial)| serial == Some(2)) {
            break (wire, from, message);
        }
    };
    xfr::verify_notify(&wire, &key).unwrap();
    assert_eq!(
        xfr::parse_notify(&message),
        Some((name("rpz.test."), Some(2)))
    );
    let response = xfr::notify_response(&message, Some(&key)).unwrap();
    notify.send_to(&response, from).await.unwrap();
    wait_for_log(&bind, &format!("notify response from {target}: NOERROR")).await;

    // The NOTIFY leads to a transfer that brings the change.
    let zone = axfr(&source(&bind, Some(key))).await;
    assert_eq!(zone.serial(), 2);
    assert!(
        zone.records
            .iter()
            .any(|r| r.name == name("notified.example.rpz.test."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_records_by_axfr_then_one_change_by_ixfr() {
    let mut zone_text = String::from(ZONE);
    for i in 0..10_000 {
        zone_text.push_str(&format!("host{i}.bulk.example CNAME .\n"));
    }
    let Some((bind, _notify)) = start(&zone_text).await else {
        return;
    };
    let source = source(&bind, Some(key()));
    let started = Instant::now();
    let v1 = axfr(&source).await;
    let axfr_time = started.elapsed();
    assert_eq!(v1.records.len(), ZONE_RECORDS + 10_000);
    let started = Instant::now();
    let text = v1.to_zone_text();
    let list = formats::parse(Format::Rpz, &text);
    let text_time = started.elapsed();
    assert_eq!(list.rules.len(), 7 + 10_000);

    bind.nsupdate("update delete host5000.bulk.example.rpz.test. CNAME")
        .await;
    let started = Instant::now();
    let Transfer::Incremental(diffs) = xfr::fetch(&source, Some(&v1)).await.unwrap() else {
        panic!("an incremental transfer")
    };
    let ixfr_time = started.elapsed();
    let started = Instant::now();
    let mut v2 = v1.clone();
    for diff in &diffs {
        v2.apply(diff).unwrap();
    }
    let apply_time = started.elapsed();
    assert_eq!(v2.records.len(), ZONE_RECORDS + 10_000 - 1);
    assert_eq!(lines(&v2), lines(&axfr(&source).await));
    eprintln!(
        "xfr timings (debug build unless --release): AXFR of {} records {axfr_time:?}; \
         to_zone_text + RPZ parse {text_time:?}; IXFR of a 1-record change {ixfr_time:?}; \
         apply {apply_time:?}",
        v1.records.len() + 1
    );
}
