//! Unit tests without a real primary: record streams, diffs, zone text, NOTIFY messages, TSIG
//! signing and verification, and whole transfers against a scripted primary on loopback. The
//! interoperability tests against BIND live in tests/xfr.rs.

use std::{net::Ipv4Addr, str::FromStr};

use hickory_proto::rr::rdata::{A, CNAME, TXT};
use tokio::net::TcpListener;

use super::*;
use crate::policy::formats::{self, Format, RuleAction};

fn name(s: &str) -> Name {
    Name::from_str(s).expect("valid test name")
}

fn soa(serial: u32) -> Record {
    Record::from_rdata(
        name("rpz.test."),
        300,
        RData::SOA(SOA::new(
            name("ns.rpz.test."),
            name("admin.rpz.test."),
            serial,
            3600,
            600,
            86400,
            60,
        )),
    )
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

fn a(owner: &str, ip: [u8; 4]) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A(Ipv4Addr::from(ip))))
}

fn key() -> TsigKey {
    TsigKey::new(
        "xfr-key",
        "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==",
    )
    .unwrap()
}

fn other_key() -> TsigKey {
    TsigKey::new(
        "xfr-key",
        "b3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXItb3RoZXI=",
    )
    .unwrap()
}

fn sample_zone(serial: u32) -> Zone {
    Zone {
        soa: soa(serial),
        records: vec![
            Record::from_rdata(
                name("rpz.test."),
                300,
                RData::NS(hickory_proto::rr::rdata::NS(name("ns.rpz.test."))),
            ),
            cname("bad.example.rpz.test.", "."),
            cname("*.bad.example.rpz.test.", "."),
            cname("nodata.example.rpz.test.", "*."),
            cname("ok.example.rpz.test.", "rpz-passthru."),
            cname("drop.example.rpz.test.", "rpz-drop."),
            cname("walled.example.rpz.test.", "garden.example.net."),
            a("local.example.rpz.test.", [192, 0, 2, 1]),
            Record::from_rdata(
                name("local.example.rpz.test."),
                300,
                RData::TXT(TXT::new(vec!["blocked \"by\" policy; see \\ wiki".into()])),
            ),
            cname("32.1.2.0.192.rpz-ip.rpz.test.", "."),
        ],
    }
}

// ---- TsigKey ----

#[test]
fn key_from_config_strings() {
    let key = TsigKey::new("xfr-key", "c2VjcmV0").unwrap();
    assert_eq!(key.name, name("xfr-key."));
    assert_eq!(key.secret, b"secret");
    // Padding is optional and blanks are ignored, as in a secret split over lines.
    let unpadded = TsigKey::new("xfr-key.", "c2VjcmV0LXg").unwrap();
    assert_eq!(unpadded.secret, b"secret-x");
    assert_eq!(TsigKey::new("k", " c2Vj\ncmV0 ").unwrap().secret, b"secret");
    for (name, secret) in [
        ("", "c2VjcmV0"),
        ("k", "not base64!"),
        ("k", ""),
        ("a..b", "c2VjcmV0"),
    ] {
        let err = TsigKey::new(name, secret).unwrap_err();
        assert!(
            matches!(err, XfrError::Key(_)),
            "{name:?} {secret:?}: {err}"
        );
    }
    let debug = format!("{key:?}");
    assert!(
        !debug.contains("115") && debug.contains("redacted"),
        "{debug}"
    );
}

// ---- TSIG ----

fn query_wire(id: u16) -> Vec<u8> {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(name("rpz.test."), RecordType::AXFR));
    query.to_vec().unwrap()
}

