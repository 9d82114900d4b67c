//! The policy engine: lists are parsed (`formats`), compiled into an immutable [`Snapshot`]
//! (`nameset`), and every query name is checked against it. Allow beats block.
//!
//! A snapshot is built off the query path and published through `arc_swap` by the caller; the
//! query path only calls [`Snapshot::decide`], which allocates nothing.

pub mod formats;
pub mod groups;
pub mod name;
pub mod nameset;
pub mod stats;

use std::{path::PathBuf, sync::Arc, time::Duration};

use hickory_proto::rr::Name;

use crate::config::{Action, GroupConfig, ListConfig, ListKind};
use formats::{Format, IpTrigger, Provenance, RuleAction, SkipReason, Skipped};
use groups::{GroupId, GroupMap, PrefixMap};
use name::NameError;
use nameset::{Hit, NameSet, NameSetBuilder, Payload, PreparedName, Scope};

/// How many skipped lines per list are kept for `lists check` and the log; the count is exact
/// regardless.
const KEEP_SKIPPED: usize = 100;

/// What was loaded from one list, for logs, metrics and `lists check`.
#[derive(Debug, Clone)]
pub struct ListInfo {
    pub name: String,
    pub path: PathBuf,
    /// As configured, or detected from the file.
    pub format: Format,
    pub kind: ListKind,
    pub action: Action,
    pub exact: bool,
    /// Rules accepted (before de-duplication).
    pub entries: usize,
    /// Distinct (name, scope) rules after de-duplication.
    pub names: usize,
    /// Malformed lines and invalid names.
    pub rejected: usize,
    /// Lines skipped for being valid but not expressible (cosmetic adblock rules, localhost…).
    pub unsupported: usize,
    /// The first skipped lines, with line numbers and reasons.
    pub skipped_sample: Vec<Skipped>,
    /// Skipped lines per reason category (see [`skip_category`]).
    pub skipped_by_reason: Vec<(&'static str, usize)>,
    /// Category of the list's entries, as configured.
    pub category: Option<String>,
    /// Why the list blocks, as configured.
    pub basis: crate::config::Basis,
    /// Legal reference of the list's entries, as configured.
    pub reference: Option<String>,
    /// Set when the file could not be read at all.
    pub error: Option<String>,
    pub load_time: Duration,
    /// Heap bytes of the compiled sets.
    pub bytes: usize,
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

/// One list, compiled. Immutable; a reload compiles a new one and swaps it in, so only one list
/// is ever held twice during an update.
#[derive(Debug)]
pub struct CompiledList {
    pub info: ListInfo,
    /// Names this list blocks (or, for RPZ, every QNAME trigger with its action).
    block: NameSet,
    /// Names this list exempts everywhere (an allow list, adblock `@@`, dnsmasq forwards).
    allow: NameSet,
    /// Adblock `$important` block rules: they win over exceptions.
    important: NameSet,
    /// Provenance of CSV feed entries, indexed by `Payload::extra`.
    provenance: Vec<Arc<Provenance>>,
    /// Per-rule actions, indexed by `Payload::extra` (RPZ and dnsmasq rules carry their own).
    actions: Vec<RuleAction>,
    /// RPZ CLIENT-IP triggers: (action index, line).
    client_ip: PrefixMap<(u32, u32)>,
    /// RPZ RESPONSE-IP triggers: (action index, line).
    response_ip: PrefixMap<(u32, u32)>,
    /// Replaces every rule's action (`policy` in the config).
    policy: Option<Action>,
    log_only: bool,
}

/// Interns rule actions: the five fixed ones share their index, local data is appended (runs of
/// identical local data, like an RPZ `name` / `*.name` pair, share one entry).
struct ActionTable(Vec<RuleAction>);

impl ActionTable {
    fn new() -> Self {
        Self(vec![
            RuleAction::NxDomain,
            RuleAction::NoData,
            RuleAction::Passthru,
            RuleAction::Drop,
            RuleAction::TcpOnly,
        ])
    }

    fn intern(&mut self, action: RuleAction) -> u32 {
        if let Some(i) = self.0[..5].iter().position(|a| *a == action) {
            return i as u32;
        }
        if self.0.len() > 5 && self.0.last() == Some(&action) {
            return (self.0.len() - 1) as u32;
        }
        self.0.push(action);
        (self.0.len() - 1) as u32
    }
}

impl CompiledList {
    /// Read, parse and compile one list. A file that cannot be read, or is refused as a whole
    /// (empty, HTML, not UTF-8), yields an empty list with `info.error` set; the other lists are
    /// unaffected.
    pub fn load(list: &ListConfig) -> Self {
        let started = std::time::Instant::now();
        let format = list.format.unwrap_or_else(|| detect_format(&list.path));
        let mut info = ListInfo {
            name: list.name.clone(),
            path: list.path.clone(),
            format,
            kind: list.kind,
            action: list.action,
            exact: list.exact,
            entries: 0,
            names: 0,
            rejected: 0,
            unsupported: 0,
            skipped_sample: Vec::new(),
            skipped_by_reason: Vec::new(),
            category: list.category.clone(),
            basis: list.basis,
            reference: list.reference.clone(),
            error: None,
            load_time: Duration::ZERO,
            bytes: 0,
        };
        // RPZ zones are consulted in order and PASSTHRU only stops later zones, so their
        // passthru rules stay in the ordered set with their action instead of becoming global
        // allow rules.
        let ordered = format == Format::Rpz;
        // Per-rule data: actions (RPZ, dnsmasq) or provenance (CSV), as `Payload::extra`.
        let has_extra = matches!(format, Format::Rpz | Format::Dnsmasq | Format::Csv);
        // Size the block set from the file's line count: one cheap pass over the file saves
        // growing a table of millions of slots (which briefly holds two copies).
        let (lines, bytes, lines_per_name) = count_lines(&list.path).unwrap_or((0, 0, 1.0));
        // An RPZ feed has several records per name (A and AAAA, `name` and `*.name`): the
        // start of the file says how many.
        let hint = match (list.kind, format) {
            (ListKind::Allow, _) => 0,
            (_, Format::Rpz) => (lines as f64 / lines_per_name) as usize,
            _ => lines,
        };
        // An eighth more: the estimate from the first block can fall a little short, and a
        // table that fills up doubles, rehashing every name (and `build` shrinks it again).
        let hint = hint + hint / 8;
        let mut block = NameSetBuilder::with_capacity(has_extra, hint, bytes + 4 * hint);
        let mut allow = NameSetBuilder::new(has_extra);
        let mut important = NameSetBuilder::new(false);
        let mut actions = ActionTable::new();
        let mut provenance: Vec<Arc<Provenance>> = Vec::new();
        let mut entries = 0usize;
        let parsed = std::fs::File::open(&list.path)
            .map_err(|e| format!("cannot read {}: {e}", list.path.display()))
            .and_then(|file| {
                // Rules go straight into the sets as they are parsed: only the compiled sets
                // are ever held, never the file or a `Rule` per name.
                let reader = std::io::BufReader::with_capacity(1 << 16, file);
                formats::parse_reader(format, reader, |rule| {
                    entries += 1;
                    let global_allow = list.kind == ListKind::Allow || (rule.allow && !ordered);
                    let target = if global_allow {
                        &mut allow
                    } else if rule.important {
                        &mut important
                    } else {
                        &mut block
                    };
                    let scope = if rule.subdomains_only {
                        Scope::Subdomains
                    } else if rule.exact || list.exact {
                        Scope::Exact
                    } else {
                        Scope::Subtree
                    };
                    let extra = match (rule.action, rule.provenance) {
                        (Some(a), _) if has_extra => Some(actions.intern(a)),
                        (None, Some(p)) if has_extra => {
                            // Consecutive rows of a feed share one provenance allocation.
                            if !provenance.last().is_some_and(|last| Arc::ptr_eq(last, &p)) {
                                provenance.push(p);
                            }
                            Some((provenance.len() - 1) as u32)
                        }
                        _ => None,
                    };
                    let payload = Payload {
                        line: rule.line,
                        extra,
                    };
                    target.insert(rule.name.as_bytes(), scope, payload);
                })
                .map_err(|e| format!("{}: {e}", list.path.display()))
            });
        let mut client_ip = PrefixMap::default();
        let mut response_ip = PrefixMap::default();
        match parsed {
            Ok(mut parsed) => {
                for r in std::mem::take(&mut parsed.ip_rules) {
                    let value = (actions.intern(r.action), r.line);
                    match r.kind {
                        IpTrigger::ClientIp => client_ip.insert(r.net, value),
                        IpTrigger::ResponseIp => response_ip.insert(r.net, value),
                    };
                }
                info.entries = entries;
                for s in &parsed.skipped {
                    let reason = skip_category(&s.reason);
                    match info
                        .skipped_by_reason
                        .iter_mut()
                        .find(|(r, _)| *r == reason)
                    {
                        Some((_, n)) => *n += 1,
                        None => info.skipped_by_reason.push((reason, 1)),
                    }
                }
                info.rejected = parsed.rejected().count();
                info.unsupported = parsed.skipped.len() - info.rejected;
                info.skipped_sample = parsed.skipped.into_iter().take(KEEP_SKIPPED).collect();
            }
            Err(e) => {
                // A file refused as a whole contributes nothing, not the part read before the
                // problem was found.
                info.error = Some(e);
                block = NameSetBuilder::new(false);
                allow = NameSetBuilder::new(false);
                important = NameSetBuilder::new(false);
            }
        }
        let (block, allow, important) = (block.build(), allow.build(), important.build());
        info.names =
            block.len() + allow.len() + important.len() + client_ip.len() + response_ip.len();
        info.bytes = block.heap_bytes() + allow.heap_bytes() + important.heap_bytes();
        info.load_time = started.elapsed();
        Self {
            info,
            block,
            allow,
            important,
            provenance,
            actions: actions.0,
            client_ip,
            response_ip,
            policy: list.policy,
            log_only: list.log_only,
        }
    }

    /// Matches are counted and logged, not applied.
    pub fn log_only(&self) -> bool {
        self.log_only
    }

    /// The provenance of a matched rule (CSV feeds), if it has one.
    pub fn provenance(&self, hit: &Hit) -> Option<&Provenance> {
        if self.info.format != Format::Csv {
            return None;
        }
        let i = hit.payload.extra? as usize;
        self.provenance.get(i).map(|p| p.as_ref())
    }
}

/// The metric label for a skip reason: a handful of fixed values, never the line's text.
pub fn skip_category(reason: &SkipReason) -> &'static str {
    match reason {
        SkipReason::Malformed(_) => "malformed",
        SkipReason::InvalidName(NameError::IpLiteral) => "ip_address",
        SkipReason::InvalidName(_) => "invalid_name",
        SkipReason::Unsupported(_) => "unsupported",
        SkipReason::Localhost => "localhost",
    }
}

/// The format of a list file that does not declare one, from its first 64 KiB.
fn detect_format(path: &std::path::Path) -> Format {
    use std::io::Read;
    let mut head = Vec::new();
    let _ = std::fs::File::open(path).and_then(|f| f.take(1 << 16).read_to_end(&mut head));
    let text = String::from_utf8_lossy(&head);
    formats::detect(&text)
}

/// A client group as the query path needs it.
#[derive(Debug, Clone)]
pub struct Group {
    pub name: String,
    /// Indices into [`Snapshot::lists`], in the order they are consulted.
    pub lists: Vec<usize>,
    /// Overrides each list's action for this group's clients.
    pub action: Option<Action>,
}

/// A compiled policy: the lists in the order they are consulted, and which apply to whom.
#[derive(Debug)]
pub struct Snapshot {
    pub lists: Vec<Arc<CompiledList>>,
    /// `groups[0]` is the default group.
    pub groups: Vec<Group>,
    pub group_map: GroupMap,
    /// Union of the lists' label-count masks.
    label_mask: u64,
    /// Unique per assembled snapshot: answers cached under one generation are not served under
    /// another, so a list update applies to the very next query.
    pub generation: u64,
    /// Some list has CLIENT-IP triggers: decisions then depend on the client address, not
    /// only on its group.
    pub client_rules: bool,
    /// Some list has RESPONSE-IP triggers: an answer's addresses can then decide.
    pub response_rules: bool,
}

/// Source of snapshot generations.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            lists: Vec::new(),
            groups: vec![Group {
                name: "default".into(),
                lists: Vec::new(),
                action: None,
            }],
            group_map: GroupMap::default(),
            label_mask: 0,
            generation: next_generation(),
            client_rules: false,
            response_rules: false,
        }
    }
}

