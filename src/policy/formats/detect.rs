//! Guessing a list's format from its first lines, for `rampart lists stats FILE` without
//! `--format` and for configured lists that name no format (once, when the list is loaded;
//! nothing on the query path guesses). Naming the format is still better: a guess can only
//! look at how lines are written, not at what the author meant.
//!
//! The heuristics, in order:
//! 1. A first line `[Adblock Plus …]`, `[AdGuard …]` or `[uBlock …]` means adblock.
//! 2. A first non-comment line that is a comma-separated header with a `domain` field means CSV.
//! 3. Otherwise each of the first [`VOTING_LINES`] meaningful lines votes for one format:
//!    * `$TTL`, `$ORIGIN`, `$INCLUDE` (3 votes), a `;` comment, or a record type (`CNAME`, `A`,
//!      `SOA`, `NS`, …) or `IN` among the first words: RPZ;
//!    * `address=/`, `server=/`, `local=/`: dnsmasq;
//!    * `||`, `@@`, `|` at the start, `^` at the end, `##` anywhere, or a `!` comment (not a
//!      `!#if` preprocessor line, which hosts and plain lists carry too): adblock;
//!    * an IP address followed by more words: hosts;
//!    * one word starting with `*.`: wildcard; any other single word: plain.
//!
//!    `#` comment lines and blank lines do not vote. The format with the most votes wins; a
//!    tie between the leaders, or no votes at all, gives plain. A "Wildcard Domains" list of bare
//!    names is therefore read as plain, which means the same thing (a name and its
//!    subdomains).

use super::Format;
use crate::policy::name;

/// Enough lines to get past a long comment header's first records, few enough to stay instant.
const VOTING_LINES: usize = 50;
/// Lines looked at in all, so a file of comments cannot make detection read it whole.
const MAX_LINES: usize = 2_000;

/// The format `text` is most likely written in (see the module documentation).
pub fn detect(text: &str) -> Format {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut meaningful = text
        .lines()
        .take(MAX_LINES)
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let Some(first) = meaningful.clone().next() else {
        return Format::Plain;
    };
    let lower_start = first.get(..10).unwrap_or(first).to_ascii_lowercase();
    if ["[adblock", "[adguard", "[ublock"]
        .iter()
        .any(|h| lower_start.starts_with(h))
    {
        return Format::Adblock;
    }
    if meaningful
        .clone()
        .find(|l| !l.starts_with('#'))
        .is_some_and(is_csv_header)
    {
        return Format::Csv;
    }
    let mut votes = [0usize; Format::ALL.len()];
    let mut voting = 0;
    for line in meaningful.by_ref() {
        let Some((format, weight)) = vote(line) else {
            continue;
        };
        if let Some(count) = Format::ALL
            .iter()
            .position(|f| *f == format)
            .and_then(|i| votes.get_mut(i))
        {
            *count += weight;
        }
        voting += 1;
        if voting >= VOTING_LINES {
            break;
        }
    }
    let best = votes.iter().copied().max().unwrap_or(0);
    let mut leaders = Format::ALL
        .iter()
        .zip(votes)
        .filter(|(_, v)| *v == best && best > 0);
    match (leaders.next(), leaders.next()) {
        (Some((format, _)), None) => *format,
        _ => Format::Plain,
    }
}

fn is_csv_header(line: &str) -> bool {
    line.contains(',')
        && line
            .split(',')
            .any(|f| f.trim().trim_matches('"').eq_ignore_ascii_case("domain"))
}

