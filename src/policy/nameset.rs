//! `NameSet`: the compiled, immutable set of listed names and the suffix walk that matches a
//! query name against it.
//!
//! Why not a `HashMap<String, Rule>`: at ten million names a map of `String`s costs a heap
//! allocation (24 B header + allocator overhead) per name on top of the table. Here every name's
//! bytes live in one arena, each entry is a fixed 20-byte record, and the hash table holds only
//! `u32` indices into the entries, so memory is roughly `name bytes + ~30 B` per name and a load
//! does one allocation per growth step rather than per name. Lookups hash the query name and
//! each of its parent suffixes straight from the caller's buffer: no allocation on the query path.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// Where a rule came from: the list (index into the snapshot's lists) and the 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    pub list: u16,
    pub line: u32,
}

/// A rule slot: `list == NONE` means empty. Kept as plain integers to keep `Entry` small.
#[derive(Clone, Copy)]
struct Slot {
    list: u16,
    line: u32,
}

impl Slot {
    const NONE: u16 = u16::MAX;
    const EMPTY: Slot = Slot {
        list: Self::NONE,
        line: 0,
    };
    fn get(self) -> Option<RuleRef> {
        (self.list != Self::NONE).then_some(RuleRef {
            list: self.list,
            line: self.line,
        })
    }
}

/// One distinct listed name. A name can carry an exact rule and a subtree rule at once (two
/// lists disagreeing on the scope); the first list to state each kind keeps the attribution.
#[derive(Clone, Copy)]
struct Entry {
    offset: u32,
    len: u8,
    exact: Slot,
    subtree: Slot,
}

/// A match: the rule, and how many trailing bytes of the query name it covered (so callers can
/// show which listed name matched without storing it again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub rule: RuleRef,
    /// Length of the matched suffix of the query name.
    pub suffix_len: usize,
    /// True when the rule was an exact-name rule.
    pub exact: bool,
}

/// The compiled set. Build with [`NameSetBuilder`].
pub struct NameSet {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    table: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl std::fmt::Debug for NameSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameSet")
            .field("names", &self.entries.len())
            .field("arena_bytes", &self.arena.len())
            .finish()
    }
}

impl NameSet {
    /// Number of distinct names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate heap bytes held (for the load log line and capacity planning).
    pub fn heap_bytes(&self) -> usize {
        self.arena.capacity()
            + self.entries.capacity() * std::mem::size_of::<Entry>()
            + self.table.capacity() * (std::mem::size_of::<u32>() + 1)
    }

    fn find(&self, name: &[u8]) -> Option<&Entry> {
        let hash = self.hasher.hash_one(name);
        self.table
            .find(hash, |&i| {
                let e = &self.entries[i as usize];
                let start = e.offset as usize;
                &self.arena[start..start + e.len as usize] == name
            })
            .map(|&i| &self.entries[i as usize])
    }

    /// The most specific rule covering `name` (lower-case ASCII, labels joined by '.', no
    /// trailing dot): an exact or subtree rule on the name itself, else a subtree rule on the
    /// nearest listed parent.
    pub fn lookup(&self, name: &[u8]) -> Option<Match> {
        if self.entries.is_empty() || name.is_empty() {
            return None;
        }
        if let Some(e) = self.find(name) {
            // Both scopes apply to the name itself; report the earlier list.
            let pick = match (e.exact.get(), e.subtree.get()) {
                (Some(x), Some(s)) if s.list < x.list => Some((s, false)),
                (Some(x), _) => Some((x, true)),
                (None, Some(s)) => Some((s, false)),
                (None, None) => None,
            };
            if let Some((rule, exact)) = pick {
                return Some(Match {
                    rule,
                    suffix_len: name.len(),
                    exact,
                });
            }
        }
        let mut rest = name;
        while let Some(dot) = rest.iter().position(|&b| b == b'.') {
            rest = &rest[dot + 1..];
            if let Some(rule) = self.find(rest).and_then(|e| e.subtree.get()) {
                return Some(Match {
                    rule,
                    suffix_len: rest.len(),
                    exact: false,
                });
            }
        }
        None
    }
}

/// Collects rules, then freezes them into a [`NameSet`].
pub struct NameSetBuilder {
    set: NameSet,
}

impl Default for NameSetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl NameSetBuilder {
    pub fn new() -> Self {
        Self {
            set: NameSet {
                arena: Vec::new(),
                entries: Vec::new(),
                table: HashTable::new(),
                hasher: hashbrown::DefaultHashBuilder::default(),
            },
        }
    }