#[test]
fn signed_request_verifies_and_tampering_is_caught() {
    let key = key();
    let mut wire = query_wire(4242);
    let mac = sign(&mut wire, &key, None, unix_now()).unwrap();
    let decoded = decode(&wire).unwrap();
    let tsig = decoded.tsig.as_ref().expect("a TSIG record");
    assert_eq!(tsig.name, key.name);
    assert_eq!(tsig.data.oid, 4242);
    assert_eq!(tsig.data.mac, mac);
    // hickory reads our record back as the message's TSIG.
    let message = Message::from_vec(&wire).unwrap();
    assert_eq!(
        message_tsig(&message).map(|(_, mac)| mac),
        Some(mac.clone())
    );
    verify_notify(&wire, &key).unwrap();

    let err = verify_notify(&wire, &other_key()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("TSIG verification failed: bad signature"),
        "{err}"
    );
    let renamed = TsigKey {
        name: name("another-key."),
        ..key.clone()
    };
    let err = verify_notify(&wire, &renamed).unwrap_err();
    assert!(err.to_string().contains("bad key name"), "{err}");

    let mut tampered = wire.clone();
    let qname_byte = 13; // inside the question name
    tampered[qname_byte] ^= 0x20;
    assert!(matches!(
        verify_notify(&tampered, &key),
        Err(XfrError::Tsig(_))
    ));

    let err = verify_notify(&query_wire(1), &key).unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");

    // A signature from an hour ago is refused even with the right key.
    let mut old = query_wire(7);
    sign(&mut old, &key, None, unix_now() - 3600).unwrap();
    let err = verify_notify(&old, &key).unwrap_err();
    assert!(err.to_string().contains("fudge"), "{err}");
}

/// What a primary does for the second and later messages of a transfer (RFC 8945 §5.3.1): the
/// MAC covers the prior MAC, the unsigned messages since, this message and the timers only.
fn sign_next(wire: &mut Vec<u8>, key: &TsigKey, prior: &[u8], unsigned: &[u8]) -> Vec<u8> {
    let id = u16::from_be_bytes([wire[0], wire[1]]);
    let now = unix_now();
    let mut tbs = Vec::new();
    tbs.extend_from_slice(&(prior.len() as u16).to_be_bytes());
    tbs.extend_from_slice(prior);
    tbs.extend_from_slice(unsigned);
    tbs.extend_from_slice(wire);
    push_timers(&mut tbs, now, FUDGE);
    let mac = key.mac(&tbs);
    let mut rdata = HMAC_SHA256_WIRE.to_vec();
    push_timers(&mut rdata, now, FUDGE);
    rdata.extend_from_slice(&(mac.len() as u16).to_be_bytes());
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&id.to_be_bytes());
    rdata.extend_from_slice(&[0, 0, 0, 0]);
    push_wire_name(wire, &key.name, false);
    wire.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    wire.extend_from_slice(&CLASS_ANY.to_be_bytes());
    wire.extend_from_slice(&0u32.to_be_bytes());
    wire.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    wire.extend_from_slice(&rdata);
    patch_header(wire, id, 1).unwrap();
    mac
}

fn response_wire(id: u16, question: Option<RecordType>, answers: &[Record]) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Response, OpCode::Query);
    message.metadata.authoritative = true;
    if let Some(qtype) = question {
        message.add_query(Query::query(name("rpz.test."), qtype));
    }
    message.add_answers(answers.iter().cloned());
    message.to_vec().unwrap()
}

/// The signed answer messages of a transfer: the first signed over the query MAC, then
/// `unsigned_every`-1 unsigned messages between signed ones, the last always signed.
fn signed_stream(
    key: &TsigKey,
    query_mac: &[u8],
    id: u16,
    messages: &[Vec<Record>],
    signed: impl Fn(usize) -> bool,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut prior = query_mac.to_vec();
    let mut unsigned = Vec::new();
    for (i, records) in messages.iter().enumerate() {
        let question = (i == 0).then_some(RecordType::AXFR);
        let mut wire = response_wire(id, question, records);
        if i == 0 {
            prior = sign(&mut wire, key, Some(&prior), unix_now()).unwrap();
        } else if signed(i) {
            prior = sign_next(&mut wire, key, &prior, &unsigned);
            unsigned.clear();
        } else {
            unsigned.extend_from_slice(&wire);
        }
        out.push(wire);
    }
    out
}

fn three_messages() -> Vec<Vec<Record>> {
    vec![
        vec![soa(5), cname("a.rpz.test.", ".")],
        vec![cname("b.rpz.test.", "."), cname("c.rpz.test.", ".")],
        vec![cname("d.rpz.test.", "."), soa(5)],
    ]
}