/// What kind of trigger matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The query name (or a parent of it).
    QName,
    /// The client's address (RPZ CLIENT-IP).
    ClientIp,
    /// A CNAME target in the answer (CNAME cloaking), checked like a query name.
    CnameTarget,
    /// An address in the answer (RPZ RESPONSE-IP).
    ResponseIp,
}

/// A rule that matched: which list, which trigger, and the rule's scope, line and matched
/// suffix (for address triggers, `hit.suffix_len` is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    /// Index into [`Snapshot::lists`].
    pub list: usize,
    pub hit: Hit,
    pub trigger: Trigger,
}

/// The policy's verdict on one question (or one answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No rule applies.
    Pass,
    /// An allow rule applies (it wins over any block rule).
    Allowed(Match),
    /// A rule says to rewrite the answer: the first list (in order) that has one.
    Blocked(Match),
    /// An RPZ PASSTHRU rule applies: answer normally, consult no later list.
    Passthru(Match),
}

/// A decision, plus the first match of a log-only list met on the way (reported, not applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evaluation {
    pub decision: Decision,
    pub logged: Option<Match>,
}

/// How to answer, after the list's policy, the rule's own action and the group's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'a> {
    BlockAddress,
    NxDomain,
    NoData,
    Refused,
    Drop,
    TcpOnly,
    Passthru,
    /// Answer with these records (RPZ local data, a CNAME rewrite).
    Local(&'a [hickory_proto::rr::RData]),
}

