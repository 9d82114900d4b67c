//! Turning the text of a block or allow list into rules. This module owns what is common to every
//! list syntax: line splitting (BOM, `\r\n`, a last line without newline), 1-based line numbers,
//! the [`Rule`] and [`Skipped`] records, and the operator-facing reasons a line was not used.
//! Each syntax lives in its own file and only decides what a single trimmed line means.
//! Parsing never fails as a whole: a list with bad lines still yields its good ones, and every
//! line that could have been meant as a rule but was not used is reported with its number.

mod adblock;
mod hosts;
mod plain;

use std::fmt;

use crate::policy::name::{self, NameError};

/// The syntax a list file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One domain name per line.
    Plain,
    /// `/etc/hosts` style: an address followed by one or more names.
    Hosts,
    /// AdGuard / Adblock Plus DNS filter syntax (`||name^`, `@@||name^`, `|name^|`).
    Adblock,
}

/// One accepted rule. `name` is normalised (see [`name::normalize`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// 1-based line in the list, so an operator can find why a name is blocked.
    pub line: u32,
    /// The line itself says "exception" (adblock `@@`): inside a block list such a rule
    /// exempts its names; in an allow list every rule allows anyway.
    pub allow: bool,
    /// The line itself says "this name only, not its subdomains" (adblock `|name^`); lines
    /// without such a marker leave the choice to the list's `match` setting.
    pub exact: bool,
}

/// Why a line was not turned into a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// The line does not follow the list's syntax.
    Malformed(String),
    /// The line has the right shape but the name in it is not a usable domain name.
    InvalidName(NameError),
    /// Valid syntax for a feature a DNS resolver cannot or does not apply (cosmetic rules,
    /// regexes, modifiers, wildcards, URL paths).
    Unsupported(&'static str),
    /// Hosts-file boilerplate (`localhost`, `ip6-allnodes`, …), expected and harmless.
    Localhost,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Malformed(why) => write!(f, "malformed line: {why}"),
            SkipReason::InvalidName(err) => write!(f, "invalid name: {err}"),
            SkipReason::Unsupported(what) => write!(f, "{what} (not supported, ignored)"),
            SkipReason::Localhost => {
                f.write_str("localhost entry (hosts-file boilerplate, ignored)")
            }
        }
    }
}

/// A line that was not turned into a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub line: u32,
    pub reason: SkipReason,
    /// The offending line, trimmed and cut to at most 120 bytes on a character boundary.
    pub text: String,
}

/// Long enough to recognise a line in a report, short enough that a list of megabyte-long
/// garbage lines cannot blow up memory or logs.
const MAX_SKIPPED_TEXT: usize = 120;

/// Everything parsing one list produced.
#[derive(Debug, Default)]
pub struct ParsedList {
    /// Accepted rules in file order; duplicates are kept (the compiler dedups).
    pub rules: Vec<Rule>,
    /// Lines (or names on a hosts line) that were not used, in file order.
    pub skipped: Vec<Skipped>,
    /// Number of lines in the text.
    pub lines: u32,
}

impl ParsedList {
    /// The skipped entries that point at a mistake in the list (malformed lines and invalid
    /// names), as opposed to features deliberately not supported and localhost boilerplate.
    pub fn rejected(&self) -> impl Iterator<Item = &Skipped> {
        self.skipped.iter().filter(|s| {
            matches!(
                s.reason,
                SkipReason::Malformed(_) | SkipReason::InvalidName(_)
            )
        })
    }

    fn skip(&mut self, line: u32, reason: SkipReason, text: &str) {
        self.skipped.push(Skipped {
            line,
            reason,
            text: clip(text).to_owned(),
        });
    }

    /// Records the outcome of normalising one candidate name found on `text`.
    fn add(
        &mut self,
        normalized: Result<String, NameError>,
        line: u32,
        allow: bool,
        exact: bool,
        text: &str,
    ) {
        match normalized {
            Ok(name) if name::is_localhost_class(&name) => {
                self.skip(line, SkipReason::Localhost, text)
            }
            Ok(name) => self.rules.push(Rule {
                name,
                line,
                allow,
                exact,
            }),
            Err(err) => self.skip(line, SkipReason::InvalidName(err), text),
        }
    }
}

