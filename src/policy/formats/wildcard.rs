//! Wildcard lists: one entry per line, `*.name` for the subdomains of `name` but **not** `name`
//! itself (that is what `*.` means in DNS), or a bare `name` for the name and its subdomains, as
//! the "Wildcard Domains" lists write it. Comments and inline comments are as in plain lists.
//! Only one leading `*.` is a wildcard: a `*` anywhere else (`ads.*.example`, `*.*.example`) is
//! a literal character no query name can contain, so the entry is reported as invalid.
//! `*.1.0.209.238` is an IP address under a wildcard, which names nothing: it is reported as an
//! IP literal, never turned into an address rule.
//!
//! Beware of lists published as "Domains Wildcard" for other resolvers (hagezi, 1Hosts and
//! URLhaus each ship one): there `*.name` is meant to cover `name` too. Every one of their
//! `*.name` entries (106,487, 52,577 and 2,689 in the copies checked) is blocked as `name`
//! itself in the same list's domains, hosts and adblock editions. Read with the DNS meaning
//! used here, such a list leaves each listed name resolvable and blocks only what is under
//! it; prefer those lists' domains or adblock editions.

use super::{ParsedList, Shape, single_word};
use crate::policy::name;

/// `text` is one trimmed, non-empty line.
pub(super) fn parse_line(text: &str, line: u32, list: &mut ParsedList) {
    let Some(word) = single_word(
        text,
        line,
        list,
        "more than one word; a wildcard list has one `*.name` or `name` per line",
    ) else {
        return;
    };
    let (candidate, subdomains_only) = match word.strip_prefix("*.") {
        Some(base) => (base, true),
        None => (word, false),
    };
    let shape = Shape {
        subdomains_only,
        ..Shape::default()
    };
    list.add(candidate, name::normalize, line, shape, text);
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use crate::policy::formats::{Format, ParsedList, SkipReason, parse};
    use crate::policy::name::NameError;

    /// (name, line, subdomains_only)
    fn rules(list: &ParsedList) -> Vec<(&str, u32, bool)> {
        list.rules
            .iter()
            .map(|r| (r.name.as_str(), r.line, r.subdomains_only))
            .collect()
    }

    #[test]
    fn star_dot_means_subdomains_only_and_bare_means_name_and_subdomains() {
        let list = parse(
            Format::Wildcard,
            "# Syntax: Wildcard Domains\n*.ads.example\nscam.example\n*.Upper.Example.\n",
        );
        assert_eq!(
            rules(&list),
            [
                ("ads.example", 2, true),
                ("scam.example", 3, false),
                ("upper.example", 4, true)
            ]
        );
        assert!(
            list.rules
                .iter()
                .all(|r| !r.exact && !r.allow && r.action.is_none())
        );
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn wildcard_over_an_address_is_an_ip_literal_not_a_rule() {
        let list = parse(Format::Wildcard, "*.1.0.209.238\n*.[::1]\n1.2.3.4\n");
        assert!(list.rules.is_empty());
        assert!(list.ip_rules.is_empty());
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::IpLiteral)),
                (2, &SkipReason::InvalidName(NameError::IpLiteral)),
                (3, &SkipReason::InvalidName(NameError::IpLiteral)),
            ]
        );
        assert_eq!(
            list.ip_literals.first(),
            Some(&IpAddr::V4(Ipv4Addr::new(1, 0, 209, 238)))
        );
        assert_eq!(list.ip_literals.len(), 3);
    }

    #[test]
    fn only_one_leftmost_star_is_a_wildcard() {
        let list = parse(
            Format::Wildcard,
            "*.*.example\nads.*.example\n*\n*.\nads*.example\n**.example\n",
        );
        assert!(list.rules.is_empty());
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::Wildcard)),
                (2, &SkipReason::InvalidName(NameError::Wildcard)),
                (3, &SkipReason::InvalidName(NameError::Wildcard)),
                (4, &SkipReason::InvalidName(NameError::Empty)),
                (5, &SkipReason::InvalidName(NameError::Wildcard)),
                (6, &SkipReason::InvalidName(NameError::Wildcard)),
            ]
        );
    }

    #[test]
    fn comments_bom_crlf_punycode_and_malformed() {
        let text = "\u{feff}! Title\r\n# c\r\n*.xn-----7kcb0bdajrnhhhe1f7a8fq.org.kz # inline\r\n\
                    *.a.example *.b.example\r\n*.localhost\r\n*.tld";
        let list = parse(Format::Wildcard, text);
        assert_eq!(
            rules(&list),
            [
                ("xn-----7kcb0bdajrnhhhe1f7a8fq.org.kz", 3, true),
                ("tld", 6, true)
            ]
        );
        assert_eq!(list.skipped.len(), 2);
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
        assert_eq!(list.skipped[1].reason, SkipReason::Localhost);
        assert_eq!(list.lines, 6);
    }
}
