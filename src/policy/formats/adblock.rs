//! AdGuard / Adblock Plus filter lists, read the way a DNS resolver can honour them. Only the
//! shapes that name a DNS subtree or a single name become rules: `||name^` and `||name^|` (the
//! name and everything under it), `|name^` and `|name^|` (that name only), each optionally an
//! `@@` exception and optionally with `$important`. Everything else a browser filter can say
//! (cosmetic rules, regexes, wildcards, URL paths, request modifiers) is reported as unsupported
//! instead of being approximated: a guessed rule that blocks more, or less, than the author meant
//! is worse than a visible "not supported" entry.

use super::{ParsedList, Shape, SkipReason};
use crate::policy::name;

/// Markers of element-hiding, scriptlet and HTML-filtering rules; they act on page content,
/// which a resolver never sees.
const COSMETIC_MARKERS: [&str; 10] = [
    "##", "#@#", "#$#", "#?#", "#%#", "#@$#", "#@?#", "#@%#", "$$", "$@$",
];

/// `text` is one trimmed, non-empty line.
pub(super) fn parse_line(text: &str, line: u32, list: &mut ParsedList) {
    if let Some(name) = plain_subtree(text) {
        list.add(
            name,
            name::normalize_no_root_dot,
            line,
            Shape::default(),
            text,
        );
    } else {
        classify(text, line, list);
    }
}

/// Every line shape, in the order that gives the most useful reason for lines that have
/// several problems at once.
fn classify(text: &str, line: u32, list: &mut ParsedList) {
    if text.starts_with('!') || is_header(text) {
        return;
    }
    // AdGuard treats `#` lines as comments, and compiled DNS filters carry them; only a line
    // that starts with a cosmetic marker (`##.ad`, a generic element-hiding rule) is a rule.
    if text.starts_with('#') && !COSMETIC_MARKERS.iter().any(|m| text.starts_with(m)) {
        return;
    }
    // Every marker has a '#' or a '$', which few network rules have, so one byte scan settles
    // most lines before ten substring searches.
    let may_be_cosmetic = text.bytes().any(|b| b == b'#' || b == b'$');
    if may_be_cosmetic && COSMETIC_MARKERS.iter().any(|m| text.contains(m)) {
        list.skip(line, SkipReason::Unsupported("cosmetic rule"), text);
        return;
    }
    let (allow, body) = match text.strip_prefix("@@") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (pattern, modifiers) = split_modifiers(body);
    let mut important = false;
    if pattern.len() > 1 && pattern.starts_with('/') && pattern.ends_with('/') {
        list.skip(line, SkipReason::Unsupported("regex rule"), text);
        return;
    }
    if let Some(modifiers) = modifiers {
        for modifier in modifiers.split(',') {
            let key = modifier
                .split_once('=')
                .map_or(modifier, |(key, _value)| key)
                .trim();
            if key.is_empty() {
                list.skip(
                    line,
                    SkipReason::Malformed("empty modifier after '$'".into()),
                    text,
                );
                return;
            }
            // `$important` only changes which of two matching rules wins; the name set a rule
            // covers is the same, so it is safe to accept (and recorded for the compiler).
            if !key.eq_ignore_ascii_case("important") {
                list.skip(line, SkipReason::Unsupported("rule with modifiers"), text);
                return;
            }
            important = true;
        }
    }
    if pattern.is_empty() {
        list.skip(line, SkipReason::Malformed("empty rule".into()), text);
        return;
    }
    if pattern.contains(char::is_whitespace) {
        list.skip(
            line,
            SkipReason::Malformed(
                "space inside a rule (comments go on their own line, starting with '!')".into(),
            ),
            text,
        );
        return;
    }
    let shape = |exact| Shape {
        allow,
        exact,
        important,
        ..Shape::default()
    };
    if let Some(rest) = pattern.strip_prefix("||") {
        anchored(rest, shape(false), line, text, list);
    } else if let Some(rest) = pattern.strip_prefix('|') {
        anchored(rest, shape(true), line, text, list);
    } else {
        list.skip(line, unanchored(pattern), text);
    }
}

