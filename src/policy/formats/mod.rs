//! Turning the text of a block or allow list into rules. This module owns what is common to every
//! list syntax: whole-file checks ([`parse_bytes`]: UTF-8, empty files, HTML error pages), line
//! splitting (BOM, `\r\n`, a last line without newline), 1-based line numbers, the [`Rule`],
//! [`IpRule`] and [`Skipped`] records, and the operator-facing reasons a line was not used.
//! Each syntax lives in its own file; the line-based ones only decide what a single trimmed line
//! means, RPZ and CSV read the whole text because a record or a row depends on earlier lines.
//! Parsing never fails as a whole once the file is text: a list with bad lines still yields its
//! good ones, and every line that could have been meant as a rule but was not used is reported
//! with its number.

mod adblock;
mod csv;
mod detect;
mod dnsmasq;
mod hosts;
mod plain;
mod rpz;
mod wildcard;

use std::{fmt, net::IpAddr, sync::Arc};

pub use detect::detect;

use crate::policy::name::{self, NameError};

/// The syntax a list file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One domain name per line.
    Plain,
    /// `/etc/hosts` style: an address followed by one or more names.
    Hosts,
    /// AdGuard / Adblock Plus DNS filter syntax (`||name^`, `@@||name^`, `|name^|`).
    Adblock,
    /// One name per line, `*.name` for the subdomains of `name` only (not `name` itself); a bare
    /// name means the name and its subdomains ("Wildcard Domains" lists).
    Wildcard,
    /// dnsmasq configuration lines: `address=/name/…/target`, `server=/…/`, `local=/…/`.
    Dnsmasq,
    /// A DNS Response Policy Zone in master-file syntax (RFC 1035 §5, RPZ triggers and actions).
    Rpz,
    /// A feed in CSV with a header line naming at least a `domain` column, plus optional
    /// `category`, `reference` and `added` columns that travel with each rule.
    Csv,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 7] = [
        Format::Plain,
        Format::Hosts,
        Format::Adblock,
        Format::Wildcard,
        Format::Dnsmasq,
        Format::Rpz,
        Format::Csv,
    ];

    /// The name used in the configuration file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Plain => "plain",
            Format::Hosts => "hosts",
            Format::Adblock => "adblock",
            Format::Wildcard => "wildcard",
            Format::Dnsmasq => "dnsmasq",
            Format::Rpz => "rpz",
            Format::Csv => "csv",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    /// The configuration names, exactly (lower case), as serde reads them.
    fn from_str(text: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Format::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "`{text}` is not a list format (one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// What to answer for a name, when the list line itself says it (RPZ actions, dnsmasq targets).
/// A rule without one gets the action configured for its list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleAction {
    /// Answer "no such name".
    NxDomain,
    /// Answer "the name exists but has no data of this type".
    NoData,
    /// Resolve normally and stop looking at later policies (an RPZ allowlist entry).
    Passthru,
    /// Do not answer at all.
    Drop,
    /// Answer over UDP with the truncation bit so the client retries over TCP.
    TcpOnly,
    /// Answer with these records instead (an RPZ CNAME rewrite or local A/AAAA/TXT… data, a
    /// dnsmasq `address=/name/1.2.3.4`). A CNAME target whose first label is `*` stands for
    /// the query name prepended to the rest, as RPZ defines it. Shared: a feed gives millions
    /// of names the same block addresses, and rules with equal data share one allocation.
    LocalData(Arc<[hickory_proto::rr::RData]>),
}

/// Where a rule came from, for feeds that say so (CSV authority feeds). Rules of one feed that
/// share the same provenance share one allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The feed's category for the entry (`phishing`, `gambling`, …).
    pub category: Option<String>,
    /// A reference the operator can show or cite (a case number, a URL).
    pub reference: Option<String>,
    /// When the entry was added, as the feed writes it (not parsed).
    pub added: Option<String>,
}

/// Which address an [`IpRule`] is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpTrigger {
    /// The address of the client asking (RPZ `rpz-client-ip`).
    ClientIp,
    /// An address in the answer (RPZ `rpz-ip`).
    ResponseIp,
}

/// A policy rule keyed on an address range rather than a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRule {
    pub net: ipnet::IpNet,
    pub kind: IpTrigger,
    pub action: RuleAction,
    /// 1-based line in the list.
    pub line: u32,
}