/// Parse a whole list. Blank lines and comments are neither rules nor skipped entries.
pub fn parse(format: Format, text: &str) -> ParsedList {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parse_line: fn(&str, u32, &mut ParsedList) = match format {
        Format::Plain => plain::parse_line,
        Format::Hosts => hosts::parse_line,
        Format::Adblock => adblock::parse_line,
    };
    let mut list = ParsedList {
        // Real lists average 20-30 bytes a line; one guess up front saves most regrowth.
        rules: Vec::with_capacity(text.len() / 32),
        ..ParsedList::default()
    };
    // `lines` splits on `\n` (dropping a `\r` before it) and does not invent an empty last line,
    // so line numbers and counts agree with editors and with `wc -l` plus an unterminated tail.
    for (index, raw) in text.lines().enumerate() {
        let line = u32::try_from(index + 1).unwrap_or(u32::MAX);
        list.lines = line;
        let trimmed = raw.trim();
        if !trimmed.is_empty() {
            parse_line(trimmed, line, &mut list);
        }
    }
    list
}

/// Cuts at a character boundary so the result is still valid UTF-8.
fn clip(text: &str) -> &str {
    if text.len() <= MAX_SKIPPED_TEXT {
        return text;
    }
    let mut end = MAX_SKIPPED_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

/// The whitespace-separated words of a line, up to an inline `#` comment.
fn words(text: &str) -> Words<'_> {
    // List lines are short and ASCII: one byte loop finds the comment and proves the body ASCII
    // cheaper than two library searches, and splitting bytes beats decoding characters. The
    // Unicode split is only needed when some other space (U+00A0, U+3000) can occur.
    let mut end = text.len();
    let mut ascii = true;
    for (i, b) in text.bytes().enumerate() {
        if b == b'#' {
            end = i;
            break;
        }
        ascii &= b.is_ascii();
    }
    // '#' is ASCII, so `end` is a character boundary and `get` always succeeds.
    let body = text.get(..end).unwrap_or(text);
    if ascii {
        Words::Ascii(body.split_ascii_whitespace())
    } else {
        Words::Unicode(body.split_whitespace())
    }
}

