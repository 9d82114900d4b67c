//! Zone transfers for RPZ feeds: a full copy by AXFR (RFC 5936), changes by IXFR (RFC 1995),
//! NOTIFY (RFC 1996) recognised and answered, and every exchange authenticated with TSIG
//! HMAC-SHA256 (RFC 8945) when a key is configured. This module owns the wire exchange with a
//! primary and the zone as a set of records; when to transfer (the SOA refresh timer, a NOTIFY)
//! and what to do with the result belong to the feed manager.
//!
//! The exchange is written here over a plain `TcpStream` (two-byte length framing, one query per
//! connection) rather than through hickory's client: a transfer is a stream of messages that
//! only makes sense read as a whole, and TSIG has to be checked on the exact bytes received.
//! TSIG is implemented here too (HMAC from `ring`, record layout from hickory): hickory's
//! verifier needs its DNSSEC features and checks one message at a time, while RFC 8945 §5.3.1
//! lets a primary leave up to 99 messages of a transfer unsigned (NSD signs every 100th), each
//! signed message then covering the unsigned ones before it. An unsigned message is therefore
//! only trusted once a later signed one covers it, and a transfer whose last message is not
//! signed fails.
//!
//! Nothing the primary sends can panic this module: every message is decoded by hickory into
//! owned values, every slice access is checked, and a bad answer is an [`XfrError`].

use std::{
    collections::{HashMap, HashSet},
    fmt::{self, Write as _},
    hash::{Hash, Hasher},
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use hickory_proto::{
    op::{Header, Message, MessageType, Metadata, OpCode, Query, ResponseCode},
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{SOA, TSIG, tsig::TsigError},
    },
    serialize::binary::{BinDecodable, BinDecoder},
};
use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Seconds of clock difference either side accepts on a signature (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

/// RFC 8945 §5.3.1: a client accepts up to 99 unsigned messages between two signed ones.
const MAX_UNSIGNED_RUN: usize = 99;

/// Length of an HMAC-SHA256 MAC; shorter (truncated) MACs are refused.
const MAC_LEN: usize = 32;

/// The algorithm name in canonical wire form, as it enters every MAC.
const HMAC_SHA256_WIRE: &[u8] = b"\x0bhmac-sha256\x00";

/// TSIG record type and class ANY, for the records written here.
const TYPE_TSIG: u16 = 250;
const CLASS_ANY: u16 = 255;

/// Everything that can go wrong talking to a primary, in words an operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum XfrError {
    /// The configured key cannot be used (bad name, secret not base64, empty secret).
    #[error("invalid TSIG key: {0}")]
    Key(String),
    /// Connecting, reading or writing failed.
    #[error("zone transfer I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The primary did not accept the connection or send the next message in time.
    #[error("no answer from the primary {primary} within {waited:?}")]
    Timeout {
        primary: SocketAddr,
        waited: Duration,
    },
    /// The primary answered with an error code (REFUSED: not allowed to transfer; NOTAUTH: not
    /// authoritative; SERVFAIL: the zone is not loaded there).
    #[error("the primary answered {}", rcode_name(*.0))]
    Refused(ResponseCode),
    /// A TSIG check failed, on our side or on the primary's.
    #[error("TSIG verification failed: {0}")]
    Tsig(String),
    /// The primary's answer does not follow the protocol, or a diff does not fit the zone.
    #[error("zone transfer protocol error: {0}")]
    Protocol(String),
}

/// The mnemonic operators know from dig and the logs (REFUSED, NOTAUTH, SERVFAIL, …).
fn rcode_name(rcode: ResponseCode) -> String {
    format!("{rcode:?}").to_ascii_uppercase()
}

fn protocol(what: impl Into<String>) -> XfrError {
    XfrError::Protocol(what.into())
}

/// A TSIG key (RFC 8945). Only HMAC-SHA256 is implemented: it is what every current primary
/// offers and what `tsig-keygen` produces by default.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, which must be the same on the primary (`key "name" { … }` in BIND).
    pub name: Name,
    /// The shared secret, decoded from base64.
    pub secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    /// The secret never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// A key from configuration strings: its name (`xfr-key` or `xfr-key.`) and the secret as
    /// BIND writes it (standard base64; padding optional, blanks ignored).
    pub fn new(name: &str, base64_secret: &str) -> Result<Self, XfrError> {
        let name_text = name.trim();
        if name_text.is_empty() || name_text == "." {
            return Err(XfrError::Key("the key name is empty".into()));
        }
        let mut parsed = Name::from_ascii(name_text)
            .map_err(|err| XfrError::Key(format!("key name {name_text:?} is not valid: {err}")))?;
        parsed.set_fqdn(true);
        let compact: String = base64_secret
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        let secret = data_encoding::BASE64
            .decode(compact.as_bytes())
            .or_else(|_| data_encoding::BASE64_NOPAD.decode(compact.as_bytes()))
            .map_err(|err| {
                XfrError::Key(format!(
                    "the secret of key {name_text:?} is not base64: {err}"
                ))
            })?;
        if secret.is_empty() {
            return Err(XfrError::Key(format!(
                "the secret of key {name_text:?} is empty"
            )));
        }
        Ok(Self {
            name: parsed,
            secret,
        })
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        hmac::sign(&key, data).as_ref().to_vec()
    }

    /// Constant-time comparison of `mac` with the MAC of `data`.
    fn verify(&self, data: &[u8], mac: &[u8]) -> bool {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        hmac::verify(&key, data, mac).is_ok()
    }
}

/// Where a zone comes from.
#[derive(Debug, Clone)]
pub struct XfrSource {
    /// The primary's address (TCP, usually port 53).
    pub primary: SocketAddr,
    /// The zone to transfer.
    pub zone: Name,
    /// Sign every query and require every answer to be signed with this key.
    pub tsig: Option<TsigKey>,
    /// The longest wait for the connection and for each message of an answer; a transfer that
    /// keeps sending is not cut off however long it takes.
    pub timeout: Duration,
}

