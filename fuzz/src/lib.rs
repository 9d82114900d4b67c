//! What the fuzz targets share: the list checks (parse, compare with the streaming parser,
//! compile the rules into a name set and look them up again). The request target has its own
//! set-up in `fuzz_targets/request.rs`.

use std::{path::PathBuf, sync::Arc};

use rampart::{
    config::ListConfig,
    policy::{
        CompiledList, Decision, Snapshot,
        formats::{self, Format, ParsedList, ReadError},
        name,
        nameset::{NameSetBuilder, Payload, PreparedName, Scope},
    },
};

/// Parse `data` as a list in `format` and check what every parse must give:
/// - no panic, whatever the bytes;
/// - the streaming parser (`parse_reader`, lines split across small reads) and the whole-text
///   parser (`parse_bytes`) agree: the same refusal, or the same rules and skipped lines;
/// - skipped lines carry a line number inside the file and a clipped text;
/// - every accepted name is canonical (normalising it again gives it back), except RPZ owners
///   that look like IPv4 addresses, and no rule is both exact and subdomains-only;
/// - the rules compile into a name set in which each name is found.
pub fn check_list(format: Format, data: &[u8]) {
    let whole = formats::parse_bytes(format, data);
    let mut rules = Vec::new();
    let streamed = formats::parse_reader(format, SmallReads::new(data), |rule| rules.push(rule));
    match (whole, streamed) {
        (Ok(whole), Ok(streamed)) => {
            assert_eq!(rules, whole.rules, "streamed rules differ");
            assert_eq!(
                streamed.skipped, whole.skipped,
                "streamed skipped lines differ"
            );
            assert_eq!(streamed.ip_rules, whole.ip_rules);
            assert_eq!(streamed.ip_literals, whole.ip_literals);
            assert_eq!(streamed.serial, whole.serial);
            assert_eq!(streamed.lines, whole.lines);
            check_parsed(format, &whole);
            check_compiled(&whole);
        }
        (Err(whole), Err(ReadError::List(streamed))) => {
            assert_eq!(whole, streamed, "refused for different reasons");
        }
        (whole, streamed) => panic!(
            "whole text: {:?}, streamed: {:?}",
            whole.map(|l| l.lines),
            streamed.map(|l| l.lines)
        ),
    }
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

/// A `BufRead` over a slice that hands out `first` bytes, then `step` bytes per read, so lines
/// straddle reads.
struct SmallReads<'a> {
    data: &'a [u8],
    at: usize,
    first: usize,
    step: usize,
}

impl<'a> SmallReads<'a> {
    fn new(data: &'a [u8]) -> Self {
        // The reader looks for an HTML page in its first block only (64 KiB in the server):
        // give it the KiB after the leading blanks that the whole-file check looks at.
        let blanks = data
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != 0xef && *b != 0xbb && *b != 0xbf)
            .unwrap_or(data.len());
        Self {
            data,
            at: 0,
            first: blanks + 1024,
            step: 7,
        }
    }
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

/// One file per process, rewritten for every input: in memory (`/dev/shm`) where there is
/// one, since rewriting a file on a disk file system can wait for the disk.
fn scratch_file() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("rampart-fuzz-list-{}.txt", std::process::id()))
    })
    .clone()
}
