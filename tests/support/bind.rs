//! A real BIND 9 primary on loopback for the zone-transfer tests: a named.conf written into a
//! temporary directory (one TSIG key, one dynamic primary zone that only that key may transfer
//! and update, NOTIFY sent to a port the test listens on), `named` in the foreground on a free
//! port, polled until it serves the zone, and killed when the guard is dropped.
//!
//! BIND comes from Debian's `bind9` (named), `bind9-utils` (named-checkconf) and
//! `bind9-dnsutils` (nsupdate). Without them the tests say so and pass, unless
//! RAMPART_REQUIRE_BIND=1 (set by CI) makes a missing BIND a failure.

use std::{
    fs,
    io::Write,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    str::FromStr,
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode},
    rr::{Name, RData, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The TSIG key every test primary knows (test data, not a secret).
pub const KEY_NAME: &str = "xfr-key";
pub const KEY_SECRET: &str = "mCmvu1SGQ2y2Ehg0Rz4N6NBFKdktf2gAVWDxqpxeB+Q=";

/// How long BIND may take to start and load a zone.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running `named`, killed on drop.
pub struct Bind {
    /// Where it serves DNS (UDP and TCP).
    pub addr: SocketAddr,
    child: Child,
    dir: tempfile::TempDir,
}

/// Where a program is, looking in PATH and the sbin directories root's PATH may lack.
fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The BIND programs, or None after saying why the test is skipped. Panics when
/// RAMPART_REQUIRE_BIND=1 and one is missing.
pub fn programs() -> Option<(PathBuf, PathBuf)> {
    match (find("named"), find("nsupdate")) {
        (Some(named), Some(nsupdate)) => Some((named, nsupdate)),
        (named, _) => {
            let missing = if named.is_none() {
                "named (Debian package bind9)"
            } else {
                "nsupdate (Debian package bind9-dnsutils)"
            };
            assert!(
                std::env::var_os("RAMPART_REQUIRE_BIND").is_none_or(|v| v != "1"),
                "RAMPART_REQUIRE_BIND=1 but {missing} is not installed: \
                 apt-get install bind9 bind9-utils bind9-dnsutils"
            );
            eprintln!("skipped: {missing} is not installed (the zone-transfer tests need BIND)");
            None
        }
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a UDP port");
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
}

fn config(dir: &Path, port: u16, notify_port: u16) -> String {
    let dir = dir.display();
    format!(
        r#"options {{
    directory "{dir}";
    pid-file "{dir}/named.pid";
    session-keyfile "{dir}/session.key";
    managed-keys-directory "{dir}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify explicit;
}};
controls {{ }};
key "{KEY_NAME}" {{
    algorithm hmac-sha256;
    secret "{KEY_SECRET}";
}};
zone "rpz.test" {{
    type primary;
    file "{dir}/rpz.test.db";
    allow-transfer {{ key {KEY_NAME}; }};
    allow-update {{ key {KEY_NAME}; }};
    ixfr-from-differences yes;
    max-ixfr-ratio unlimited;
    notify explicit;
    notify-delay 0;
    also-notify {{ 127.0.0.1 port {notify_port} key {KEY_NAME}; }};
}};
"#
    )
}

impl Bind {
    /// Starts `named` serving `zone_text` as `rpz.test.` and sending NOTIFY to
    /// 127.0.0.1:`notify_port`. None when BIND is not installed (see [`programs`]).
    pub async fn start(zone_text: &str, notify_port: u16) -> Option<Self> {
        let (named, _) = programs()?;
        // A port picked free can be taken before named binds it: try again on a new one.
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = free_port();
            fs::write(dir.path().join("rpz.test.db"), zone_text).unwrap();
            let conf = dir.path().join("named.conf");
            fs::write(&conf, config(dir.path(), port, notify_port)).unwrap();
            let log = fs::File::create(dir.path().join("named.log")).unwrap();
            let child = Command::new(&named)
                .arg("-g")
                .arg("-4")
                .args(["-d", "3"])
                .args(["-n", "1"])
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start named");
            let mut bind = Bind {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                child,
                dir,
            };
            if bind.wait_ready().await {
                return Some(bind);
            }
            last_log = bind.log();
        }
        panic!("named did not start serving rpz.test. in time; its log:\n{last_log}");
    }

    /// Polls (plain TCP SOA query) until named answers for the zone, or gives up at the
    /// deadline or when named exits.
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_DEADLINE;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if plain_soa_serial(self.addr).await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// named's log so far (startup, transfers, NOTIFY, errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Runs nsupdate, signed with the test key, with `commands` (without `server`/`send`).
    pub async fn nsupdate(&self, commands: &str) {
        let (_, nsupdate) = programs().expect("nsupdate");
        let script = format!(
            "server 127.0.0.1 {}\nzone rpz.test.\n{commands}\nsend\n",
            self.addr.port()
        );
        let key = format!("hmac-sha256:{KEY_NAME}:{KEY_SECRET}");
        let output = tokio::task::spawn_blocking(move || {
            let mut child = Command::new(nsupdate)
                .args(["-y", &key])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start nsupdate");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(script.as_bytes())
                .unwrap();
            child.wait_with_output().expect("nsupdate output")
        })
        .await
        .unwrap();
        assert!(
            output.status.success(),
            "nsupdate failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The zone's serial by an unsigned SOA query over TCP (independent of the code under test),
/// or None if named does not answer it yet.
pub async fn plain_soa_serial(addr: SocketAddr) -> Option<u32> {
    let zone = Name::from_str("rpz.test.").unwrap();
    let mut query = Message::new(4321, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(zone.clone(), RecordType::SOA));
    let wire = query.to_vec().ok()?;
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        stream
            .write_all(&(wire.len() as u16).to_be_bytes())
            .await
            .ok()?;
        stream.write_all(&wire).await.ok()?;
        let len = stream.read_u16().await.ok()?;
        let mut answer = vec![0; usize::from(len)];
        stream.read_exact(&mut answer).await.ok()?;
        Message::from_vec(&answer).ok()
    };
    let answer = tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()??;
    if answer.response_code != ResponseCode::NoError {
        return None;
    }
    answer.answers.iter().find_map(|r| match &r.data {
        RData::SOA(soa) if r.name == zone => Some(soa.serial),
        _ => None,
    })
}