enum Words<'a> {
    Ascii(std::str::SplitAsciiWhitespace<'a>),
    Unicode(std::str::SplitWhitespace<'a>),
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            Words::Ascii(words) => words.next(),
            Words::Unicode(words) => words.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_crlf_and_last_line() {
        let list = parse(Format::Plain, "\u{feff}a.com\r\n\r\nb.com\r\nc.com");
        let names: Vec<_> = list
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.line))
            .collect();
        assert_eq!(names, [("a.com", 1), ("b.com", 3), ("c.com", 4)]);
        assert_eq!(list.lines, 4);
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn line_count_matches_wc_plus_tail() {
        assert_eq!(parse(Format::Plain, "").lines, 0);
        assert_eq!(parse(Format::Plain, "\n").lines, 1);
        assert_eq!(parse(Format::Plain, "a\nb\n").lines, 2);
        assert_eq!(parse(Format::Plain, "a\nb").lines, 2);
        assert_eq!(parse(Format::Hosts, "\u{feff}").lines, 0);
    }

    #[test]
    fn bom_inside_the_text_is_ignored_by_idna() {
        // Concatenated lists carry a BOM mid-file; UTS-46 maps U+FEFF to nothing, so the name
        // on that line still counts instead of being rejected as a bad character.
        let list = parse(Format::Plain, "a.com\n\u{feff}b.com\n");
        let names: Vec<_> = list
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.line))
            .collect();
        assert_eq!(names, [("a.com", 1), ("b.com", 2)]);
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn skipped_text_is_clipped_on_a_char_boundary() {
        let long = format!("{}ü{}", "a".repeat(119), "b".repeat(200));
        let list = parse(Format::Plain, &format!("{long} extra\n"));
        let skipped = &list.skipped[0];
        assert_eq!(skipped.text, "a".repeat(119));
        let short = "x y";
        assert_eq!(parse(Format::Plain, short).skipped[0].text, "x y");
    }

    #[test]
    fn rejected_leaves_out_unsupported_and_localhost() {
        let list = parse(
            Format::Hosts,
            "127.0.0.1 localhost\nnot-an-ip x.com\n0.0.0.0 a..b\n0.0.0.0 ok.com\n",
        );
        assert_eq!(list.skipped.len(), 3);
        let rejected: Vec<_> = list.rejected().map(|s| s.line).collect();
        assert_eq!(rejected, [2, 3]);
        let list = parse(Format::Adblock, "example.com##.ad\n||x.com^$dnstype=A\n");
        assert_eq!(list.skipped.len(), 2);
        assert_eq!(list.rejected().count(), 0);
    }

    #[test]
    fn reasons_read_well() {
        assert_eq!(
            SkipReason::InvalidName(NameError::IpLiteral).to_string(),
            "invalid name: IP address where a domain name was expected"
        );
        assert_eq!(
            SkipReason::Unsupported("regex rule").to_string(),
            "regex rule (not supported, ignored)"
        );
        assert_eq!(
            SkipReason::Malformed("x".into()).to_string(),
            "malformed line: x"
        );
        assert!(SkipReason::Localhost.to_string().contains("localhost"));
    }

    #[test]
    fn format_names_in_config() {
        #[derive(serde::Deserialize)]
        struct Holder {
            format: Format,
        }
        // serde's value deserializer is enough to check the spelling without a format crate.
        use serde::Deserialize;
        use serde::de::value::{Error, MapDeserializer};
        for (text, want) in [
            ("plain", Format::Plain),
            ("hosts", Format::Hosts),
            ("adblock", Format::Adblock),
        ] {
            let map = MapDeserializer::<_, Error>::new(std::iter::once(("format", text)));
            let holder = Holder::deserialize(map);
            assert_eq!(holder.map(|h| h.format).ok(), Some(want));
        }
        let map = MapDeserializer::<_, Error>::new(std::iter::once(("format", "Plain")));
        assert!(Holder::deserialize(map).is_err());
    }

    #[test]
    fn never_panics_on_generated_input() {
        // Lines stitched from the pieces every syntax reacts to; a fixed xorshift keeps the
        // test deterministic without a dependency.
        const PIECES: [&str; 28] = [
            "|", "||", "@@", "^", "$", ",", "=", "/", "*", "#", "##", "!", "[", "]", ".", ":", "%",
            " ", "\t", "\r", "\n", "a", "Z", "0", "255", "ü", "\u{feff}", "xn--",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut text = String::new();
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let piece = PIECES.get((state % 28) as usize).copied().unwrap_or("");
            text.push_str(piece);
        }
        for format in [Format::Plain, Format::Hosts, Format::Adblock] {
            let list = parse(format, &text);
            for skipped in &list.skipped {
                assert!(skipped.text.len() <= MAX_SKIPPED_TEXT);
                assert!(skipped.line >= 1 && skipped.line <= list.lines);
            }
            for rule in &list.rules {
                assert_eq!(
                    name::normalize(&rule.name).as_deref(),
                    Ok(rule.name.as_str())
                );
            }
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = "\u{feff}\r\n\r\r\n\0\n||\n|\n@@\n$\n/\n//\n#\n!\n[\n]\n^\n|^|\n@@|^\n||.^\n\
                   ||ä^\n0.0.0.0 \u{fffd}\n:: ::\n[::1] x\n%\n\u{2028}\n🦀🦀🦀";
        for format in [Format::Plain, Format::Hosts, Format::Adblock] {
            let list = parse(format, odd);
            assert!(list.lines > 0);
        }
    }
}