#[test]
fn verifier_follows_a_multi_message_answer_with_unsigned_messages_between() {
    let key = key();
    let query_mac = vec![7u8; 32];
    let stream = signed_stream(&key, &query_mac, 9, &three_messages(), |i| i != 1);
    let mut verifier = Verifier::new(&key, query_mac.clone());
    for wire in &stream {
        verifier.check(wire, &decode(wire).unwrap()).unwrap();
    }
    verifier.finish().unwrap();

    // The unsigned message altered in transit: the next signed message's MAC catches it.
    let mut verifier = Verifier::new(&key, query_mac.clone());
    let mut altered = stream.clone();
    altered[1][3] ^= 0x20; // the AD bit: still a valid message, no longer the one signed
    verifier
        .check(&altered[0], &decode(&altered[0]).unwrap())
        .unwrap();
    verifier
        .check(&altered[1], &decode(&altered[1]).unwrap())
        .unwrap();
    let err = verifier
        .check(&altered[2], &decode(&altered[2]).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("bad signature"), "{err}");

    // A stream whose last message is unsigned is not accepted.
    let stream = signed_stream(&key, &query_mac, 9, &three_messages(), |i| i == 1);
    let mut verifier = Verifier::new(&key, query_mac.clone());
    for wire in &stream {
        verifier.check(wire, &decode(wire).unwrap()).unwrap();
    }
    assert!(verifier.finish().is_err());

    // The first message must be signed.
    let unsigned = response_wire(9, None, &[soa(5)]);
    let err = Verifier::new(&key, query_mac)
        .check(&unsigned, &decode(&unsigned).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("not signed"), "{err}");
}

// ---- record streams ----

fn read(reader: &mut Reader, messages: Vec<Vec<Record>>) -> Result<bool, XfrError> {
    let mut done = false;
    for message in messages {
        assert!(!done, "records after the end");
        done = reader.push_all(message)?;
    }
    Ok(done)
}

#[test]
fn axfr_stream_across_messages() {
    let mut reader = Reader::new(name("rpz.test."), None);
    assert!(read(&mut reader, three_messages()).unwrap());
    let Some(Transfer::Full(zone)) = reader.outcome else {
        panic!("a full zone")
    };
    assert_eq!(zone.serial(), 5);
    assert_eq!(zone.records.len(), 4);

    let mut reader = Reader::new(name("rpz.test."), None);
    let err = read(&mut reader, vec![vec![cname("a.rpz.test.", ".")]]).unwrap_err();
    assert!(
        err.to_string().contains("does not start with the SOA"),
        "{err}"
    );

    let mut reader = Reader::new(name("rpz.test."), None);
    let err = read(
        &mut reader,
        vec![vec![soa(5), cname("a.rpz.test.", "."), soa(6)]],
    )
    .unwrap_err();
    assert!(err.to_string().contains("ends with serial 6"), "{err}");

    let mut reader = Reader::new(name("rpz.test."), None);
    let err = read(
        &mut reader,
        vec![vec![soa(5), soa(5), cname("a.rpz.test.", ".")]],
    )
    .unwrap_err();
    assert!(err.to_string().contains("after the final SOA"), "{err}");

    // Out-of-zone records are dropped, not kept as policy.
    let mut reader = Reader::new(name("rpz.test."), None);
    read(
        &mut reader,
        vec![vec![soa(5), cname("a.example.", "."), soa(5)]],
    )
    .unwrap();
    let Some(Transfer::Full(zone)) = reader.outcome else {
        panic!("a full zone")
    };
    assert!(zone.records.is_empty());
}

#[test]
fn ixfr_stream_forms() {
    // Up to date: the SOA alone, with our serial or an older one.
    for serial in [5, 4] {
        let mut reader = Reader::new(name("rpz.test."), Some(5));
        assert!(read(&mut reader, vec![vec![soa(serial)]]).unwrap());
        assert_eq!(reader.outcome, Some(Transfer::UpToDate));
    }
    // Serial arithmetic: 1 is newer than 0xffff_fff0.
    let mut reader = Reader::new(name("rpz.test."), Some(0xffff_fff0));
    assert!(!read(&mut reader, vec![vec![soa(1)]]).unwrap());
    assert_eq!(reader.phase, Phase::Second);

    // Answered in full.
    let mut reader = Reader::new(name("rpz.test."), Some(3));
    assert!(read(&mut reader, three_messages()).unwrap());
    assert!(matches!(reader.outcome, Some(Transfer::Full(ref z)) if z.records.len() == 4));

    // Two diffs, 3 → 4 → 5, split over messages anywhere.
    let mut reader = Reader::new(name("rpz.test."), Some(3));
    let messages = vec![
        vec![soa(5), soa(3)],
        vec![
            cname("gone.rpz.test.", "."),
            soa(4),
            cname("new.rpz.test.", "."),
        ],
        vec![soa(4)],
        vec![soa(5), a("x.rpz.test.", [192, 0, 2, 9])],
        vec![soa(5)],
    ];
    assert!(read(&mut reader, messages).unwrap());
    let Some(Transfer::Incremental(diffs)) = reader.outcome else {
        panic!("diffs")
    };
    assert_eq!(diffs.len(), 2);
    assert_eq!((diffs[0].from_serial, diffs[0].to_serial), (3, 4));
    assert_eq!(diffs[0].deleted, vec![soa(3), cname("gone.rpz.test.", ".")]);
    assert_eq!(diffs[0].added, vec![soa(4), cname("new.rpz.test.", ".")]);
    assert_eq!((diffs[1].from_serial, diffs[1].to_serial), (4, 5));
    assert_eq!(diffs[1].deleted, vec![soa(4)]);

    // Diffs that start elsewhere than our serial do not chain.
    let mut reader = Reader::new(name("rpz.test."), Some(2));
    let err = read(&mut reader, vec![vec![soa(5), soa(3), soa(5), soa(5)]]).unwrap_err();
    assert!(err.to_string().contains("do not chain"), "{err}");
}