/// One accepted rule. `name` is normalised (see [`name::normalize`]); for RPZ it may also be a
/// name that looks like an IPv4 address (a QNAME trigger such as `1.14.61.188 CNAME .`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    /// 1-based line in the list, so an operator can find why a name is blocked.
    pub line: u32,
    /// The line itself says "exception" (adblock `@@`, RPZ `rpz-passthru.`, a dnsmasq forward to
    /// a real resolver): inside a block list such a rule exempts its names; in an allow list
    /// every rule allows anyway.
    pub allow: bool,
    /// The line itself says "this name only, not its subdomains" (adblock `|name^`, an RPZ
    /// trigger without `*.`); lines without such a marker leave the choice to the list's `match`
    /// setting.
    pub exact: bool,
    /// The line itself says "the subdomains of this name, not the name itself" (`*.name` in a
    /// wildcard list or an RPZ trigger). Never set together with `exact`.
    pub subdomains_only: bool,
    /// Adblock `$important`: this rule wins over exceptions that are not important themselves.
    pub important: bool,
    /// The answer the line asks for; `None` means the list's configured action.
    pub action: Option<RuleAction>,
    /// Where the entry came from, for feeds that say so.
    pub provenance: Option<Arc<Provenance>>,
}

impl Rule {
    /// A rule for `name` with every marker off: the name and its subdomains, the list's action.
    pub fn new(name: String, line: u32) -> Self {
        Self {
            name,
            line,
            allow: false,
            exact: false,
            subdomains_only: false,
            important: false,
            action: None,
            provenance: None,
        }
    }
}

/// Everything about a rule except its name and line, for the parsers to fill in.
#[derive(Debug, Clone, Default)]
struct Shape {
    allow: bool,
    exact: bool,
    subdomains_only: bool,
    important: bool,
    action: Option<RuleAction>,
    provenance: Option<Arc<Provenance>>,
}

impl Shape {
    fn into_rule(self, name: String, line: u32) -> Rule {
        Rule {
            name,
            line,
            allow: self.allow,
            exact: self.exact,
            subdomains_only: self.subdomains_only,
            important: self.important,
            action: self.action,
            provenance: self.provenance,
        }
    }
}

/// Why a line was not turned into a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
    /// Address-keyed rules (RPZ `rpz-client-ip` and `rpz-ip` triggers), in file order.
    pub ip_rules: Vec<IpRule>,
    /// The serial of the zone's SOA record (RPZ), to tell one version of a feed from the next.
    pub serial: Option<u32>,
    /// IP addresses written where a name was expected, in file order. Each also has a
    /// `skipped` entry, except RPZ owners that look like IPv4 addresses: those are valid QNAME
    /// triggers and also appear in `rules`.
    pub ip_literals: Vec<IpAddr>,
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

    /// Normalises `candidate` with `normalize` and records the outcome: a rule shaped by
    /// `shape`, or a skipped entry for `text`. Returns whether a rule was added.
    fn add(
        &mut self,
        candidate: &str,
        normalize: fn(&str) -> Result<String, NameError>,
        line: u32,
        shape: Shape,
        text: &str,
    ) -> bool {
        match normalize(candidate) {
            Ok(name) if name::is_localhost_class(&name) => {
                self.skip(line, SkipReason::Localhost, text);
                false
            }
            Ok(name) => {
                self.push(name, line, shape);
                true
            }
            Err(err) => {
                self.invalid(candidate, err, line, text);
                false
            }
        }
    }

    fn push(&mut self, name: String, line: u32, shape: Shape) {
        self.rules.push(shape.into_rule(name, line));
    }

    /// Records an invalid name, and the address when the "name" was an IP literal.
    fn invalid(&mut self, candidate: &str, err: NameError, line: u32, text: &str) {
        if err == NameError::IpLiteral
            && let Some(ip) = name::parse_ip_literal(candidate)
        {
            self.ip_literals.push(ip);
        }
        self.skip(line, SkipReason::InvalidName(err), text);
    }
}

