//! The process around the resolver: draining on shutdown, dropping root after binding,
//! refusing world-writable config or state folders, and the systemd unit.

use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use hickory_proto::{op::Message, rr::RecordType};
use rampart::{app, config::Config};
use tokio::net::UdpSocket;

use crate::support::*;

/// A forwarding upstream on loopback that answers every A query with 192.0.2.7, but only
/// `delay` after it arrives, and reports each arrival.
async fn slow_upstream(delay: Duration) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (arrived, rx) = tokio::sync::mpsc::unbounded_channel();
    let socket = std::sync::Arc::new(socket);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Some(reply) = answer_a(&buf[..n]) else {
                continue;
            };
            let _ = arrived.send(());
            let socket = socket.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&reply, from).await;
            });
        }
    });
    (addr, rx)
}

/// The response to `query` (one question) with one A record 192.0.2.7, TTL 60.
fn answer_a(query: &[u8]) -> Option<Vec<u8>> {
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question_end = at + 4;
    let mut out = query.get(..question_end)?.to_vec();
    out[2] = 0x80 | (query[2] & 0x01); // QR, RD copied
    out[3] = 0x80; // RA, NOERROR
    out[6..12].copy_from_slice(&[0, 1, 0, 0, 0, 0]);
    out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 7]);
    Some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_queries_in_flight_then_stops() {
    let (upstream, mut arrivals) = slow_upstream(Duration::from_millis(400)).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\nshutdown_grace = \"5s\"\n\
             [resolver]\nmode = \"forward\"\ntimeout = \"3s\"\n\
             [resolver.forward]\nupstreams = [\"{upstream}\"]\n[admin]\nlisten = \"\"\n"
        ),
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let running = app::start(config).await.unwrap();
    let dns = running.dns_addrs[0];

    // A query that is still waiting on the upstream when shutdown starts…
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let query = query_message("slow.example.", RecordType::A, true);
    client.send_to(&query.to_vec().unwrap(), dns).await.unwrap();
    tokio::time::timeout(DEADLINE, arrivals.recv())
        .await
        .expect("the query reaches the upstream")
        .unwrap();
    let started = Instant::now();
    let stopping = tokio::spawn(running.shutdown());

    // …is still answered, with the upstream's answer.
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(DEADLINE, client.recv_from(&mut buf))
        .await
        .expect("the query in flight is answered during the drain")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.id, query.metadata.id);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 7)]);

    tokio::time::timeout(DEADLINE, stopping)
        .await
        .expect("shutdown finishes once the drain is done")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "the drain ends when the last query is answered, not at the end of the grace period: {took:?}"
    );
    // Stopped: nothing answers any more.
    let late = query_message("late.example.", RecordType::A, true);
    let _ = client.send_to(&late.to_vec().unwrap(), dns).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), client.recv_from(&mut buf))
            .await
            .is_err(),
        "no answer after shutdown"
    );
}

fn rampart() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rampart"))
}

/// A config folder (mode 0755) with one block list, serving on `listen` with the admin API on
/// `admin`, plus `extra` lines for `[server]`.
fn write_config(dir: &Path, listen: SocketAddr, admin: SocketAddr, extra: &str) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("block.txt"), "blocked.example\n").unwrap();
    let path = dir.join("rampart.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = [\"{listen}\"]\nworkers = 1\n{extra}\n\
             [resolver]\nmode = \"forward\"\n[resolver.forward]\nupstreams = [\"127.0.0.1:9\"]\n\
             [admin]\nlisten = \"{admin}\"\n\
             [[lists]]\nname = \"block\"\npath = \"block.txt\"\nformat = \"plain\"\n"
        ),
    )
    .unwrap();
    path
}

fn free_tcp_port(ip: Ipv4Addr) -> SocketAddr {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap()
}

