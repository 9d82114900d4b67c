//! Domain names as they are written in block lists and typed by operators. This module owns the
//! one normalised form every other part of the policy engine compares against (lower-case ASCII,
//! IDNs in punycode, no root dot) and the rules for what counts as a name at all: it rejects IP
//! addresses, wildcards and anything DNS could never ask for, so a list can never turn into a rule
//! that silently matches nothing. The rules are those of the reference counter for the real
//! lists (`shared/lists/real/SOURCES.md` §2), so parser figures stay comparable with it, with two
//! additions that no real list exercises: Unicode names are converted to punycode instead of
//! being refused, and a label made only of '-' and '_' is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Longest name in presentation form without the root dot: 255 wire octets minus the length
/// octet of the first label and the terminating root label.
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

/// Why a candidate name was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NameError {
    #[error("empty name")]
    Empty,
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label longer than 63 characters")]
    LabelTooLong,
    #[error("name longer than 253 characters")]
    NameTooLong,
    #[error("character not allowed in a domain name (only a-z, 0-9, '-' and '_' are)")]
    BadCharacter,
    #[error("label without any letter or digit")]
    NoAlphanumeric,
    #[error("'*' wildcard where a plain domain name was expected")]
    Wildcard,
    #[error("IP address where a domain name was expected")]
    IpLiteral,
    #[error("international name that cannot be converted to punycode")]
    Idna,
    #[error(
        "name ends with '.', which this syntax reads as part of a pattern, not as the DNS root"
    )]
    TrailingDot,
}

/// Normalise a domain name written in a list (or typed by an operator): trims, removes ONE
/// trailing dot, lower-cases ASCII, converts a Unicode IDN to punycode (UTS-46 to ASCII), and
/// validates: labels 1..=63 bytes, whole name ≤ 253, characters `[a-z0-9_-]` only (underscore
/// allowed, hyphen at label start/end allowed), no `*`. IPv4 literals (d.d.d.d, each ≤ 255) and
/// IPv6 literals (optionally in `[brackets]`, `%zone` allowed) give [`NameError::IpLiteral`].
/// Single-label names are valid.
pub fn normalize(input: &str) -> Result<String, NameError> {
    normalize_word(input.trim())
}

/// [`normalize`] for a word that has no blank space around it (a field a parser split off).
pub(crate) fn normalize_word(word: &str) -> Result<String, NameError> {
    match word.strip_suffix('.') {
        Some(name) => finish(name, true),
        None => finish(word, false),
    }
}

/// Like [`normalize`], but a trailing dot is an error instead of the DNS root: adblock syntax
/// reads `||name.^` as a pattern in which the dot must be followed by more characters.
pub(crate) fn normalize_no_root_dot(input: &str) -> Result<String, NameError> {
    let trimmed = input.trim();
    if trimmed == "." {
        return Err(NameError::Empty);
    }
    if trimmed.ends_with('.') {
        return Err(NameError::TrailingDot);
    }
    finish(trimmed, true)
}

/// True for hosts-file boilerplate names (input already normalised). Lists copy these from
/// `/etc/hosts` headers; blocking them would break the machine's own loopback names.
pub fn is_localhost_class(name: &str) -> bool {
    matches!(
        name,
        "localhost"
            | "localhost.localdomain"
            | "local"
            | "broadcasthost"
            | "ip6-localhost"
            | "ip6-loopback"
            | "ip6-localnet"
            | "ip6-mcastprefix"
            | "ip6-allnodes"
            | "ip6-allrouters"
            | "ip6-allhosts"
    )
}

/// True for an IPv4 dotted quad (each part ≤ 255, leading zeros tolerated because lists write
/// them) or an IPv6 address, optionally in brackets and with a `%zone`. Text that merely contains
/// a colon (`://[2604::]`) is not an address; it is left to the name rules to reject.
pub(crate) fn is_ip_literal(text: &str) -> bool {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if is_dotted_quad(inner) {
        return true;
    }
    if inner.contains(':') {
        let addr = inner.split_once('%').map_or(inner, |(addr, _zone)| addr);
        return addr.parse::<Ipv6Addr>().is_ok();
    }
    false
}