/// A list file the whole of which is unusable. Loading such a file must not replace a good
/// earlier copy: these are the shapes a failed download or a wrong URL usually takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("the file is empty (no bytes, or only whitespace); an empty download is refused")]
    Empty,
    #[error(
        "the file is an HTML page, not a list (an error, login or captive-portal page was probably saved instead)"
    )]
    Html,
    #[error("the file is not valid UTF-8 text: bad byte at offset {offset} (line {line})")]
    InvalidUtf8 {
        /// 0-based offset of the first byte that is not UTF-8, counted from the file start.
        offset: usize,
        /// 1-based line holding that byte.
        line: usize,
    },
}

/// How far into a file HTML markers are looked for: a page's `<html>` comes within its first
/// few lines, even after a doctype and comments.
const HTML_SNIFF_BYTES: usize = 1024;

/// Check a whole file and parse it. A file is refused when it is empty or whitespace only, when
/// it is an HTML page (first non-blank byte `<` and `<!doctype html`, `<html` or `<head` in its
/// first KiB, in any case), or when it is not UTF-8. A file that is only comments is accepted:
/// it is a list that happens to be empty today.
pub fn parse_bytes(format: Format, bytes: &[u8]) -> Result<ParsedList, ListError> {
    let text = check_bytes(bytes)?;
    Ok(parse(format, text))
}

/// The whole-file checks of [`parse_bytes`] alone: the text, or why the file is refused.
pub fn check_bytes(bytes: &[u8]) -> Result<&str, ListError> {
    let body = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .ok_or(ListError::Empty)?;
    if looks_like_html(body.get(start..).unwrap_or_default()) {
        return Err(ListError::Html);
    }
    let text = std::str::from_utf8(bytes).map_err(|err| {
        let offset = err.valid_up_to();
        let before = bytes.get(..offset).unwrap_or_default();
        ListError::InvalidUtf8 {
            offset,
            line: 1 + before.iter().filter(|&&b| b == b'\n').count(),
        }
    })?;
    // Other Unicode spaces (vertical tab, U+00A0, U+3000…) are blank too, as lines are
    // trimmed: the same test as `parse_reader`'s, so a file is refused whichever way it is read.
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    if body.trim().is_empty() {
        return Err(ListError::Empty);
    }
    Ok(text)
}

/// `text` starts at the first non-blank byte.
fn looks_like_html(text: &[u8]) -> bool {
    if text.first() != Some(&b'<') {
        return false;
    }
    let head = text.get(..HTML_SNIFF_BYTES).unwrap_or(text);
    [&b"<!doctype html"[..], b"<html", b"<head"]
        .iter()
        .any(|marker| {
            head.windows(marker.len())
                .any(|w| w.eq_ignore_ascii_case(marker))
        })
}

/// Views the parsers' unit tests compare against.
#[cfg(test)]
impl ParsedList {
    pub(crate) fn names(&self) -> Vec<(&str, u32)> {
        self.rules
            .iter()
            .map(|r| (r.name.as_str(), r.line))
            .collect()
    }

    pub(crate) fn reasons(&self) -> Vec<(u32, &SkipReason)> {
        self.skipped.iter().map(|s| (s.line, &s.reason)).collect()
    }
}

/// Parse a whole list. Blank lines and comments are neither rules nor skipped entries.
pub fn parse(format: Format, text: &str) -> ParsedList {
    // Real lists average 20-30 bytes a line; one guess up front saves most regrowth.
    let mut rules = Vec::with_capacity(text.len() / 32);
    let mut list = parse_with(format, text, |rule| rules.push(rule));
    list.rules = rules;
    list
}

/// Parse a whole list, handing each rule to `on_rule` as soon as its line is read instead of
/// collecting them: compiling a 10M-name list then never holds 10M `Rule`s at once. The returned
/// `ParsedList` has no rules, only the skipped lines, counts and the other per-list results
/// (IP rules, the SOA serial).
pub fn parse_with(format: Format, text: &str, mut on_rule: impl FnMut(Rule)) -> ParsedList {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut list = ParsedList::default();
    let mut parser = LineParser::new(format);
    for (line, raw) in numbered_lines(text) {
        list.lines = line;
        parser.line(raw, line, &mut list);
        for rule in list.rules.drain(..) {
            on_rule(rule);
        }
    }
    parser.finish(&mut list);
    for rule in list.rules.drain(..) {
        on_rule(rule);
    }
    list
}