/// Which format one trimmed, non-empty line points to, and how strongly.
fn vote(line: &str) -> Option<(Format, usize)> {
    const RR_WORDS: [&str; 11] = [
        "IN", "CNAME", "A", "AAAA", "SOA", "NS", "TXT", "MX", "PTR", "SRV", "HTTPS",
    ];
    if ["$TTL", "$ORIGIN", "$INCLUDE"].iter().any(|d| {
        line.get(..d.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(d))
    }) {
        return Some((Format::Rpz, 3));
    }
    if line.starts_with(';') {
        return Some((Format::Rpz, 1));
    }
    if line.starts_with('!') {
        return (!line.starts_with("!#")).then_some((Format::Adblock, 1));
    }
    if line.contains("##") || line.starts_with('|') || line.starts_with("@@") {
        return Some((Format::Adblock, 1));
    }
    if line.starts_with('#') {
        return None;
    }
    if ["address=/", "server=/", "local=/"]
        .iter()
        .any(|p| line.starts_with(p))
    {
        return Some((Format::Dnsmasq, 1));
    }
    let body = line.split('#').next().unwrap_or(line);
    let mut words = body.split_whitespace();
    let first = words.next()?;
    let mut rest = words.clone().peekable();
    if rest.peek().is_some() {
        if name::is_ip_literal(first) {
            return Some((Format::Hosts, 1));
        }
        let is_rr = |w: &str| RR_WORDS.iter().any(|t| w.eq_ignore_ascii_case(t));
        if std::iter::once(first).chain(words).take(4).any(is_rr) {
            return Some((Format::Rpz, 1));
        }
        return None;
    }
    if first.ends_with('^') || first.ends_with("^|") {
        return Some((Format::Adblock, 1));
    }
    if first.starts_with("*.") {
        return Some((Format::Wildcard, 1));
    }
    Some((Format::Plain, 1))
}

#[cfg(test)]
mod tests {
    use super::detect;
    use crate::policy::formats::Format;

    #[test]
    fn each_format_from_typical_heads() {
        let cases = [
            ("# list\n\nads.example\ntrack.example\n", Format::Plain),
            (
                "# hosts\n127.0.0.1 localhost\n0.0.0.0 ads.example\n:: ads.example\n",
                Format::Hosts,
            ),
            (
                "\u{feff}!#if !env_mv3\n127.0.0.1 a.example\n!#endif\n127.0.0.1 b.example\n",
                Format::Hosts,
            ),
            (
                "[Adblock Plus 3.13]\n! Title\n||a.example^\n",
                Format::Adblock,
            ),
            (
                "! Title\n! Homepage\n||a.example^\n@@||b.example^|\n",
                Format::Adblock,
            ),
            ("# Title\n*.a.example\n*.b.example\n", Format::Wildcard),
            (
                "# Title\naddress=/a.example/0.0.0.0\naddress=/a.example/::\n",
                Format::Dnsmasq,
            ),
            ("\u{feff}server=/a.example/127.0.0.1\n", Format::Dnsmasq),
            (
                "$TTL 3600\n@ SOA localhost. root.localhost. 1 2 3 4 5\n  NS localhost.\n*.actor CNAME .\n",
                Format::Rpz,
            ),
            (
                "; Title\n; Description\na.example CNAME .\n1.2.3.4 CNAME .\n",
                Format::Rpz,
            ),
            (
                ";\n$TTL 300\n@ IN SOA dns.example. host.example. (\n 1 ; Serial\n 2 )\n",
                Format::Rpz,
            ),
            (
                "# feed\nDomain,Category,Reference,Added\na.example,gambling,x,2026-01-01\n",
                Format::Csv,
            ),
            ("\"added\",\"domain\"\n", Format::Csv),
        ];
        for (text, want) in cases {
            assert_eq!(detect(text), want, "{text:?}");
        }
    }

    #[test]
    fn ties_and_nothing_give_plain() {
        assert_eq!(detect(""), Format::Plain);
        assert_eq!(detect("\u{feff}\n\n"), Format::Plain);
        assert_eq!(detect("# only comments\n# here\n"), Format::Plain);
        // One wildcard line against one plain line.
        assert_eq!(detect("*.a.example\nb.example\n"), Format::Plain);
        // One hosts line against one dnsmasq line.
        assert_eq!(
            detect("0.0.0.0 a.example\naddress=/b.example/#\n"),
            Format::Plain
        );
        // Words that fit no format do not vote.
        assert_eq!(detect("what is this\nno idea\n"), Format::Plain);
    }

    #[test]
    fn majority_wins() {
        assert_eq!(
            detect("*.a.example\n*.b.example\nc.example\n"),
            Format::Wildcard
        );
        assert_eq!(
            detect("a.example\nb.example\n0.0.0.0 c.example\n"),
            Format::Plain
        );
    }

    #[test]
    fn odd_input_does_not_panic() {
        for text in [
            "$",
            "$T",
            ";",
            "!",
            "!#",
            "|",
            "é,domain",
            "\u{feff}[",
            "[ädblock",
        ] {
            let _ = detect(text);
        }
    }
}
