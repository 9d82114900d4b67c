//! What the fuzz targets share: the list checks (parse, compare with the streaming parser,
//! compile the rules into a name set and look them up again). The request target has its own
//! set-up in `fuzz_targets/request.rs`.

use std::{path::PathBuf, sync::Arc};

use rampart::{
    config::ListConfig,
    policy::{
        CompiledList, Decision, Snapshot,
        formats::{self, Format, ParsedList},
        name,
        nameset::{NameSetBuilder, Payload, PreparedName, Scope},
    },
};

/// Parse `data` as a list in `format` and check what every parse must give:
/// - no panic, whatever the bytes;
/// - skipped lines carry a line number inside the file and a clipped text;
/// - every accepted name is canonical (normalising it again gives it back), except RPZ owners
///   that look like IPv4 addresses, and no rule is both exact and subdomains-only;
/// - the streaming parser (`parse_reader`, lines split across small reads) agrees with the
///   whole-text parser;
/// - the rules compile into a name set in which each name (exact and subtree rules) is found.
pub fn check_list(format: Format, data: &[u8]) {
    let Ok(list) = formats::parse_bytes(format, data) else {
        // Refused as a whole (empty, HTML, not UTF-8): the streaming parser must not crash
        // either.
        let _ = formats::parse_reader(format, std::io::BufReader::new(data), |_| {});
        return;
    };
    check_parsed(format, &list);
    check_streamed(format, data, &list);
    check_compiled(&list);
}

fn check_parsed(format: Format, list: &ParsedList) {
    for skipped in &list.skipped {
        assert!(skipped.text.len() <= 120, "skipped text not clipped");
        assert!(
            skipped.line >= 1 && skipped.line <= list.lines,
            "skipped line {} outside 1..={}",
            skipped.line,
            list.lines
        );
    }
    for rule in &list.rules {
        assert!(rule.line >= 1 && rule.line <= list.lines.max(1));
        let again = name::normalize(&rule.name);
        // RPZ owners that look like IPv4 addresses are QNAME triggers a query can carry.
        let ip_looking = format == Format::Rpz && again == Err(name::NameError::IpLiteral);
        if !ip_looking {
            assert_eq!(
                again.as_deref(),
                Ok(rule.name.as_str()),
                "accepted name is not canonical"
            );
        }
        assert!(!(rule.exact && rule.subdomains_only));
    }
}

/// The same bytes read through a small buffer (lines straddle reads) give the same result.
fn check_streamed(format: Format, data: &[u8], whole: &ParsedList) {
    // The HTML check of the reader looks at the first block only: give it the same KiB the
    // whole-file check reads, then small reads for the rest.
    let reader = SmallReads {
        data,
        at: 0,
        first: 1024,
        step: 7,
    };
    let mut rules = Vec::new();
    let Ok(streamed) = formats::parse_reader(format, reader, |rule| rules.push(rule)) else {
        panic!("the whole text parses but the streamed one is refused");
    };
    assert_eq!(rules, whole.rules, "streamed rules differ");
    assert_eq!(
        streamed.skipped, whole.skipped,
        "streamed skipped lines differ"
    );
    assert_eq!(streamed.ip_rules, whole.ip_rules);
    assert_eq!(streamed.ip_literals, whole.ip_literals);
    assert_eq!(streamed.serial, whole.serial);
    assert_eq!(streamed.lines, whole.lines);
}

/// A `BufRead` over a slice that hands out `first` bytes, then `step` bytes per read.
struct SmallReads<'a> {
    data: &'a [u8],
    at: usize,
    first: usize,
    step: usize,
}

impl std::io::Read for SmallReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let chunk = std::io::BufRead::fill_buf(self)?;
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        std::io::BufRead::consume(self, n);
        Ok(n)
    }
}

impl std::io::BufRead for SmallReads<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let size = if self.at == 0 { self.first } else { self.step };
        let end = (self.at + size).min(self.data.len());
        Ok(&self.data[self.at..end])
    }

    fn consume(&mut self, amount: usize) {
        self.at = (self.at + amount).min(self.data.len());
    }
}

/// Compile the rules as a list load does (scope from the rule's markers) and look each name up.
fn check_compiled(list: &ParsedList) {
    let mut builder = NameSetBuilder::new(true);
    for (i, rule) in list.rules.iter().enumerate() {
        let payload = Payload {
            line: rule.line,
            extra: Some(i as u32),
        };
        builder.insert(rule.name.as_bytes(), scope_of(rule), payload);
    }
    let set = builder.build();
    for rule in &list.rules {
        let q = PreparedName::with_mask(rule.name.as_bytes(), set.label_mask());
        let hit = set.lookup(&q);
        match scope_of(rule) {
            Scope::Exact | Scope::Subtree => {
                let hit = hit.unwrap_or_else(|| panic!("listed name {:?} not found", rule.name));
                assert_eq!(hit.suffix_len, rule.name.len(), "{:?}", rule.name);
            }
            Scope::Subdomains => {
                let below = format!("x.{}", rule.name);
                if below.len() <= 253 {
                    let q = PreparedName::with_mask(below.as_bytes(), set.label_mask());
                    assert!(set.lookup(&q).is_some(), "subdomain of {:?}", rule.name);
                }
            }
        }
    }
}

fn scope_of(rule: &formats::Rule) -> Scope {
    if rule.subdomains_only {
        Scope::Subdomains
    } else if rule.exact {
        Scope::Exact
    } else {
        Scope::Subtree
    }
}

/// Load `data` as a list file of no declared format, as the server does: the format is detected
/// from the file, the list compiled into a snapshot, and every name the parser accepted is then
/// decided by the snapshot (a block list: no name passes).
pub fn check_load(data: &[u8]) {
    let path = scratch_file();
    std::fs::write(&path, data).expect("writing the scratch list file");
    let config = ListConfig::block("fuzz", path, None);
    let compiled = CompiledList::load(&config);
    let format = compiled.info.format;
    let refused = compiled.info.error.is_some();
    let snapshot = Snapshot::assemble(vec![Arc::new(compiled)], &[]);
    if refused {
        return;
    }
    let Ok(list) = formats::parse_bytes(format, data) else {
        return;
    };
    for rule in &list.rules {
        let decision = snapshot.decide(rule.name.as_bytes(), 0);
        if rule.allow || rule.subdomains_only || rule.action.is_some() {
            continue;
        }
        assert!(
            !matches!(decision, Decision::Pass),
            "listed name {:?} passes",
            rule.name
        );
    }
}

/// One file per process in the temporary folder, rewritten for every input.
fn scratch_file() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("rampart-fuzz-list-{}.txt", std::process::id()))
    })
    .clone()
}