/// Reads a list one line at a time. The line-based syntaxes look at one trimmed line alone; an
/// RPZ record or a CSV row depends on earlier lines ($ORIGIN, the previous owner, an open
/// parenthesis; the header), so those parsers keep state between lines.
enum LineParser {
    Line(fn(&str, u32, &mut ParsedList)),
    Rpz(Box<rpz::Zone>),
    Csv(csv::Feed),
}

impl LineParser {
    fn new(format: Format) -> Self {
        match format {
            Format::Plain => Self::Line(plain::parse_line),
            Format::Hosts => Self::Line(hosts::parse_line),
            Format::Adblock => Self::Line(adblock::parse_line),
            Format::Wildcard => Self::Line(wildcard::parse_line),
            Format::Dnsmasq => Self::Line(dnsmasq::parse_line),
            Format::Rpz => Self::Rpz(Box::default()),
            Format::Csv => Self::Csv(csv::Feed::default()),
        }
    }

    /// `raw` is one line without its line ending, blank or not, leading space kept (a zone file
    /// gives it a meaning).
    fn line(&mut self, raw: &str, line: u32, list: &mut ParsedList) {
        match self {
            Self::Line(parse_line) => {
                let trimmed = raw.trim();
                if !trimmed.is_empty() {
                    parse_line(trimmed, line, list);
                }
            }
            Self::Rpz(zone) => zone.line(raw, line, list),
            Self::Csv(feed) => feed.line(raw, line, list),
        }
    }

    /// After the last line: reports what is still open and hands over rules held back.
    fn finish(self, list: &mut ParsedList) {
        if let Self::Rpz(zone) = self {
            zone.finish(list);
        }
    }
}

/// Why a list read from a file or stream was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    List(#[from] ListError),
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
}

/// Parse a list from a reader, line by line, handing each rule to `on_rule`: neither the file
/// nor its rules are ever held whole, so compiling a 10M-name list costs only the compiled
/// sets. The whole-file checks of [`parse_bytes`] apply (empty, HTML, not UTF-8); when one
/// fails, rules already handed over must be discarded by the caller.
pub fn parse_reader(
    format: Format,
    mut reader: impl std::io::BufRead,
    mut on_rule: impl FnMut(Rule),
) -> Result<ParsedList, ReadError> {
    {
        // The first block is enough to recognise an HTML page.
        let head = reader.fill_buf()?;
        let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
        let start = head.iter().position(|b| !b.is_ascii_whitespace());
        if start.is_some_and(|s| looks_like_html(head.get(s..).unwrap_or_default())) {
            return Err(ListError::Html.into());
        }
    }
    let mut parser = LineParser::new(format);
    let mut list = ParsedList::default();
    let mut offset = 0usize;
    let mut line = 0u32;
    let mut blank = true;
    // One line with its ending: lines are taken straight from the reader's buffer (only one
    // that straddles two reads is copied), since copying every line out cost more than
    // parsing it.
    // `checked`: the same line as text, when the block it came from was valid UTF-8 as a whole.
    let mut one_line = |bytes: &[u8], checked: Option<&str>| -> Result<(), ReadError> {
        let n = bytes.len();
        line = line.saturating_add(1);
        let text = match checked {
            Some(text) => text,
            None => std::str::from_utf8(bytes).map_err(|e| ListError::InvalidUtf8 {
                offset: offset + e.valid_up_to(),
                line: line as usize,
            })?,
        };
        let text = if line == 1 {
            text.strip_prefix('\u{feff}').unwrap_or(text)
        } else {
            text
        };
        offset += n;
        list.lines = line;
        // The same line ending rules as `str::lines`: `\n`, or `\r\n`.
        let raw = match text.strip_suffix('\n') {
            Some(body) => body.strip_suffix('\r').unwrap_or(body),
            None => text,
        };
        // Only until the first line with text: trimming every line cost a few per cent.
        if blank {
            blank = raw.trim().is_empty();
        }
        parser.line(raw, line, &mut list);
        for rule in list.rules.drain(..) {
            on_rule(rule);
        }
        Ok(())
    };
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let chunk = reader.fill_buf()?;
        let len = chunk.len();
        if len == 0 {
            if !carry.is_empty() {
                one_line(&carry, None)?;
            }
            break;
        }
        let mut start = 0;
        if !carry.is_empty() {
            match memchr::memchr(b'\n', chunk) {
                Some(i) => {
                    carry.extend_from_slice(&chunk[..=i]);
                    one_line(&carry, None)?;
                    carry.clear();
                    start = i + 1;
                }
                None => {
                    carry.extend_from_slice(chunk);
                    reader.consume(len);
                    continue;
                }
            }
        }
        // The complete lines of this block: checked as UTF-8 in one go (per line only if that
        // fails, to name the line).
        let complete = memchr::memrchr(b'\n', &chunk[start..]).map_or(start, |i| start + i + 1);
        let block = &chunk[start..complete];
        let checked = std::str::from_utf8(block).ok();
        let mut at = 0;
        for end in memchr::memchr_iter(b'\n', block) {
            let stop = end + 1;
            one_line(&block[at..stop], checked.and_then(|t| t.get(at..stop)))?;
            at = stop;
        }
        start = complete;
        carry.extend_from_slice(&chunk[start..]);
        reader.consume(len);
    }
    if blank {
        return Err(ListError::Empty.into());
    }
    parser.finish(&mut list);
    for rule in list.rules.drain(..) {
        on_rule(rule);
    }
    Ok(list)
}