// ---- Zone::apply ----

#[test]
fn apply_deletes_adds_and_replaces() {
    let mut zone = sample_zone(1);
    let mut longer = cname("bad.example.rpz.test.", ".");
    longer.ttl = 900;
    let diff = Diff {
        from_serial: 1,
        to_serial: 2,
        deleted: vec![
            soa(1),
            cname("BAD.example.rpz.test.", "."),
            cname("drop.example.rpz.test.", "rpz-drop."),
        ],
        added: vec![soa(2), longer.clone(), cname("new.example.rpz.test.", ".")],
    };
    zone.apply(&diff).unwrap();
    assert_eq!(zone.serial(), 2);
    assert_eq!(zone.records.len(), sample_zone(1).records.len());
    let bad: Vec<_> = zone
        .records
        .iter()
        .filter(|r| r.name == name("bad.example.rpz.test."))
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0].ttl, 900);
    assert!(
        !zone
            .records
            .contains(&cname("drop.example.rpz.test.", "rpz-drop."))
    );
    assert!(zone.records.contains(&cname("new.example.rpz.test.", ".")));

    // An added record equal to one present replaces it (TTL), without a deletion.
    let mut zone = sample_zone(1);
    let diff = Diff {
        from_serial: 1,
        to_serial: 2,
        deleted: vec![],
        added: vec![longer],
    };
    zone.apply(&diff).unwrap();
    assert_eq!(zone.records.len(), sample_zone(1).records.len());
    // Without an SOA in the diff only the serial moves.
    assert_eq!(zone.serial(), 2);
    assert_eq!(zone.soa.ttl, soa(1).ttl);
}

#[test]
fn apply_refuses_a_diff_that_does_not_fit_and_changes_nothing() {
    let original = sample_zone(1);
    let mut zone = original.clone();
    let wrong_serial = Diff {
        from_serial: 7,
        to_serial: 8,
        deleted: vec![],
        added: vec![],
    };
    assert!(zone.apply(&wrong_serial).is_err());
    let missing = Diff {
        from_serial: 1,
        to_serial: 2,
        deleted: vec![
            cname("bad.example.rpz.test.", "."),
            cname("never.rpz.test.", "."),
        ],
        added: vec![cname("new.rpz.test.", ".")],
    };
    let err = zone.apply(&missing).unwrap_err();
    assert!(err.to_string().contains("never.rpz.test."), "{err}");
    // The same record deleted twice is only there once.
    let twice = Diff {
        from_serial: 1,
        to_serial: 2,
        deleted: vec![
            cname("bad.example.rpz.test.", "."),
            cname("bad.example.rpz.test.", "."),
        ],
        added: vec![],
    };
    assert!(zone.apply(&twice).is_err());
    assert_eq!(zone, original);
}

// ---- zone text ----

