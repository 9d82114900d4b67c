//! The UDP request path on arbitrary bytes: a datagram goes through the fast path and, when the
//! fast path passes it on, through the general path (`DnsHandler::answer_udp`), as a UDP worker
//! does. Whatever the bytes, the answer is a response or nothing, never a panic; and a response
//! is a DNS message with the request's ID and QR=1 that fits the client's payload size.
//!
//! The pipeline is built once, in-process, over a policy with one list of every format (block,
//! allow, adblock `$important`, RPZ actions and local data, dnsmasq targets, a log-only list).
//! Allowed names are forwarded to an in-process upstream on loopback that answers at once, so
//! no input waits on a network timeout. A general-path response is asked again through the fast
//! path, which may now serve it from the packet cache.
#![no_main]

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket},
    sync::{Arc, LazyLock},
    time::Instant,
};

use arc_swap::ArcSwap;
use hickory_proto::op::{Message, MessageType};
use libfuzzer_sys::fuzz_target;
use rampart::{
    app,
    config::Config,
    dns::fast::{Fast, FastPath},
    metrics::Metrics,
    policy::Snapshot,
};

/// Our EDNS payload limit, as configured below.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// Longest datagram a UDP worker reads.
const REQUEST_MAX: usize = 4096;

const LISTS: &[(&str, &str)] = &[
    (
        "block.txt",
        "blocked.example\nads.example\ntracker.test\n*.bad.example\n",
    ),
    ("allow.txt", "allowed.blocked.example\n"),
    (
        "adblock.txt",
        "||adnx.example^\n@@||ok.adnx.example^\n||imp.example^$important\n|exact.example^\n",
    ),
    ("hosts.txt", "0.0.0.0 hosted.example hosted2.example\n"),
    (
        "zone.rpz",
        "$TTL 60\n$ORIGIN rpz.\n@ SOA localhost. root.localhost. 7 3600 600 86400 60\n  NS localhost.\n\
         nx.corp.test CNAME .\n*.wild.corp.test CNAME *.\nnodata.corp.test CNAME *.\n\
         drop.corp.test CNAME rpz-drop.\ntcp.corp.test CNAME rpz-tcp-only.\n\
         local.corp.test A 192.0.2.99\nlocal.corp.test AAAA 2001:db8::99\n\
         local.corp.test TXT \"blocked by policy\"\nsafe.corp.test CNAME www.corp.test.\n\
         pass.corp.test CNAME rpz-passthru.\nstar.corp.test CNAME *.sink.test.\n\
         32.66.2.0.192.rpz-ip CNAME .\n",
    ),
    (
        "dnsmasq.conf",
        "address=/dm.example/192.0.2.9\naddress=/dm6.example/::\nserver=/fwd.dm.example/\n",
    ),
    ("logged.txt", "logged.example\n"),
];

const CONFIG: &str = r#"
[server]
max_udp_payload = 1232
[resolver]
mode = "forward"
timeout = "2s"
[resolver.forward]
upstreams = ["UPSTREAM"]
server_timeout = "1s"
[cache]
size = 2000
packet_size = 2000
[state]
dir = "state"
[[lists]]
name = "block"
path = "block.txt"
format = "wildcard"
[[lists]]
name = "allow"
path = "allow.txt"
format = "plain"
kind = "allow"
[[lists]]
name = "adblock"
path = "adblock.txt"
format = "adblock"
action = "nxdomain"
[[lists]]
name = "hosts"
path = "hosts.txt"
format = "hosts"
action = "refused"
[[lists]]
name = "rpz"
path = "zone.rpz"
format = "rpz"
[[lists]]
name = "dnsmasq"
path = "dnsmasq.conf"
format = "dnsmasq"
[[lists]]
name = "logged"
path = "logged.txt"
format = "plain"
mode = "log_only"
"#;

struct Setup {
    runtime: tokio::runtime::Runtime,
    fast: FastPath,
    tallies: std::sync::Mutex<rampart::dns::fast::Tallies>,
}

static SETUP: LazyLock<Setup> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("rampart-fuzz-request-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the scratch folder");
    for (name, text) in LISTS {
        std::fs::write(dir.join(name), text).expect("writing a list");
    }
    let upstream = start_upstream();
    let toml = CONFIG.replace("UPSTREAM", &upstream.to_string());
    let path = dir.join("rampart.toml");
    std::fs::write(&path, toml).expect("writing the config");
    let config = Config::load(&path).expect("the fuzz config is valid");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let handler = {
        let _guard = runtime.enter();
        let policy = Arc::new(ArcSwap::from_pointee(Snapshot::load(
            &config.lists,
            &config.groups,
        )));
        for list in &policy.load().lists {
            assert!(list.info.error.is_none(), "{:?}", list.info.error);
        }
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        app::build_handler(&config, policy, metrics, None).expect("the pipeline")
    };
    let _ = std::fs::remove_dir_all(&dir);
    let fast = FastPath::new(handler);
    let tallies = std::sync::Mutex::new(fast.tallies());
    Setup {
        runtime,
        fast,
        tallies,
    }
});

