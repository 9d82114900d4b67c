//! The query log end to end: real queries over UDP and TCP against a real server, the JSON
//! lines it writes (list, line, category, reference of blocked queries; modes; privacy),
//! rotation and retention with `rampart log search` (the real binary) over the rotated files,
//! a sink that never drains (queries still answered, entries dropped and counted), and dnstap
//! read back by independent tools (`fstrm_capture` from Debian's fstrm-bin, `dnstap-ldns`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};
use serde_json::Value;

use crate::support::*;

/// A hosts list with a category and reference, an authority CSV feed whose rows carry their
/// own, and an RPZ zone with a rewrite the fast path leaves to the general path.
fn lists() -> (Vec<(&'static str, String)>, String) {
    let files = vec![
        (
            "block.hosts",
            "# ads\n0.0.0.0 ads.corp.test\n0.0.0.0 example.com\n".to_string(),
        ),
        (
            "authority.csv",
            "domain,category,reference,added\n\
             gamble.test,gambling,Order 2026/17,2026-01-02\n\
             phish.test,phishing,\"CERT, case 9\",2026-02-03\n"
                .to_string(),
        ),
        (
            "z.rpz",
            "$TTL 60\n$ORIGIN rpz.\n@ SOA localhost. root.localhost. 1 3600 600 86400 60\n  NS localhost.\nsafe.corp.test CNAME www.corp.test.\n"
                .to_string(),
        ),
    ];
    let toml = r#"
[[lists]]
name = "hosts"
path = "block.hosts"
format = "hosts"
category = "advertising"
reference = "house policy 3"

[[lists]]
name = "authority"
path = "authority.csv"
format = "csv"
basis = "legal"

[[lists]]
name = "rpz"
path = "z.rpz"
format = "rpz"
"#
    .to_string();
    (files, toml)
}

async fn server(h: &Hierarchy, query_log: &str) -> TestServer {
    let (files, toml) = lists();
    TestServer::start(
        h,
        Setup {
            mode: Mode::Forward,
            files,
            extra: format!(
                "{toml}\n[query_log]\n{}{query_log}\n",
                if query_log.contains("path =") {
                    ""
                } else {
                    "path = \"queries.log\"\n"
                }
            ),
            ..Setup::default()
        },
    )
    .await
}

/// The JSON entries of a log file (none if it does not exist yet).
fn entries(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Wait until the log at `path` has at least `n` entries; return them.
async fn wait_for(path: &Path, n: usize) -> Vec<Value> {
    let ok = eventually(|| async { entries(path).len() >= n }).await;
    let got = entries(path);
    assert!(
        ok,
        "expected {n} entries in {}, got {got:#?}",
        path.display()
    );
    got
}

fn find<'a>(entries: &'a [Value], qname: &str, protocol: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| e["qname"] == qname && e["protocol"] == protocol)
        .collect()
}