#[test]
fn zone_text_reads_back_to_the_same_rules() {
    let zone = sample_zone(42);
    let text = zone.to_zone_text();
    assert!(text.starts_with("$ORIGIN rpz.test.\nrpz.test. 300 IN SOA ns.rpz.test. admin.rpz.test. 42 3600 600 86400 60\n"), "{text}");
    assert_eq!(text.lines().count(), zone.records.len() + 2);
    let list = formats::parse(Format::Rpz, &text);
    assert_eq!(list.serial, Some(42));
    assert!(
        list.rejected().next().is_none(),
        "{:?}\n{text}",
        list.skipped
    );
    let rule = |n: &str, subdomains: bool| {
        list.rules
            .iter()
            .find(|r| r.name == n && r.subdomains_only == subdomains)
            .unwrap_or_else(|| panic!("no rule for {n} in {:?}", list.rules))
    };
    assert_eq!(
        rule("bad.example", false).action,
        Some(RuleAction::NxDomain)
    );
    assert_eq!(rule("bad.example", true).action, Some(RuleAction::NxDomain));
    assert_eq!(
        rule("nodata.example", false).action,
        Some(RuleAction::NoData)
    );
    assert!(rule("ok.example", false).allow);
    assert_eq!(rule("drop.example", false).action, Some(RuleAction::Drop));
    assert_eq!(
        rule("walled.example", false).action,
        Some(RuleAction::LocalData(
            vec![RData::CNAME(CNAME(name("garden.example.net.")))].into()
        ))
    );
    let Some(RuleAction::LocalData(data)) = &rule("local.example", false).action else {
        panic!("local data")
    };
    assert!(data.contains(&RData::A(A(Ipv4Addr::new(192, 0, 2, 1)))));
    assert!(
        data.contains(&RData::TXT(TXT::new(vec![
            "blocked \"by\" policy; see \\ wiki".into()
        ]))),
        "{data:?}"
    );
    assert_eq!(list.rules.len(), 7);
    assert_eq!(list.ip_rules.len(), 1);

    // Order does not matter to the text: the same records in another order render the same.
    let mut shuffled = zone.clone();
    shuffled.records.reverse();
    assert_eq!(shuffled.to_zone_text(), text);
}

#[test]
fn zone_text_keeps_names_ascii_and_escaped() {
    let mut zone = sample_zone(1);
    zone.records = vec![
        cname("xn--bcher-kva.example.rpz.test.", "."),
        Record::from_rdata(
            Name::from_labels(vec![&b"semi;colon"[..], b"rpz", b"test"]).unwrap(),
            60,
            RData::CNAME(CNAME(Name::root())),
        ),
    ];
    let text = zone.to_zone_text();
    assert!(
        text.contains("\nxn--bcher-kva.example.rpz.test. 300 IN CNAME .\n"),
        "{text}"
    );
    assert!(text.contains("semi\\;colon.rpz.test."), "{text}");
    let list = formats::parse(Format::Rpz, &text);
    assert!(list.rules.iter().any(|r| r.name == "xn--bcher-kva.example"));
}

// ---- NOTIFY ----

fn notify(id: u16, serial: Option<u32>) -> Message {
    let mut message = Message::new(id, MessageType::Query, OpCode::Notify);
    message.metadata.authoritative = true;
    message.add_query(Query::query(name("rpz.test."), RecordType::SOA));
    if let Some(serial) = serial {
        message.add_answer(soa(serial));
    }
    message
}

#[test]
fn parse_notify_recognises_notify_for_a_zone() {
    assert_eq!(
        parse_notify(&notify(1, Some(9))),
        Some((name("rpz.test."), Some(9)))
    );
    assert_eq!(
        parse_notify(&notify(1, None)),
        Some((name("rpz.test."), None))
    );
    // Decoded from the wire as a server would.
    let wire = notify(3, Some(10)).to_vec().unwrap();
    let decoded = Message::from_vec(&wire).unwrap();
    assert_eq!(parse_notify(&decoded), Some((name("rpz.test."), Some(10))));

    let mut query = notify(1, None);
    query.metadata.op_code = OpCode::Query;
    assert_eq!(parse_notify(&query), None);
    let mut response = notify(1, None);
    response.metadata.message_type = MessageType::Response;
    assert_eq!(parse_notify(&response), None);
    let mut no_question = notify(1, None);
    no_question.queries.clear();
    assert_eq!(parse_notify(&no_question), None);
    let mut a_question = notify(1, None);
    a_question.queries[0].set_query_type(RecordType::A);
    assert_eq!(parse_notify(&a_question), None);
}