/// The zone as a set of records (excluding the SOA, kept separately). `==` compares the records
/// in order and, like hickory's `Record` equality (RFC 2136), ignores TTLs.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// The zone's SOA record, with SOA rdata; its owner is the zone's name.
    pub soa: Record,
    /// Every other record, in the order the primary sent them (changes append at the end).
    pub records: Vec<Record>,
}

/// One IXFR difference sequence (RFC 1995 §4): the changes from one version to the next. As on
/// the wire, `deleted` starts with the old SOA and `added` with the new one, so the new SOA's
/// timers travel with the diff; [`Zone::apply`] also accepts diffs without them.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff {
    pub from_serial: u32,
    pub to_serial: u32,
    pub deleted: Vec<Record>,
    pub added: Vec<Record>,
}

/// What a transfer brought. (One value per transfer: the size of `Full` is not worth a box.)
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Transfer {
    /// The primary has nothing newer than our copy.
    UpToDate,
    /// The whole zone: the answer to an AXFR, or to an IXFR the primary chose to answer in full.
    Full(Zone),
    /// The changes since our serial, oldest first; apply them in order.
    Incremental(Vec<Diff>),
}

impl Zone {
    /// The SOA serial (0 if `soa` does not hold SOA data, which no transfer produces).
    pub fn serial(&self) -> u32 {
        soa_data(&self.soa).map_or(0, |soa| soa.serial)
    }

    /// Render as RFC 1035 master-file text ($ORIGIN, the SOA, every record, one per line) that
    /// Rampart's RPZ parser (`Format::Rpz`) reads back to the same rules.
    ///
    /// Names are written absolute and in ASCII (IDN labels stay `xn--…`, other bytes escaped as
    /// `\DDD`); records are sorted in DNSSEC canonical order, so the records of one owner are
    /// adjacent and two copies of the same zone render to the same text however they were built.
    pub fn to_zone_text(&self) -> String {
        let mut out = String::with_capacity(48 * (self.records.len() + 2));
        out.push_str("$ORIGIN ");
        push_name(&mut out, &self.soa.name);
        out.push('\n');
        push_record(&mut out, &self.soa);
        let mut sorted: Vec<&Record> = self.records.iter().collect();
        sorted.sort();
        for record in sorted {
            push_record(&mut out, record);
        }
        out
    }

    /// Apply one IXFR difference sequence (RFC 1995): deletions then additions, new SOA.
    ///
    /// The diff must start at this zone's serial and every record it deletes must be present
    /// (compared as RFC 2136 does: name without case, class, type and data; not the TTL); an
    /// added record equal to one present replaces it (a TTL change). On error the zone is left
    /// exactly as it was, so the caller can fall back to a full transfer.
    pub fn apply(&mut self, diff: &Diff) -> Result<(), XfrError> {
        let serial = self.serial();
        if diff.from_serial != serial {
            return Err(protocol(format!(
                "an IXFR diff from serial {} does not apply to the zone at serial {serial}",
                diff.from_serial
            )));
        }
        let apex = &self.soa.name;
        let mut delete: HashMap<RecordKey<'_>, usize> = HashMap::new();
        for record in &diff.deleted {
            if let Some(soa) = apex_soa(record, apex) {
                if soa.serial != diff.from_serial {
                    return Err(protocol(format!(
                        "an IXFR diff from serial {} deletes an SOA with serial {}",
                        diff.from_serial, soa.serial
                    )));
                }
                continue;
            }
            *delete.entry(RecordKey(record)).or_default() += 1;
        }
        let mut new_soa = None;
        let mut add: HashSet<RecordKey<'_>> = HashSet::new();
        for record in &diff.added {
            if let Some(soa) = apex_soa(record, apex) {
                if soa.serial != diff.to_serial {
                    return Err(protocol(format!(
                        "an IXFR diff to serial {} adds an SOA with serial {}",
                        diff.to_serial, soa.serial
                    )));
                }
                new_soa = Some(record.clone());
            } else {
                add.insert(RecordKey(record));
            }
        }

        // Mark first, change nothing until the whole diff is known to fit.
        let mut drop = vec![false; self.records.len()];
        if !delete.is_empty() || !add.is_empty() {
            for (slot, record) in drop.iter_mut().zip(&self.records) {
                let key = RecordKey(record);
                if let Some(left) = delete.get_mut(&key).filter(|left| **left > 0) {
                    *left -= 1;
                    *slot = true;
                } else if add.contains(&key) {
                    // Re-added from the diff below with its TTL.
                    *slot = true;
                }
            }
        }
        if let Some((missing, _)) = delete.iter().find(|(_, left)| **left > 0) {
            return Err(protocol(format!(
                "the IXFR diff from serial {} to {} deletes a record the zone does not have: {}",
                diff.from_serial,
                diff.to_serial,
                record_line(missing.0)
            )));
        }

        let mut marks = drop.into_iter();
        self.records.retain(|_| !marks.next().unwrap_or(false));
        let mut seen: HashSet<RecordKey<'_>> = HashSet::with_capacity(add.len());
        for record in &diff.added {
            if apex_soa(record, apex).is_some() || !seen.insert(RecordKey(record)) {
                continue;
            }
            self.records.push(record.clone());
        }
        self.soa = match new_soa {
            Some(soa) => soa,
            None => with_serial(&self.soa, diff.to_serial),
        };
        Ok(())
    }
}

