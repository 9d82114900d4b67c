//! The policy engine: lists are parsed (`formats`), compiled into an immutable [`Snapshot`]
//! (`nameset`), and every query name is checked against it. Allow beats block.
//!
//! A snapshot is built off the query path and published through `arc_swap` by the caller; the
//! query path only calls [`Snapshot::decide`], which allocates nothing.

pub mod formats;
pub mod name;
pub mod nameset;
pub mod stats;

use std::{path::PathBuf, time::Duration};

use hickory_proto::rr::Name;

use crate::config::{Action, ListConfig, ListKind};
use formats::Skipped;
use nameset::{Match, NameSet, NameSetBuilder, RuleRef};

/// How many skipped lines per list are kept for `lists check` and the log; the count is exact
/// regardless.
const KEEP_SKIPPED: usize = 100;

/// What was loaded from one list, for logs, metrics and `lists check`.
#[derive(Debug, Clone)]
pub struct ListInfo {
    pub name: String,
    pub path: PathBuf,
    pub kind: ListKind,
    pub action: Action,
    pub exact: bool,
    /// Rules accepted (before de-duplication across lists).
    pub entries: usize,
    /// Malformed lines and invalid names.
    pub rejected: usize,
    /// Lines skipped for being valid but not expressible (cosmetic adblock rules, localhost…).
    pub unsupported: usize,
    /// The first skipped lines, with line numbers and reasons.
    pub skipped_sample: Vec<Skipped>,
    /// Set when the file could not be read at all.
    pub error: Option<String>,
    pub load_time: Duration,
}

impl ListInfo {
    /// The kept skipped lines as `file:line: reason: text`, for logs and `lists check`.
    pub fn skipped_lines(&self) -> impl Iterator<Item = String> + '_ {
        self.skipped_sample.iter().map(|s| {
            format!(
                "{}:{}: {}: {}",
                self.path.display(),
                s.line,
                s.reason,
                s.text
            )
        })
    }

    /// Skipped lines counted but not kept in `skipped_sample`.
    pub fn skipped_not_shown(&self) -> usize {
        (self.rejected + self.unsupported).saturating_sub(self.skipped_sample.len())
    }
}

/// A compiled policy: the block set, the allow set and what each list contributed.
#[derive(Debug)]
pub struct Snapshot {
    pub lists: Vec<ListInfo>,
    block: NameSet,
    allow: NameSet,
}

/// The policy's verdict on one name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No rule applies.
    Pass,
    /// An allow rule applies (it wins over any block rule).
    Allowed(Match),
    /// A block rule applies and no allow rule does.
    Blocked(Match),
}

impl Snapshot {
    /// A snapshot with no lists (used before the first load and in tests).
    pub fn empty() -> Self {
        Self {
            lists: Vec::new(),
            block: NameSetBuilder::new().build(),
            allow: NameSetBuilder::new().build(),
        }
    }

    /// Read and compile the configured lists. A list that cannot be read is reported in its
    /// `ListInfo::error` and contributes nothing; the other lists still load.
    pub fn load(lists: &[ListConfig]) -> Self {
        let mut block = NameSetBuilder::new();
        let mut allow = NameSetBuilder::new();
        let mut infos = Vec::with_capacity(lists.len());
        for (index, list) in lists.iter().enumerate() {
            let started = std::time::Instant::now();
            let list_id = u16::try_from(index).unwrap_or(u16::MAX - 1);
            let mut info = ListInfo {
                name: list.name.clone(),
                path: list.path.clone(),
                kind: list.kind,
                action: list.action,
                exact: list.exact,
                entries: 0,
                rejected: 0,
                unsupported: 0,
                skipped_sample: Vec::new(),
                error: None,
                load_time: Duration::ZERO,
            };
            match read_list_text(&list.path) {
                Ok(text) => {
                    let parsed = formats::parse(list.format, &text);
                    for rule in &parsed.rules {
                        let target = if rule.allow || list.kind == ListKind::Allow {
                            &mut allow
                        } else {
                            &mut block
                        };
                        target.insert(
                            &rule.name,
                            rule.exact || list.exact,
                            RuleRef {
                                list: list_id,
                                line: rule.line,
                            },
                        );
                    }
                    info.entries = parsed.rules.len();
                    info.rejected = parsed.rejected().count();
                    info.unsupported = parsed.skipped.len() - info.rejected;
                    info.skipped_sample = parsed.skipped.into_iter().take(KEEP_SKIPPED).collect();
                }
                Err(e) => info.error = Some(e),
            }
            info.load_time = started.elapsed();
            infos.push(info);
        }
        Self {
            lists: infos,
            block: block.build(),
            allow: allow.build(),
        }
    }

    /// Distinct names in the block and allow sets.
    pub fn sizes(&self) -> (usize, usize) {
        (self.block.len(), self.allow.len())
    }

    /// Heap bytes held by the compiled sets.
    pub fn heap_bytes(&self) -> usize {
        self.block.heap_bytes() + self.allow.heap_bytes()
    }

    /// The list a rule came from.
    pub fn list(&self, rule: RuleRef) -> Option<&ListInfo> {
        self.lists.get(rule.list as usize)
    }

    /// Decide for a name in canonical form (see [`QueryName`]).
    pub fn decide(&self, name: &[u8]) -> Decision {
        if let Some(m) = self.allow.lookup(name) {
            return Decision::Allowed(m);
        }
        match self.block.lookup(name) {
            Some(m) => Decision::Blocked(m),
            None => Decision::Pass,
        }
    }

    /// The block rule a name would hit if no allow rule applied (for explanations).
    pub fn block_match(&self, name: &[u8]) -> Option<Match> {
        self.block.lookup(name)
    }
}

/// Read a list file as text. Invalid UTF-8 is replaced rather than refused: one bad byte in a
/// comment must not cost the whole list (the affected line, if any, is then rejected as
/// malformed by its parser).
fn read_list_text(path: &std::path::Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// A query name in the canonical form the name sets use: lower-case ASCII labels joined by
/// '.', no trailing dot, on the stack. A '.' byte inside a label (legal on the wire, written
/// `\.` in text) is replaced by NUL so it can never fake a label boundary.
pub struct QueryName {
    buf: [u8; 256],
    len: usize,
}

impl QueryName {
    pub fn new(name: &Name) -> Self {
        let mut buf = [0u8; 256];
        let mut len = 0;
        for label in name.iter() {
            if len != 0 && len < buf.len() {
                buf[len] = b'.';
                len += 1;
            }
            for &b in label {
                if len >= buf.len() {
                    break;
                }
                buf[len] = match b {
                    b'.' => 0,
                    _ => b.to_ascii_lowercase(),
                };
                len += 1;
            }
        }
        Self { buf, len }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_name_is_canonical() {
        let n = Name::from_ascii("Ex.AmPlE.").unwrap();
        assert_eq!(QueryName::new(&n).as_bytes(), b"ex.ample");
        let n = Name::from_ascii("Ex.AmPlE").unwrap();
        assert_eq!(QueryName::new(&n).as_bytes(), b"ex.ample");
        assert_eq!(QueryName::new(&Name::root()).as_bytes(), b"");
        let n = Name::from_ascii("a\\.b.example.").unwrap();
        assert_eq!(QueryName::new(&n).as_bytes(), b"a\0b.example");
    }
}
