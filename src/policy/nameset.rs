//! `NameSet`: one list's names, compiled into a compact immutable form, and the suffix walk that
//! matches a query name against it.
//!
//! Why this layout and not a `HashMap<String, Rule>`: at ten million names a map of `String`s
//! costs ~190 B per name (hickory's blocklist store, measured) because every name is its own heap
//! allocation. Here all of a list's names live in one byte arena, one record after another:
//!
//! ```text
//! [len u8][name bytes][scopes u8][line varint (+ extra varint) per scope present]
//! ```
//!
//! and an open-addressing table of `u64` slots points into it. A slot holds a 24-bit tag from the
//! name's hash next to the record offset, so a probe that misses is rejected from the table's
//! cache line without touching the arena. At the synthetic 1M/10M lists (12.4-byte names) that is
//! ~19 B of arena + ~11 B of table per name. The table is sized for a load of at most 0.7 with
//! linear probing: a miss inspects ~6 consecutive slots, a hit ~2.
//!
//! Lookups hash each suffix of the query once ([`PreparedName`]) and reuse the hashes for every
//! list; each list only probes suffixes whose label count it actually contains, so a query for
//! `a.b.c.example.com` against a list of two-label names costs one probe. Nothing allocates.

use std::{hash::BuildHasher, sync::OnceLock};

/// How a listed name applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The name itself only.
    Exact,
    /// The name and every name below it.
    Subtree,
    /// Names below it, not the name itself (`*.name` in wildcard lists and RPZ).
    Subdomains,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Exact, Scope::Subtree, Scope::Subdomains];

    fn bit(self) -> u8 {
        match self {
            Scope::Exact => 1,
            Scope::Subtree => 2,
            Scope::Subdomains => 4,
        }
    }

    /// Whether a rule of this scope on a listed name covers a query that is the listed name
    /// itself (`at_name`) or lies below it.
    fn covers(self, at_name: bool) -> bool {
        match self {
            Scope::Exact => at_name,
            Scope::Subtree => true,
            Scope::Subdomains => !at_name,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Scope::Exact => "this name only",
            Scope::Subtree => "the name and all its subdomains",
            Scope::Subdomains => "subdomains only, not the name itself",
        }
    }
}

/// What a rule carries besides its name: the 1-based line it came from and, for lists with
/// per-rule data (RPZ actions, CSV provenance), an index into the list's side table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub line: u32,
    pub extra: Option<u32>,
}

/// A rule that matched a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub scope: Scope,
    pub payload: Payload,
    /// Length of the query's suffix that is the listed name.
    pub suffix_len: usize,
}

/// The process-wide hash seed: random per process (a hostile feed cannot aim for collisions),
/// shared by every set so a query's suffix hashes are computed once for all lists.
fn hasher() -> &'static foldhash::fast::RandomState {
    static HASHER: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    HASHER.get_or_init(foldhash::fast::RandomState::default)
}

fn hash(bytes: &[u8]) -> u64 {
    hasher().hash_one(bytes)
}

const TAG_BITS: u32 = 24;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const OFFSET_BITS: u32 = 64 - TAG_BITS;
const MAX_ARENA: usize = (1 << OFFSET_BITS) - 2;
/// Highest load factor of the final table, as slots per name (1 / 0.7).
const SLOTS_PER_NAME: f64 = 1.0 / 0.7;

/// Bit of the label-count mask for a name of `labels` labels (64 and more share the top bit).
fn label_bit(labels: usize) -> u64 {
    1u64 << (labels.clamp(1, 64) - 1)
}

/// The open-addressing table: slot = tag << 40 | (offset + 1); 0 = empty.
///
/// Probing is linear but starts at the beginning of a 64-byte-aligned bucket of 8 slots, so the
/// first cache line read holds the whole neighbourhood of a key: a miss usually costs exactly
/// that one line (at load 0.7 few buckets overflow into the next).
#[derive(Default)]
struct Table {
    slots: Box<[u64]>,
    /// First slot of bucket 0 (the allocation is only 8-byte aligned).
    base: usize,
    buckets: usize,
}

impl Table {
    fn with_slots(n: usize) -> Self {
        let buckets = n.div_ceil(8).max(1);
        let slots = vec![0u64; buckets * 8 + 8].into_boxed_slice();
        let misalign = (slots.as_ptr() as usize) % 64;
        let base = ((64 - misalign) % 64) / 8;
        Self {
            slots,
            base,
            buckets,
        }
    }