/// AXFR when `current` is None; otherwise IXFR from `current.serial()`. A primary may answer an
/// IXFR with the full zone (RFC 1995 allows it), or with its SOA alone when we are up to date; a
/// primary that does not implement IXFR (NOTIMP, FORMERR), or that sends only a newer SOA and
/// closes, is asked again by AXFR. A single SOA whose serial is not newer than ours (RFC 1982
/// serial arithmetic) means up to date, as for a secondary server. TCP, one connection per query.
/// When `tsig` is set, every query is signed and every answer verified: a wrong key, a bad
/// signature or an unsigned answer is an error, never silently accepted. Diffs are checked to
/// chain from our serial to the primary's; one that [`Zone::apply`] refuses (the primary's
/// journal disagrees with our copy) is the caller's cue to fetch again with `current = None`.
pub async fn fetch(source: &XfrSource, current: Option<&Zone>) -> Result<Transfer, XfrError> {
    let Some(current) = current else {
        return axfr(source).await.map(Transfer::Full);
    };
    if current.soa.name != source.zone {
        return Err(protocol(format!(
            "the zone we hold is {}, the source is configured for {}",
            current.soa.name, source.zone
        )));
    }
    match ixfr(source, current).await {
        Ok(Some(transfer)) => Ok(transfer),
        Ok(None) | Err(XfrError::Refused(ResponseCode::NotImp | ResponseCode::FormErr)) => {
            axfr(source).await.map(Transfer::Full)
        }
        Err(err) => Err(err),
    }
}

/// Query the primary's SOA serial (for the refresh timer), over TCP, TSIG-signed when
/// configured.
pub async fn soa_serial(source: &XfrSource) -> Result<u32, XfrError> {
    let mut serial = None;
    exchange(source, RecordType::SOA, None, |answers| {
        serial = answers
            .iter()
            .filter(|r| r.name == source.zone)
            .find_map(soa_data)
            .map(|soa| soa.serial);
        Ok(true)
    })
    .await?;
    serial.ok_or_else(|| {
        protocol(format!(
            "the primary's answer has no SOA record for {}",
            source.zone
        ))
    })
}

/// Recognise a NOTIFY request (opcode NOTIFY, RFC 1996) for a zone: returns (zone, serial if the
/// NOTIFY carries an SOA answer). Operates on the decoded request message; a NOTIFY only says
/// "look now", so acting on an unauthenticated one costs a refresh at most. [`verify_notify`]
/// checks its TSIG where that matters.
pub fn parse_notify(message: &Message) -> Option<(Name, Option<u32>)> {
    if message.op_code != OpCode::Notify || message.message_type != MessageType::Query {
        return None;
    }
    let [query] = message.queries.as_slice() else {
        return None;
    };
    if query.query_type() != RecordType::SOA || query.query_class() != DNSClass::IN {
        return None;
    }
    let serial = message
        .answers
        .iter()
        .filter(|r| r.name == *query.name())
        .find_map(soa_data)
        .map(|soa| soa.serial);
    Some((query.name().clone(), serial))
}

/// Build the NOTIFY response (same id, QR=1, opcode NOTIFY, question echoed, NOERROR). When
/// `tsig` is given and the request is signed, the response is signed over the request's MAC
/// (RFC 8945 §5.3); an unsigned request gets an unsigned response, and a request signed with
/// another key is an error.
pub fn notify_response(request: &Message, tsig: Option<&TsigKey>) -> Result<Vec<u8>, XfrError> {
    if request.op_code != OpCode::Notify || request.message_type != MessageType::Query {
        return Err(protocol("the message to answer is not a NOTIFY request"));
    }
    let mut response = Message::new(request.id, MessageType::Response, OpCode::Notify);
    response.metadata.authoritative = true;
    response.queries = request.queries.clone();
    let mut wire = response
        .to_vec()
        .map_err(|err| protocol(format!("cannot encode the NOTIFY response: {err}")))?;
    if let Some(key) = tsig
        && let Some((name, request_mac)) = message_tsig(request)
    {
        if name != key.name {
            return Err(XfrError::Tsig(format!(
                "the NOTIFY is signed with key '{name}', we expect key '{}'",
                key.name
            )));
        }
        sign(&mut wire, key, Some(&request_mac), unix_now())?;
    }
    Ok(wire)
}

/// Check the TSIG of a NOTIFY (or any request) as received, before acting on it: it must be
/// signed with `key`, the MAC must verify and the time must be within the fudge.
pub fn verify_notify(wire: &[u8], key: &TsigKey) -> Result<(), XfrError> {
    let decoded = decode(wire)?;
    let Some(tsig) = &decoded.tsig else {
        return Err(XfrError::Tsig(format!(
            "the request is not signed (we expect key '{}')",
            key.name
        )));
    };
    check_signed(wire, tsig, key, None, &[], true, unix_now(), "request").map(|_| ())
}

async fn axfr(source: &XfrSource) -> Result<Zone, XfrError> {
    let mut reader = Reader::new(source.zone.clone(), None);
    let end = exchange(source, RecordType::AXFR, None, |answers| {
        reader.push_all(answers)
    })
    .await?;
    match (end, reader.outcome) {
        (End::Done, Some(Transfer::Full(zone))) => Ok(zone),
        _ => Err(protocol(
            "the primary closed the connection before the end of the AXFR (its final SOA)",
        )),
    }
}

/// `None`: the primary sent a newer SOA alone and closed, or otherwise asks for an AXFR.
async fn ixfr(source: &XfrSource, current: &Zone) -> Result<Option<Transfer>, XfrError> {
    let mut reader = Reader::new(source.zone.clone(), Some(current.serial()));
    let end = exchange(
        source,
        RecordType::IXFR,
        Some(current.soa.clone()),
        |answers| reader.push_all(answers),
    )
    .await?;
    match (end, reader.phase, reader.outcome) {
        (End::Done, _, Some(transfer)) => Ok(Some(transfer)),
        (End::Eof, Phase::Second, _) => Ok(None),
        _ => Err(protocol(
            "the primary closed the connection before the end of the IXFR (its final SOA)",
        )),
    }
}