/// Kills the child when the test ends, pass or fail.
struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap()
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_root_after_binding_port_53() {
    if !nix::unistd::Uid::effective().is_root() {
        assert!(
            std::env::var_os("RAMPART_REQUIRE_ROOT").is_none(),
            "RAMPART_REQUIRE_ROOT is set but the tests do not run as root"
        );
        eprintln!("SKIPPED: dropping privileges needs root (CI runs as root)");
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    // Port 53 needs root to bind; a loopback address of our own keeps clear of any resolver.
    let ip = Ipv4Addr::new(127, 53, (std::process::id() % 250) as u8 + 1, 53);
    let dns: SocketAddr = (ip, 53).into();
    let admin = free_tcp_port(ip);
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), dns, admin, "user = \"nobody\"");
    let child = Child(
        rampart()
            .args(["run", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    assert!(
        eventually(|| async {
            tokio::net::TcpStream::connect(admin).await.is_ok()
                && http_get(admin, "/health").await.0 == 200
        })
        .await,
        "serving within the deadline"
    );
    // The switch happens right after binding; poll until /proc shows it.
    let switched = eventually(|| async {
        status_ids(pid, "Uid:")
            .iter()
            .all(|&u| u == nobody.uid.as_raw())
    })
    .await;
    assert!(switched, "Uid: {:?}", status_ids(pid, "Uid:"));
    assert!(
        status_ids(pid, "Gid:")
            .iter()
            .all(|&g| g == nobody.gid.as_raw()),
        "Gid: {:?}",
        status_ids(pid, "Gid:")
    );
    assert_eq!(status_ids(pid, "Groups:"), vec![nobody.gid.as_raw()]);
    // Still serving on port 53 as nobody, blocking from its list.
    let m = ask(dns, Transport::Udp, "blocked.example.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::LOCALHOST]);
    let m = ask(dns, Transport::Tcp, "blocked.example.", RecordType::A).await;
    assert_eq!(a_records(&m), vec![Ipv4Addr::LOCALHOST]);
    // The state folder was handed over, so list copies can still be saved.
    use std::os::unix::fs::MetadataExt;
    let state = std::fs::metadata(dir.path().join("state")).unwrap();
    assert_eq!(state.uid(), nobody.uid.as_raw());

    // SIGTERM (sent by root to the process now running as nobody) drains and exits cleanly.
    let mut child = child;
    let kill = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < end,
            "exits within the deadline after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
    let mut log = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("dropped root privileges"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// `rampart run` on `path`, which must fail; its stderr.
fn run_fails(path: &Path) -> String {
    let out = rampart()
        .args(["run", "--config"])
        .arg(path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn refuses_world_writable_config_or_state_folders() {
    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let path = write_config(dir.path(), listen, "127.0.0.1:0".parse().unwrap(), "");
    let run = || run_fails(&path);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = run();
    assert!(
        e.contains("writable by every user") && e.contains(&dir.path().display().to_string()),
        "{e}"
    );
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = run();
    assert!(e.contains("state folder") && e.contains("chmod o-w"), "{e}");
}

#[test]
fn unknown_user_fails_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let path = write_config(
        dir.path(),
        listen,
        "127.0.0.1:0".parse().unwrap(),
        "user = \"no-such-user-rampart\"",
    );
    let e = run_fails(&path);
    assert!(
        e.contains("server.user") && e.contains("no-such-user-rampart"),
        "{e}"
    );
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rampart.service"),
    )
    .unwrap();
    for needed in [
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=rampart",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(needed), "the unit sets {needed}");
    }
    let Ok(analyze) = which("systemd-analyze") else {
        assert!(
            std::env::var_os("RAMPART_REQUIRE_SYSTEMD").is_none(),
            "RAMPART_REQUIRE_SYSTEMD is set but systemd-analyze is missing"
        );
        eprintln!("SKIPPED: systemd-analyze not installed");
        return;
    };
    // Verify the unit as shipped, pointed at the binary under test (verify checks that the
    // commands exist and are executable).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rampart.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/rampart", env!("CARGO_BIN_EXE_rampart")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        !stderr.contains("rampart.service"),
        "no warnings about the unit: {stderr}"
    );
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}
