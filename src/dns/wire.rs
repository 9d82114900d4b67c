//! Just enough of the DNS wire format for the UDP fast path: read a plain query in place
//! (no message decode, no allocation), build the policy's lookup name and the packet-cache key
//! from it, and index a response so that it can be replayed with a new ID and aged TTLs.
//!
//! Anything unusual (compression in the question, several questions, unknown EDNS options,
//! trailing bytes, a non-zero opcode or RCODE) is not read here: the general path, which
//! decodes the whole message with hickory, answers it.

/// Size of the DNS header.
pub const HEADER: usize = 12;
/// Longest wire name (RFC 1035 2.3.4).
const MAX_NAME: usize = 255;
/// Longest packet-cache key: name, type, class, flags, group.
pub const MAX_KEY: usize = MAX_NAME + 7;

pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_ANY: u16 = 255;
pub const CLASS_IN: u16 = 1;

/// The EDNS part of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdnsView {
    /// Requestor's UDP payload size, as sent.
    pub payload: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A plain query, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryView {
    /// Offset just past the QNAME; the question is `HEADER..qname_end + 4`.
    pub qname_end: usize,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<EdnsView>,
    pub checking_disabled: bool,
}

impl QueryView {
    /// End of the question section.
    pub fn question_end(&self) -> usize {
        self.qname_end + 4
    }
}

fn u16_at(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(at)?, *p.get(at + 1)?]))
}

fn u32_at(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

/// EDNS options a query may carry and still take the fast path: ones the answer does not
/// depend on (COOKIE, which we do not implement, and padding).
fn ignorable_option(code: u16) -> bool {
    matches!(code, 10 | 12)
}

/// Read a standard query with one question and at most an OPT record. `None` means "not for
/// the fast path" (not necessarily malformed).
pub fn parse_query(p: &[u8]) -> Option<QueryView> {
    if p.len() < HEADER + 5 {
        return None;
    }
    // QR=0, OPCODE=0 (QUERY), AA=0, TC=0; RD may be either.
    if p[2] & 0xfe != 0 {
        return None;
    }
    // Z=0, RCODE=0; AD and CD may be set.
    if p[3] & 0x4f != 0 {
        return None;
    }
    let checking_disabled = p[3] & 0x10 != 0;
    let (qd, an, ns, ar) = (u16_at(p, 4)?, u16_at(p, 6)?, u16_at(p, 8)?, u16_at(p, 10)?);
    if qd != 1 || an != 0 || ns != 0 || ar > 1 {
        return None;
    }
    let mut pos = HEADER;
    loop {
        let len = usize::from(*p.get(pos)?);
        if len == 0 {
            pos += 1;
            break;
        }
        // Compression pointers and extended label types do not belong in a question.
        if len & 0xc0 != 0 {
            return None;
        }
        pos += 1 + len;
        if pos - HEADER >= MAX_NAME {
            return None;
        }
    }
    let qname_end = pos;
    let qtype = u16_at(p, pos)?;
    let qclass = u16_at(p, pos + 2)?;
    pos += 4;
    let edns = if ar == 1 {
        // Root owner, TYPE OPT, CLASS = payload, TTL = ext-RCODE, version, DO + Z, RDLEN.
        if *p.get(pos)? != 0 || u16_at(p, pos + 1)? != TYPE_OPT {
            return None;
        }
        let payload = u16_at(p, pos + 3)?;
        let ttl = u32_at(p, pos + 5)?;
        let rdlen = usize::from(u16_at(p, pos + 9)?);
        pos += 11;
        let end = pos.checked_add(rdlen)?;
        if end != p.len() {
            return None;
        }
        while pos < end {
            let code = u16_at(p, pos)?;
            let len = usize::from(u16_at(p, pos + 2)?);
            if !ignorable_option(code) {
                return None;
            }
            pos += 4 + len;
        }
        if pos != end || ttl >> 24 != 0 {
            return None;
        }
        Some(EdnsView {
            payload,
            version: (ttl >> 16) as u8,
            dnssec_ok: ttl & 0x8000 != 0,
        })
    } else {
        if pos != p.len() {
            return None;
        }
        None
    };
    Some(QueryView {
        qname_end,
        qtype,
        qclass,
        edns,
        checking_disabled,
    })
}

/// The query name as the policy reads it: lower-case labels joined by dots, a dot inside a
/// label replaced by a zero byte (as `policy::QueryName` does). Returns the length written.
pub fn policy_name(p: &[u8], q: &QueryView, out: &mut [u8; 256]) -> usize {
    let mut len = 0;
    let mut pos = HEADER;
    while pos < q.qname_end {
        let n = usize::from(p[pos]);
        if n == 0 {
            break;
        }
        if len != 0 {
            out[len] = b'.';
            len += 1;
        }
        for &b in &p[pos + 1..pos + 1 + n] {
            out[len] = match b {
                b'.' => 0,
                _ => b.to_ascii_lowercase(),
            };
            len += 1;
        }
        pos += 1 + n;
    }
    len
}

/// The packet-cache key of a query: lower-cased wire name, type, class, the EDNS/DO/CD bits
/// and the client group. Returns the length written.
pub fn cache_key(p: &[u8], q: &QueryView, group: u16, out: &mut [u8; MAX_KEY]) -> usize {
    let name = &p[HEADER..q.qname_end];
    let n = name.len();
    for (o, b) in out[..n].iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    out[n..n + 2].copy_from_slice(&q.qtype.to_be_bytes());
    out[n + 2..n + 4].copy_from_slice(&q.qclass.to_be_bytes());
    let flags = match q.edns {
        None => 0,
        Some(e) => 1 | if e.dnssec_ok { 2 } else { 0 },
    } | if q.checking_disabled { 4 } else { 0 };
    out[n + 4] = flags;
    out[n + 5..n + 7].copy_from_slice(&group.to_be_bytes());
    n + 7
}

/// Where the variable parts of a response we produced are: the TTL of every record (the OPT
/// pseudo-record aside) and the OPT record's payload field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseIndex {
    pub ttl_offsets: Vec<u16>,
    pub opt_payload_at: Option<u16>,
    /// Smallest TTL in the response (None without records).
    pub min_ttl: Option<u32>,
    /// End of the question section.
    pub question_end: usize,
}