enum End {
    /// The handler saw the end of the answer.
    Done,
    /// The primary closed the connection first.
    Eof,
}

/// One query and its answer messages, verified: sends the query (signed when a key is set), then
/// hands the answer records of each message to `handle` until it returns true (done) or the
/// primary closes the connection.
async fn exchange(
    source: &XfrSource,
    qtype: RecordType,
    authority: Option<Record>,
    mut handle: impl FnMut(Vec<Record>) -> Result<bool, XfrError>,
) -> Result<End, XfrError> {
    let id = random_id();
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    let mut question = Query::query(source.zone.clone(), qtype);
    question.set_query_class(DNSClass::IN);
    query.add_query(question);
    if let Some(soa) = authority {
        query.add_authority(soa);
    }
    let mut wire = query
        .to_vec()
        .map_err(|err| protocol(format!("cannot encode the query: {err}")))?;
    let mut verifier = match &source.tsig {
        Some(key) => Some(Verifier::new(key, sign(&mut wire, key, None, unix_now())?)),
        None => None,
    };

    let mut conn = Conn::open(source).await?;
    conn.send(&wire).await?;
    loop {
        let Some(message) = conn.recv().await? else {
            return Ok(End::Eof);
        };
        let decoded = decode(&message)?;
        let meta = &decoded.meta;
        if meta.id != id || meta.message_type != MessageType::Response {
            return Err(protocol(format!(
                "the primary sent a message that is not the answer to our query (id {}, expected {id})",
                meta.id
            )));
        }
        if let Some(verifier) = verifier.as_mut() {
            verifier.check(&message, &decoded)?;
        }
        if meta.response_code != ResponseCode::NoError {
            return Err(XfrError::Refused(meta.response_code));
        }
        if meta.op_code != OpCode::Query {
            return Err(protocol(format!(
                "the answer has opcode {:?}, not QUERY",
                meta.op_code
            )));
        }
        if meta.truncation {
            return Err(protocol("the answer is truncated (TC) over TCP"));
        }
        if let Some(q) = decoded.queries.first()
            && (decoded.queries.len() != 1 || q.name() != &source.zone || q.query_type() != qtype)
        {
            return Err(protocol(format!(
                "the answer is for another question ({} {})",
                q.name(),
                q.query_type()
            )));
        }
        if handle(decoded.answers)? {
            if let Some(verifier) = &verifier {
                verifier.finish()?;
            }
            return Ok(End::Done);
        }
    }
}

/// A TCP connection to the primary with two-byte length framing (RFC 1035 §4.2.2).
struct Conn {
    stream: TcpStream,
    primary: SocketAddr,
    timeout: Duration,
}

impl Conn {
    async fn open(source: &XfrSource) -> Result<Self, XfrError> {
        let stream = within(source, TcpStream::connect(source.primary)).await??;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            primary: source.primary,
            timeout: source.timeout,
        })
    }

    async fn send(&mut self, wire: &[u8]) -> Result<(), XfrError> {
        let len = u16::try_from(wire.len())
            .map_err(|_| protocol("the query does not fit in one DNS message"))?;
        let mut framed = Vec::with_capacity(wire.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(wire);
        let timeout = self.timeout;
        let primary = self.primary;
        match tokio::time::timeout(timeout, self.stream.write_all(&framed)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(XfrError::Timeout {
                primary,
                waited: timeout,
            }),
        }
    }

    /// The next message, or None when the primary closed the connection between messages.
    async fn recv(&mut self) -> Result<Option<Vec<u8>>, XfrError> {
        let (timeout, primary) = (self.timeout, self.primary);
        let timed_out = || XfrError::Timeout {
            primary,
            waited: timeout,
        };
        let mut len = [0u8; 2];
        let first = tokio::time::timeout(timeout, self.stream.read(&mut len))
            .await
            .map_err(|_| timed_out())??;
        match first {
            0 => return Ok(None),
            1 => {
                let rest = len.get_mut(1..).unwrap_or_default();
                tokio::time::timeout(timeout, self.stream.read_exact(rest))
                    .await
                    .map_err(|_| timed_out())??;
            }
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes(len));
        if len == 0 {
            return Err(protocol("the primary sent an empty message"));
        }
        let mut message = vec![0u8; len];
        tokio::time::timeout(timeout, self.stream.read_exact(&mut message))
            .await
            .map_err(|_| timed_out())??;
        Ok(Some(message))
    }
}

async fn within<T>(source: &XfrSource, future: impl Future<Output = T>) -> Result<T, XfrError> {
    tokio::time::timeout(source.timeout, future)
        .await
        .map_err(|_| XfrError::Timeout {
            primary: source.primary,
            waited: source.timeout,
        })
}

/// The parts of a received message this module uses.
struct Decoded {
    meta: Metadata,
    queries: Vec<Query>,
    answers: Vec<Record>,
    tsig: Option<TsigRecord>,
}

/// A message's TSIG record and where it starts in the message.
struct TsigRecord {
    start: usize,
    name: Name,
    /// Must be ANY and 0 (RFC 8945 §4.2): the MAC covers those constants, not what was sent.
    class: DNSClass,
    ttl: u32,
    data: TSIG,
}