impl From<Action> for Verdict<'_> {
    fn from(a: Action) -> Self {
        match a {
            Action::BlockAddress => Verdict::BlockAddress,
            Action::NxDomain => Verdict::NxDomain,
            Action::NoData => Verdict::NoData,
            Action::Refused => Verdict::Refused,
            Action::Drop => Verdict::Drop,
            Action::TcpOnly => Verdict::TcpOnly,
            Action::Passthru => Verdict::Passthru,
        }
    }
}

impl<'a> From<&'a RuleAction> for Verdict<'a> {
    fn from(a: &'a RuleAction) -> Self {
        match a {
            RuleAction::NxDomain => Verdict::NxDomain,
            RuleAction::NoData => Verdict::NoData,
            RuleAction::Passthru => Verdict::Passthru,
            RuleAction::Drop => Verdict::Drop,
            RuleAction::TcpOnly => Verdict::TcpOnly,
            RuleAction::LocalData(records) => Verdict::Local(&records[..]),
        }
    }
}

impl Snapshot {
    /// A snapshot with no lists.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Read and compile the configured lists, one at a time. Without groups, every client is in
    /// the default group, which consults every list.
    pub fn load(lists: &[ListConfig], groups: &[GroupConfig]) -> Self {
        let compiled = lists
            .iter()
            .map(|l| Arc::new(CompiledList::load(l)))
            .collect();
        Self::assemble(compiled, groups)
    }