#[tokio::test]
async fn blocked_queries_carry_list_line_category_and_reference() {
    let h = Hierarchy::start().await;
    let s = server(&h, "mode = \"blocked\"").await;
    let log = s.dir.path().join("queries.log");
    // Fast path (synthesized), general path (TCP), CSV provenance, an RPZ rewrite answered by
    // the general path and then from the packet cache, and an allowed name (not logged).
    ask(s.dns, Transport::Udp, "x.ads.corp.test", RecordType::A).await;
    ask(s.dns, Transport::Tcp, "ads.corp.test", RecordType::AAAA).await;
    ask(s.dns, Transport::Udp, "www.phish.test", RecordType::A).await;
    ask(s.dns, Transport::Udp, "gamble.test", RecordType::MX).await;
    for _ in 0..2 {
        let m = ask(s.dns, Transport::Udp, "safe.corp.test", RecordType::A).await;
        assert_eq!(a_records(&m), vec![WWW_V4]);
    }
    ask(s.dns, Transport::Udp, "www.corp.test", RecordType::A).await;
    let got = wait_for(&log, 6).await;
    assert_eq!(
        got.len(),
        6,
        "allowed names are not logged in mode blocked: {got:#?}"
    );

    let e = find(&got, "x.ads.corp.test", "udp")[0];
    assert_eq!(e["outcome"], "blocked");
    assert_eq!(e["client"], "127.0.0.1");
    assert_eq!(e["qtype"], "A");
    assert_eq!(e["rcode"], "NOERROR");
    assert_eq!(e["list"], "hosts");
    assert_eq!(e["line"], 2);
    assert_eq!(e["rule"], "ads.corp.test");
    assert_eq!(e["category"], "advertising");
    assert_eq!(e["reference"], "house policy 3");
    assert_eq!(e["basis"], "policy");
    let time = e["time"].as_str().unwrap();
    assert!(
        time.ends_with('Z') && time.len() == 24,
        "RFC 3339 UTC with ms: {time}"
    );
    let t = humantime::parse_rfc3339(time).unwrap();
    assert!(t.elapsed().unwrap() < Duration::from_secs(60));

    let e = find(&got, "ads.corp.test", "tcp")[0];
    assert_eq!(
        (e["list"].as_str(), e["line"].as_u64()),
        (Some("hosts"), Some(2))
    );
    assert_eq!(e["qtype"], "AAAA");

    let e = find(&got, "www.phish.test", "udp")[0];
    assert_eq!(e["list"], "authority");
    assert_eq!(e["line"], 3);
    assert_eq!(e["category"], "phishing");
    assert_eq!(e["reference"], "CERT, case 9");
    assert_eq!(e["basis"], "legal");
    let e = find(&got, "gamble.test", "udp")[0];
    assert_eq!(
        (e["category"].as_str(), e["reference"].as_str()),
        (Some("gambling"), Some("Order 2026/17"))
    );
    assert_eq!(e["qtype"], "MX");

    // The rewrite: once from the general path, once a packet-cache hit that only knew the
    // list; both say which rule.
    let rewrites = find(&got, "safe.corp.test", "udp");
    assert_eq!(rewrites.len(), 2, "{got:#?}");
    for e in rewrites {
        assert_eq!(e["outcome"], "blocked");
        assert_eq!(e["list"], "rpz");
        assert_eq!(e["line"], 5, "{e}");
    }
    let m = s.metrics().await;
    assert_eq!(
        metric_sum(&m, "rampart_query_log_written_total", &["sink=\"file\""]),
        6.0
    );
    assert_eq!(metric_sum(&m, "rampart_query_log_dropped_total", &[]), 0.0);
    s.stop().await;
}