/// Decodes a message, finding the byte offset of its TSIG record (which must be the last
/// record) so the MAC can be computed over exactly the bytes before it.
fn decode(wire: &[u8]) -> Result<Decoded, XfrError> {
    let bad = |err: &dyn fmt::Display| protocol(format!("malformed DNS message: {err}"));
    let mut decoder = BinDecoder::new(wire);
    let header = Header::read(&mut decoder).map_err(|e| bad(&e))?;
    let counts = header.counts;
    let mut queries = Vec::with_capacity(usize::from(counts.queries.min(4)));
    for _ in 0..counts.queries {
        queries.push(Query::read(&mut decoder).map_err(|e| bad(&e))?);
    }
    // A record takes at least 11 bytes: a forged count cannot make us reserve much more than
    // the message holds.
    let mut answers = Vec::with_capacity(usize::from(counts.answers).min(wire.len() / 11));
    for _ in 0..counts.answers {
        answers.push(Record::read(&mut decoder).map_err(|e| bad(&e))?);
    }
    for _ in 0..counts.authorities {
        Record::read(&mut decoder).map_err(|e| bad(&e))?;
    }
    let mut tsig = None;
    for i in 0..counts.additionals {
        let start = decoder.index();
        let record = Record::read(&mut decoder).map_err(|e| bad(&e))?;
        if let RData::TSIG(data) = record.data {
            if i + 1 != counts.additionals {
                return Err(protocol(
                    "malformed DNS message: its TSIG record is not the last record",
                ));
            }
            tsig = Some(TsigRecord {
                start,
                name: record.name,
                class: record.dns_class,
                ttl: record.ttl,
                data,
            });
        }
    }
    Ok(Decoded {
        meta: header.metadata,
        queries,
        answers,
        tsig,
    })
}

/// Checks the TSIGs of the messages answering one signed query (RFC 8945 §5.3 and §5.3.1).
struct Verifier<'k> {
    key: &'k TsigKey,
    /// The MAC of the query, then of the last signed answer message: each MAC covers the last.
    prior_mac: Vec<u8>,
    first: bool,
    /// Unsigned messages since the last signed one, as received; the next MAC covers them.
    unsigned: Vec<u8>,
    unsigned_count: usize,
}

impl<'k> Verifier<'k> {
    fn new(key: &'k TsigKey, query_mac: Vec<u8>) -> Self {
        Self {
            key,
            prior_mac: query_mac,
            first: true,
            unsigned: Vec::new(),
            unsigned_count: 0,
        }
    }

    fn check(&mut self, wire: &[u8], decoded: &Decoded) -> Result<(), XfrError> {
        let Some(tsig) = &decoded.tsig else {
            if self.first {
                return Err(XfrError::Tsig(format!(
                    "the primary's answer is not signed (rcode {}); a primary that knows key \
                     '{}' signs its answers, so this answer is refused",
                    rcode_name(decoded.meta.response_code),
                    self.key.name
                )));
            }
            self.unsigned_count += 1;
            if self.unsigned_count > MAX_UNSIGNED_RUN {
                return Err(XfrError::Tsig(format!(
                    "more than {MAX_UNSIGNED_RUN} unsigned messages in a row in the transfer"
                )));
            }
            self.unsigned.extend_from_slice(wire);
            return Ok(());
        };
        let mac = check_signed(
            wire,
            tsig,
            self.key,
            Some(&self.prior_mac),
            &self.unsigned,
            self.first,
            unix_now(),
            "primary's answer",
        )?;
        self.prior_mac = mac;
        self.first = false;
        self.unsigned.clear();
        self.unsigned_count = 0;
        Ok(())
    }

    /// The last message of an answer must be signed, or its records would be unauthenticated.
    fn finish(&self) -> Result<(), XfrError> {
        if self.unsigned_count > 0 {
            return Err(XfrError::Tsig(
                "the last message of the transfer is not signed".into(),
            ));
        }
        Ok(())
    }
}

/// Verifies one signed message; returns its MAC. `full` selects the full TSIG variables (a
/// request, or the first answer message) over the timers alone (later answer messages).
#[allow(clippy::too_many_arguments)]
fn check_signed(
    wire: &[u8],
    tsig: &TsigRecord,
    key: &TsigKey,
    prior_mac: Option<&[u8]>,
    unsigned: &[u8],
    full: bool,
    now: u64,
    what: &str,
) -> Result<Vec<u8>, XfrError> {
    let data = &tsig.data;
    if tsig.class != DNSClass::ANY || tsig.ttl != 0 {
        return Err(XfrError::Tsig(format!(
            "the {what}'s TSIG record has class {} and TTL {}, not ANY and 0",
            tsig.class, tsig.ttl
        )));
    }
    if let Some(error) = data.error {
        return Err(XfrError::Tsig(tsig_error_text(error, key)));
    }
    if tsig.name != key.name {
        return Err(XfrError::Tsig(format!(
            "the {what} is signed with key '{}', we use key '{}' (bad key name)",
            tsig.name, key.name
        )));
    }
    let algorithm = data.algorithm.to_name().to_ascii();
    if !algorithm
        .trim_end_matches('.')
        .eq_ignore_ascii_case("hmac-sha256")
    {
        return Err(XfrError::Tsig(format!(
            "the {what} is signed with algorithm {algorithm}, only hmac-sha256 is supported"
        )));
    }
    if data.mac.len() != MAC_LEN {
        return Err(XfrError::Tsig(format!(
            "the {what} carries a {}-byte MAC, hmac-sha256 gives {MAC_LEN} (truncated MACs are \
             not accepted)",
            data.mac.len()
        )));
    }
    let mut tbs = Vec::with_capacity(wire.len() + unsigned.len() + 96);
    if let Some(prior) = prior_mac {
        push_u16_len(&mut tbs, prior.len())?;
        tbs.extend_from_slice(prior);
    }
    tbs.extend_from_slice(unsigned);
    let (header, body) = match (wire.get(..12), wire.get(12..tsig.start)) {
        (Some(header), Some(body)) => (header, body),
        _ => {
            return Err(protocol(
                "malformed DNS message: TSIG record inside the header",
            ));
        }
    };
    let mut header = header.to_vec();
    patch_header(&mut header, data.oid, -1)?;
    tbs.extend_from_slice(&header);
    tbs.extend_from_slice(body);
    if full {
        push_variables(
            &mut tbs,
            &tsig.name,
            data.time,
            data.fudge,
            data.error,
            &data.other,
        )?;
    } else {
        push_timers(&mut tbs, data.time, data.fudge);
    }
    if !key.verify(&tbs, &data.mac) {
        return Err(XfrError::Tsig(format!(
            "bad signature on the {what}: the secret of key '{}' differs from the other side's",
            key.name
        )));
    }
    let skew = now.abs_diff(data.time);
    if skew > u64::from(data.fudge) {
        return Err(XfrError::Tsig(format!(
            "the {what} was signed {skew} s away from our clock, more than the {} s fudge \
             (check both clocks)",
            data.fudge
        )));
    }
    Ok(data.mac.clone())
}