    /// Put compiled lists and groups together.
    pub fn assemble(lists: Vec<Arc<CompiledList>>, groups: &[GroupConfig]) -> Self {
        let mut group_map = GroupMap::default();
        let mut out: Vec<Group> = Vec::new();
        for (id, g) in groups.iter().enumerate() {
            for net in &g.networks {
                group_map.insert(*net, id);
            }
            out.push(Group {
                name: g.name.clone(),
                lists: g
                    .lists
                    .iter()
                    .copied()
                    .filter(|&i| i < lists.len())
                    .collect(),
                action: g.action,
            });
        }
        if out.is_empty() {
            out.push(Group {
                name: "default".into(),
                lists: (0..lists.len()).collect(),
                action: None,
            });
        }
        let label_mask = lists.iter().fold(0, |m, l| {
            m | l.block.label_mask() | l.allow.label_mask() | l.important.label_mask()
        });
        let client_rules = lists.iter().any(|l| !l.client_ip.is_empty());
        let response_rules = lists.iter().any(|l| !l.response_ip.is_empty());
        Self {
            lists,
            groups: out,
            group_map,
            label_mask,
            generation: next_generation(),
            client_rules,
            response_rules,
        }
    }

    /// The group of a client address.
    pub fn group_of(&self, client: std::net::IpAddr) -> GroupId {
        self.group_map.group_of(client)
    }