    /// Usable slots.
    fn capacity(&self) -> usize {
        self.buckets * 8
    }

    #[inline]
    fn home(&self, h: u64) -> usize {
        // Multiply-shift range reduction: any number of buckets, uses the hash's high bits.
        self.base + 8 * ((u128::from(h) * self.buckets as u128) >> 64) as usize
    }

    #[inline]
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.base + self.capacity() {
            self.base
        } else {
            i + 1
        }
    }

    #[inline]
    fn tag(h: u64) -> u64 {
        (h & TAG_MASK) << OFFSET_BITS
    }

    /// Offsets of records whose tag matches, in probe order, until an empty slot.
    #[inline]
    fn find(&self, h: u64, mut matches: impl FnMut(usize) -> bool) -> Option<usize> {
        if self.buckets == 0 {
            return None;
        }
        let tag = Self::tag(h);
        let mut i = self.home(h);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if slot & !((1u64 << OFFSET_BITS) - 1) == tag {
                let offset = (slot & ((1u64 << OFFSET_BITS) - 1)) as usize - 1;
                if matches(offset) {
                    return Some(i);
                }
            }
            i = self.next(i);
        }
    }

    fn place(&mut self, h: u64, offset: usize) {
        let mut i = self.home(h);
        while self.slots[i] != 0 {
            i = self.next(i);
        }
        self.slots[i] = Self::tag(h) | (offset as u64 + 1);
    }

    fn offset_at(&self, i: usize) -> usize {
        (self.slots[i] & ((1u64 << OFFSET_BITS) - 1)) as usize - 1
    }

    fn set_offset(&mut self, i: usize, offset: usize) {
        let tag = self.slots[i] & !((1u64 << OFFSET_BITS) - 1);
        self.slots[i] = tag | (offset as u64 + 1);
    }
}

/// Start loading the home bucket of `hash` into the cache (no effect on the result).
#[inline]
fn prefetch(table: &Table, hash: u64) {
    if table.buckets == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(slot) = table.slots.get(table.home(hash)) {
        safe_arch::prefetch_t0(slot);
    }
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> u32 {
    let mut value = 0u32;
    let mut shift = 0;
    while let Some(&b) = bytes.get(*pos) {
        *pos += 1;
        value |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 || shift >= 28 {
            break;
        }
        shift += 7;
    }
    value
}

fn write_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One decoded record.
struct Record<'a> {
    name: &'a [u8],
    scopes: u8,
    /// Bytes after the scopes byte (the payloads).
    payloads: &'a [u8],
    /// Total length of the record.
    len: usize,
}

fn record(arena: &[u8], offset: usize, has_extra: bool) -> Record<'_> {
    let name_len = arena[offset] as usize;
    let name = &arena[offset + 1..offset + 1 + name_len];
    let scopes = arena[offset + 1 + name_len];
    let start = offset + 2 + name_len;
    let mut pos = start;
    for s in Scope::ALL {
        if scopes & s.bit() != 0 {
            read_varint(arena, &mut pos);
            if has_extra {
                read_varint(arena, &mut pos);
            }
        }
    }
    Record {
        name,
        scopes,
        payloads: &arena[start..pos],
        len: pos - offset,
    }
}

/// The payload of `scope` in a record (which must have it).
fn payload_of(rec: &Record<'_>, scope: Scope, has_extra: bool) -> Payload {
    let mut pos = 0;
    for s in Scope::ALL {
        if rec.scopes & s.bit() == 0 {
            continue;
        }
        let line = read_varint(rec.payloads, &mut pos);
        let extra = has_extra.then(|| read_varint(rec.payloads, &mut pos));
        if s == scope {
            return Payload {
                line,
                extra: extra.filter(|&e| e != u32::MAX),
            };
        }
    }
    Payload {
        line: 0,
        extra: None,
    }
}

/// One suffix of a query name that some set may hold.
#[derive(Clone, Copy, Default)]
struct Probe {
    /// Offset of the suffix in the name.
    start: u8,
    /// Its label count.
    labels: u8,
    hash: u64,
}

/// Candidate suffixes kept inline; names with more (only possible when lists hold names of
/// many different label counts) take the slow path, which hashes as it walks.
const MAX_PROBES: usize = 16;