fn tsig_error_text(error: TsigError, key: &TsigKey) -> String {
    match error {
        TsigError::BadSig => format!(
            "the primary rejected our signature (BADSIG): the secret of key '{}' differs from \
             the primary's",
            key.name
        ),
        TsigError::BadKey => format!(
            "the primary does not know key '{}' with algorithm hmac-sha256 (BADKEY): check the \
             key name and algorithm on both sides",
            key.name
        ),
        TsigError::BadTime => "the primary's clock and ours differ by more than the fudge \
                               (BADTIME)"
            .to_string(),
        TsigError::BadTrunc => "the primary rejected a truncated MAC (BADTRUNC)".to_string(),
        TsigError::Unknown(code) => format!("the primary reports TSIG error {code}"),
    }
}

/// Signs a message in place (RFC 8945 §4.3): the MAC covers `prior_mac` (for a response, the
/// request's MAC), the message as it is, and the TSIG variables; the TSIG record is appended and
/// ARCOUNT raised. Returns the MAC.
fn sign(
    wire: &mut Vec<u8>,
    key: &TsigKey,
    prior_mac: Option<&[u8]>,
    now: u64,
) -> Result<Vec<u8>, XfrError> {
    let id = match wire.get(..2) {
        Some(&[high, low]) => u16::from_be_bytes([high, low]),
        _ => return Err(protocol("cannot sign a message shorter than its header")),
    };
    let mut tbs = Vec::with_capacity(wire.len() + 128);
    if let Some(prior) = prior_mac {
        push_u16_len(&mut tbs, prior.len())?;
        tbs.extend_from_slice(prior);
    }
    tbs.extend_from_slice(wire);
    push_variables(&mut tbs, &key.name, now, FUDGE, None, &[])?;
    let mac = key.mac(&tbs);

    // The TSIG record, written out uncompressed so it can be appended to the encoded message.
    let mut rdata = Vec::with_capacity(HMAC_SHA256_WIRE.len() + 16 + mac.len());
    rdata.extend_from_slice(HMAC_SHA256_WIRE);
    push_timers(&mut rdata, now, FUDGE);
    push_u16_len(&mut rdata, mac.len())?;
    rdata.extend_from_slice(&mac);
    rdata.extend_from_slice(&id.to_be_bytes());
    rdata.extend_from_slice(&0u16.to_be_bytes()); // error
    rdata.extend_from_slice(&0u16.to_be_bytes()); // other len
    push_wire_name(wire, &key.name, false);
    wire.extend_from_slice(&TYPE_TSIG.to_be_bytes());
    wire.extend_from_slice(&CLASS_ANY.to_be_bytes());
    wire.extend_from_slice(&0u32.to_be_bytes());
    push_u16_len(wire, rdata.len())?;
    wire.extend_from_slice(&rdata);
    patch_header(wire, id, 1)?;
    Ok(mac)
}