    /// Distinct names in the block and allow sets of all lists.
    pub fn sizes(&self) -> (usize, usize) {
        self.lists
            .iter()
            .fold((0, 0), |(b, a), l| (b + l.block.len(), a + l.allow.len()))
    }

    /// Heap bytes held by the compiled sets.
    pub fn heap_bytes(&self) -> usize {
        self.lists.iter().map(|l| l.info.bytes).sum()
    }

    /// The list a match came from.
    pub fn list(&self, m: Match) -> Option<&ListInfo> {
        self.lists.get(m.list).map(|l| &l.info)
    }

    /// The category of a match: the CSV entry's own, else the list's (no allocation: the UDP
    /// fast path asks for it to pick a category's block address).
    pub fn category(&self, m: Match) -> Option<&str> {
        let l = self.lists.get(m.list)?;
        l.provenance(&m.hit)
            .and_then(|p| p.category.as_deref())
            .or(l.info.category.as_deref())
            .filter(|c| !c.is_empty())
    }

    /// The lists of a group, in order (the default group's for an unknown id).
    fn group_lists(&self, group: GroupId) -> &[usize] {
        self.groups
            .get(group)
            .or_else(|| self.groups.first())
            .map_or(&[], |g| g.lists.as_slice())
    }

    /// Split a name for lookups, hashing only the suffixes some list can match.
    pub fn prepare<'a>(&self, name: &'a [u8]) -> PreparedName<'a> {
        PreparedName::with_mask(name, self.label_mask)
    }

    /// Decide for a name in canonical form (see [`QueryName`]) for a client group.
    pub fn decide(&self, name: &[u8], group: GroupId) -> Decision {
        self.evaluate(&self.prepare(name), None, group).decision
    }

    /// The question phase: any allow rule of the group's lists wins; otherwise the lists are
    /// consulted in order and the first with a matching trigger decides (within a list a
    /// CLIENT-IP trigger comes before a QNAME trigger, as in the RPZ specification). Matches of
    /// log-only lists are reported in `logged` and evaluation goes on.
    pub fn evaluate(
        &self,
        q: &PreparedName<'_>,
        client: Option<std::net::IpAddr>,
        group: GroupId,
    ) -> Evaluation {
        let lists = self.group_lists(group);
        // Adblock `$important` rules beat exceptions; everything else yields to allow rules.
        for &list in lists {
            let l = &self.lists[list];
            if !l.log_only
                && let Some(hit) = l.important.lookup(q)
            {
                let m = Match {
                    list,
                    hit,
                    trigger: Trigger::QName,
                };
                return Evaluation {
                    decision: self.classify(m, group),
                    logged: None,
                };
            }
        }
        for &list in lists {
            if let Some(hit) = self.lists[list].allow.lookup(q) {
                let m = Match {
                    list,
                    hit,
                    trigger: Trigger::QName,
                };
                return Evaluation {
                    decision: Decision::Allowed(m),
                    logged: None,
                };
            }
        }
        self.first_in_order(group, |list, l| {
            let by_client = client
                .and_then(|ip| l.client_ip.get(ip))
                .map(|&(action, line)| Match {
                    list,
                    hit: address_hit(action, line),
                    trigger: Trigger::ClientIp,
                });
            by_client.or_else(|| {
                l.block.lookup(q).map(|hit| Match {
                    list,
                    hit,
                    trigger: Trigger::QName,
                })
            })
        })
    }

    /// The group's lists in order: the first whose `find` matches decides, except that a
    /// log-only list's match is only reported (the first one, in `logged`) and the walk goes on.
    fn first_in_order(
        &self,
        group: GroupId,
        mut find: impl FnMut(usize, &CompiledList) -> Option<Match>,
    ) -> Evaluation {
        let mut logged = None;
        for &list in self.group_lists(group) {
            let l = &self.lists[list];
            let Some(m) = find(list, l) else { continue };
            if l.log_only {
                logged = logged.or(Some(m));
                continue;
            }
            return Evaluation {
                decision: self.classify(m, group),
                logged,
            };
        }
        Evaluation {
            decision: Decision::Pass,
            logged,
        }
    }

    /// The answer phase, for a question that passed: every CNAME target in the answer is checked
    /// like a query name, every A/AAAA address against RESPONSE-IP triggers; lists in order, the
    /// first with a match decides.
    pub fn evaluate_answer(
        &self,
        answers: &[hickory_proto::rr::Record],
        group: GroupId,
    ) -> Evaluation {
        use hickory_proto::rr::RData;
        self.first_in_order(group, |list, l| {
            answers.iter().find_map(|r| match &r.data {
                RData::CNAME(target) if !l.block.is_empty() => {
                    let canonical = QueryName::new(&target.0);
                    let q = self.prepare(canonical.as_bytes());
                    l.block.lookup(&q).map(|hit| Match {
                        list,
                        hit,
                        trigger: Trigger::CnameTarget,
                    })
                }
                RData::A(a) if !l.response_ip.is_empty() => l
                    .response_ip
                    .get(std::net::IpAddr::V4(a.0))
                    .map(|&(action, line)| Match {
                        list,
                        hit: address_hit(action, line),
                        trigger: Trigger::ResponseIp,
                    }),
                RData::AAAA(a) if !l.response_ip.is_empty() => l
                    .response_ip
                    .get(std::net::IpAddr::V6(a.0))
                    .map(|&(action, line)| Match {
                        list,
                        hit: address_hit(action, line),
                        trigger: Trigger::ResponseIp,
                    }),
                _ => None,
            })
        })
    }

    fn classify(&self, m: Match, group: GroupId) -> Decision {
        match self.verdict(m, group) {
            Verdict::Passthru => Decision::Passthru(m),
            _ => Decision::Blocked(m),
        }
    }

    /// How to answer for a match: the list's `policy` if set, else the rule's own action, else
    /// the list's `action`; a group's `action` then replaces anything but PASSTHRU.
    pub fn verdict(&self, m: Match, group: GroupId) -> Verdict<'_> {
        let Some(l) = self.lists.get(m.list) else {
            return Verdict::BlockAddress;
        };
        // `extra` is an action index for RPZ and dnsmasq lists and for address triggers, a
        // provenance index for CSV feeds.
        let own = m
            .hit
            .payload
            .extra
            .filter(|_| {
                l.info.format != Format::Csv
                    || matches!(m.trigger, Trigger::ClientIp | Trigger::ResponseIp)
            })
            .and_then(|i| l.actions.get(i as usize))
            .map(Verdict::from);
        let base = l
            .policy
            .map(Verdict::from)
            .or(own)
            .unwrap_or(Verdict::from(l.info.action));
        if base == Verdict::Passthru {
            return base;
        }
        match self.groups.get(group).and_then(|g| g.action) {
            Some(a) => Verdict::from(a),
            None => base,
        }
    }

    /// The block rule a name would hit if no allow rule applied (for explanations).
    pub fn block_match(&self, name: &[u8], group: GroupId) -> Option<Match> {
        let q = self.prepare(name);
        self.group_lists(group).iter().find_map(|&list| {
            self.lists[list].block.lookup(&q).map(|hit| Match {
                list,
                hit,
                trigger: Trigger::QName,
            })
        })
    }
}

