//! Access control, rate limits and the TCP listener's limits, over real UDP and TCP from
//! several loopback source addresses.

use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::RecordType,
};
use rampart::config::Config;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream, UdpSocket},
};

use crate::support::*;

const INSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 9);

/// A lab hierarchy and a server with the standard lists, `server` lines for `[server]` and
/// `extra` tables.
async fn start(server: &str, extra: &str) -> (Hierarchy, TestServer) {
    let h = Hierarchy::start().await;
    let (files, lists) = standard_lists();
    let s = TestServer::start(
        &h,
        Setup {
            files,
            extra: format!("{lists}\n{extra}"),
            server: server.to_string(),
            ..Setup::default()
        },
    )
    .await;
    (h, s)
}

async fn counter(s: &TestServer, metric: &str, labels: &[&str]) -> f64 {
    metric_sum(&s.metrics().await, metric, labels)
}

/// Poll the metrics until `metric{labels}` reaches `want`.
async fn wait_counter(s: &TestServer, metric: &str, labels: &[&str], want: f64) {
    let reached = eventually(|| async { counter(s, metric, labels).await >= want }).await;
    assert!(
        reached,
        "{metric}{labels:?} = {}, want {want}",
        counter(s, metric, labels).await
    );
}

/// A TCP connection from `source`.
async fn connect_from(source: Ipv4Addr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind((source, 0).into()).unwrap();
    tokio::time::timeout(DEADLINE, socket.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}

async fn send_framed(s: &mut TcpStream, m: &Message) {
    let bytes = m.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    s.write_all(&framed).await.unwrap();
}

/// The next framed message, or None when the server closed the connection.
async fn read_framed(s: &mut TcpStream) -> Option<Message> {
    let mut len = [0u8; 2];
    let read = tokio::time::timeout(DEADLINE, s.read_exact(&mut len))
        .await
        .expect("the server answers or closes in time");
    read.ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.ok()?;
    Some(Message::from_vec(&buf).expect("a decodable response"))
}

/// True once the server has closed the connection (EOF or reset), reading any answers first.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

fn assert_refused(m: &Message, qname: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.metadata.recursion_available);
    assert!(m.answers.is_empty());
    assert_eq!(m.queries.len(), 1, "the question is echoed");
    assert_eq!(m.queries[0].name(), &name(qname));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_outside_the_allowed_networks_are_refused() {
    let (_h, s) = start("", "[access]\nallow = [\"127.0.0.1/32\"]\n").await;
    for t in [Transport::Udp, Transport::Tcp] {
        // Blocked (fast path), cached-or-resolved: refused all the same.
        for qname in ["ads.corp.test.", "www.corp.test."] {
            let m = ask_from(OUTSIDE, s.dns, t, qname, RecordType::A).await;
            assert_refused(&m, qname);
        }
        let m = ask_from(INSIDE, s.dns, t, "www.corp.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert_eq!(a_records(&m), vec![WWW_V4]);
    }
    let m = s.metrics().await;
    let denied = |p: &str| {
        metric_sum(
            &m,
            "rampart_access_denied_total",
            &[&format!("protocol=\"{p}\""), "action=\"refuse\""],
        )
    };
    assert_eq!(denied("udp"), 2.0);
    assert_eq!(denied("tcp"), 2.0);
    // Refused queries are not counted as answered queries.
    assert_eq!(
        metric_sum(&m, "rampart_queries_total", &["outcome=\"refused\""]),
        0.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn action_drop_answers_nothing_and_closes_tcp() {
    // One UDP worker reads datagrams in order, so once a later query is answered, an answer
    // to an earlier one would have been sent too.
    let (_h, s) = start(
        "workers = 1",
        "[access]\nallow = [\"127.0.0.1/32\"]\naction = \"drop\"\n",
    )
    .await;
    let outside = UdpSocket::bind((OUTSIDE, 0)).await.unwrap();
    let q = query_message("ads.corp.test.", RecordType::A, true);
    outside.send_to(&q.to_vec().unwrap(), s.dns).await.unwrap();
    let m = ask_from(
        INSIDE,
        s.dns,
        Transport::Udp,
        "ads.corp.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let mut buf = [0u8; 512];
    assert!(
        outside.try_recv_from(&mut buf).is_err(),
        "a dropped client hears nothing"
    );
    wait_counter(
        &s,
        "rampart_access_denied_total",
        &["protocol=\"udp\"", "action=\"drop\""],
        1.0,
    )
    .await;

    let mut tcp = connect_from(OUTSIDE, s.dns).await;
    send_framed(&mut tcp, &q).await;
    assert!(closed(&mut tcp).await, "the connection is closed");
    wait_counter(
        &s,
        "rampart_tcp_rejected_total",
        &["reason=\"access\""],
        1.0,
    )
    .await;
    wait_counter(
        &s,
        "rampart_access_denied_total",
        &["protocol=\"tcp\"", "action=\"drop\""],
        1.0,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_limits_applies_a_new_access_table() {
    let (_h, s) = start("", "").await;
    // The default allows loopback.
    let m = ask_from(
        OUTSIDE,
        s.dns,
        Transport::Udp,
        "ads.corp.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let path = s.dir.path().join("rampart.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let narrowed = format!("{text}\n[access]\nallow = [\"127.0.0.1/32\"]\n");
    let config = Config::from_toml(&narrowed, &path).unwrap();
    s.running.as_ref().unwrap().reload_limits(&config);
    for t in [Transport::Udp, Transport::Tcp] {
        let m = ask_from(OUTSIDE, s.dns, t, "ads.corp.test.", RecordType::A).await;
        assert_refused(&m, "ads.corp.test.");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_dropped_or_told_to_use_tcp() {
    let (_h, s) = start(
        "workers = 1",
        "[rate_limit]\nclient_qps = 5\nclient_burst = 5\nprefix_qps = 0\nslip = 2\n",
    )
    .await;
    const SENT: usize = 40;
    let client = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 7), 0))
        .await
        .unwrap();
    // A blocked name: the fast path answers it at once, in order.
    let q = query_message("ads.corp.test.", RecordType::A, true);
    let started = Instant::now();
    for _ in 0..SENT {
        client.send_to(&q.to_vec().unwrap(), s.dns).await.unwrap();
    }
    let sending = started.elapsed();
    // Another client on the same worker: once it is answered, so are all the above.
    let m = ask_from(
        INSIDE,
        s.dns,
        Transport::Udp,
        "ads.corp.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    let (mut answered, mut truncated) = (0usize, 0usize);
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = client.try_recv_from(&mut buf) {
        let r = Message::from_vec(&buf[..n]).unwrap();
        if r.metadata.truncation {
            assert!(r.answers.is_empty());
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert_eq!(r.queries.len(), 1);
            truncated += 1;
        } else {
            assert!(!r.answers.is_empty());
            answered += 1;
        }
    }
    eprintln!(
        "rate limit: {SENT} sent in {sending:?}: {answered} answered, {truncated} truncated, {} \
         dropped",
        SENT - answered - truncated
    );
    // The burst, plus what refills at 5 per second while sending.
    let refill = (sending.as_secs_f64() * 5.0).ceil() as usize;
    assert!(
        (5..=5 + refill).contains(&answered),
        "answered {answered} (sending took {sending:?})"
    );
    let limited = SENT - answered;
    // Every second limited query slips (give or take one for refills in between).
    assert!(
        truncated.abs_diff(limited / 2) <= 1 + refill,
        "{truncated} truncated of {limited} limited"
    );
    let dropped = limited - truncated;
    wait_counter(&s, "rampart_rate_limited_total", &[], limited as f64).await;
    let m = s.metrics().await;
    let limited_by = |action: &str| {
        metric_sum(
            &m,
            "rampart_rate_limited_total",
            &["scope=\"client\"", &format!("action=\"{action}\"")],
        )
    };
    assert_eq!(limited_by("slip") as usize, truncated);
    assert_eq!(limited_by("drop") as usize, dropped);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_per_client_are_limited() {
    let (_h, s) = start("", "[tcp]\nmax_connections_per_client = 2\n").await;
    let q = query_message("ads.corp.test.", RecordType::A, true);
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut c = connect_from(INSIDE, s.dns).await;
        send_framed(&mut c, &q).await;
        assert!(read_framed(&mut c).await.is_some(), "answered");
        open.push(c);
    }
    let mut third = connect_from(INSIDE, s.dns).await;
    assert!(closed(&mut third).await, "a third connection is closed");
    wait_counter(
        &s,
        "rampart_tcp_rejected_total",
        &["reason=\"per_client\""],
        1.0,
    )
    .await;
    // Another client is not affected.
    let m = ask_from(
        OUTSIDE,
        s.dns,
        Transport::Tcp,
        "ads.corp.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Closing one frees its slot.
    drop(open.pop());
    let freed = eventually(|| async {
        let mut c = connect_from(INSIDE, s.dns).await;
        send_framed(&mut c, &q).await;
        read_framed(&mut c).await.is_some()
    })
    .await;
    assert!(freed);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_closed_after_its_query_limit() {
    let (_h, s) = start("", "[tcp]\nmax_queries_per_connection = 3\n").await;
    let mut c = connect_from(INSIDE, s.dns).await;
    let mut ids = Vec::new();
    let mut pipelined = Vec::new();
    for _ in 0..5 {
        let q = query_message("ads.corp.test.", RecordType::A, true);
        ids.push(q.metadata.id);
        let bytes = q.to_vec().unwrap();
        pipelined.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        pipelined.extend_from_slice(&bytes);
    }
    c.write_all(&pipelined).await.unwrap();
    let mut answered = Vec::new();
    while let Some(m) = read_framed(&mut c).await {
        answered.push(m.metadata.id);
    }
    answered.sort_unstable();
    let mut first_three = ids[..3].to_vec();
    first_three.sort_unstable();
    assert_eq!(
        answered, first_three,
        "the first three are answered, then it closes"
    );
    wait_counter(
        &s,
        "rampart_tcp_closed_total",
        &["reason=\"query_limit\""],
        1.0,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_incomplete_connections_are_closed() {
    let (_h, s) = start(
        "tcp_idle_timeout = \"300ms\"",
        "[tcp]\nmessage_timeout = \"300ms\"\n",
    )
    .await;
    // Idle after an answer.
    let mut c = connect_from(INSIDE, s.dns).await;
    send_framed(
        &mut c,
        &query_message("ads.corp.test.", RecordType::A, true),
    )
    .await;
    assert!(read_framed(&mut c).await.is_some());
    let since = Instant::now();
    assert!(closed(&mut c).await);
    assert!(
        since.elapsed() >= Duration::from_millis(250),
        "{:?}",
        since.elapsed()
    );
    wait_counter(&s, "rampart_tcp_closed_total", &["reason=\"idle\""], 1.0).await;
    // Half a length prefix, then nothing.
    let mut c = connect_from(INSIDE, s.dns).await;
    c.write_all(&[0]).await.unwrap();
    assert!(closed(&mut c).await);
    wait_counter(
        &s,
        "rampart_tcp_closed_total",
        &["reason=\"incomplete\""],
        1.0,
    )
    .await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_tcp_queries_are_answered_as_they_are_ready() {
    let (_h, s) = start("", "").await;
    let mut c = connect_from(INSIDE, s.dns).await;
    // The first waits for a silent authority (SERVFAIL after the 2 s resolver timeout); the
    // second is answered from the policy at once, so it comes back first.
    let slow = query_message("www.slow.test.", RecordType::A, true);
    let fast = query_message("ads.corp.test.", RecordType::A, true);
    send_framed(&mut c, &slow).await;
    send_framed(&mut c, &fast).await;
    let first = read_framed(&mut c).await.expect("an answer");
    assert_eq!(
        first.metadata.id, fast.metadata.id,
        "the quick answer first"
    );
    let second = read_framed(&mut c).await.expect("an answer");
    assert_eq!(second.metadata.id, slow.metadata.id);
    assert_eq!(second.metadata.response_code, ResponseCode::ServFail);
    let m = s.metrics().await;
    assert!(
        metric_sum(&m, "rampart_queries_total", &["protocol=\"tcp\""]) >= 2.0,
        "TCP queries are counted as tcp"
    );
    s.stop().await;
}

/// Listeners run by hickory-server (DoT and DoH) go through `DnsHandler::handle_request`, which
/// checks access too: a plain TCP listener of hickory-server stands in for them here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hickory_server_listeners_check_access_too() {
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use hickory_server::Server;
    use rampart::{app, dns::handler::SharedHandler, metrics::Metrics, policy::Snapshot};

    let h = Hierarchy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[access]\nallow = [\"127.0.0.1/32\"]\n[resolver]\nmode = \"forward\"\n\
         [resolver.forward]\nupstreams = [\"{}\"]\n",
        h.leaf_addr()
    );
    let config = Config::from_toml(&text, &dir.path().join("rampart.toml")).unwrap();
    let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
    let policy = Arc::new(ArcSwap::from_pointee(Snapshot::empty()));
    let handler = app::build_handler(&config, policy, metrics.clone(), None).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut server = Server::new(SharedHandler(handler));
    server.register_listener(listener, Duration::from_secs(5), 16);

    let m = ask_from(
        OUTSIDE,
        addr,
        Transport::Tcp,
        "www.corp.test.",
        RecordType::A,
    )
    .await;
    assert_refused(&m, "www.corp.test.");
    let m = ask_from(
        INSIDE,
        addr,
        Transport::Tcp,
        "www.corp.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(a_records(&m), vec![WWW_V4]);
    let text = metrics.render();
    assert_eq!(
        metric_sum(
            &text,
            "rampart_access_denied_total",
            &["protocol=\"tcp\"", "action=\"refuse\""]
        ),
        1.0
    );
    server.shutdown_gracefully().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_connections_in_all_are_limited() {
    let (_h, s) = start("", "[tcp]\nmax_connections = 2\n").await;
    let q = query_message("ads.corp.test.", RecordType::A, true);
    let mut open = Vec::new();
    for source in [INSIDE, OUTSIDE] {
        let mut c = connect_from(source, s.dns).await;
        send_framed(&mut c, &q).await;
        assert!(read_framed(&mut c).await.is_some(), "answered");
        open.push(c);
    }
    let mut third = connect_from(Ipv4Addr::new(127, 0, 0, 8), s.dns).await;
    assert!(closed(&mut third).await, "a third connection is closed");
    wait_counter(&s, "rampart_tcp_rejected_total", &["reason=\"total\""], 1.0).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_lets_tcp_queries_in_flight_finish() {
    let (_h, s) = start("", "").await;
    let mut c = connect_from(INSIDE, s.dns).await;
    // Waits for a silent authority: SERVFAIL after the 2 s resolver timeout, within the 5 s
    // shutdown grace.
    let slow = query_message("www.slow.test.", RecordType::A, true);
    send_framed(&mut c, &slow).await;
    // Once the query is being resolved, stop the server.
    wait_counter(&s, "rampart_upstream_outstanding", &[], 1.0).await;
    let stopping = tokio::spawn(s.stop());
    let m = read_framed(&mut c)
        .await
        .expect("the query in flight is answered");
    assert_eq!(m.metadata.id, slow.metadata.id);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(closed(&mut c).await, "then the connection closes");
    stopping.await.unwrap();
}
