//! Plain domain lists: one name per line. `#` and `!` start comment lines (both occur in
//! published lists), and a `#` later in a line starts an inline comment. Anything else that is
//! not exactly one word is malformed: a second word usually means the list is really in hosts
//! format, and guessing which word is the name would block the wrong thing. `*.name` is refused
//! here because a plain list cannot say whether the wildcard includes the name itself.

use super::{ParsedList, Shape, single_word};
use crate::policy::name;

/// `text` is one trimmed, non-empty line.
pub(super) fn parse_line(text: &str, line: u32, list: &mut ParsedList) {
    let Some(word) = single_word(
        text,
        line,
        list,
        "more than one word; a plain list has one domain name per line",
    ) else {
        return;
    };
    list.add(word, name::normalize, line, Shape::default(), text);
}

#[cfg(test)]
mod tests {
    use crate::policy::formats::{Format, Rule, SkipReason, parse};
    use crate::policy::name::NameError;

    #[test]
    fn comments_and_blank_lines_are_silent() {
        let text = "# header\n! also a comment\n\n   \n\t# indented\nads.example.com # inline\nb.com#tight\n";
        let list = parse(Format::Plain, text);
        assert_eq!(list.names(), [("ads.example.com", 6), ("b.com", 7)]);
        assert!(list.skipped.is_empty());
        assert_eq!(list.lines, 7);
    }

    #[test]
    fn rules_are_block_subtree_by_default() {
        let list = parse(Format::Plain, "Ads.Example.COM.\n");
        assert_eq!(list.rules, [Rule::new("ads.example.com".into(), 1)]);
    }

    #[test]
    fn more_than_one_word_is_malformed() {
        let list = parse(Format::Plain, "ok.com\n0.0.0.0 ads.example.com\n");
        assert_eq!(list.names(), [("ok.com", 1)]);
        assert_eq!(list.skipped.len(), 1);
        assert_eq!(list.skipped[0].line, 2);
        assert_eq!(list.skipped[0].text, "0.0.0.0 ads.example.com");
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
    }

    #[test]
    fn invalid_names_are_reported_with_their_line() {
        let label64 = "a".repeat(64);
        let text = format!("a..b\n-\n{label64}.com\nbad!name.com\n*.wild.com\nfine.com\n");
        let list = parse(Format::Plain, &text);
        assert_eq!(list.names(), [("fine.com", 6)]);
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::EmptyLabel)),
                (2, &SkipReason::InvalidName(NameError::NoAlphanumeric)),
                (3, &SkipReason::InvalidName(NameError::LabelTooLong)),
                (4, &SkipReason::InvalidName(NameError::BadCharacter)),
                (5, &SkipReason::InvalidName(NameError::Wildcard)),
            ]
        );
        assert_eq!(list.rejected().count(), 5);
    }

    #[test]
    fn bad_name_with_space_is_two_words() {
        let list = parse(Format::Plain, "bad name!\n");
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
    }

    #[test]
    fn ip_literals_and_look_alikes() {
        let text = "1.2.3.4\n[2600:1f1c:57F:b502:dd8:9588:11e6:282]\n0.0.0.0.hpyrdr.com\n\
                    nlocalhost.wordtheminer.com\n://[2604:2dc0:104:da00::]\n";
        let list = parse(Format::Plain, text);
        assert_eq!(
            list.names(),
            [
                ("0.0.0.0.hpyrdr.com", 3),
                ("nlocalhost.wordtheminer.com", 4)
            ]
        );
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::IpLiteral)),
                (2, &SkipReason::InvalidName(NameError::IpLiteral)),
                (5, &SkipReason::InvalidName(NameError::BadCharacter)),
            ]
        );
    }

    #[test]
    fn localhost_is_boilerplate_not_an_error() {
        let list = parse(Format::Plain, "localhost\nlocalhost.localdomain.\n");
        assert!(list.rules.is_empty());
        assert_eq!(
            list.reasons(),
            [(1, &SkipReason::Localhost), (2, &SkipReason::Localhost)]
        );
        assert_eq!(list.rejected().count(), 0);
    }

    #[test]
    fn idn_punycode_and_underscore() {
        let text = "bücher.example\nxn--bcher-kva.example\n_xmpp-client._tcp.example.com\n";
        let list = parse(Format::Plain, text);
        assert_eq!(
            list.names(),
            [
                ("xn--bcher-kva.example", 1),
                ("xn--bcher-kva.example", 2),
                ("_xmpp-client._tcp.example.com", 3)
            ]
        );
    }

    #[test]
    fn trailing_dot_single_label_and_duplicates() {
        let list = parse(Format::Plain, "dhl-commx.\nfrom\nfrom\n");
        assert_eq!(list.names(), [("dhl-commx", 1), ("from", 2), ("from", 3)]);
    }

    #[test]
    fn bom_crlf_and_no_final_newline() {
        let list = parse(Format::Plain, "\u{feff}# c\r\nA.com\r\nbad..com\r\nb.com");
        assert_eq!(list.names(), [("a.com", 2), ("b.com", 4)]);
        assert_eq!(
            list.reasons(),
            [(3, &SkipReason::InvalidName(NameError::EmptyLabel))]
        );
        assert_eq!(list.skipped[0].text, "bad..com");
        assert_eq!(list.lines, 4);
    }
}
