//! RPZ by zone transfer from a real primary (BIND 9 on loopback): AXFR with TSIG at start, a
//! name added on the primary is blocked within 2 s after its NOTIFY (IXFR), a removed name
//! resolves again, and a wrong TSIG key is refused with a clear error while the last good copy
//! stays in service.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::support::bind;

use crate::support::*;

const ZONE: &str = "$TTL 60
@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60
  IN NS localhost.
www.corp.test CNAME .
ads.corp.test CNAME .
";

/// A port free for UDP and TCP now (Rampart listens there; BIND sends NOTIFY there).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn setup(primary: SocketAddr, secret: &str, state: &std::path::Path, port: u16) -> Setup {
    Setup {
        listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        extra: format!(
            r#"
[state]
dir = "{}"

[[lists]]
name = "national"
xfr = {{ primary = "{primary}", zone = "rpz.test.", tsig_key = "{}", tsig_secret = "{secret}" }}
refresh = "1h"
"#,
            state.display(),
            bind::KEY_NAME,
        ),
        ..Setup::default()
    }
}

async fn rcode(s: &TestServer, name: &str) -> ResponseCode {
    ask(s.dns, Transport::Udp, name, RecordType::A)
        .await
        .metadata
        .response_code
}

/// Poll until `f` holds, at most `limit`; returns the time it took.
async fn within<F, Fut>(limit: Duration, mut f: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if f().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpz_by_zone_transfer_from_bind() {
    let h = Hierarchy::start().await;
    let port = free_port();
    let Some(primary) = bind::Bind::start(ZONE, port).await else {
        return; // BIND not installed and not required (see support/bind.rs)
    };
    let state = tempfile::tempdir().unwrap();
    let s = TestServer::start(
        &h,
        setup(primary.addr, bind::KEY_SECRET, state.path(), port),
    )
    .await;

    // AXFR with TSIG at start.
    assert_eq!(rcode(&s, "www.corp.test.").await, ResponseCode::NXDomain);
    assert_eq!(rcode(&s, "ads.corp.test.").await, ResponseCode::NXDomain);
    let m = ask(s.dns, Transport::Udp, "mail.corp.test.", RecordType::A).await;
    assert_eq!(
        a_records(&m),
        vec![Ipv4Addr::new(192, 0, 2, 25)],
        "not listed yet"
    );
    let (_, body) = http_get(s.admin, "/v1/lists").await;
    let lists: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(lists[0]["serial"], 1, "{lists}");

    // Added on the primary: NOTIFY, IXFR, blocked within 2 s.
    primary
        .nsupdate("update add mail.corp.test.rpz.test. 60 CNAME .")
        .await;
    let took = within(Duration::from_secs(2), || async {
        rcode(&s, "mail.corp.test.").await == ResponseCode::NXDomain
    })
    .await;
    assert!(
        took.is_some(),
        "blocked within 2 s of the update; named log:\n{}",
        primary.log()
    );
    eprintln!("update → blocked: {:?}", took.unwrap());

    // Removed on the primary: resolves again.
    primary
        .nsupdate("update delete www.corp.test.rpz.test. CNAME")
        .await;
    let took = within(Duration::from_secs(2), || async {
        let m = ask(s.dns, Transport::Udp, "www.corp.test.", RecordType::A).await;
        a_records(&m) == vec![WWW_V4]
    })
    .await;
    assert!(took.is_some(), "unblocked within 2 s of the removal");
    eprintln!("removal → resolves: {:?}", took.unwrap());
    let metrics = s.metrics().await;
    assert!(metric_sum(&metrics, "rampart_notifies_total", &["result=\"accepted\""]) >= 2.0);
    assert!(metric_sum(&metrics, "rampart_notify_to_service_seconds_count", &[]) >= 2.0);
    assert!(metric_sum(&metrics, "rampart_list_serial", &["list=\"national\""]) >= 3.0);
    s.stop().await;

    // A wrong key: refused with a clear error; the saved copy (the last good version) serves.
    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let s = TestServer::start(&h, setup(primary.addr, wrong, state.path(), free_port())).await;
    assert_eq!(
        rcode(&s, "mail.corp.test.").await,
        ResponseCode::NXDomain,
        "last good copy"
    );
    assert!(
        eventually(|| async {
            let (_, body) = http_get(s.admin, "/v1/lists").await;
            body.contains("TSIG")
        })
        .await,
        "the TSIG failure is reported"
    );
    let (_, body) = http_get(s.admin, "/v1/lists").await;
    eprintln!("wrong key reported as: {body}");
    let metrics = s.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "rampart_list_refresh_failures_total",
            &["list=\"national\"", "reason=\"tsig\""]
        ) >= 1.0
    );
    assert_eq!(rcode(&s, "mail.corp.test.").await, ResponseCode::NXDomain);
    s.stop().await;
}