fn skip_name(p: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *p.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => return Some(pos + 2),
            _ => return None,
        }
    }
}

/// Index a response with one question. `None` if it does not parse (never cached then).
pub fn index_response(p: &[u8]) -> Option<ResponseIndex> {
    if p.len() < HEADER || u16_at(p, 4)? != 1 {
        return None;
    }
    let records =
        usize::from(u16_at(p, 6)?) + usize::from(u16_at(p, 8)?) + usize::from(u16_at(p, 10)?);
    let question_end = skip_name(p, HEADER)? + 4;
    let mut pos = question_end;
    let mut index = ResponseIndex {
        ttl_offsets: Vec::new(),
        opt_payload_at: None,
        min_ttl: None,
        question_end,
    };
    for _ in 0..records {
        pos = skip_name(p, pos)?;
        let rtype = u16_at(p, pos)?;
        let ttl = u32_at(p, pos + 4)?;
        let rdlen = usize::from(u16_at(p, pos + 8)?);
        if rtype == TYPE_OPT {
            index.opt_payload_at = Some(u16::try_from(pos + 2).ok()?);
        } else {
            index.ttl_offsets.push(u16::try_from(pos + 4).ok()?);
            index.min_ttl = Some(index.min_ttl.map_or(ttl, |m| m.min(ttl)));
        }
        pos += 10 + rdlen;
    }
    (pos == p.len()).then_some(index)
}

/// Write a big-endian u32 at `at`.
pub fn put_u32(p: &mut [u8], at: usize, v: u32) {
    p[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Read a big-endian u32 at `at` (the caller knows it is in range).
pub fn get_u32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some((payload, dnssec)) = edns {
            p.extend_from_slice(&[0, 0, 41]);
            p.extend_from_slice(&payload.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dnssec { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn reads_plain_and_edns_queries() {
        let p = query("Www.Example.", TYPE_A, None);
        let q = parse_query(&p).unwrap();
        assert_eq!((q.qtype, q.qclass, q.edns), (TYPE_A, CLASS_IN, None));
        let mut name = [0u8; 256];
        let n = policy_name(&p, &q, &mut name);
        assert_eq!(&name[..n], b"www.example");
        let p = query("a.b.", TYPE_AAAA, Some((1232, true)));
        let q = parse_query(&p).unwrap();
        assert_eq!(
            q.edns,
            Some(EdnsView {
                payload: 1232,
                version: 0,
                dnssec_ok: true
            })
        );
    }

    #[test]
    fn leaves_unusual_queries_to_the_general_path() {
        let good = query("a.example.", TYPE_A, None);
        // Trailing byte, response bit, NOTIFY opcode, two questions, compression pointer.
        let mut p = good.clone();
        p.push(0);
        assert!(parse_query(&p).is_none());
        let mut p = good.clone();
        p[2] |= 0x80;
        assert!(parse_query(&p).is_none());
        let mut p = good.clone();
        p[2] = 4 << 3;
        assert!(parse_query(&p).is_none());
        let mut p = good.clone();
        p[5] = 2;
        assert!(parse_query(&p).is_none());
        let mut p = good[..HEADER].to_vec();
        p.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        assert!(parse_query(&p).is_none());
        // Truncated anywhere.
        for cut in 0..good.len() {
            assert!(parse_query(&good[..cut]).is_none());
        }
        // An unknown EDNS option (client subnet) goes to the general path.
        let mut p = query("a.example.", TYPE_A, Some((1232, false)));
        let l = p.len();
        p[l - 1] = 8;
        p.extend_from_slice(&[0, 8, 0, 4, 0, 1, 0, 0]);
        assert!(parse_query(&p).is_none());
    }

    #[test]
    fn keys_ignore_case_but_not_type_or_flags() {
        let key = |p: &[u8]| {
            let q = parse_query(p).unwrap();
            let mut k = [0u8; MAX_KEY];
            let n = cache_key(p, &q, 0, &mut k);
            k[..n].to_vec()
        };
        let a = key(&query("WWW.example.", TYPE_A, None));
        assert_eq!(a, key(&query("www.EXAMPLE.", TYPE_A, None)));
        assert_ne!(a, key(&query("www.example.", TYPE_AAAA, None)));
        assert_ne!(a, key(&query("www.example.", TYPE_A, Some((512, false)))));
        assert_ne!(
            key(&query("www.example.", TYPE_A, Some((512, true)))),
            key(&query("www.example.", TYPE_A, Some((512, false))))
        );
    }

    #[test]
    fn indexes_records_and_opt() {
        // Response: question, one A record (pointer owner), one OPT.
        let mut p = query("a.example.", TYPE_A, None);
        p[2] |= 0x80;
        p[7] = 1;
        p[11] = 1;
        p.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 1]);
        p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let i = index_response(&p).unwrap();
        assert_eq!(i.min_ttl, Some(60));
        assert_eq!(i.ttl_offsets.len(), 1);
        assert_eq!(get_u32(&p, usize::from(i.ttl_offsets[0])), 60);
        assert_eq!(
            u16_at(&p, usize::from(i.opt_payload_at.unwrap())),
            Some(1232)
        );
        assert!(index_response(&p[..p.len() - 1]).is_none());
    }
}