    /// Add a rule for an already-normalised name (≤ 253 bytes). Returns false when the name
    /// already had a rule of this scope (a duplicate; the first one keeps the attribution).
    pub fn insert(&mut self, name: &str, exact: bool, rule: RuleRef) -> bool {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() > 255 || self.set.entries.len() >= u32::MAX as usize {
            return false;
        }
        let set = &mut self.set;
        let hash = set.hasher.hash_one(bytes);
        let found = set
            .table
            .find(hash, |&i| {
                let e = &set.entries[i as usize];
                let start = e.offset as usize;
                &set.arena[start..start + e.len as usize] == bytes
            })
            .copied();
        let index = match found {
            Some(i) => i as usize,
            None => {
                let Ok(offset) = u32::try_from(set.arena.len()) else {
                    return false;
                };
                set.arena.extend_from_slice(bytes);
                set.entries.push(Entry {
                    offset,
                    len: bytes.len() as u8,
                    exact: Slot::EMPTY,
                    subtree: Slot::EMPTY,
                });
                let i = (set.entries.len() - 1) as u32;
                let (entries, arena, hasher) = (&set.entries, &set.arena, &set.hasher);
                set.table.insert_unique(hash, i, |&j| {
                    let e = &entries[j as usize];
                    let start = e.offset as usize;
                    hasher.hash_one(&arena[start..start + e.len as usize])
                });
                i as usize
            }
        };
        let slot = if exact {
            &mut set.entries[index].exact
        } else {
            &mut set.entries[index].subtree
        };
        if slot.get().is_some() {
            return false;
        }
        *slot = Slot {
            list: rule.list,
            line: rule.line,
        };
        true
    }

    pub fn build(mut self) -> NameSet {
        self.set.arena.shrink_to_fit();
        self.set.entries.shrink_to_fit();
        self.set.table.shrink_to_fit(|&j| {
            let e = &self.set.entries[j as usize];
            let start = e.offset as usize;
            self.set
                .hasher
                .hash_one(&self.set.arena[start..start + e.len as usize])
        });
        self.set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(list: u16, line: u32) -> RuleRef {
        RuleRef { list, line }
    }

    fn set(rules: &[(&str, bool, u16, u32)]) -> NameSet {
        let mut b = NameSetBuilder::new();
        for &(n, exact, list, line) in rules {
            b.insert(n, exact, r(list, line));
        }
        b.build()
    }

    #[test]
    fn subtree_matches_name_and_children_only() {
        let s = set(&[("example.com", false, 0, 1)]);
        assert_eq!(s.lookup(b"example.com").unwrap().rule, r(0, 1));
        let m = s.lookup(b"a.b.example.com").unwrap();
        assert_eq!(m.suffix_len, "example.com".len());
        assert!(s.lookup(b"notexample.com").is_none());
        assert!(s.lookup(b"com").is_none());
        assert!(s.lookup(b"example.com.evil").is_none());
    }

    #[test]
    fn exact_matches_only_the_name() {
        let s = set(&[("ads.example", true, 0, 3)]);
        assert!(s.lookup(b"ads.example").unwrap().exact);
        assert!(s.lookup(b"x.ads.example").is_none());
    }

    #[test]
    fn most_specific_match_wins_and_first_list_keeps_attribution() {
        let s = set(&[
            ("example.com", false, 0, 1),
            ("a.example.com", false, 1, 7),
            ("example.com", false, 2, 9),
        ]);
        assert_eq!(s.lookup(b"x.a.example.com").unwrap().rule, r(1, 7));
        assert_eq!(s.lookup(b"x.example.com").unwrap().rule, r(0, 1));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn exact_and_subtree_on_one_name() {
        let s = set(&[("n.example", true, 0, 1), ("n.example", false, 1, 2)]);
        assert_eq!(s.lookup(b"n.example").unwrap().rule, r(0, 1));
        assert_eq!(s.lookup(b"x.n.example").unwrap().rule, r(1, 2));
    }

    #[test]
    fn many_names() {
        let mut b = NameSetBuilder::new();
        for i in 0..10_000u32 {
            b.insert(&format!("host{i}.example"), false, r(0, i + 1));
        }
        let s = b.build();
        assert_eq!(s.len(), 10_000);
        for i in (0..10_000u32).step_by(97) {
            let name = format!("www.host{i}.example");
            assert_eq!(s.lookup(name.as_bytes()).unwrap().rule, r(0, i + 1));
        }
        assert!(s.lookup(b"host10000.example").is_none());
    }
}