/// The `Hit` of an address trigger: no name, exact scope, the trigger's action and line.
fn address_hit(action: u32, line: u32) -> Hit {
    Hit {
        scope: Scope::Exact,
        payload: Payload {
            line,
            extra: Some(action),
        },
        suffix_len: 0,
    }
}

/// Lines and bytes of a file, read in blocks.
/// Lines and bytes of a file, and how many lines there are per owner name in its first block
/// (a zone file's records of one name are adjacent: `name A`, `name AAAA`, `*.name A`, …).
fn count_lines(path: &std::path::Path) -> std::io::Result<(usize, usize, f64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut bytes) = (0, 0);
    let mut per_name = None;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((lines + 1, bytes, per_name.unwrap_or(1.0)));
        }
        if per_name.is_none() {
            per_name = Some(lines_per_owner(&buf[..n]));
        }
        bytes += n;
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count();
    }
}

/// Lines per distinct owner in a block of a zone file, ignoring `*.` and continuation lines.
fn lines_per_owner(block: &[u8]) -> f64 {
    let (mut lines, mut owners) = (0usize, 0usize);
    let mut last: &[u8] = &[];
    for line in block.split(|&b| b == b'\n') {
        let owner = line
            .split(|b| b.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        let owner = owner.strip_prefix(b"*.").unwrap_or(owner);
        if owner.is_empty() || owner.starts_with(b"$") || owner.starts_with(b";") {
            continue;
        }
        lines += 1;
        if !owner.eq_ignore_ascii_case(last) {
            owners += 1;
            last = owner;
        }
    }
    if owners == 0 {
        1.0
    } else {
        (lines as f64 / owners as f64).max(1.0)
    }
}

/// A query name in the canonical form the name sets use: lower-case ASCII labels joined by
/// '.', no trailing dot, on the stack. A '.' byte inside a label (legal on the wire, written
/// `\.` in text) is replaced by NUL so it can never fake a label boundary.
pub struct QueryName {
    buf: [u8; 256],
    len: usize,
}

impl QueryName {
    #[inline]
    pub fn new(name: &Name) -> Self {
        let mut buf = [0u8; 256];
        let mut len = 0;
        for label in name.iter() {
            if len != 0 && len < buf.len() {
                buf[len] = b'.';
                len += 1;
            }
            // Whole-label copies: names are at most 255 bytes on the wire, so this always
            // fits; the bound is kept for a hand-built `Name`.
            let take = label.len().min(buf.len() - len);
            let dst = &mut buf[len..len + take];
            dst.copy_from_slice(&label[..take]);
            dst.make_ascii_lowercase();
            if dst.contains(&b'.') {
                dst.iter_mut().filter(|b| **b == b'.').for_each(|b| *b = 0);
            }
            len += take;
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

    fn list_file(
        dir: &std::path::Path,
        name: &str,
        bytes: &[u8],
        format: formats::Format,
    ) -> ListConfig {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        ListConfig::block(name, path, Some(format))
    }

    #[test]
    fn important_beats_exceptions_and_csv_keeps_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let block = list_file(
            dir.path(),
            "a.txt",
            b"||ads.example^$important\n||b.example^\n@@||ok.b.example^\n",
            Format::Adblock,
        );
        let mut allow = list_file(
            dir.path(),
            "allow.txt",
            b"ads.example\nb.example\n",
            Format::Plain,
        );
        allow.kind = ListKind::Allow;
        let feed = list_file(
            dir.path(),
            "feed.csv",
            b"domain,category,reference,added\ncasino.example,gambling,Decision 123/QD,2026-01-02\n",
            Format::Csv,
        );
        let snap = Snapshot::load(&[block, allow, feed], &[]);
        assert!(
            matches!(snap.decide(b"x.ads.example", 0), Decision::Blocked(_)),
            "$important wins"
        );
        assert!(
            matches!(snap.decide(b"b.example", 0), Decision::Allowed(_)),
            "allow wins"
        );
        assert!(
            matches!(snap.decide(b"ok.b.example", 0), Decision::Allowed(_)),
            "@@ exception"
        );
        let Decision::Blocked(m) = snap.decide(b"www.casino.example", 0) else {
            panic!("feed entry blocks");
        };
        let p = snap.lists[m.list]
            .provenance(&m.hit)
            .expect("provenance kept");
        assert_eq!(p.category.as_deref(), Some("gambling"));
        assert_eq!(p.reference.as_deref(), Some("Decision 123/QD"));
    }

    #[test]
    fn skipped_lines_are_counted_by_reason() {
        let dir = tempfile::tempdir().unwrap();
        let l = CompiledList::load(&list_file(
            dir.path(),
            "h.txt",
            b"127.0.0.1 localhost\nnot an address here\n0.0.0.0 bad..name\n0.0.0.0 10.1.2.3\n0.0.0.0 ok.example\n",
            Format::Hosts,
        ));
        let mut got = l.info.skipped_by_reason.clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("invalid_name", 1),
                ("ip_address", 1),
                ("localhost", 1),
                ("malformed", 1)
            ]
        );
    }

    #[test]
    fn whole_file_refusals_load_nothing_and_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 4] = [
            ("empty.txt", b"", "empty"),
            ("blank.txt", b"  \n\n\t\n", "empty"),
            (
                "page.txt",
                b"<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>\n",
                "HTML",
            ),
            (
                "latin1.txt",
                b"good.example\nbad\xe9.example\nmore.example\n",
                "line 2",
            ),
        ];
        for (name, bytes, want) in cases {
            let l = CompiledList::load(&list_file(dir.path(), name, bytes, formats::Format::Plain));
            let error = l.info.error.clone().unwrap_or_default();
            assert!(error.contains(want), "{name}: {error}");
            assert!(
                error.contains(name),
                "{name}: the message names the file: {error}"
            );
            assert_eq!(
                l.info.names, 0,
                "{name}: nothing from a refused file is used"
            );
            let q = PreparedName::new(b"good.example");
            assert!(l.block.lookup(&q).is_none());
        }
        // Only comments: a list that is empty today, not an error.
        let l = CompiledList::load(&list_file(
            dir.path(),
            "c.txt",
            b"# nothing yet\n",
            formats::Format::Plain,
        ));
        assert!(l.info.error.is_none());
        let l = CompiledList::load(&ListConfig {
            path: dir.path().join("missing.txt"),
            ..list_file(dir.path(), "x.txt", b"", formats::Format::Plain)
        });
        assert!(l.info.error.unwrap().contains("missing.txt"));
    }

    #[test]
    fn bom_crlf_and_scopes_through_the_file_path() {
        let dir = tempfile::tempdir().unwrap();
        let l = CompiledList::load(&list_file(
            dir.path(),
            "w.txt",
            b"\xef\xbb\xbf*.wild.example\r\nwhole.example\r\nlast.example",
            formats::Format::Wildcard,
        ));
        assert!(l.info.error.is_none(), "{:?}", l.info.error);
        let look = |n: &str| {
            l.block
                .lookup(&PreparedName::new(n.as_bytes()))
                .map(|h| (h.scope, h.payload.line))
        };
        assert_eq!(look("wild.example"), None);
        assert_eq!(look("a.wild.example"), Some((Scope::Subdomains, 1)));
        assert_eq!(look("whole.example"), Some((Scope::Subtree, 2)));
        assert_eq!(look("x.last.example"), Some((Scope::Subtree, 3)));
    }

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