#[test]
fn notify_response_echoes_and_signs() {
    let request = notify(777, Some(3));
    let wire = notify_response(&request, None).unwrap();
    let response = Message::from_vec(&wire).unwrap();
    assert_eq!(response.id, 777);
    assert_eq!(response.message_type, MessageType::Response);
    assert_eq!(response.op_code, OpCode::Notify);
    assert_eq!(response.response_code, ResponseCode::NoError);
    assert_eq!(response.queries, request.queries);
    assert!(notify_response(&Message::new(1, MessageType::Query, OpCode::Query), None).is_err());

    // A signed NOTIFY gets a response signed over its MAC.
    let key = key();
    let mut signed = request.to_vec().unwrap();
    let request_mac = sign(&mut signed, &key, None, unix_now()).unwrap();
    verify_notify(&signed, &key).unwrap();
    let decoded = Message::from_vec(&signed).unwrap();
    assert_eq!(parse_notify(&decoded), Some((name("rpz.test."), Some(3))));
    let wire = notify_response(&decoded, Some(&key)).unwrap();
    let response = decode(&wire).unwrap();
    let tsig = response.tsig.as_ref().expect("signed response");
    check_signed(
        &wire,
        tsig,
        &key,
        Some(&request_mac),
        &[],
        true,
        unix_now(),
        "test",
    )
    .unwrap();
    assert!(
        check_signed(
            &wire,
            tsig,
            &key,
            Some(&[0u8; 32]),
            &[],
            true,
            unix_now(),
            "test"
        )
        .is_err()
    );

    // Unsigned request: unsigned response. Signed with another key: refused.
    let wire = notify_response(&request, Some(&key)).unwrap();
    assert!(decode(&wire).unwrap().tsig.is_none());
    let stranger = TsigKey::new("stranger", "c2VjcmV0").unwrap();
    let err = notify_response(&decoded, Some(&stranger)).unwrap_err();
    assert!(matches!(err, XfrError::Tsig(_)), "{err}");
}

// ---- whole transfers against a scripted primary ----

/// Reads one framed query per connection and answers with what `script` returns for it (framed
/// messages, written as given, then the connection closes).
async fn scripted_primary(
    connections: usize,
    script: impl Fn(usize, Vec<u8>) -> Vec<Vec<u8>> + Send + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        for n in 0..connections {
            let (mut stream, _) = listener.accept().await.unwrap();
            let len = stream.read_u16().await.unwrap();
            let mut query = vec![0; usize::from(len)];
            stream.read_exact(&mut query).await.unwrap();
            for message in script(n, query) {
                stream
                    .write_all(&(message.len() as u16).to_be_bytes())
                    .await
                    .unwrap();
                stream.write_all(&message).await.unwrap();
            }
        }
    });
    addr
}

fn source(primary: SocketAddr, tsig: Option<TsigKey>) -> XfrSource {
    XfrSource {
        primary,
        zone: name("rpz.test."),
        tsig,
        timeout: Duration::from_secs(5),
    }
}

fn query_id_and_mac(query: &[u8]) -> (u16, Vec<u8>) {
    let decoded = decode(query).unwrap();
    let mac = decoded.tsig.map(|t| t.data.mac).unwrap_or_default();
    (decoded.meta.id, mac)
}

#[tokio::test]
async fn fetch_axfr_with_an_unsigned_message_in_the_middle() {
    let key = key();
    let server_key = key.clone();
    let primary = scripted_primary(1, move |_, query| {
        let (id, mac) = query_id_and_mac(&query);
        verify_notify(&query, &server_key).expect("the query is signed");
        signed_stream(&server_key, &mac, id, &three_messages(), |i| i != 1)
    })
    .await;
    let Transfer::Full(zone) = fetch(&source(primary, Some(key)), None).await.unwrap() else {
        panic!("a full zone")
    };
    assert_eq!((zone.serial(), zone.records.len()), (5, 4));
}

#[tokio::test]
async fn fetch_refuses_an_unsigned_end_or_a_wrong_key() {
    let server_key = key();
    let primary = scripted_primary(2, move |n, query| {
        let (id, mac) = query_id_and_mac(&query);
        if n == 0 {
            signed_stream(&server_key, &mac, id, &three_messages(), |i| i == 1)
        } else {
            signed_stream(&other_key(), &mac, id, &three_messages(), |_| true)
        }
    })
    .await;
    let err = fetch(&source(primary, Some(key())), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("last message of the transfer is not signed"),
        "{err}"
    );
    let err = fetch(&source(primary, Some(key())), None)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("TSIG verification failed: bad signature"),
        "{err}"
    );
}

