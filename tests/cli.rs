//! The `rampart` binary as an operator uses it: bad configs, `check-config`, `lists check`, and
//! `run` on the shipped default config (with its ports moved to free ones).

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::{op::ResponseCode, rr::RecordType};

use crate::support::*;

fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_with_config(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    rampart()
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let cases = [
        ("[resolver]\nmode = \"recursiv\"\n", "resolver.mode"),
        ("[server]\nlisten_on = [\"127.0.0.1:53\"]\n", "listen_on"),
        ("[server]\nlisten = [\"localhost\"]\n", "server.listen[0]"),
        ("[cache]\nmax_ttl = \"forever\"\n", "cache.max_ttl"),
        ("[cache]\nsize = -1\n", "cache.size"),
        ("[block]\nipv4 = \"::1\"\n", "block.ipv4"),
        (
            "[resolver]\nmode = \"forward\"\n",
            "resolver.forward.upstreams",
        ),
        (
            "[[lists]]\nname = \"x\"\npath = \"/nonexistent/list.txt\"\nformat = \"plain\"\n",
            "lists[0].path",
        ),
        (
            "[[lists]]\nname = \"x\"\npath = \"x\"\nformat = \"csv-ish\"\n",
            "lists[0].format",
        ),
    ];
    for (text, key) in cases {
        let out = run_with_config(text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}: should fail");
        assert!(
            stderr.contains(key),
            "{text}: message should name `{key}`, got: {stderr}"
        );
    }
    let out = rampart()
        .args(["run", "--config", "/nonexistent/rampart.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rampart.toml"));
}

#[test]
fn check_config_accepts_the_default_config() {
    let out = rampart()
        .arg("check-config")
        .arg(repo().join("config/default.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("OK"));
    assert!(stdout.contains("sample-hosts"));
}

#[test]
fn help_explains_the_commands() {
    let out = rampart().arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["run", "check-config", "lists"] {
        assert!(text.contains(word), "--help mentions {word}: {text}");
    }
}

fn write_lists_config(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("block.hosts"),
        "# header\n0.0.0.0 ads.example\n0.0.0.0 not a valid.name!\n127.0.0.1 localhost\n",
    )
    .unwrap();
    std::fs::write(dir.join("allow.txt"), "good.ads.example\n").unwrap();
    std::fs::write(
        dir.join("feed.csv"),
        "domain,category,reference,added\ncasino.example,gambling,123/QD-BTTTT,2026-11-01\n",
    )
    .unwrap();
    let path = dir.join("c.toml");
    std::fs::write(
        &path,
        "[[lists]]\nname = \"hosts\"\npath = \"block.hosts\"\nformat = \"hosts\"\ncategory = \"advertising\"\n\n[[lists]]\nname = \"allow\"\npath = \"allow.txt\"\nformat = \"plain\"\nkind = \"allow\"\n\n[[lists]]\nname = \"authority\"\npath = \"feed.csv\"\n",
    )
    .unwrap();
    path
}

#[test]
fn lists_check_explains_decisions_and_rejected_lines() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_lists_config(dir.path());
    let check = |name: &str| {
        let out = rampart()
            .args(["lists", "check", name, "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    let text = check("WWW.Ads.Example.");
    assert!(text.contains("www.ads.example: BLOCKED"), "{text}");
    assert!(text.contains("list \"hosts\""), "{text}");
    assert!(text.contains("line 2"), "{text}");
    assert!(text.contains("0.0.0.0 ads.example"), "{text}");
    // The malformed line is reported with file and line number.
    let hosts = dir.path().join("block.hosts");
    assert!(
        text.contains(&format!("{}:3:", hosts.display())),
        "rejected line with file:line: {text}"
    );

    let text = check("x.good.ads.example");
    assert!(text.contains("ALLOWED"), "{text}");
    assert!(text.contains("list \"allow\""), "{text}");
    assert!(text.contains("would block"), "{text}");

    let text = check("example.org");
    assert!(text.contains("no list matches"), "{text}");

    // An authority feed: the decision trail names the category and the legal reference.
    let text = check("www.casino.example");
    assert!(text.contains("BLOCKED"), "{text}");
    assert!(text.contains("category: gambling"), "{text}");
    assert!(text.contains("reference: 123/QD-BTTTT"), "{text}");
    // A plain list's configured category.
    let text = check("ads.example");
    assert!(text.contains("category: advertising"), "{text}");

    let out = rampart()
        .args(["lists", "check", "bad..name", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

fn free_port() -> u16 {
    // Port 0 picks a port free for both UDP and TCP at this moment.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Kills the child when the test ends, pass or fail.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_serves_the_default_config() {
    // The shipped config, with its ports moved to free ones so parallel runs do not collide.
    let default = std::fs::read_to_string(repo().join("config/default.toml")).unwrap();
    let (dns_port, admin_port) = (free_port(), free_port());
    let text = default
        .replace("127.0.0.1:5353", &format!("127.0.0.1:{dns_port}"))
        .replace("127.0.0.1:9153", &format!("127.0.0.1:{admin_port}"))
        .replace(
            "\"../blocklists/",
            &format!("\"{}/blocklists/", repo().display()),
        )
        .replace("dir = \"../state\"", "dir = \"state\"");
    assert_ne!(text, default);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.toml");
    std::fs::write(&path, text).unwrap();
    let _child = Child(
        rampart()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let admin: SocketAddr = ([127, 0, 0, 1], admin_port).into();
    let dns: SocketAddr = ([127, 0, 0, 1], dns_port).into();
    let started = Instant::now();
    assert!(
        eventually(|| async {
            tokio::net::TcpStream::connect(admin).await.is_ok()
                && http_get(admin, "/health").await.0 == 200
        })
        .await,
        "healthy within the deadline"
    );
    eprintln!("time to healthy: {:?}", started.elapsed());
    // Only blocked names are asked: this server recurses to the real root servers otherwise.
    let m = ask(dns, Transport::Udp, "ads.example.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![std::net::Ipv4Addr::LOCALHOST]);
    let m = ask(dns, Transport::Tcp, "x.adnetwork.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let (status, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(
        metric_sum(&metrics, "rampart_blocked_queries_total", &[]),
        2.0
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