/// Sets the header's ID to `id` and moves ARCOUNT by `additional` (±1 for the TSIG record).
fn patch_header(message: &mut [u8], id: u16, additional: i32) -> Result<(), XfrError> {
    let Some(header) = message.get_mut(..12) else {
        return Err(protocol("malformed DNS message: shorter than its header"));
    };
    let arcount = u16::from_be_bytes([header[10], header[11]]);
    let arcount = u16::try_from(i32::from(arcount) + additional)
        .map_err(|_| protocol("malformed DNS message: additional count out of range"))?;
    header[..2].copy_from_slice(&id.to_be_bytes());
    header[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(())
}

/// The TSIG variables of RFC 8945 §4.3.3, names in canonical (lower-case, uncompressed) form.
fn push_variables(
    out: &mut Vec<u8>,
    key_name: &Name,
    time: u64,
    fudge: u16,
    error: Option<TsigError>,
    other: &[u8],
) -> Result<(), XfrError> {
    push_wire_name(out, key_name, true);
    out.extend_from_slice(&CLASS_ANY.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(HMAC_SHA256_WIRE);
    push_timers(out, time, fudge);
    out.extend_from_slice(&error.map_or(0, u16::from).to_be_bytes());
    push_u16_len(out, other.len())?;
    out.extend_from_slice(other);
    Ok(())
}

/// Time signed (48 bits) and fudge.
fn push_timers(out: &mut Vec<u8>, time: u64, fudge: u16) {
    out.extend_from_slice(time.to_be_bytes().get(2..).unwrap_or_default());
    out.extend_from_slice(&fudge.to_be_bytes());
}

fn push_u16_len(out: &mut Vec<u8>, len: usize) -> Result<(), XfrError> {
    let len =
        u16::try_from(len).map_err(|_| protocol("a TSIG field is longer than 65535 bytes"))?;
    out.extend_from_slice(&len.to_be_bytes());
    Ok(())
}

/// A name in uncompressed wire form, lower-cased when `canonical`.
fn push_wire_name(out: &mut Vec<u8>, name: &Name, canonical: bool) {
    for label in name.iter() {
        // Labels are at most 63 bytes, a Name guarantees it.
        out.push(label.len() as u8);
        if canonical {
            out.extend(label.iter().map(u8::to_ascii_lowercase));
        } else {
            out.extend_from_slice(label);
        }
    }
    out.push(0);
}

/// The TSIG record of a decoded message: its key name and MAC, wherever hickory put it (the
/// `signature` field with its DNSSEC features, the last additional record without).
fn message_tsig(message: &Message) -> Option<(Name, Vec<u8>)> {
    if let Some(record) = message.signature.as_deref() {
        return Some((record.name.clone(), record.data.mac.clone()));
    }
    match message.additionals.last() {
        Some(Record {
            name,
            data: RData::TSIG(tsig),
            ..
        }) => Some((name.clone(), tsig.mac.clone())),
        _ => None,
    }
}

/// Reads the records of an AXFR or IXFR answer, message after message, and says when the final
/// SOA has been seen.
struct Reader {
    zone: Name,
    /// Our serial for an IXFR; None for an AXFR.
    ixfr_from: Option<u32>,
    phase: Phase,
    new_soa: Option<Record>,
    new_serial: u32,
    records: Vec<Record>,
    diffs: Vec<Diff>,
    diff: Option<Diff>,
    outcome: Option<Transfer>,
    out_of_zone: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first record, the SOA of the version being sent.
    First,
    /// After that SOA: a record other than an SOA starts a full zone, an SOA a diff.
    Second,
    /// A full zone (AXFR, or an IXFR answered in full) until the SOA comes again.
    Full,
    /// A diff's deletions, until the SOA of its new version.
    Deleting,
    /// A diff's additions, until the SOA that starts the next diff or ends the answer.
    Adding,
    Done,
}

impl Reader {
    fn new(zone: Name, ixfr_from: Option<u32>) -> Self {
        Self {
            zone,
            ixfr_from,
            phase: Phase::First,
            new_soa: None,
            new_serial: 0,
            records: Vec::new(),
            diffs: Vec::new(),
            diff: None,
            outcome: None,
            out_of_zone: 0,
        }
    }

    /// Returns true once the answer is complete.
    fn push_all(&mut self, answers: Vec<Record>) -> Result<bool, XfrError> {
        if self.phase == Phase::First && answers.is_empty() {
            return Err(protocol(format!(
                "the primary's answer has no records (is it authoritative for {}?)",
                self.zone
            )));
        }
        if self.phase == Phase::Full {
            self.records.reserve(answers.len());
        }
        let mut answers = answers.into_iter();
        for record in answers.by_ref() {
            self.push(record)?;
            if self.phase == Phase::Done {
                break;
            }
        }
        if self.phase != Phase::Done {
            return Ok(false);
        }
        if self.outcome != Some(Transfer::UpToDate) && answers.next().is_some() {
            return Err(protocol("the primary sent records after the final SOA"));
        }
        if self.out_of_zone > 0 {
            tracing::warn!(
                zone = %self.zone,
                records = self.out_of_zone,
                "zone transfer: ignored records outside the zone or of another class"
            );
        }
        Ok(true)
    }

    fn push(&mut self, record: Record) -> Result<(), XfrError> {
        let serial = apex_soa(&record, &self.zone).map(|soa| soa.serial);
        match (self.phase, serial) {
            (Phase::First, None) => Err(protocol(format!(
                "the answer does not start with the SOA of {} but with: {}",
                self.zone,
                record_line(&record)
            ))),
            (Phase::First, Some(serial)) => {
                self.new_serial = serial;
                if let Some(ours) = self.ixfr_from
                    && !serial_newer(serial, ours)
                {
                    self.outcome = Some(Transfer::UpToDate);
                    self.phase = Phase::Done;
                    return Ok(());
                }
                self.new_soa = Some(record);
                self.phase = Phase::Second;
                Ok(())
            }
            (Phase::Second, Some(serial)) if serial == self.new_serial => self.finish_full(serial),
            (Phase::Second, Some(serial)) => {
                if self.ixfr_from.is_none() {
                    return Err(protocol(format!(
                        "the AXFR ends with serial {serial} but began with {}",
                        self.new_serial
                    )));
                }
                self.start_diff(serial, record);
                Ok(())
            }
            (Phase::Second | Phase::Full, None) => {
                self.phase = Phase::Full;
                self.keep(record);
                Ok(())
            }
            (Phase::Full, Some(serial)) => self.finish_full(serial),
            (Phase::Deleting, Some(serial)) => {
                if let Some(diff) = self.diff.as_mut() {
                    diff.to_serial = serial;
                    diff.added.push(record);
                }
                self.phase = Phase::Adding;
                Ok(())
            }
            (Phase::Deleting, None) => {
                if let Some(diff) = self.diff.as_mut() {
                    diff.deleted.push(record);
                }
                Ok(())
            }
            (Phase::Adding, None) => {
                if let Some(diff) = self.diff.as_mut() {
                    diff.added.push(record);
                }
                Ok(())
            }
            (Phase::Adding, Some(serial)) => {
                if let Some(diff) = self.diff.take() {
                    self.diffs.push(diff);
                }
                if serial == self.new_serial {
                    self.finish_incremental()
                } else {
                    self.start_diff(serial, record);
                    Ok(())
                }
            }
            (Phase::Done, _) => Ok(()),
        }
    }

    fn keep(&mut self, record: Record) {
        if self.zone.zone_of(&record.name) && record.dns_class == DNSClass::IN {
            self.records.push(record);
        } else {
            self.out_of_zone += 1;
        }
    }

    fn start_diff(&mut self, from: u32, old_soa: Record) {
        self.diff = Some(Diff {
            from_serial: from,
            to_serial: from,
            deleted: vec![old_soa],
            added: Vec::new(),
        });
        self.phase = Phase::Deleting;
    }

    fn finish_full(&mut self, serial: u32) -> Result<(), XfrError> {
        if serial != self.new_serial {
            return Err(protocol(format!(
                "the zone transfer ends with serial {serial} but began with {}",
                self.new_serial
            )));
        }
        let Some(soa) = self.new_soa.take() else {
            return Err(protocol("internal: no SOA kept"));
        };
        self.outcome = Some(Transfer::Full(Zone {
            soa,
            records: std::mem::take(&mut self.records),
        }));
        self.phase = Phase::Done;
        Ok(())
    }

    fn finish_incremental(&mut self) -> Result<(), XfrError> {
        let mut expected = self.ixfr_from.unwrap_or_default();
        for diff in &self.diffs {
            if diff.from_serial != expected {
                return Err(protocol(format!(
                    "the IXFR diffs do not chain: one starts at serial {}, expected {expected}",
                    diff.from_serial
                )));
            }
            expected = diff.to_serial;
        }
        if expected != self.new_serial {
            return Err(protocol(format!(
                "the IXFR diffs end at serial {expected}, the primary announced {}",
                self.new_serial
            )));
        }
        self.outcome = Some(Transfer::Incremental(std::mem::take(&mut self.diffs)));
        self.phase = Phase::Done;
        Ok(())
    }
}

/// RFC 1982: is `a` newer than `b`? (Exactly half the space apart is undefined: not newer.)
fn serial_newer(a: u32, b: u32) -> bool {
    let diff = a.wrapping_sub(b);
    diff != 0 && diff < 0x8000_0000
}

fn soa_data(record: &Record) -> Option<&SOA> {
    match &record.data {
        RData::SOA(soa) => Some(soa),
        _ => None,
    }
}

fn apex_soa<'r>(record: &'r Record, apex: &Name) -> Option<&'r SOA> {
    soa_data(record).filter(|_| record.name == *apex)
}