#[tokio::test]
async fn ixfr_falls_back_to_axfr() {
    // First a newer SOA alone then close; then NOTIMP; each time an AXFR follows.
    let primary = scripted_primary(4, |n, query| {
        let (id, _) = query_id_and_mac(&query);
        let qtype = decode(&query).unwrap().queries[0].query_type();
        match n {
            0 => {
                assert_eq!(qtype, RecordType::IXFR);
                vec![response_wire(id, Some(qtype), &[soa(9)])]
            }
            2 => {
                assert_eq!(qtype, RecordType::IXFR);
                let mut message = Message::error_msg(id, OpCode::Query, ResponseCode::NotImp);
                message.add_query(Query::query(name("rpz.test."), qtype));
                vec![message.to_vec().unwrap()]
            }
            _ => {
                assert_eq!(qtype, RecordType::AXFR);
                vec![response_wire(
                    id,
                    Some(qtype),
                    &[soa(9), cname("z.rpz.test.", "."), soa(9)],
                )]
            }
        }
    })
    .await;
    let current = sample_zone(1);
    for _ in 0..2 {
        let transfer = fetch(&source(primary, None), Some(&current)).await.unwrap();
        assert!(
            matches!(transfer, Transfer::Full(ref z) if z.serial() == 9),
            "{transfer:?}"
        );
    }
}

#[tokio::test]
async fn unsigned_or_refused_answers_are_errors() {
    let primary = scripted_primary(2, |n, query| {
        let (id, _) = query_id_and_mac(&query);
        let mut message = Message::error_msg(id, OpCode::Query, ResponseCode::Refused);
        message.add_query(Query::query(name("rpz.test."), RecordType::AXFR));
        let _ = n;
        vec![message.to_vec().unwrap()]
    })
    .await;
    let err = fetch(&source(primary, Some(key())), None)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, XfrError::Tsig(text) if text.contains("not signed (rcode REFUSED)")),
        "{err}"
    );
    let err = fetch(&source(primary, None), None).await.unwrap_err();
    assert!(
        matches!(err, XfrError::Refused(ResponseCode::Refused)),
        "{err}"
    );
}

#[tokio::test]
async fn a_silent_primary_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let primary = listener.local_addr().unwrap();
    let mut xfr = source(primary, None);
    xfr.timeout = Duration::from_millis(200);
    let (result, _accepted) = tokio::join!(soa_serial(&xfr), listener.accept());
    assert!(
        matches!(result, Err(XfrError::Timeout { .. })),
        "{result:?}"
    );
}

// ---- hostile input ----

proptest::proptest! {
    /// Whatever bytes arrive, decoding, TSIG checks and the record reader return, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
        let key = key();
        let _ = verify_notify(&bytes, &key);
        if let Ok(decoded) = decode(&bytes) {
            let _ = Verifier::new(&key, vec![0; 32]).check(&bytes, &decoded);
            let _ = Reader::new(name("rpz.test."), Some(1)).push_all(decoded.answers);
        }
        if let Ok(message) = Message::from_vec(&bytes) {
            let _ = parse_notify(&message);
            let _ = notify_response(&message, Some(&key));
        }
    }

    /// A signed answer with one bit changed is refused, unless the bit is in the message ID
    /// (the MAC covers the original ID kept in the TSIG record instead) or changes the case of a
    /// letter in the TSIG record's names (the MAC covers them lower-cased); cut short, it is
    /// refused too; nothing panics.
    #[test]
    fn damaged_signed_messages_are_refused(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
        let key = key();
        let mut wire = response_wire(9, Some(RecordType::AXFR), &[soa(5), cname("a.rpz.test.", "."), soa(5)]);
        sign(&mut wire, &key, Some(&[1; 32]), unix_now()).unwrap();
        let len = wire.len();
        let tsig_start = decode(&wire).unwrap().tsig.unwrap().start;
        let flip = flip % len;
        wire[flip] ^= 1 << bit;
        let case_only = bit == 5 && flip >= tsig_start && wire[flip].is_ascii_alphabetic();
        wire.truncate(cut.max(len / 2).min(len));
        let accepted = decode(&wire)
            .and_then(|decoded| Verifier::new(&key, vec![1; 32]).check(&wire, &decoded))
            .is_ok();
        let harmless = (flip < 2 || case_only) && wire.len() == len;
        proptest::prop_assert!(!accepted || harmless, "flip {flip} bit {bit} cut {cut}");
        let _ = verify_notify(&wire, &key);
    }
}
