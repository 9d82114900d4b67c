//! Hosts files: `address name [name…] [# comment]`. The address is only checked to be an IPv4 or
//! IPv6 literal (with an optional `%zone`) and is otherwise ignored: `0.0.0.0 x`, `127.0.0.1 x`
//! and `:: x` all mean "block x", and the answer is chosen by the list's action, not by the file.
//! A first word that is not an address means the line is not hosts syntax at all, so the line is
//! malformed rather than read as names. `!` lines are skipped because filter compilers leave
//! `!#if` / `!#endif` preprocessor lines in hosts output.

use super::{ParsedList, Shape, SkipReason, words};
use crate::policy::name;

/// `text` is one trimmed, non-empty line.
pub(super) fn parse_line(text: &str, line: u32, list: &mut ParsedList) {
    if text.starts_with('#') || text.starts_with('!') {
        return;
    }
    let mut words = words(text);
    let Some(address) = words.next() else {
        return;
    };
    if !name::is_ip_literal(address) {
        list.skip(
            line,
            SkipReason::Malformed(
                "first word is not an IP address; hosts lines are `address name`".into(),
            ),
            text,
        );
        return;
    }
    let mut any = false;
    for word in words {
        any = true;
        list.add(word, name::normalize, line, Shape::default(), text);
    }
    if !any {
        list.skip(
            line,
            SkipReason::Malformed("IP address without a host name".into()),
            text,
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::formats::{Format, SkipReason, parse};
    use crate::policy::name::NameError;

    #[test]
    fn classic_header_block() {
        let text = "# Title\n\
                    127.0.0.1 localhost\n\
                    127.0.0.1 localhost.localdomain\n\
                    127.0.0.1 local\n\
                    255.255.255.255 broadcasthost\n\
                    ::1 localhost\n\
                    ::1 ip6-localhost\n\
                    ::1 ip6-loopback\n\
                    fe80::1%lo0 localhost\n\
                    ff00::0 ip6-localnet\n\
                    ff00::0 ip6-mcastprefix\n\
                    ff02::1 ip6-allnodes\n\
                    ff02::2 ip6-allrouters\n\
                    ff02::3 ip6-allhosts\n\
                    0.0.0.0 0.0.0.0\n\
                    \n\
                    0.0.0.0 ads.example.com\n";
        let list = parse(Format::Hosts, text);
        assert_eq!(list.names(), [("ads.example.com", 17)]);
        let localhost = list
            .skipped
            .iter()
            .filter(|s| s.reason == SkipReason::Localhost)
            .count();
        assert_eq!(localhost, 13);
        assert_eq!(
            list.rejected()
                .map(|s| (s.line, &s.reason))
                .collect::<Vec<_>>(),
            [(15, &SkipReason::InvalidName(NameError::IpLiteral))]
        );
        assert_eq!(list.lines, 17);
    }

    #[test]
    fn several_names_and_inline_comments() {
        let text = "0.0.0.0 a.com B.com\tc.com. # trailing comment\n127.0.0.1\tx.org#tight\n";
        let list = parse(Format::Hosts, text);
        assert_eq!(
            list.names(),
            [("a.com", 1), ("b.com", 1), ("c.com", 1), ("x.org", 2)]
        );
        assert!(list.rules.iter().all(|r| !r.allow && !r.exact));
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn one_bad_name_does_not_spoil_the_line() {
        let list = parse(Format::Hosts, "0.0.0.0 good.com a..b localhost also.com\n");
        assert_eq!(list.names(), [("good.com", 1), ("also.com", 1)]);
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::EmptyLabel)),
                (1, &SkipReason::Localhost)
            ]
        );
        assert_eq!(
            list.skipped[0].text,
            "0.0.0.0 good.com a..b localhost also.com"
        );
    }

    #[test]
    fn addresses_of_every_kind() {
        let text = ":: v6.com\n[::1] bracket.com\nfe80::1%eth0 zone.com\n0.0.0.0 v4.com\n\
                    2001:db8::1 doc.com\n";
        let list = parse(Format::Hosts, text);
        assert_eq!(list.rules.len(), 5);
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn malformed_lines() {
        let text = "ads.example.com\n0.0.0.0\n://[2604:2dc0:104:da00::]\n1.2.3.256 x.com\n\
                    0.0.0.0 ok.com\n";
        let list = parse(Format::Hosts, text);
        assert_eq!(list.names(), [("ok.com", 5)]);
        let lines: Vec<_> = list.rejected().map(|s| s.line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        assert!(
            list.skipped
                .iter()
                .all(|s| matches!(s.reason, SkipReason::Malformed(_)))
        );
    }

    #[test]
    fn invalid_names() {
        let label64 = "b".repeat(64);
        let text = format!(
            "0.0.0.0 a..b\n0.0.0.0 -\n0.0.0.0 {label64}.com\n0.0.0.0 bad!.com\n127.0.0.1 109.201.135.46\n\
             :: [2600:1f1c:57F:b502:dd8:9588:11e6:282]\n0.0.0.0 *.wild.com\n"
        );
        let list = parse(Format::Hosts, &text);
        assert!(list.rules.is_empty());
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::EmptyLabel)),
                (2, &SkipReason::InvalidName(NameError::NoAlphanumeric)),
                (3, &SkipReason::InvalidName(NameError::LabelTooLong)),
                (4, &SkipReason::InvalidName(NameError::BadCharacter)),
                (5, &SkipReason::InvalidName(NameError::IpLiteral)),
                (6, &SkipReason::InvalidName(NameError::IpLiteral)),
                (7, &SkipReason::InvalidName(NameError::Wildcard)),
            ]
        );
    }

    #[test]
    fn bang_lines_bom_crlf_and_no_final_newline() {
        let text = "\u{feff}!#if !env_mv3\r\n127.0.0.1 jNKmS0zFuEh.click\r\n!#endif\r\n\r\n:: dhl-commx.\r\n:: bücher.example";
        let list = parse(Format::Hosts, text);
        assert_eq!(
            list.names(),
            [
                ("jnkms0zfueh.click", 2),
                ("dhl-commx", 5),
                ("xn--bcher-kva.example", 6)
            ]
        );
        assert!(list.skipped.is_empty());
        assert_eq!(list.lines, 6);
    }

    #[test]
    fn look_alikes_are_names() {
        let list = parse(
            Format::Hosts,
            "0.0.0.0 0.0.0.0.hpyrdr.com nlocalhost.wordtheminer.com xn--yotu-1ra.be 09_19.supfree.net\n",
        );
        assert_eq!(list.rules.len(), 4);
    }
}