fuzz_target!(|data: &[u8]| {
    if data.len() > REQUEST_MAX {
        return;
    }
    let setup = &*SETUP;
    let client = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    let mut tallies = setup.tallies.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = vec![0u8; usize::from(MAX_UDP_PAYLOAD)];
    let now = Instant::now();
    match setup
        .fast
        .answer(data, client.ip(), now, &mut out, &mut tallies)
    {
        Fast::Reply(len) | Fast::ReplyAndPrefetch(len) => check_response(data, &out[..len]),
        Fast::General => {
            let general = setup
                .runtime
                .block_on(setup.fast.handler().answer_udp(data.to_vec(), client));
            if let Some(response) = general {
                check_response(data, &response);
                // Asked again: the fast path may serve it from the packet cache now.
                if let Fast::Reply(len) =
                    setup
                        .fast
                        .answer(data, client.ip(), now, &mut out, &mut tallies)
                {
                    check_response(data, &out[..len]);
                }
            }
        }
    }
    tallies.finish_batch(now.elapsed());
});

/// A response must decode, carry the request's ID with QR=1, and fit the client's payload size
/// (512 without EDNS; with EDNS the advertised size, at least 512, at most ours).
fn check_response(request: &[u8], response: &[u8]) {
    assert!(response.len() >= 12, "response shorter than a header");
    assert_eq!(response[..2], request[..2], "response ID differs");
    assert!(response[2] & 0x80 != 0, "response without QR");
    let message = Message::from_vec(response).expect("the response decodes");
    assert_eq!(message.metadata.message_type, MessageType::Response);
    let limit = match Message::from_vec(request).ok().and_then(|m| m.edns) {
        Some(edns) => edns.max_payload().clamp(512, MAX_UDP_PAYLOAD),
        None => 512,
    };
    assert!(
        response.len() <= usize::from(limit),
        "response of {} bytes over the client's {limit}",
        response.len()
    );
}

/// An upstream resolver on loopback that answers every query at once: A and AAAA questions
/// with an address (192.0.2.66 for names starting with `ip`, so the RPZ response-IP rule
/// fires), names starting with `nx` with NXDOMAIN, names starting with `cname` with a CNAME to
/// a blocked name (CNAME cloaking), anything else with an empty NOERROR.
fn start_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("binding the upstream");
    let addr = socket.local_addr().expect("upstream address");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = upstream_reply(&buf[..len]) {
                let _ = socket.send_to(&reply, from);
            }
        }
    });
    addr
}

fn upstream_reply(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[4..6] != [0, 1] {
        return None;
    }
    let mut pos = 12;
    while *q.get(pos)? != 0 {
        pos += 1 + usize::from(q[pos]);
    }
    let question_end = pos + 5;
    let question = q.get(12..question_end)?;
    let qtype = u16::from_be_bytes([q[pos + 1], q[pos + 2]]);
    let first = q.get(13..13 + usize::from(q[12])).unwrap_or_default();
    let mut r = Vec::with_capacity(128);
    r.extend_from_slice(&q[..2]);
    // QR, the request's opcode and RD; RA.
    r.push(0x80 | (q[2] & 0x79));
    let nx = first.starts_with(b"nx");
    r.push(if nx { 0x83 } else { 0x80 });
    r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    let mut answers = 0u16;
    let mut owner: Vec<u8> = vec![0xc0, 0x0c];
    if first.starts_with(b"cname") {
        let target = b"\x07blocked\x07example\x00";
        push_record(&mut r, &owner, 5, target);
        answers += 1;
        owner = target.to_vec();
    }
    let data: Option<&[u8]> = match qtype {
        1 if first.starts_with(b"ip") => Some(&[192, 0, 2, 66]),
        1 => Some(&[192, 0, 2, 1]),
        28 => Some(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        _ => None,
    };
    if let Some(data) = data.filter(|_| !nx) {
        push_record(&mut r, &owner, qtype, data);
        answers += 1;
    }
    r[6..8].copy_from_slice(&answers.to_be_bytes());
    Some(r)
}

fn push_record(r: &mut Vec<u8>, owner: &[u8], rtype: u16, data: &[u8]) {
    r.extend_from_slice(owner);
    r.extend_from_slice(&rtype.to_be_bytes());
    r.extend_from_slice(&[0, 1, 0, 0, 0, 60]);
    r.extend_from_slice(&(data.len() as u16).to_be_bytes());
    r.extend_from_slice(data);
}