/// The lines of `text` with their 1-based numbers; callers set `ParsedList::lines` to the last
/// number seen. `lines` splits on `\n` (dropping a `\r` before it) and does not invent an empty
/// last line, so line numbers and counts agree with editors and with `wc -l` plus an
/// unterminated tail.
fn numbered_lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, raw)| (u32::try_from(index + 1).unwrap_or(u32::MAX), raw))
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

/// The one word of a line in a one-name-per-line format (plain, wildcard); a comment line gives
/// None, and a line with more words is skipped as malformed with `why`.
fn single_word<'t>(text: &'t str, line: u32, list: &mut ParsedList, why: &str) -> Option<&'t str> {
    if text.starts_with('#') || text.starts_with('!') {
        return None;
    }
    let mut words = words(text);
    let word = words.next()?;
    if words.next().is_some() {
        list.skip(line, SkipReason::Malformed(why.into()), text);
        return None;
    }
    Some(word)
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
    fn ip_literals_are_collected_with_their_skip() {
        let list = parse(
            Format::Hosts,
            "127.0.0.1 109.201.135.46\n:: [2600:1F1C::1]\n0.0.0.0 fe80::1%lo0 ok.com 1.2.3.4.\n",
        );
        assert_eq!(list.rules.len(), 1);
        let ips: Vec<String> = list.ip_literals.iter().map(|ip| ip.to_string()).collect();
        assert_eq!(
            ips,
            ["109.201.135.46", "2600:1f1c::1", "fe80::1", "1.2.3.4"]
        );
        assert_eq!(list.skipped.len(), 4);
        let list = parse(Format::Adblock, "||1.2.3.4^\n||dhl-commx.^\n");
        assert_eq!(list.ip_literals.len(), 1);
    }

    #[test]
    fn important_is_recorded() {
        let list = parse(
            Format::Adblock,
            "||a.com^$important\n||b.com^\n@@||c.com^$important\n",
        );
        let flags: Vec<_> = list.rules.iter().map(|r| (r.important, r.allow)).collect();
        assert_eq!(flags, [(true, false), (false, false), (true, true)]);
        assert!(
            list.rules
                .iter()
                .all(|r| r.action.is_none() && !r.subdomains_only)
        );
    }

    #[test]
    fn parse_bytes_refuses_empty_files() {
        for bytes in [
            &b""[..],
            b"   \n\t\r\n",
            b"\xef\xbb\xbf",
            b"\xef\xbb\xbf \n",
        ] {
            assert_eq!(
                parse_bytes(Format::Plain, bytes).map(|l| l.rules.len()),
                Err(ListError::Empty),
                "{bytes:?}"
            );
        }
        // Other whitespace than ASCII's (found by fuzzing: a file holding only a vertical tab
        // was accepted here and refused by the streaming reader).
        for bytes in [&b"\x0b"[..], b"\xc2\xa0\n", b"\xef\xbb\xbf\xe3\x80\x80\x0b"] {
            assert_eq!(
                parse_bytes(Format::Plain, bytes).map(|l| l.rules.len()),
                Err(ListError::Empty),
                "{bytes:?}"
            );
            let streamed = parse_reader(Format::Plain, bytes, |_| {});
            assert!(
                matches!(streamed, Err(ReadError::List(ListError::Empty))),
                "{bytes:?}"
            );
        }
        // Comments only: a legitimately empty list, not an error.
        let list = parse_bytes(Format::Hosts, b"# nothing today\n\n").map(|l| l.rules.len());
        assert_eq!(list, Ok(0));
    }

    #[test]
    fn parse_bytes_refuses_html_pages() {
        for page in [
            &b"<!DOCTYPE html>\n<html><body>404</body></html>"[..],
            b"\xef\xbb\xbf\n  <html lang=en>",
            b"<HTML>",
            b"\r\n<head><title>Login</title>",
            b"<!-- captive portal -->\n<!doctype HTML>",
        ] {
            assert_eq!(
                parse_bytes(Format::Plain, page).map(|l| l.rules.len()),
                Err(ListError::Html),
                "{page:?}"
            );
        }
        // Not HTML: the markers only count at the very start, and `<` must come first.
        let list = parse_bytes(Format::Plain, b"a.com\n<html>\n").map(|l| l.rules.len());
        assert_eq!(list, Ok(1));
        let list = parse_bytes(Format::Adblock, b"! <html>\n||a.com^\n").map(|l| l.rules.len());
        assert_eq!(list, Ok(1));
        assert!(ListError::Html.to_string().contains("HTML page"));
    }

    #[test]
    fn parse_bytes_refuses_invalid_utf8_and_says_where() {
        let err = parse_bytes(Format::Plain, b"a.com\nb.com\nc\xff.com\n").map(|l| l.lines);
        assert_eq!(
            err,
            Err(ListError::InvalidUtf8 {
                offset: 13,
                line: 3
            })
        );
        let text = ListError::InvalidUtf8 {
            offset: 13,
            line: 3,
        }
        .to_string();
        assert_eq!(
            text,
            "the file is not valid UTF-8 text: bad byte at offset 13 (line 3)"
        );
        // Latin-1 in a comment on the first line, and a truncated sequence at the very end.
        let err = parse_bytes(Format::Hosts, b"# caf\xe9\n").map(|l| l.lines);
        assert_eq!(err, Err(ListError::InvalidUtf8 { offset: 5, line: 1 }));
        let err = parse_bytes(Format::Hosts, b"a.com\n\xe2\x82").map(|l| l.lines);
        assert_eq!(err, Err(ListError::InvalidUtf8 { offset: 6, line: 2 }));
        // A BOM is fine, and counts in the offset.
        let list = parse_bytes(Format::Plain, b"\xef\xbb\xbfa.com\n").map(|l| l.rules.len());
        assert_eq!(list, Ok(1));
    }

    /// Streaming from a reader (small buffer, so lines arrive in pieces) and parsing a whole
    /// text must agree in every format, including RPZ records across lines and merged local
    /// data, CSV headers, BOM and `\r\n`.
    #[test]
    fn reader_and_text_agree_in_every_format() {
        let samples = [
            (
                Format::Plain,
                "\u{feff}# c\r\na.example\r\nb..example\r\n1.2.3.4\r\nc.example",
            ),
            (
                Format::Hosts,
                "127.0.0.1 localhost\n0.0.0.0 a.example b.example\n:: 1.2.3.4\nx y\n",
            ),
            (
                Format::Adblock,
                "[Adblock Plus]\n||a.example^\n@@|b.example^|\n||c.example^$important\n##.ad\n",
            ),
            (
                Format::Wildcard,
                "*.a.example\nb.example\n*.1.0.209.238\nc.*.example\n",
            ),
            (
                Format::Dnsmasq,
                "server=/a.example/\nserver=/b.example/89.233.43.71\nserver=/104.160.10.0/24\n\
                 address=/c.example/192.0.2.1\n",
            ),
            (
                Format::Rpz,
                "\u{feff}; zone\r\n$TTL 30\r\n@ IN SOA ns. h. (\r\n 7 ; serial\r\n 1 1 1 1 )\r\n \
                 NS ns.\r\na.example CNAME .\r\n*.a.example CNAME .\r\npage.example A 192.0.2.1\r\n  \
                 AAAA 2001:db8::1\r\ntxt.example TXT ( \"x ; y\"\r\n \"z\" )\r\n\
                 24.0.2.0.192.rpz-ip CNAME .\r\n  CNAME rpz-drop.\r\nvg.no.* CNAME .\r\n\
                 1.14.61.188 CNAME .\r\nopen.example CNAME (",
            ),
            (
                Format::Csv,
                "# c\r\ndomain,category,reference\r\na.example,x,\"r, 1\"\r\nb.example,x,\"r, 1\"\r\n,y\r\n\
                 \"open\r\nc.example",
            ),
        ];
        // Buffers smaller than a line, a few lines, and the whole text: lines straddle reads.
        for ((format, text), capacity) in samples
            .iter()
            .flat_map(|s| [1, 5, 37, 1 << 16].map(|c| (*s, c)))
        {
            let whole = parse(format, text);
            let mut rules = Vec::new();
            let reader = std::io::BufReader::with_capacity(capacity, text.as_bytes());
            let streamed = parse_reader(format, reader, |rule| rules.push(rule));
            let Ok(streamed) = streamed else {
                panic!("{format}: {streamed:?}");
            };
            assert!(!whole.rules.is_empty(), "{format}");
            assert_eq!(rules, whole.rules, "{format}");
            assert_eq!(streamed.skipped, whole.skipped, "{format}");
            assert_eq!(streamed.ip_rules, whole.ip_rules, "{format}");
            assert_eq!(streamed.ip_literals, whole.ip_literals, "{format}");
            assert_eq!(streamed.serial, whole.serial, "{format}");
            assert_eq!(streamed.lines, whole.lines, "{format}");
        }
    }

    #[test]
    fn format_names_round_trip() {
        for format in Format::ALL {
            assert_eq!(format.to_string().parse::<Format>(), Ok(format));
        }
        let err = "Plain".parse::<Format>().unwrap_err();
        assert!(err.contains("`Plain` is not a list format"), "{err}");
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
            ("wildcard", Format::Wildcard),
            ("dnsmasq", Format::Dnsmasq),
            ("rpz", Format::Rpz),
            ("csv", Format::Csv),
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
        const PIECES: [&str; 44] = [
            "|",
            "||",
            "@@",
            "^",
            "$",
            ",",
            "=",
            "/",
            "*",
            "#",
            "##",
            "!",
            "[",
            "]",
            ".",
            ":",
            "%",
            " ",
            "\t",
            "\r",
            "\n",
            "a",
            "Z",
            "0",
            "255",
            "ü",
            "\u{feff}",
            "xn--",
            "CNAME",
            "A",
            "IN",
            "$ORIGIN",
            "$TTL",
            "(",
            ")",
            ";",
            "\"",
            "\\",
            "@",
            "rpz-ip",
            "zz",
            "address=/",
            "server=/",
            "domain,category",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut text = String::new();
        for _ in 0..40_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let piece = PIECES
                .get((state % PIECES.len() as u64) as usize)
                .copied()
                .unwrap_or("");
            text.push_str(piece);
        }
        for format in Format::ALL {
            let list = parse(format, &text);
            for skipped in &list.skipped {
                assert!(skipped.text.len() <= MAX_SKIPPED_TEXT);
                assert!(skipped.line >= 1 && skipped.line <= list.lines);
            }
            for rule in &list.rules {
                // RPZ owners that look like IPv4 addresses are names a query can carry.
                let ip_looking = format == Format::Rpz && name::is_ip_literal(&rule.name);
                if !ip_looking {
                    assert_eq!(
                        name::normalize(&rule.name).as_deref(),
                        Ok(rule.name.as_str())
                    );
                }
                assert!(!(rule.exact && rule.subdomains_only));
            }
        }
    }

    #[test]
    fn never_panics_on_odd_input() {
        let odd = "\u{feff}\r\n\r\r\n\0\n||\n|\n@@\n$\n/\n//\n#\n!\n[\n]\n^\n|^|\n@@|^\n||.^\n\
                   ||ä^\n0.0.0.0 \u{fffd}\n:: ::\n[::1] x\n%\n\u{2028}\n🦀🦀🦀\n\\\n\\🦀 A\n\
                   x\\🦀 A 1.2.3.4\n\"\\\n(\n)\n$\n$ORIGIN\n@ SOA\n* CNAME\n=\n=/\n==//\n\
                   address=/\naddress=//\nserver=/a/#\nlocal=/a/b/c/::1%\n\"\n\",\n,,,\n";
        for format in Format::ALL {
            let list = parse(format, odd);
            assert!(list.lines > 0);
        }
    }
}