/// A query name split for matching: canonical bytes and the hash of every suffix whose label
/// count some list contains, longest first. Build once per query, use for every list.
pub struct PreparedName<'a> {
    bytes: &'a [u8],
    labels: usize,
    probes: [Probe; MAX_PROBES],
    count: usize,
    /// More candidates than `probes` holds: lookups walk the name themselves.
    overflow: bool,
    mask: u64,
}

impl<'a> PreparedName<'a> {
    /// `bytes`: lower-case labels joined by '.', no trailing dot (see `policy::QueryName`).
    pub fn new(bytes: &'a [u8]) -> Self {
        Self::with_mask(bytes, u64::MAX)
    }

    /// Like [`new`](Self::new), but only hashes suffixes whose label count is in `mask` (the
    /// union of the sets' label masks): other suffixes are never probed, so a deep name like
    /// `a.b.c.d.tracker.example` costs the hashes of its 2- and 3-label suffixes only.
    #[inline]
    pub fn with_mask(bytes: &'a [u8], mask: u64) -> Self {
        let mut p = Self {
            bytes,
            labels: 0,
            probes: [Probe::default(); MAX_PROBES],
            count: 0,
            overflow: false,
            mask,
        };
        if bytes.is_empty() || bytes.len() > 255 {
            return p;
        }
        // One pass for the label starts (at most 128 in 255 bytes), then hash the suffixes
        // some list can match, longest first.
        let mut starts = [0u8; 128];
        let mut n = 1;
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'.' && n < starts.len() {
                starts[n] = (i + 1) as u8;
                n += 1;
            }
        }
        p.labels = n;
        for (i, &start) in starts[..n].iter().enumerate() {
            let labels = n - i;
            if mask & label_bit(labels) == 0 {
                continue;
            }
            if p.count == MAX_PROBES {
                p.overflow = true;
                break;
            }
            p.probes[p.count] = Probe {
                start,
                labels: labels as u8,
                hash: hash(&bytes[usize::from(start)..]),
            };
            p.count += 1;
        }
        p
    }

    pub fn labels(&self) -> usize {
        self.labels
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The candidate suffixes, longest first: the inline ones, or a hashing walk on overflow.
    fn candidates(&self) -> impl Iterator<Item = Probe> + '_ {
        let inline = (!self.overflow).then(|| self.probes[..self.count].iter().copied());
        let walk = self.overflow.then(|| {
            let bytes = self.bytes;
            let mut start = Some(0usize);
            let mut labels = self.labels;
            std::iter::from_fn(move || {
                loop {
                    let s = start?;
                    let here = labels;
                    match bytes[s..].iter().position(|&b| b == b'.') {
                        Some(dot) => {
                            start = Some(s + dot + 1);
                            labels -= 1;
                        }
                        None => start = None,
                    }
                    if self.mask & label_bit(here) != 0 {
                        return Some(Probe {
                            start: s as u8,
                            labels: here.min(255) as u8,
                            hash: hash(&bytes[s..]),
                        });
                    }
                }
            })
        });
        inline
            .into_iter()
            .flatten()
            .chain(walk.into_iter().flatten())
    }
}

/// One list's compiled names. Build with [`NameSetBuilder`].
pub struct NameSet {
    /// Not shrunk to fit: the builder reserves room for its estimate of the list, and the part
    /// never written is address space, not memory, while shrinking a big arena copies it.
    arena: Vec<u8>,
    table: Table,
    len: usize,
    /// Bit k-1 set when some name has k labels.
    label_mask: u64,
    /// Records carry an extra varint per scope.
    has_extra: bool,
}

impl std::fmt::Debug for NameSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameSet")
            .field("names", &self.len)
            .field("bytes", &self.heap_bytes())
            .finish()
    }
}

impl Default for NameSet {
    fn default() -> Self {
        NameSetBuilder::new(false).build()
    }
}