/// The address an IP literal names, for counting distinct addresses in a list. Accepts what
/// [`normalize`] reports as [`NameError::IpLiteral`] in ASCII: one trailing dot, brackets, a
/// `%zone` (dropped) and leading zeros in a dotted quad (`010.001.000.001` is 10.1.0.1).
pub(crate) fn parse_ip_literal(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let text = text.strip_suffix('.').unwrap_or(text);
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    if let Some(octets) = dotted_quad(inner) {
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if inner.contains(':') {
        let addr = inner.split_once('%').map_or(inner, |(addr, _zone)| addr);
        return addr.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    None
}

fn is_dotted_quad(text: &str) -> bool {
    dotted_quad(text).is_some()
}

/// The four octets of `d.d.d.d` (each part 1-3 digits, ≤ 255).
fn dotted_quad(text: &str) -> Option<[u8; 4]> {
    let mut octets = [0u8; 4];
    let mut parts = 0;
    for part in text.split('.') {
        if parts >= 4 || part.is_empty() || part.len() > 3 {
            return None;
        }
        let mut value: u16 = 0;
        for b in part.bytes() {
            if !b.is_ascii_digit() {
                return None;
            }
            value = value * 10 + u16::from(b - b'0');
        }
        *octets.get_mut(parts)? = u8::try_from(value).ok()?;
        parts += 1;
    }
    (parts == 4).then_some(octets)
}

/// `root_dot_removed` says whether the caller already took off the one trailing dot we allow, so
/// a Unicode full stop that UTS-46 maps to a final '.' is only forgiven once.
fn finish(name: &str, root_dot_removed: bool) -> Result<String, NameError> {
    if let Some(fast) = accept_common(name) {
        return Ok(fast);
    }
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if is_ip_literal(name) {
        return Err(NameError::IpLiteral);
    }
    if name.is_ascii() {
        // Punycode labels are kept as written: decoding them would reject real list entries
        // such as `xn-----7kcb0bdajrnhhhe1f7a8fq.org.kz` that resolvers still get asked for.
        validate(name.as_bytes())?;
        return Ok(name.to_ascii_lowercase());
    }
    // The URL deny list stops characters no host name may carry before they reach punycode;
    // hyphens and lengths are checked by `validate` with the same rules as ASCII names.
    let ascii = Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::URL,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| NameError::Idna)?;
    let ascii: &str = &ascii;
    let ascii = match ascii.strip_suffix('.') {
        Some(rest) if !root_dot_removed => rest,
        _ => ascii,
    };
    if ascii.is_empty() {
        return Err(NameError::Empty);
    }
    // Full-width digits map to ASCII digits, so an address can appear only after mapping.
    if is_ip_literal(ascii) {
        return Err(NameError::IpLiteral);
    }
    validate(ascii.as_bytes())?;
    Ok(ascii.to_ascii_lowercase())
}

/// The one-pass path for what lists are made of: an ASCII host name that is obviously valid.
/// `None` does not mean invalid, only "take the careful path", which also finds the reason.
fn accept_common(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN {
        return None;
    }
    let mut label_len = 0usize;
    let mut label_alphanumeric = false;
    // Without a letter, '-' or '_' the name might be a dotted quad.
    let mut not_numeric = false;
    for &b in bytes {
        match b {
            b'.' => {
                if label_len == 0 || !label_alphanumeric {
                    return None;
                }
                label_len = 0;
                label_alphanumeric = false;
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' => {
                label_alphanumeric = true;
                not_numeric = true;
            }
            b'0'..=b'9' => label_alphanumeric = true,
            b'-' | b'_' => not_numeric = true,
            _ => return None,
        }
        label_len += 1;
        if label_len > MAX_LABEL_LEN {
            return None;
        }
    }
    if label_len == 0 || !label_alphanumeric || (!not_numeric && is_dotted_quad(name)) {
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// Checks an ASCII name in either case. The order (wildcard, then length, then labels) follows the
/// reference counter so that rejection reasons line up with its report.
fn validate(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains(&b'*') {
        return Err(NameError::Wildcard);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::NameTooLong);
    }
    for label in name.split(|&b| b == b'.') {
        if label.is_empty() {
            return Err(NameError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(NameError::LabelTooLong);
        }
        let mut alphanumeric = false;
        for &b in label {
            if b.is_ascii_alphanumeric() {
                alphanumeric = true;
            } else if b != b'-' && b != b'_' {
                return Err(NameError::BadCharacter);
            }
        }
        // A label of only '-' and '_' is legal on the wire but never a real host; in lists it is
        // debris from a broken conversion (`-`, `--`), so it is reported rather than blocked.
        if !alphanumeric {
            return Err(NameError::NoAlphanumeric);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> String {
        match normalize(input) {
            Ok(name) => name,
            Err(e) => panic!("{input:?} rejected: {e}"),
        }
    }

    fn err(input: &str) -> NameError {
        match normalize(input) {
            Ok(name) => panic!("{input:?} accepted as {name:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn plain_names_are_lower_cased_and_trimmed() {
        assert_eq!(ok("Example.COM"), "example.com");
        assert_eq!(ok("  jNKmS0zFuEh.click\t"), "jnkms0zfueh.click");
        assert_eq!(ok("a"), "a");
        assert_eq!(ok("from"), "from");
    }

    #[test]
    fn one_trailing_dot_is_the_root() {
        assert_eq!(ok("example.com."), "example.com");
        assert_eq!(ok("dhl-commx."), "dhl-commx");
        assert_eq!(err("example.com.."), NameError::EmptyLabel);
        assert_eq!(err("."), NameError::Empty);
        assert_eq!(err(".."), NameError::EmptyLabel);
    }

    #[test]
    fn empty_and_empty_labels() {
        assert_eq!(err(""), NameError::Empty);
        assert_eq!(err("   "), NameError::Empty);
        assert_eq!(err("a..b"), NameError::EmptyLabel);
        assert_eq!(err(".example.com"), NameError::EmptyLabel);
    }

    #[test]
    fn lengths() {
        let label63 = "a".repeat(63);
        let label64 = "a".repeat(64);
        assert_eq!(ok(&format!("{label63}.com")), format!("{label63}.com"));
        assert_eq!(err(&format!("{label64}.com")), NameError::LabelTooLong);
        // 4 labels of 63 plus 3 dots = 255 > 253.
        let long = [label63.as_str(); 4].join(".");
        assert_eq!(err(&long), NameError::NameTooLong);
        let exactly_253 = format!("{}.{}.{}.{}", label63, label63, label63, "a".repeat(61));
        assert_eq!(exactly_253.len(), 253);
        assert_eq!(ok(&exactly_253), exactly_253);
    }

    #[test]
    fn characters() {
        assert_eq!(err("bad name!"), NameError::BadCharacter);
        assert_eq!(err("bad!.com"), NameError::BadCharacter);
        assert_eq!(err("://[2604:2dc0:104:da00::]"), NameError::BadCharacter);
        assert_eq!(err("[not-an-address]"), NameError::BadCharacter);
        assert_eq!(err("-"), NameError::NoAlphanumeric);
        assert_eq!(err("a.--.com"), NameError::NoAlphanumeric);
        assert_eq!(
            ok("_xmpp-client._tcp.example.com"),
            "_xmpp-client._tcp.example.com"
        );
        assert_eq!(ok("09_19.supfree.net"), "09_19.supfree.net");
        assert_eq!(ok("-ad-.example.com"), "-ad-.example.com");
    }

    #[test]
    fn wildcards_are_not_names() {
        assert_eq!(err("*.example.com"), NameError::Wildcard);
        assert_eq!(err("ads-*.example.com"), NameError::Wildcard);
        assert_eq!(err("*"), NameError::Wildcard);
    }

    #[test]
    fn ip_literals() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "010.001.000.001",
            "1.2.3.4.",
            "::",
            "::1",
            "fe80::1%lo0",
            "[2600:1f1c:57F:b502:dd8:9588:11e6:282]",
            "2600:1f1c:57F:b502:dd8:9588:11e6:282",
            "[1.2.3.4]",
            "::ffff:1.2.3.4",
        ] {
            assert_eq!(err(ip), NameError::IpLiteral, "{ip}");
        }
        // Look like addresses, but are names.
        assert_eq!(ok("1.2.3.256"), "1.2.3.256");
        assert_eq!(ok("1.2.3"), "1.2.3");
        assert_eq!(ok("1.2.3.4.5"), "1.2.3.4.5");
        assert_eq!(ok("0.0.0.0.hpyrdr.com"), "0.0.0.0.hpyrdr.com");
        assert_eq!(err("1.2.3.4:53"), NameError::BadCharacter);
    }

    #[test]
    fn ip_literal_values() {
        let ip = |t: &str| parse_ip_literal(t).map(|ip| ip.to_string());
        assert_eq!(ip("1.2.3.4").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip("1.2.3.4.").as_deref(), Some("1.2.3.4"));
        assert_eq!(ip("010.001.000.001").as_deref(), Some("10.1.0.1"));
        assert_eq!(ip("[1.2.3.4]").as_deref(), Some("1.2.3.4"));
        assert_eq!(
            ip("[2600:1f1c:57F:b502:dd8:9588:11e6:282]").as_deref(),
            Some("2600:1f1c:57f:b502:dd8:9588:11e6:282")
        );
        assert_eq!(ip("fe80::1%lo0").as_deref(), Some("fe80::1"));
        for not_ip in [
            "1.2.3.256",
            "1.2.3",
            "1.2.3.4.5",
            "a.b.c.d",
            "::g",
            "",
            "[]",
            "1..2.3",
        ] {
            assert_eq!(ip(not_ip), None, "{not_ip}");
        }
        // Whatever `normalize` calls an IP literal has a value.
        for text in [
            "0.0.0.0",
            "::",
            "[::1]",
            "255.255.255.255",
            "::ffff:1.2.3.4",
        ] {
            assert_eq!(normalize(text), Err(NameError::IpLiteral));
            assert!(parse_ip_literal(text).is_some(), "{text}");
        }
    }

    #[test]
    fn idn_becomes_punycode() {
        assert_eq!(ok("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(ok("BÜCHER.example."), "xn--bcher-kva.example");
        assert_eq!(ok("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(ok("XN--BCHER-KVA.example"), "xn--bcher-kva.example");
        assert_eq!(
            ok("xn-----7kcb0bdajrnhhhe1f7a8fq.org.kz"),
            "xn-----7kcb0bdajrnhhhe1f7a8fq.org.kz"
        );
        // An ideographic full stop is a dot under UTS-46, also in the root position.
        assert_eq!(ok("bücher。example"), "xn--bcher-kva.example");
        assert_eq!(ok("bücher.example。"), "xn--bcher-kva.example");
        assert_eq!(err("bücher.example.。"), NameError::EmptyLabel);
        assert_eq!(err("bü cher.example"), NameError::Idna);
        assert_eq!(err("bücher.*.example"), NameError::Wildcard);
    }

    #[test]
    fn adblock_trailing_dot() {
        assert_eq!(
            normalize_no_root_dot("dhl-commx."),
            Err(NameError::TrailingDot)
        );
        assert_eq!(
            normalize_no_root_dot("Example.com").as_deref(),
            Ok("example.com")
        );
        assert_eq!(normalize_no_root_dot("."), Err(NameError::Empty));
        assert_eq!(normalize_no_root_dot(""), Err(NameError::Empty));
        assert_eq!(normalize_no_root_dot("1.2.3.4"), Err(NameError::IpLiteral));
    }

    #[test]
    fn localhost_class() {
        for name in [
            "localhost",
            "localhost.localdomain",
            "local",
            "broadcasthost",
            "ip6-localhost",
            "ip6-loopback",
            "ip6-localnet",
            "ip6-mcastprefix",
            "ip6-allnodes",
            "ip6-allrouters",
            "ip6-allhosts",
        ] {
            assert!(is_localhost_class(name), "{name}");
        }
        assert!(!is_localhost_class("nlocalhost.wordtheminer.com"));
        assert!(!is_localhost_class("localhost.example.com"));
        assert!(!is_localhost_class("0.0.0.0"));
    }

    #[test]
    fn error_texts_speak_to_operators() {
        assert_eq!(
            NameError::IpLiteral.to_string(),
            "IP address where a domain name was expected"
        );
        assert_eq!(
            NameError::LabelTooLong.to_string(),
            "label longer than 63 characters"
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        for input in [
            "\u{feff}",
            "\0",
            "\u{fffd}.com",
            "ä".repeat(300).as_str(),
            "[",
            "]",
            "[]",
            "%",
            ":%",
            "[::1%]",
            "..",
            "۰.۰.۰.۰",
            "🦀.example",
            "a\u{200d}b.com",
        ] {
            let _ = normalize(input);
            let _ = normalize_no_root_dot(input);
        }
    }
}
