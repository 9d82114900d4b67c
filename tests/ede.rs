//! Extended DNS Errors (RFC 8914) on blocked answers: 15 Blocked for the operator's lists, 16
//! Censored for legal ones, 17 Filtered for a client group's filters, with EXTRA-TEXT naming
//! the list and reference; nothing when the client sent no EDNS. Over UDP (the wire fast path,
//! first from the policy, then from the packet cache) and TCP (the general path).

use std::net::Ipv4Addr;

use hickory_proto::{
    op::{Message, ResponseCode},
    rr::{RecordType, rdata::opt::EdnsCode, rdata::opt::EdnsOption},
};

use crate::support::*;

/// The EDE of a response: (INFO-CODE, EXTRA-TEXT).
fn ede(m: &Message) -> Option<(u16, String)> {
    let edns = m.edns.as_ref()?;
    match edns.options().get(EdnsCode::Unknown(15))? {
        EdnsOption::Unknown(15, data) if data.len() >= 2 => Some((
            u16::from_be_bytes([data[0], data[1]]),
            String::from_utf8(data[2..].to_vec()).expect("EXTRA-TEXT is UTF-8"),
        )),
        other => panic!("malformed EDE option {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_answers_say_why_to_edns_clients() {
    let h = Hierarchy::start().await;
    let files = vec![
        ("security.txt", "malware.corp.test\n".to_string()),
        (
            "authority.csv",
            "domain,category,reference,added\ncasino.corp.test,gambling,Quyết định 123/QĐ-BTTTT,2026-01-02\n"
                .to_string(),
        ),
        ("court.txt", "pirate.corp.test\n".to_string()),
        ("school.txt", "games.corp.test\n".to_string()),
    ];
    let extra = r#"
[[lists]]
name = "security"
path = "security.txt"
format = "plain"
basis = "security"

[[lists]]
name = "authority"
path = "authority.csv"
basis = "legal"

[[lists]]
name = "court"
path = "court.txt"
format = "plain"
basis = "legal"
reference = "Judgment 7/2026"
action = "nxdomain"

[[lists]]
name = "school"
path = "school.txt"
format = "plain"

[[groups]]
name = "default"
lists = ["security", "authority", "court"]

[[groups]]
name = "schools"
networks = ["127.0.0.9/32"]
lists = ["security", "authority", "court", "school"]
"#
    .to_string();
    let server = TestServer::start(
        &h,
        Setup {
            files,
            extra,
            ..Setup::default()
        },
    )
    .await;
    let cases: [(Ipv4Addr, &str, RecordType, ResponseCode, u16, &str); 6] = [
        (
            Ipv4Addr::LOCALHOST,
            "malware.corp.test.",
            RecordType::A,
            ResponseCode::NoError,
            15,
            "list security",
        ),
        (
            Ipv4Addr::LOCALHOST,
            "www.casino.corp.test.",
            RecordType::AAAA,
            ResponseCode::NoError,
            16,
            "list authority, reference Quyết định 123/QĐ-BTTTT",
        ),
        (
            Ipv4Addr::LOCALHOST,
            "pirate.corp.test.",
            RecordType::A,
            ResponseCode::NXDomain,
            16,
            "list court, reference Judgment 7/2026",
        ),
        (
            Ipv4Addr::LOCALHOST,
            "pirate.corp.test.",
            RecordType::MX,
            ResponseCode::NXDomain,
            16,
            "list court, reference Judgment 7/2026",
        ),
        (
            Ipv4Addr::new(127, 0, 0, 9),
            "games.corp.test.",
            RecordType::A,
            ResponseCode::NoError,
            17,
            "list school",
        ),
        (
            Ipv4Addr::new(127, 0, 0, 9),
            "casino.corp.test.",
            RecordType::A,
            ResponseCode::NoError,
            16,
            "list authority, reference Quyết định 123/QĐ-BTTTT",
        ),
    ];
    for (client, qname, rtype, rcode, code, text) in cases {
        // UDP twice (synthesized, then from the packet cache if stored) and TCP.
        for t in [Transport::Udp, Transport::Udp, Transport::Tcp] {
            let m = ask_from(client, server.dns, t, qname, rtype).await;
            assert_eq!(
                m.metadata.response_code, rcode,
                "{qname} {rtype} over {t:?}"
            );
            assert_eq!(
                ede(&m),
                Some((code, text.to_string())),
                "{qname} {rtype} from {client} over {t:?}"
            );
        }
        // Without EDNS: the same answer, no OPT record, so no EDE.
        for t in [Transport::Udp, Transport::Tcp] {
            let q = query_message(qname, rtype, false);
            let bytes = exchange_bytes_from(client, server.dns, t, &q.to_vec().unwrap()).await;
            let m = Message::from_vec(&bytes).unwrap();
            assert_eq!(m.metadata.response_code, rcode, "{qname} without EDNS");
            assert!(m.edns.is_none(), "{qname} without EDNS over {t:?}: {m:?}");
        }
    }
    // The schools group does not get the default group's answer for its own list's names from
    // the packet cache, and the default group does not block them at all.
    let m = ask(
        server.dns,
        Transport::Udp,
        "games.corp.test.",
        RecordType::A,
    )
    .await;
    assert_eq!(ede(&m), None);
    // Allowed and resolved names carry no EDE.
    let m = ask(server.dns, Transport::Udp, "www.corp.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ede(&m), None);
    server.stop().await;
}