impl NameSet {
    /// Distinct names.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.arena.len() + self.table.slots.len() * 8
    }

    /// Label counts present (bit k-1: some name has k labels).
    pub fn label_mask(&self) -> u64 {
        self.label_mask
    }

    /// The most specific rule of this set covering the query: the name itself (exact or subtree
    /// rules), else the nearest listed parent (subtree or subdomains-only rules).
    #[inline]
    pub fn lookup(&self, q: &PreparedName<'_>) -> Option<Hit> {
        if self.len == 0 {
            return None;
        }
        // First read the home slot of every suffix we will probe. The loads are independent,
        // so the CPU overlaps their cache misses instead of paying for them one after another
        // (a 10M-name table is far bigger than the cache); the probes below then hit the cache.
        if !q.overflow {
            let mut warm = 0u64;
            for p in &q.probes[..q.count] {
                if self.label_mask & label_bit(usize::from(p.labels)) != 0 {
                    warm ^= self.table.slots[self.table.home(p.hash)];
                }
            }
            std::hint::black_box(warm);
        }
        for p in q.candidates() {
            if self.label_mask & label_bit(usize::from(p.labels)) == 0 {
                continue;
            }
            let suffix = &q.bytes[usize::from(p.start)..];
            let arena = &self.arena;
            let found = self.table.find(p.hash, |offset| {
                let len = arena[offset] as usize;
                len == suffix.len() && &arena[offset + 1..offset + 1 + len] == suffix
            });
            let Some(slot) = found else { continue };
            let rec = record(arena, self.table.offset_at(slot), self.has_extra);
            let at_name = usize::from(p.start) == 0;
            // At the name itself an exact rule is the most specific statement; below it, a
            // subtree and a subdomains-only rule say the same, the first in scope order wins.
            for scope in Scope::ALL {
                if rec.scopes & scope.bit() != 0 && scope.covers(at_name) {
                    return Some(Hit {
                        scope,
                        payload: payload_of(&rec, scope, self.has_extra),
                        suffix_len: suffix.len(),
                    });
                }
            }
        }
        None
    }

    /// Every (name, scope, payload) in the set, in no particular order (tests and tools).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Scope, Payload)> + '_ {
        self.table
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != 0)
            .flat_map(move |(i, _)| {
                let rec = record(&self.arena, self.table.offset_at(i), self.has_extra);
                Scope::ALL
                    .into_iter()
                    .filter(move |s| rec.scopes & s.bit() != 0)
                    .map(move |s| (rec.name, s, payload_of(&rec, s, self.has_extra)))
            })
    }
}

/// Inserts staged before they are placed (see [`NameSetBuilder::insert`]).
const BATCH: usize = 32;

/// One staged insert: its name is `staged_names[start..start + len]`.
struct Staged {
    hash: u64,
    start: u32,
    len: u8,
    scope: Scope,
    payload: Payload,
}

/// Collects one list's rules, then freezes them into a [`NameSet`].
pub struct NameSetBuilder {
    arena: Vec<u8>,
    table: Table,
    len: usize,
    label_mask: u64,
    has_extra: bool,
    /// Arena bytes of records superseded when a name gained a second scope.
    garbage: usize,
    duplicates: usize,
    scratch: Vec<u8>,
    staged: Vec<Staged>,
    staged_names: Vec<u8>,
}

impl NameSetBuilder {
    /// `has_extra`: rules carry an extra value (see [`Payload::extra`]).
    pub fn new(has_extra: bool) -> Self {
        Self::with_capacity(has_extra, 0, 0)
    }

    /// Like [`new`](Self::new), sized for about `names` names of `bytes` arena bytes in all, so
    /// a big list never grows its table (each growth briefly holds the old and the new table).
    /// Arena capacity that is reserved but never written costs address space, not memory.
    pub fn with_capacity(has_extra: bool, names: usize, bytes: usize) -> Self {
        Self {
            arena: Vec::with_capacity(bytes),
            table: Table::with_slots(((names as f64 * SLOTS_PER_NAME) as usize).max(64)),
            len: 0,
            label_mask: 0,
            has_extra,
            garbage: 0,
            duplicates: 0,
            scratch: Vec::new(),
            staged: Vec::with_capacity(BATCH),
            staged_names: Vec::with_capacity(BATCH * 32),
        }
    }

    /// Rules that repeated a name and scope already present (the first one is kept), among the
    /// rules placed so far (see [`flush`](Self::flush)).
    pub fn duplicates(&self) -> usize {
        self.duplicates
    }

