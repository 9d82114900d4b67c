//! Live list updates from an HTTP feed: a local HTTP server plays the feed (200 with an ETag,
//! 304, 500, a truncated body, an HTML error page, a list that shrinks by 60 %), and the tests
//! check what Rampart serves, `/v1/lists` and the metrics after each refresh; then a restart with
//! the feed unreachable serves the saved copy.

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::{Arc, Mutex},
};

use hickory_proto::rr::RecordType;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

use crate::support::*;

/// What the feed server answers next.
#[derive(Clone)]
enum Feed {
    /// 200 with this body and ETag; 304 when the request's If-None-Match equals the ETag.
    List {
        body: String,
        etag: String,
    },
    Status500,
    /// Announces more bytes than it sends, then closes.
    Truncated,
    /// 200 with an HTML error page (a captive portal, a CDN error).
    Html,
}

/// A tiny HTTP/1.1 server, one request per connection, so every failure mode is exact.
struct FeedServer {
    addr: SocketAddr,
    feed: Arc<Mutex<Feed>>,
    _task: tokio::task::JoinHandle<()>,
}

impl FeedServer {
    async fn start(feed: Feed) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let feed = Arc::new(Mutex::new(feed));
        let f = feed.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let f = f.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let request = String::from_utf8_lossy(&buf).to_ascii_lowercase();
                    let feed = f.lock().unwrap().clone();
                    let response = match feed {
                        Feed::List { body, etag } => {
                            if request.contains(&format!("if-none-match: {}", etag.to_ascii_lowercase())) {
                                "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_string()
                            } else {
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: {etag}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                            }
                        }
                        Feed::Status500 => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops\n".into(),
                        Feed::Truncated => "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\nblocked1.test\nblocked2.test\n".into(),
                        Feed::Html => {
                            let body = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>bad gateway</body></html>\n";
                            format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                        }
                    };
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            addr,
            feed,
            _task: task,
        }
    }

    fn set(&self, feed: Feed) {
        *self.feed.lock().unwrap() = feed;
    }
}

impl Drop for FeedServer {
    fn drop(&mut self) {
        // Dropping a JoinHandle does not stop the task: abort it, closing the listener.
        self._task.abort();
    }
}

fn names(n: usize) -> String {
    (1..=n).map(|i| format!("blocked{i}.test\n")).collect()
}

const TOKEN: &str = "s3cret-token";

fn feed_setup(url: &str, state: &std::path::Path) -> Setup {
    Setup {
        admin_token: Some(TOKEN),
        extra: format!(
            r#"
[state]
dir = "{}"

[[lists]]
name = "feed"
url = "{url}"
format = "plain"
refresh = "1h"
"#,
            state.display()
        ),
        ..Setup::default()
    }
}

async fn blocked(s: &TestServer, qname: &str) -> bool {
    let m = ask(s.dns, Transport::Udp, qname, RecordType::A).await;
    a_records(&m) == vec![Ipv4Addr::LOCALHOST]
}