fn with_serial(soa: &Record, serial: u32) -> Record {
    let mut record = soa.clone();
    if let RData::SOA(data) = &record.data {
        let new = SOA::new(
            data.mname.clone(),
            data.rname.clone(),
            serial,
            data.refresh,
            data.retry,
            data.expire,
            data.minimum,
        );
        record.data = RData::SOA(new);
    }
    record
}

/// A record compared as RFC 2136 §1.1.1 does (name without case, class, type, data; not TTL).
struct RecordKey<'a>(&'a Record);

impl Hash for RecordKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
        self.0.dns_class.hash(state);
        self.0.data.hash(state);
    }
}

impl PartialEq for RecordKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for RecordKey<'_> {}

fn random_id() -> u16 {
    let mut bytes = [0u8; 2];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: TSIG and TCP still protect the exchange.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        return (nanos ^ (nanos >> 16)) as u16;
    }
    u16::from_be_bytes(bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One record as a master-file line, for error messages.
fn record_line(record: &Record) -> String {
    let mut line = String::new();
    push_record(&mut line, record);
    line.truncate(line.trim_end().len());
    line
}

/// `owner TTL CLASS TYPE data\n`, every name absolute.
fn push_record(out: &mut String, record: &Record) {
    push_name(out, &record.name);
    let _ = write!(
        out,
        " {} {} {} ",
        record.ttl,
        record.dns_class,
        record.record_type()
    );
    push_rdata(out, &record.data);
    out.push('\n');
}

/// Record data in master-file syntax. Types whose data holds names are written here so the names
/// stay ASCII and absolute (hickory's `Display` shows IDN labels in Unicode); TXT strings are
/// quoted and escaped; other types use hickory's presentation.
fn push_rdata(out: &mut String, data: &RData) {
    match data {
        RData::CNAME(name) => push_name(out, &name.0),
        RData::NS(name) => push_name(out, &name.0),
        RData::PTR(name) => push_name(out, &name.0),
        RData::MX(mx) => {
            let _ = write!(out, "{} ", mx.preference);
            push_name(out, &mx.exchange);
        }
        RData::SRV(srv) => {
            let _ = write!(out, "{} {} {} ", srv.priority, srv.weight, srv.port);
            push_name(out, &srv.target);
        }
        RData::SOA(soa) => {
            push_name(out, &soa.mname);
            out.push(' ');
            push_name(out, &soa.rname);
            let _ = write!(
                out,
                " {} {} {} {} {}",
                soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum
            );
        }
        RData::TXT(txt) => {
            for (i, string) in txt.txt_data.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push('"');
                for &byte in string.iter() {
                    match byte {
                        b'"' | b'\\' => {
                            out.push('\\');
                            out.push(char::from(byte));
                        }
                        0x20..=0x7e => out.push(char::from(byte)),
                        _ => {
                            let _ = write!(out, "\\{byte:03}");
                        }
                    }
                }
                out.push('"');
            }
            if txt.txt_data.is_empty() {
                out.push_str("\"\"");
            }
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

/// An absolute name in master-file syntax: letters, digits, `-`, `_` and `*` as they are, other
/// printable characters escaped with `\`, everything else as `\DDD` (decimal, RFC 1035 §5.1).
fn push_name(out: &mut String, name: &Name) {
    if name.iter().next().is_none() {
        out.push('.');
        return;
    }
    for label in name.iter() {
        for &byte in label {
            match byte {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'*' | b'/' => {
                    out.push(char::from(byte));
                }
                0x21..=0x7e => {
                    out.push('\\');
                    out.push(char::from(byte));
                }
                _ => {
                    let _ = write!(out, "\\{byte:03}");
                }
            }
        }
        out.push('.');
    }
}

#[cfg(test)]
mod tests;