/// `[Adblock Plus 2.0]`, `[AdGuard]`, `[uBlock Origin]`: a bracketed line that starts with a
/// letter, so that a bracketed IPv6 address (`[2600::1]`) is still seen as a rule.
fn is_header(text: &str) -> bool {
    text.ends_with(']')
        && text
            .strip_prefix('[')
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// `||name^` and `||name^|` with nothing else on the line are nearly every line of a DNS filter;
/// recognising them in one byte scan keeps the general classifier below off the hot path. The
/// result is the same as the general path's for these lines.
fn plain_subtree(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("||")?;
    let name = rest.strip_suffix("^|").or_else(|| rest.strip_suffix('^'))?;
    name.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        .then_some(name)
}

/// Splits `pattern$modifiers`. A regex may itself contain `$` (as its end anchor), so for
/// `/…/` the modifiers can only start right after the closing slash.
fn split_modifiers(body: &str) -> (&str, Option<&str>) {
    let regex_end = if body.starts_with('/') {
        body.rfind('/').filter(|&i| i > 0)
    } else {
        None
    };
    if let Some(last) = regex_end {
        let (regex, rest) = body.split_at(last + 1);
        if rest.is_empty() {
            return (regex, None);
        }
        if let Some(modifiers) = rest.strip_prefix('$') {
            return (regex, Some(modifiers));
        }
    }
    match body.split_once('$') {
        Some((pattern, modifiers)) => (pattern, Some(modifiers)),
        None => (body, None),
    }
}

/// `rest` follows `||` (`shape.exact == false`) or `|` (`shape.exact == true`).
fn anchored(rest: &str, shape: Shape, line: u32, text: &str, list: &mut ParsedList) {
    if rest.is_empty() {
        list.skip(
            line,
            SkipReason::Malformed("nothing after the '|' anchor".into()),
            text,
        );
        return;
    }
    if rest.contains('/') {
        list.skip(line, SkipReason::Unsupported("URL path pattern"), text);
        return;
    }
    if rest.contains('*') {
        list.skip(line, SkipReason::Unsupported("wildcard pattern"), text);
        return;
    }
    let Some(name) = rest.strip_suffix("^|").or_else(|| rest.strip_suffix('^')) else {
        // Without `^` the pattern continues into whatever follows: `||ads.` also matches
        // `ads.example`, and `||x.com|` is a URL end anchor that a browser reads differently
        // from a DNS name, so neither is a well-defined set of names.
        let what = if rest.ends_with('|') {
            "'|' end anchor without '^'"
        } else {
            "prefix pattern"
        };
        list.skip(line, SkipReason::Unsupported(what), text);
        return;
    };
    if name.contains(['^', '|']) {
        // `||host^something`: the separator is followed by more URL, e.g. a port or a query.
        list.skip(line, SkipReason::Unsupported("URL path pattern"), text);
        return;
    }
    list.add(name, name::normalize_no_root_dot, line, shape, text);
}

/// Without an anchor a pattern matches anywhere inside the host name (`ads.com^` also matches
/// `badads.com`, `.ads.com^` only strict subdomains), which is neither a subtree nor an exact
/// rule. Bare addresses are AdGuard Home response-IP rules, a different feature altogether.
fn unanchored(pattern: &str) -> SkipReason {
    if pattern.contains("://") || pattern.contains('/') {
        return SkipReason::Unsupported("URL path pattern");
    }
    if pattern.contains('*') {
        return SkipReason::Unsupported("wildcard pattern");
    }
    let bare = pattern.strip_suffix('^').unwrap_or(pattern);
    if name::is_ip_literal(bare) {
        return SkipReason::Unsupported("IP address rule");
    }
    SkipReason::Unsupported("pattern without '||' or '|' anchor")
}

#[cfg(test)]
mod tests {
    use crate::policy::formats::{Format, ParsedList, Rule, SkipReason, parse};
    use crate::policy::name::NameError;

    fn rules(list: &ParsedList) -> Vec<(&str, u32, bool, bool)> {
        list.rules
            .iter()
            .map(|r| (r.name.as_str(), r.line, r.allow, r.exact))
            .collect()
    }

    fn one(line: &str) -> Result<Rule, SkipReason> {
        let mut list = parse(Format::Adblock, line);
        match (list.rules.pop(), list.skipped.pop()) {
            (Some(rule), None) if list.rules.is_empty() => Ok(rule),
            (None, Some(skipped)) if list.skipped.is_empty() => Err(skipped.reason),
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn unsupported(line: &str) -> &'static str {
        match one(line) {
            Err(SkipReason::Unsupported(what)) => what,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn comments_headers_and_blank_lines_are_silent() {
        let text = "[Adblock Plus 3.13]\n! Title: x\n\n# hash comment\n!#if env\n  \n||a.com^\n\
                    # comment that mentions ## and $$\n[AdGuard]\n";
        let list = parse(Format::Adblock, text);
        assert_eq!(rules(&list), [("a.com", 7, false, false)]);
        assert!(list.skipped.is_empty());
        assert_eq!(list.lines, 9);
    }

    #[test]
    fn bracketed_address_is_not_a_header() {
        assert_eq!(unsupported("[2600:1f1c:57f::1]"), "IP address rule");
        assert_eq!(unsupported("[]"), "pattern without '||' or '|' anchor");
    }

    #[test]
    fn block_shapes() {
        let text =
            "||a.com^\n||b.com^|\n|c.com^\n|d.com^|\n||Free-4paid.COM^\n||e.com^$important\n";
        let list = parse(Format::Adblock, text);
        assert_eq!(
            rules(&list),
            [
                ("a.com", 1, false, false),
                ("b.com", 2, false, false),
                ("c.com", 3, false, true),
                ("d.com", 4, false, true),
                ("free-4paid.com", 5, false, false),
                ("e.com", 6, false, false),
            ]
        );
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn exceptions() {
        let text = "@@||a.com^\n@@||b.com^|\n@@|c.com^|\n@@|d.com^\n@@||e.com^$important\n";
        let list = parse(Format::Adblock, text);
        assert_eq!(
            rules(&list),
            [
                ("a.com", 1, true, false),
                ("b.com", 2, true, false),
                ("c.com", 3, true, true),
                ("d.com", 4, true, true),
                ("e.com", 5, true, false),
            ]
        );
    }

    #[test]
    fn modifiers() {
        for line in [
            "||a.com^$badfilter",
            "||a.com^$dnstype=~CNAME",
            "||a.com^$denyallow=x.com|y.com",
            "||a.com^$client=127.0.0.1",
            "||a.com^$important,badfilter",
            "||a.com^$third-party",
            "wykop.pl$badfilter",
            "@@||a.com^$~image",
            "||*.top^$dnstype=~CNAME,denyallow=caitlin.top|to",
            "$doc,ipaddress=185.216.143.121",
        ] {
            assert_eq!(unsupported(line), "rule with modifiers", "{line}");
        }
        assert!(one("||a.com^$IMPORTANT").is_ok());
        assert!(one("||a.com^$important, important").is_ok());
        assert!(matches!(one("||a.com^$"), Err(SkipReason::Malformed(_))));
        assert!(matches!(
            one("||a.com^$important,"),
            Err(SkipReason::Malformed(_))
        ));
    }

    #[test]
    fn regex_rules() {
        assert_eq!(unsupported("/^ad[0-9]+\\./"), "regex rule");
        assert_eq!(
            unsupported("/^139\\.45\\.197\\.2(4[0-9]|5[0-4]):/"),
            "regex rule"
        );
        assert_eq!(
            unsupported("@@/^.*(tech|project|linux).*\\.top$/"),
            "regex rule"
        );
        assert_eq!(unsupported("/ads$/$important"), "regex rule");
        assert_eq!(unsupported("/ads$/$dnstype=A"), "regex rule");
    }

    #[test]
    fn cosmetic_rules() {
        for line in [
            "example.com##.ad-banner",
            "##.ad",
            "example.com#@#.ad",
            "#@#.ad",
            "example.com#$#body { color: red }",
            "example.com#?#div:has(> a)",
            "example.com#%#//scriptlet('abort')",
            "example.com$$script[data-ad]",
        ] {
            assert_eq!(unsupported(line), "cosmetic rule", "{line}");
        }
    }

    #[test]
    fn wildcards_prefixes_and_urls() {
        assert_eq!(
            unsupported("||ad-host-backup-*.aliyuncs.com^"),
            "wildcard pattern"
        );
        assert_eq!(unsupported("@@||masto*.top^"), "wildcard pattern");
        assert_eq!(unsupported("||steamcommin*"), "wildcard pattern");
        assert_eq!(unsupported("|recaptcha-v*-protocol-"), "wildcard pattern");
        assert_eq!(unsupported("*ad.durasite.net^"), "wildcard pattern");
        assert_eq!(unsupported("||direct-specific.com"), "prefix pattern");
        assert_eq!(unsupported("||fxhpaoxqyajvmdg."), "prefix pattern");
        assert_eq!(unsupported("|a-ads."), "prefix pattern");
        assert_eq!(unsupported("||version.bind|"), "'|' end anchor without '^'");
        assert_eq!(
            unsupported("@@|www.auslogics.com|"),
            "'|' end anchor without '^'"
        );
        assert_eq!(unsupported("|http://ww01."), "URL path pattern");
        assert_eq!(unsupported("@@://blog.*.top^"), "URL path pattern");
        assert_eq!(unsupported("||example.com/ads^"), "URL path pattern");
        assert_eq!(unsupported("||example.com^:8080^"), "URL path pattern");
        assert_eq!(
            unsupported("/scan-update-and-protect-your-browser.html"),
            "URL path pattern"
        );
    }

    #[test]
    fn unanchored_shapes() {
        let anchorless = "pattern without '||' or '|' anchor";
        assert_eq!(unsupported("example.com^"), anchorless);
        assert_eq!(unsupported("example.com"), anchorless);
        assert_eq!(unsupported(".bbelements.com^"), anchorless);
        assert_eq!(unsupported("-ad123-"), anchorless);
        assert_eq!(unsupported("@@-ds.metric.gstatic.com^|"), anchorless);
        assert_eq!(unsupported("1.2.3.4^"), "IP address rule");
        assert_eq!(unsupported("1.2.3.4"), "IP address rule");
        assert_eq!(
            unsupported("2600:1f1c:57F:b502:dd8:9588:11e6:282"),
            "IP address rule"
        );
    }

    #[test]
    fn invalid_names() {
        let label64 = "c".repeat(64);
        let text = format!(
            "||dhl-commx.^\n||a..b^\n||{label64}.com^\n||1.2.3.4^\n|167.206.10.148^\n||-^\n||^\n\
             ||bad!.com^\n"
        );
        let list = parse(Format::Adblock, &text);
        assert!(list.rules.is_empty());
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::TrailingDot)),
                (2, &SkipReason::InvalidName(NameError::EmptyLabel)),
                (3, &SkipReason::InvalidName(NameError::LabelTooLong)),
                (4, &SkipReason::InvalidName(NameError::IpLiteral)),
                (5, &SkipReason::InvalidName(NameError::IpLiteral)),
                (6, &SkipReason::InvalidName(NameError::NoAlphanumeric)),
                (7, &SkipReason::InvalidName(NameError::Empty)),
                (8, &SkipReason::InvalidName(NameError::BadCharacter)),
            ]
        );
        assert_eq!(list.rejected().count(), 8);
    }

    #[test]
    fn malformed_lines() {
        for line in ["@@", "||", "|", "||a.com^ # comment", "$"] {
            assert!(
                matches!(one(line), Err(SkipReason::Malformed(_))),
                "{line}: {:?}",
                one(line)
            );
        }
    }

    #[test]
    fn localhost_and_idn() {
        assert_eq!(one("||localhost^"), Err(SkipReason::Localhost));
        assert_eq!(
            one("||bücher.example^").map(|r| r.name).as_deref(),
            Ok("xn--bcher-kva.example")
        );
        assert_eq!(
            one("||xn--bcher-kva.example^").map(|r| r.name).as_deref(),
            Ok("xn--bcher-kva.example")
        );
    }

    #[test]
    fn fast_path_agrees_with_the_general_path() {
        for text in [
            "||a.com^",
            "||A.com^|",
            "||dhl-commx.^",
            "||1.2.3.4^",
            "||^",
            "||^|",
            "||a..b^",
            "||localhost^",
            "||-^",
            "||_dmarc.x.org^",
            &format!("||{}.com^", "d".repeat(64)),
        ] {
            let mut fast = ParsedList::default();
            let mut general = ParsedList::default();
            super::parse_line(text, 7, &mut fast);
            super::classify(text, 7, &mut general);
            assert_eq!(fast.rules, general.rules, "{text}");
            assert_eq!(fast.skipped, general.skipped, "{text}");
        }
    }

    #[test]
    fn bom_crlf_no_final_newline_and_line_numbers() {
        let text = "\u{feff}[Adblock Plus 3.15]\r\n! c\r\n||a.com^\r\n||x*.com^\r\n\r\n@@||b.com^|";
        let list = parse(Format::Adblock, text);
        assert_eq!(
            rules(&list),
            [("a.com", 3, false, false), ("b.com", 6, true, false)]
        );
        assert_eq!(
            list.reasons(),
            [(4, &SkipReason::Unsupported("wildcard pattern"))]
        );
        assert_eq!(list.skipped[0].text, "||x*.com^");
        assert_eq!(list.lines, 6);
    }
}
