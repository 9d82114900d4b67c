//! Extended DNS Errors (RFC 8914) on synthesized answers: why a name was blocked, for clients
//! that sent EDNS. The code says who wanted the block:
//!
//! - 16 Censored: a list whose `basis` is "legal" (an authority's order);
//! - 17 Filtered: any other list applied to a client in a named client group (a filter chosen
//!   for those clients, such as a school's or a parental one);
//! - 15 Blocked: any other list (the operator's own policy or security lists).
//!
//! EXTRA-TEXT names the list and, when the entry or the list carries one, the legal reference:
//! `list NAME` or `list NAME, reference REF`.

use crate::{
    config::Basis,
    policy::{Match, Snapshot, groups::GroupId},
};

/// The EDNS option code of Extended DNS Errors.
pub const OPTION: u16 = 15;
pub const BLOCKED: u16 = 15;
pub const CENSORED: u16 = 16;
pub const FILTERED: u16 = 17;

/// Longest EXTRA-TEXT we send, in bytes: enough for a list name and a decision number, short
/// enough that a block answer stays far below 512 bytes.
const MAX_TEXT: usize = 160;

const LIST: &[u8] = b"list ";
const REFERENCE: &[u8] = b", reference ";

/// The Extended DNS Error of one block decision, borrowed from the snapshot (no allocation, so
/// the UDP fast path can write it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ede<'a> {
    pub code: u16,
    pub list: &'a str,
    pub reference: Option<&'a str>,
}

impl<'a> Ede<'a> {
    /// The error for match `m` of a client in `group`.
    pub fn of(snapshot: &'a Snapshot, m: Match, group: GroupId) -> Option<Self> {
        let compiled = snapshot.lists.get(m.list)?;
        let info = &compiled.info;
        let reference = compiled
            .provenance(&m.hit)
            .and_then(|p| p.reference.as_deref())
            .or(info.reference.as_deref())
            .filter(|r| !r.is_empty());
        let code = match info.basis {
            Basis::Legal => CENSORED,
            _ if group != 0 => FILTERED,
            _ => BLOCKED,
        };
        Some(Self {
            code,
            list: &info.name,
            reference,
        })
    }

    /// The reference as sent: cut (at a character boundary) so the text fits `MAX_TEXT`.
    fn reference_sent(&self) -> Option<&'a str> {
        let r = self.reference?;
        let room = MAX_TEXT.checked_sub(LIST.len() + self.list.len() + REFERENCE.len())?;
        if r.len() <= room {
            return Some(r);
        }
        let mut end = room;
        while !r.is_char_boundary(end) {
            end -= 1;
        }
        (end > 0).then(|| &r[..end])
    }

    /// The text parts, in order.
    fn parts(&self) -> [&[u8]; 4] {
        match self.reference_sent() {
            Some(r) => [LIST, self.list.as_bytes(), REFERENCE, r.as_bytes()],
            None => [LIST, self.list.as_bytes(), b"", b""],
        }
    }

    /// Length of the option's data: INFO-CODE and EXTRA-TEXT.
    pub fn data_len(&self) -> usize {
        2 + self.parts().iter().map(|p| p.len()).sum::<usize>()
    }

    /// Write the option's data (INFO-CODE, EXTRA-TEXT) at the start of `out`, which must hold
    /// `data_len()` bytes. Returns the length written.
    pub fn write_data(&self, out: &mut [u8]) -> usize {
        out[..2].copy_from_slice(&self.code.to_be_bytes());
        let mut pos = 2;
        for part in self.parts() {
            out[pos..pos + part.len()].copy_from_slice(part);
            pos += part.len();
        }
        pos
    }

    /// The option's data, for the general path's encoder.
    pub fn data(&self) -> Vec<u8> {
        let mut v = vec![0; self.data_len()];
        self.write_data(&mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_names_the_list_and_cuts_long_references_at_a_character() {
        let e = Ede {
            code: BLOCKED,
            list: "malware",
            reference: None,
        };
        assert_eq!(e.data(), b"\x00\x0flist malware");
        assert_eq!(e.data_len(), e.data().len());
        let e = Ede {
            code: CENSORED,
            list: "mic",
            reference: Some("Quyết định 123/QĐ"),
        };
        assert_eq!(
            String::from_utf8(e.data()[2..].to_vec()).unwrap(),
            "list mic, reference Quyết định 123/QĐ"
        );
        let long = "đ".repeat(200);
        let e = Ede {
            code: CENSORED,
            list: "mic",
            reference: Some(&long),
        };
        let data = e.data();
        assert!(data.len() - 2 <= MAX_TEXT);
        assert!(std::str::from_utf8(&data[2..]).is_ok());
        assert_eq!(data.len(), e.data_len());
    }
}