    /// Distinct names placed so far (see [`flush`](Self::flush)).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0 && self.staged.is_empty()
    }

    /// Add a rule for a canonical name (lower-case, no trailing dot, ≤ 253 bytes). Returns false
    /// for a name that cannot be stored. A rule for a name and scope already present is a
    /// duplicate: the first one is kept and [`duplicates`](Self::duplicates) counts it.
    ///
    /// Rules are staged in batches of 32 and placed in order when a batch is full (or on
    /// [`flush`](Self::flush) and [`build`](Self::build)). Staging a rule starts loading its
    /// table slot into the cache, so placing it later does not wait for memory: on a 1M-name
    /// list nearly every new name's slot is a cache miss, which was two thirds of the time
    /// spent here when each rule was placed as it came.
    pub fn insert(&mut self, name: &[u8], scope: Scope, payload: Payload) -> bool {
        if name.is_empty() || name.len() > 255 || self.arena.len() >= MAX_ARENA - 600 {
            return false;
        }
        let hash = hash(name);
        prefetch(&self.table, hash);
        self.staged.push(Staged {
            hash,
            start: self.staged_names.len() as u32,
            len: name.len() as u8,
            scope,
            payload,
        });
        self.staged_names.extend_from_slice(name);
        if self.staged.len() == BATCH {
            self.flush();
        }
        true
    }

    /// Place every staged rule.
    pub fn flush(&mut self) {
        let staged = std::mem::take(&mut self.staged);
        let names = std::mem::take(&mut self.staged_names);
        for s in &staged {
            let start = s.start as usize;
            let name = &names[start..start + usize::from(s.len)];
            self.place(name, s.hash, s.scope, s.payload);
        }
        (self.staged, self.staged_names) = (staged, names);
        self.staged.clear();
        self.staged_names.clear();
    }

    fn place(&mut self, name: &[u8], h: u64, scope: Scope, payload: Payload) -> bool {
        if self.arena.len() >= MAX_ARENA - 600 {
            return false;
        }
        let arena = &self.arena;
        let found = self.table.find(h, |offset| {
            let len = arena[offset] as usize;
            len == name.len() && &arena[offset + 1..offset + 1 + len] == name
        });
        match found {
            None => {
                if (self.len + 1) as f64 * SLOTS_PER_NAME > self.table.capacity() as f64 {
                    self.grow((self.table.capacity() * 2).max(64));
                }
                let offset = self.arena.len();
                self.arena.push(name.len() as u8);
                self.arena.extend_from_slice(name);
                self.arena.push(scope.bit());
                self.push_payload(payload);
                self.table.place(h, offset);
                self.len += 1;
                let labels = name.iter().filter(|&&b| b == b'.').count() + 1;
                self.label_mask |= label_bit(labels);
                true
            }
            Some(slot) => {
                let old_offset = self.table.offset_at(slot);
                let rec = record(&self.arena, old_offset, self.has_extra);
                if rec.scopes & scope.bit() != 0 {
                    self.duplicates += 1;
                    return false;
                }
                // Rewrite the record with the new scope at the end of the arena; the old one
                // becomes garbage, reclaimed by `build`.
                let has_extra = self.has_extra;
                let mut merged = std::mem::take(&mut self.scratch);
                merged.clear();
                merged.push(rec.name.len() as u8);
                merged.extend_from_slice(rec.name);
                let scopes = rec.scopes | scope.bit();
                merged.push(scopes);
                for s in Scope::ALL {
                    if scopes & s.bit() == 0 {
                        continue;
                    }
                    let p = if s == scope {
                        payload
                    } else {
                        payload_of(&rec, s, has_extra)
                    };
                    write_varint(&mut merged, p.line);
                    if has_extra {
                        write_varint(&mut merged, p.extra.unwrap_or(u32::MAX));
                    }
                }
                if old_offset + rec.len == self.arena.len() {
                    // The record is the last one written (a feed's `name` then `*.name`):
                    // rewrite it in place instead of leaving garbage for `build`.
                    self.arena.truncate(old_offset);
                    self.arena.extend_from_slice(&merged);
                } else {
                    self.garbage += rec.len;
                    let new_offset = self.arena.len();
                    self.arena.extend_from_slice(&merged);
                    self.table.set_offset(slot, new_offset);
                }
                self.scratch = merged;
                true
            }
        }
    }

    fn push_payload(&mut self, payload: Payload) {
        write_varint(&mut self.arena, payload.line);
        if self.has_extra {
            write_varint(&mut self.arena, payload.extra.unwrap_or(u32::MAX));
        }
    }

    /// Rebuild the table with `slots` slots from the live records.
    fn grow(&mut self, slots: usize) {
        let mut table = Table::with_slots(slots);
        for &slot in self.table.slots.iter().filter(|&&s| s != 0) {
            let offset = (slot & ((1u64 << OFFSET_BITS) - 1)) as usize - 1;
            let len = self.arena[offset] as usize;
            let h = hash(&self.arena[offset + 1..offset + 1 + len]);
            table.place(h, offset);
        }
        self.table = table;
    }

    /// Freeze: drop superseded records, size the table for load 0.7, trim every buffer.
    pub fn build(mut self) -> NameSet {
        self.flush();
        if self.garbage > 0 {
            let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
            for i in 0..self.table.slots.len() {
                if self.table.slots[i] == 0 {
                    continue;
                }
                let offset = self.table.offset_at(i);
                let len = record(&self.arena, offset, self.has_extra).len;
                let new_offset = arena.len();
                arena.extend_from_slice(&self.arena[offset..offset + len]);
                self.table.set_offset(i, new_offset);
            }
            self.arena = arena;
        }
        // Shrink an oversized table (a size hint counted lines, some of which were comments
        // or duplicates) unless it is within a third of the ideal size.
        let want = ((self.len as f64 * SLOTS_PER_NAME).ceil() as usize).max(8);
        let have = self.table.capacity();
        if have < want || have > want + want / 3 {
            self.grow(want);
        }
        NameSet {
            arena: self.arena,
            table: self.table,
            len: self.len,
            label_mask: self.label_mask,
            has_extra: self.has_extra,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: u32) -> Payload {
        Payload { line, extra: None }
    }

    fn set(rules: &[(&str, Scope, u32)]) -> NameSet {
        let mut b = NameSetBuilder::new(false);
        for &(n, scope, line) in rules {
            b.insert(n.as_bytes(), scope, p(line));
        }
        b.build()
    }

    fn look(s: &NameSet, q: &str) -> Option<(Scope, u32, usize)> {
        s.lookup(&PreparedName::new(q.as_bytes()))
            .map(|h| (h.scope, h.payload.line, h.suffix_len))
    }

    #[test]
    fn subtree_matches_name_and_children_only() {
        let s = set(&[("example.com", Scope::Subtree, 1)]);
        assert_eq!(look(&s, "example.com"), Some((Scope::Subtree, 1, 11)));
        assert_eq!(look(&s, "a.b.example.com"), Some((Scope::Subtree, 1, 11)));
        assert_eq!(look(&s, "notexample.com"), None);
        assert_eq!(look(&s, "com"), None);
        assert_eq!(look(&s, "example.com.evil"), None);
    }

    #[test]
    fn exact_and_subdomains_only() {
        let s = set(&[
            ("ads.example", Scope::Exact, 3),
            ("wild.example", Scope::Subdomains, 4),
        ]);
        assert_eq!(look(&s, "ads.example"), Some((Scope::Exact, 3, 11)));
        assert_eq!(look(&s, "x.ads.example"), None);
        assert_eq!(look(&s, "wild.example"), None);
        assert_eq!(look(&s, "a.wild.example"), Some((Scope::Subdomains, 4, 12)));
    }

    #[test]
    fn most_specific_wins_and_scopes_merge() {
        let s = set(&[
            ("example.com", Scope::Subtree, 1),
            ("a.example.com", Scope::Subtree, 7),
            ("example.com", Scope::Subtree, 9),
            ("n.example", Scope::Exact, 1),
            ("n.example", Scope::Subdomains, 2),
        ]);
        assert_eq!(look(&s, "x.a.example.com").unwrap().1, 7);
        assert_eq!(look(&s, "x.example.com").unwrap().1, 1, "first rule kept");
        assert_eq!(look(&s, "n.example"), Some((Scope::Exact, 1, 9)));
        assert_eq!(look(&s, "x.n.example"), Some((Scope::Subdomains, 2, 9)));
        assert_eq!(s.len(), 3);
        assert_eq!(s.iter().count(), 4);
    }

    #[test]
    fn extra_values_round_trip() {
        let mut b = NameSetBuilder::new(true);
        b.insert(
            b"a.example",
            Scope::Exact,
            Payload {
                line: 300,
                extra: Some(5),
            },
        );
        b.insert(
            b"a.example",
            Scope::Subdomains,
            Payload {
                line: 70_000,
                extra: None,
            },
        );
        let s = b.build();
        let h = s.lookup(&PreparedName::new(b"a.example")).unwrap();
        assert_eq!(
            h.payload,
            Payload {
                line: 300,
                extra: Some(5)
            }
        );
        let h = s.lookup(&PreparedName::new(b"x.a.example")).unwrap();
        assert_eq!(
            h.payload,
            Payload {
                line: 70_000,
                extra: None
            }
        );
    }

    #[test]
    fn many_names_and_growth() {
        let mut b = NameSetBuilder::new(false);
        for i in 0..50_000u32 {
            assert!(b.insert(
                format!("host{i}.example").as_bytes(),
                Scope::Subtree,
                p(i + 1)
            ));
        }
        // Accepted, then found to be a duplicate when placed.
        assert!(b.insert(b"host7.example", Scope::Subtree, p(1)));
        b.flush();
        assert_eq!(b.duplicates(), 1);
        let s = b.build();
        assert_eq!(s.len(), 50_000);
        for i in (0..50_000u32).step_by(97) {
            assert_eq!(look(&s, &format!("www.host{i}.example")).unwrap().1, i + 1);
        }
        assert_eq!(look(&s, "host50000.example"), None);
        let per_name = s.heap_bytes() as f64 / 50_000.0;
        assert!(per_name < 40.0, "{per_name} bytes per name");
    }

    #[test]
    fn odd_inputs() {
        let s = set(&[("example", Scope::Subtree, 1)]);
        assert_eq!(look(&s, ""), None);
        assert_eq!(look(&s, "example"), Some((Scope::Subtree, 1, 7)));
        // 128 labels in 255 bytes: the longest legal name walks every suffix without trouble.
        let long = "a.".repeat(127) + "b";
        assert_eq!(long.len(), 255);
        assert_eq!(look(&s, &long), None);
        assert_eq!(PreparedName::new(long.as_bytes()).labels(), 128);
        let mut b = NameSetBuilder::new(false);
        assert!(!b.insert(b"", Scope::Exact, p(1)));
        assert!(!b.insert(&[b'a'; 300], Scope::Exact, p(1)));
    }
}