async fn refresh(s: &TestServer) -> serde_json::Value {
    let (status, body) = http_request(s.admin, "POST", "/v1/lists/feed/refresh", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn lists(s: &TestServer) -> serde_json::Value {
    let (status, body) = http_get(s.admin, "/v1/lists").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_feed_updates_safely_and_survives_a_restart() {
    let h = Hierarchy::start().await;
    let feed = FeedServer::start(Feed::List {
        body: names(10),
        etag: "\"v1\"".into(),
    })
    .await;
    let state = tempfile::tempdir().unwrap();
    let url = format!("http://{}/list.txt", feed.addr);
    let s = TestServer::start(&h, feed_setup(&url, state.path())).await;

    // Fetched at start-up, saved, in service.
    assert!(blocked(&s, "x.blocked1.test.").await);
    assert!(blocked(&s, "blocked10.test.").await);
    let l = lists(&s).await;
    assert_eq!(l["names"], 10);
    assert_eq!(l["etag"], "\"v1\"");
    assert!(
        state.path().join("feed.list").is_file(),
        "last good copy saved"
    );
    let compiles = |m: &str| metric_sum(m, "rampart_list_compiles_total", &["list=\"feed\""]);
    let failures = |m: &str, reason: &str| {
        metric_sum(
            m,
            "rampart_list_refresh_failures_total",
            &["list=\"feed\"", &format!("reason=\"{reason}\"")],
        )
    };
    let before = compiles(&s.metrics().await);

    // 304: the snapshot stays, nothing is recompiled.
    let st = refresh(&s).await;
    assert!(st["last_error"].is_null(), "{st}");
    assert_eq!(
        compiles(&s.metrics().await),
        before,
        "304 does not recompile"
    );

    // Mutating calls need the token.
    let (status, _) = http_request(s.admin, "POST", "/v1/lists/feed/refresh", None).await;
    assert_eq!(status, 401);
    let (status, _) = http_request(s.admin, "POST", "/v1/lists/feed/refresh", Some("wrong")).await;
    assert_eq!(status, 401);

    // 500, a truncated body, an HTML page: each keeps the last good list and is reported.
    for (mode, reason, text) in [
        (Feed::Status500, "http_status", "500"),
        (Feed::Truncated, "body", "incomplete"),
        (Feed::Html, "parse", "HTML"),
    ] {
        feed.set(mode);
        let st = refresh(&s).await;
        let error = st["last_error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(text), "{reason}: {st}");
        assert!(
            blocked(&s, "x.blocked7.test.").await,
            "{reason}: last good list still in service"
        );
        let m = s.metrics().await;
        assert_eq!(failures(&m, reason), 1.0, "{reason}");
        let l = lists(&s).await;
        assert_eq!(l["names"], 10);
        assert!(l["last_error"].as_str().unwrap_or_default().contains(text));
    }

    // A 60 % shrink is held back until accepted.
    feed.set(Feed::List {
        body: names(4),
        etag: "\"v2\"".into(),
    });
    let st = refresh(&s).await;
    assert_eq!(st["held"]["names"], 4, "{st}");
    assert!(
        blocked(&s, "blocked9.test.").await,
        "held: the old list stays in service"
    );
    let m = s.metrics().await;
    assert_eq!(metric_sum(&m, "rampart_list_held", &["list=\"feed\""]), 1.0);
    assert_eq!(failures(&m, "shrink_held"), 1.0);
    let (status, body) = http_request(s.admin, "POST", "/v1/lists/feed/accept", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        !blocked(&s, "blocked9.test.").await,
        "accepted: the new list is in service"
    );
    assert!(blocked(&s, "blocked4.test.").await);
    assert_eq!(lists(&s).await["names"], 4);
    let (status, _) = http_request(s.admin, "POST", "/v1/lists/feed/accept", Some(TOKEN)).await;
    assert_eq!(status, 409, "nothing left to accept");
    s.stop().await;

    // Restart with the feed unreachable: the saved copy is served.
    let port = feed.addr.port();
    drop(feed);
    let dead = format!("http://127.0.0.1:{port}/list.txt");
    let s = TestServer::start(&h, feed_setup(&dead, state.path())).await;
    assert!(blocked(&s, "blocked3.test.").await, "saved copy in service");
    assert!(!blocked(&s, "blocked9.test.").await);
    // The background check fails and says so, without touching the list in service.
    assert!(
        eventually(|| async { !lists(&s).await["last_error"].is_null() }).await,
        "the failed check is reported"
    );
    assert!(blocked(&s, "blocked3.test.").await);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_feed_without_a_saved_copy() {
    let h = Hierarchy::start().await;
    let state = tempfile::tempdir().unwrap();
    // Nothing listens on this port (bound then released).
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/list.txt");
    // Default on_missing: serve without the list, and say so in metrics.
    let s = TestServer::start(&h, feed_setup(&url, state.path())).await;
    let m = s.metrics().await;
    assert_eq!(
        metric_sum(&m, "rampart_list_missing", &["list=\"feed\""]),
        1.0
    );
    assert_eq!(lists(&s).await["missing"], true);
    s.stop().await;

    // on_missing = "refuse_start": the server does not start, and says why.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("r.toml");
    std::fs::write(
        &config,
        format!(
            "[state]\ndir = \"{}\"\n[[lists]]\nname = \"feed\"\nurl = \"{url}\"\non_missing = \"refuse_start\"\n",
            state.path().display()
        ),
    )
    .unwrap();
    let config = rampart::config::Config::load(&config).unwrap();
    let err = rampart::app::start(config).await.unwrap_err().to_string();
    assert!(
        err.contains("refuse_start") && err.contains("feed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_lists_reload_when_they_change_and_check_explains() {
    let h = Hierarchy::start().await;
    let s = TestServer::start(
        &h,
        Setup {
            files: vec![(
                "live.csv",
                "domain,category,reference\nfirst.test,gambling,Decision 12/QD\n".into(),
            )],
            extra: "[[lists]]\nname = \"live\"\npath = \"live.csv\"\nrefresh = \"50ms\"\nmax_shrink = 1.0\n".into(),
            ..Setup::default()
        },
    )
    .await;
    assert!(blocked(&s, "first.test.").await);
    assert!(!blocked(&s, "second.test.").await);

    // /v1/check explains with list, line, category and reference.
    let (status, body) = http_get(s.admin, "/v1/check?name=www.First.Test&client=127.0.0.1").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["decision"], "blocked", "{v}");
    assert_eq!(v["list"], "live");
    assert_eq!(v["line"], 2);
    assert_eq!(v["rule"], "first.test");
    assert_eq!(v["category"], "gambling");
    assert_eq!(v["reference"], "Decision 12/QD");
    let (status, _) = http_get(s.admin, "/v1/check?name=bad..name").await;
    assert_eq!(status, 400);

    // The file changes: the new version is in service without a restart.
    let path = s.dir.path().join("live.csv");
    std::fs::write(
        &path,
        "domain,category\nfirst.test,gambling\nsecond.test,phishing\n",
    )
    .unwrap();
    assert!(
        eventually(|| async { blocked(&s, "second.test.").await }).await,
        "the changed file is reloaded"
    );
    // A broken version (an HTML page saved by mistake) keeps the last good list.
    std::fs::write(&path, "<html><body>404</body></html>\n").unwrap();
    assert!(
        eventually(|| async { !lists(&s).await["last_error"].is_null() }).await,
        "the refused file is reported"
    );
    assert!(blocked(&s, "second.test.").await);
    s.stop().await;
}