#[tokio::test]
async fn modes_all_blocked_and_off() {
    let h = Hierarchy::start().await;
    let all = server(&h, "mode = \"all\"").await;
    let off = server(&h, "mode = \"off\"").await;
    for s in [&all, &off] {
        ask(s.dns, Transport::Udp, "ads.corp.test", RecordType::A).await;
        for _ in 0..2 {
            ask(s.dns, Transport::Udp, "www.corp.test", RecordType::A).await;
        }
        let m = ask(s.dns, Transport::Udp, "nope.corp.test", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        ask(s.dns, Transport::Tcp, "www.corp.test", RecordType::AAAA).await;
    }
    let got = wait_for(&all.dir.path().join("queries.log"), 5).await;
    let outcomes: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|e| {
            (
                e["qname"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
                e["rcode"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("ads.corp.test", "blocked", "NOERROR"),
            ("www.corp.test", "allowed", "NOERROR"),
            ("www.corp.test", "cache_hit", "NOERROR"),
            ("nope.corp.test", "allowed", "NXDOMAIN"),
            ("www.corp.test", "allowed", "NOERROR"),
        ]
    );
    assert_eq!(got[4]["protocol"], "tcp");
    assert!(got[1].get("list").is_none());
    // Off: no file, no writer, no query log metrics.
    assert!(!off.dir.path().join("queries.log").exists());
    assert!(!off.metrics().await.contains("rampart_query_log"));
    all.stop().await;
    off.stop().await;
}

#[tokio::test]
async fn client_addresses_truncated_or_hashed() {
    let h = Hierarchy::start().await;
    let truncated = server(&h, "client = \"truncated\"").await;
    let hashed = server(
        &h,
        "client = \"hashed\"\nhash_secret = \"a secret of some length\"",
    )
    .await;
    for s in [&truncated, &hashed] {
        ask_from(
            std::net::Ipv4Addr::new(127, 0, 0, 9),
            s.dns,
            Transport::Udp,
            "ads.corp.test",
            RecordType::A,
        )
        .await;
        ask(s.dns, Transport::Udp, "ads.corp.test", RecordType::A).await;
    }
    let t = wait_for(&truncated.dir.path().join("queries.log"), 2).await;
    assert_eq!(t[0]["client"], "127.0.0.0/24");
    assert_eq!(t[1]["client"], "127.0.0.0/24");
    let hlog = hashed.dir.path().join("queries.log");
    let hs = wait_for(&hlog, 2).await;
    let (a, b) = (
        hs[0]["client"].as_str().unwrap(),
        hs[1]["client"].as_str().unwrap(),
    );
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
    assert_ne!(a, b, "two clients, two hashes");
    assert!(!std::fs::read_to_string(&hlog).unwrap().contains("127.0.0"));
    // The operator with the config (and so the secret) finds a client by its address.
    let out = rampart(&[
        "log",
        "search",
        "--client",
        "127.0.0.9",
        "--config",
        hashed.dir.path().join("rampart.toml").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["client"], a);
    truncated.stop().await;
    hashed.stop().await;
}

fn rampart(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
        .args(args)
        .output()
        .expect("rampart runs")
}

fn rotated(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("queries.log."))
        })
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn rotation_keeps_the_newest_files_and_search_reads_them_all() {
    let h = Hierarchy::start().await;
    // Every entry gets a file of its own; two rotated files are kept.
    let s = server(&h, "rotate_size = 1\nkeep = 2").await;
    let names: Vec<String> = (0..8).map(|i| format!("n{i}.example.com")).collect();
    for n in &names {
        ask(s.dns, Transport::Udp, n, RecordType::A).await;
    }
    ask(s.dns, Transport::Udp, "ads.corp.test", RecordType::A).await;
    let log = s.dir.path().join("queries.log");
    let ok = eventually(|| async {
        entries(&log)
            .first()
            .is_some_and(|e| e["qname"] == "ads.corp.test")
    })
    .await;
    assert!(
        ok,
        "the last entry is written: {:?} {:?}",
        rotated(s.dir.path()),
        std::fs::read_to_string(&log)
    );
    let ok = eventually(|| async {
        metric_sum(&s.metrics().await, "rampart_query_log_rotations_total", &[]) == 8.0
    })
    .await;
    assert!(
        ok,
        "{}",
        s.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with("rampart_query_log"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let files = rotated(s.dir.path());
    assert_eq!(files.len(), 2, "keep = 2: {files:?}");
    // The two newest rotated files hold the two last example.com queries.
    let kept: Vec<Value> = files.iter().flat_map(|f| entries(f)).collect();
    assert_eq!(kept.len(), 2);
    assert_eq!(kept[0]["qname"], "n6.example.com");
    assert_eq!(kept[1]["qname"], "n7.example.com");

    let config = s.dir.path().join("rampart.toml");
    let config = config.to_str().unwrap();
    let out = rampart(&[
        "log",
        "search",
        "example.com",
        "--since",
        "1h",
        "--config",
        config,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let qnames: Vec<&str> = found.iter().map(|e| e["qname"].as_str().unwrap()).collect();
    assert_eq!(qnames, ["n6.example.com", "n7.example.com"]);
    assert!(found.iter().all(|e| e["list"] == "hosts" && e["line"] == 3));

    // The same from a folder, as a table; nothing before a future --since.
    let out = rampart(&[
        "log",
        "search",
        "n7.example.com",
        "--dir",
        s.dir.path().to_str().unwrap(),
        "--table",
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("TIME"), "{table}");
    assert!(
        table.contains("n7.example.com") && table.contains("hosts:3"),
        "{table}"
    );
    assert_eq!(table.lines().count(), 2, "{table}");
    let out = rampart(&[
        "log",
        "search",
        "--since",
        "2999-01-01T00:00:00Z",
        "--config",
        config,
    ]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());

    // Bad arguments: a clear message and a failure exit code.
    for (args, want) in [
        (vec!["--since", "soon"], "--since `soon`"),
        (vec!["--client", "300.1.1.1"], "--client `300.1.1.1`"),
        (vec!["--dir", "/nonexistent/logs"], "/nonexistent/logs"),
    ] {
        let mut all = vec!["log", "search", "--config", config];
        if args[0] == "--dir" {
            all = vec!["log", "search"];
        }
        all.extend(args);
        let out = rampart(&all);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{all:?}: {err}");
    }
    s.stop().await;
}

#[tokio::test]
async fn a_sink_that_never_drains_costs_dropped_entries_not_answers() {
    use std::os::unix::fs::OpenOptionsExt;
    let h = Hierarchy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("queries.log");
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    // A reader that never reads: the pipe fills and the writer blocks on it.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(&fifo)
        .unwrap();
    let (files, toml) = lists();
    let s = TestServer::start(
        &h,
        Setup {
            mode: Mode::Forward,
            files,
            extra: format!(
                "{toml}\n[rate_limit]\nclient_qps = 0\nprefix_qps = 0\n[query_log]\nmode = \"all\"\npath = \"{}\"\nrotate_size = 0\nqueue = 64\n",
                fifo.display()
            ),
            ..Setup::default()
        },
    )
    .await;
    let started = Instant::now();
    let n = 3000;
    for i in 0..n {
        let name = if i % 2 == 0 {
            "ads.corp.test"
        } else {
            "www.corp.test"
        };
        let m = ask(s.dns, Transport::Udp, name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    }
    let elapsed = started.elapsed();
    let m = s.metrics().await;
    let dropped = metric_sum(&m, "rampart_query_log_dropped_total", &["sink=\"queue\""]);
    let written = metric_sum(&m, "rampart_query_log_written_total", &["sink=\"file\""]);
    eprintln!("{n} queries in {elapsed:?} with a stuck log: {written} written, {dropped} dropped");
    assert!(dropped >= 1000.0, "dropped {dropped}, written {written}");
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    // Every query above got its answer; the counters catch up with the last batch.
    let counted = eventually(|| async {
        metric_sum(&s.metrics().await, "rampart_queries_total", &[]) >= f64::from(n)
    })
    .await;
    assert!(counted);
    // The writer gets an error once nobody reads the pipe, and shutdown does not hang.
    drop(reader);
    s.stop().await;
}

/// The dnstap tools, or None after saying why the test is skipped.
fn dnstap_tools() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("fstrm_capture"), find("dnstap-ldns")) {
        (Some(capture), Some(decode)) => Some((capture, decode)),
        (capture, _) => {
            let missing = if capture.is_none() {
                "fstrm_capture (Debian package fstrm-bin)"
            } else {
                "dnstap-ldns (Debian package dnstap-ldns)"
            };
            assert!(
                std::env::var_os("RAMPART_REQUIRE_DNSTAP").is_none_or(|v| v != "1"),
                "RAMPART_REQUIRE_DNSTAP=1 but {missing} is not installed: \
                 apt-get install fstrm-bin dnstap-ldns"
            );
            eprintln!("skipped: {missing} is not installed (the dnstap test needs it)");
            None
        }
    }
}

/// A child process killed when the test ends, whatever happens.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn dnstap_frames_decode_with_independent_tools() {
    let Some((capture, decode)) = dnstap_tools() else {
        return;
    };
    let h = Hierarchy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dnstap.sock");
    let output = dir.path().join("out.fstrm");
    let mut collector = Killed(
        Command::new(capture)
            .args(["-t", "protobuf:dnstap.Dnstap", "-u"])
            .arg(&socket)
            .arg("-w")
            .arg(&output)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fstrm_capture starts"),
    );
    let up = eventually(|| async { socket.exists() }).await;
    assert!(up, "fstrm_capture listens on {}", socket.display());

    let s = server(
        &h,
        &format!(
            "mode = \"all\"\npath = \"\"\ndnstap = \"unix:{}\"",
            socket.display()
        ),
    )
    .await;
    ask(s.dns, Transport::Udp, "x.ads.corp.test", RecordType::A).await;
    ask(s.dns, Transport::Udp, "www.corp.test", RecordType::A).await;
    ask(s.dns, Transport::Tcp, "gamble.test", RecordType::AAAA).await;
    let ok = eventually(|| async {
        metric_sum(
            &s.metrics().await,
            "rampart_query_log_written_total",
            &["sink=\"dnstap\""],
        ) >= 6.0
    })
    .await;
    assert!(ok, "{}", s.metrics().await);
    // Rampart says STOP on shutdown; then the capture tool closes its file on SIGTERM.
    s.stop().await;
    let pid = collector.0.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let end = Instant::now() + DEADLINE;
    while collector.0.try_wait().unwrap().is_none() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let out = Command::new(&decode)
        .arg("-r")
        .arg(&output)
        .arg("-q")
        .output()
        .expect("dnstap-ldns runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    for (name, kind) in [
        ("x.ads.corp.test.", "CQ"),
        ("x.ads.corp.test.", "CR"),
        ("www.corp.test.", "CQ"),
        ("www.corp.test.", "CR"),
        ("gamble.test.", "CQ"),
    ] {
        assert!(
            text.lines().any(|l| l.contains(name) && l.contains(kind)),
            "{kind} {name} in:\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.contains("gamble.test.") && l.contains("TCP")),
        "{text}"
    );
    // The YAML form shows the response messages' contents too.
    let yaml = Command::new(&decode)
        .arg("-r")
        .arg(&output)
        .arg("-y")
        .output()
        .unwrap();
    let yaml = String::from_utf8_lossy(&yaml.stdout);
    assert!(yaml.contains("CLIENT_RESPONSE"), "{yaml}");
    assert!(yaml.contains("127.0.0.1"), "{yaml}");
    assert!(
        yaml.contains("192.0.2.10"),
        "the response to www.corp.test: {yaml}"
    );
}

/// Appended to a `[query_log]` table: one test client asks far more than a subscriber would.
const NO_RATE_LIMIT: &str = "[rate_limit]\nclient_qps = 0\nprefix_qps = 0\n";

/// What a test collector saw.
#[derive(Default)]
struct Collected {
    frames: std::sync::atomic::AtomicUsize,
    connections: std::sync::atomic::AtomicUsize,
}

/// A Frame Streams reader on a Unix socket, in the test: answers each connection's handshake,
/// then counts data frames; with `read = false` it never reads after the handshake (a stuck
/// collector); with `close_after`, it hangs up after that many frames of a connection.
fn collector(
    listener: std::os::unix::net::UnixListener,
    read: bool,
    close_after: Option<usize>,
) -> std::sync::Arc<Collected> {
    use std::{
        io::{Read, Write},
        sync::atomic::Ordering,
    };
    let seen = std::sync::Arc::new(Collected::default());
    let out = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let mut word = [0u8; 4];
            let mut control = |s: &mut std::os::unix::net::UnixStream| -> Option<u32> {
                s.read_exact(&mut word).ok()?;
                s.read_exact(&mut word).ok()?;
                let mut body = vec![0u8; u32::from_be_bytes(word) as usize];
                s.read_exact(&mut body).ok()?;
                Some(u32::from_be_bytes(body[..4].try_into().ok()?))
            };
            assert_eq!(control(&mut s), Some(4), "READY");
            let ct = b"protobuf:dnstap.Dnstap";
            let mut accept = vec![0, 0, 0, 0];
            accept.extend_from_slice(&(12 + ct.len() as u32).to_be_bytes());
            accept.extend_from_slice(&1u32.to_be_bytes());
            accept.extend_from_slice(&1u32.to_be_bytes());
            accept.extend_from_slice(&(ct.len() as u32).to_be_bytes());
            accept.extend_from_slice(ct);
            s.write_all(&accept).unwrap();
            assert_eq!(control(&mut s), Some(2), "START");
            seen.connections.fetch_add(1, Ordering::AcqRel);
            if !read {
                // Keep the connection open and never read.
                std::thread::sleep(Duration::from_secs(60));
                return;
            }
            let mut n = 0;
            while close_after != Some(n) {
                if s.read_exact(&mut word).is_err() || word == [0; 4] {
                    break;
                }
                let mut frame = vec![0u8; u32::from_be_bytes(word) as usize];
                if s.read_exact(&mut frame).is_err() {
                    break;
                }
                n += 1;
                seen.frames.fetch_add(1, Ordering::AcqRel);
            }
        }
    });
    out
}

#[tokio::test]
async fn dnstap_survives_a_stuck_collector_and_reconnects() {
    use std::sync::atomic::Ordering;
    let h = Hierarchy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stuck.sock");
    let stuck = collector(
        std::os::unix::net::UnixListener::bind(&socket).unwrap(),
        false,
        None,
    );
    let s = server(
        &h,
        &format!(
            "mode = \"all\"\npath = \"\"\nqueue = 64\ndnstap = \"unix:{}\"\n{NO_RATE_LIMIT}",
            socket.display()
        ),
    )
    .await;
    assert!(eventually(|| async { stuck.connections.load(Ordering::Acquire) == 1 }).await);
    // A collector that takes the handshake and then reads nothing: every query is still
    // answered; frames are dropped and counted.
    let started = Instant::now();
    for i in 0..1500 {
        let name = if i % 2 == 0 {
            "ads.corp.test"
        } else {
            "www.corp.test"
        };
        ask(s.dns, Transport::Udp, name, RecordType::A).await;
    }
    let elapsed = started.elapsed();
    let dropped = metric_sum(
        &s.metrics().await,
        "rampart_query_log_dropped_total",
        &["sink=\"dnstap\""],
    );
    eprintln!("1500 queries in {elapsed:?} with a stuck collector, {dropped} frames dropped");
    assert!(dropped >= 500.0, "dropped {dropped}");
    s.stop().await;

    // A collector that hangs up: Rampart reconnects and frames flow again.
    let socket = dir.path().join("flaky.sock");
    let flaky = collector(
        std::os::unix::net::UnixListener::bind(&socket).unwrap(),
        true,
        Some(2),
    );
    let s = server(
        &h,
        &format!(
            "mode = \"all\"\npath = \"\"\ndnstap = \"unix:{}\"\n{NO_RATE_LIMIT}",
            socket.display()
        ),
    )
    .await;
    ask(s.dns, Transport::Udp, "ads.corp.test", RecordType::A).await;
    assert!(eventually(|| async { flaky.frames.load(Ordering::Acquire) == 2 }).await);
    let back = eventually(|| async {
        ask(s.dns, Transport::Udp, "ads.corp.test", RecordType::A).await;
        flaky.frames.load(Ordering::Acquire) > 2
    })
    .await;
    assert!(back, "frames after the reconnect");
    assert_eq!(flaky.connections.load(Ordering::Acquire), 2);
    let m = s.metrics().await;
    assert!(metric_sum(&m, "rampart_query_log_errors_total", &["sink=\"dnstap\""]) >= 1.0);
    s.stop().await;
}