/// The compiled set against a naive reference: a map of names walked suffix by suffix.
#[cfg(test)]
mod properties {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    /// Names from a tiny alphabet so that parents, children and duplicates are frequent.
    fn name() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "c", "ab", "x-y", "_z"]),
            1..5,
        )
        .prop_map(|labels| labels.join("."))
    }

    fn scope() -> impl Strategy<Value = Scope> {
        prop::sample::select(vec![Scope::Exact, Scope::Subtree, Scope::Subdomains])
    }

    /// First rule per (name, scope) wins; at the name itself exact beats subtree; below it the
    /// nearest listed parent with a subtree or subdomains rule wins, subtree first.
    fn reference(rules: &[(String, Scope)], query: &str) -> Option<(Scope, u32, usize)> {
        let mut map: HashMap<&str, Vec<(Scope, u32)>> = HashMap::new();
        for (i, (n, s)) in rules.iter().enumerate() {
            let e = map.entry(n.as_str()).or_default();
            if !e.iter().any(|(es, _)| es == s) {
                e.push((*s, i as u32 + 1));
            }
        }
        let labels: Vec<&str> = query.split('.').collect();
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".");
            let Some(found) = map.get(suffix.as_str()) else {
                continue;
            };
            let order: &[Scope] = if i == 0 {
                &[Scope::Exact, Scope::Subtree]
            } else {
                &[Scope::Subtree, Scope::Subdomains]
            };
            for want in order {
                if let Some((s, line)) = found.iter().find(|(s, _)| s == want) {
                    return Some((*s, *line, suffix.len()));
                }
            }
        }
        None
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn matches_the_naive_reference(
            rules in prop::collection::vec((name(), scope()), 0..60),
            queries in prop::collection::vec(name(), 1..40),
        ) {
            let mut b = NameSetBuilder::new(false);
            for (i, (n, s)) in rules.iter().enumerate() {
                b.insert(n.as_bytes(), *s, Payload { line: i as u32 + 1, extra: None });
            }
            let set = b.build();
            for q in &queries {
                let got = set
                    .lookup(&PreparedName::new(q.as_bytes()))
                    .map(|h| (h.scope, h.payload.line, h.suffix_len));
                prop_assert_eq!(got, reference(&rules, q), "query {}", q);
            }
        }
    }
}
