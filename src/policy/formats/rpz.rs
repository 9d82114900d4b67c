//! DNS Response Policy Zones in master-file syntax (RFC 1035 §5.1; RPZ as in
//! draft-vixie-dnsop-dns-rpz). A record's owner is the trigger and its data the action.
//!
//! Master-file syntax read here: `;` comments (not inside quotes), records continued across
//! lines inside `( … )`, a line that starts with blank space reusing the previous owner, TTL and
//! class in either order (both optional) before the type, `@` for the origin, owner names
//! relative to the origin or absolute (ending in `.`), `$ORIGIN` and `$TTL`. `$INCLUDE` is
//! refused with a skipped entry: a list never makes Rampart open another file.
//!
//! The zone's own name (its apex) is taken from the first absolute `$ORIGIN`, or from an
//! absolute SOA owner seen before any. Without either, relative owners are read relative to the
//! zone and an absolute owner is the trigger name itself, which is how published lists without
//! a zone name mean it. The SOA and NS records at the apex describe the zone, not policy: the
//! SOA serial is kept ([`ParsedList::serial`]) and both are otherwise ignored.
//!
//! Triggers, from the owner relative to the apex:
//! * `name` (exact: this name only) and `*.name` (its subdomains, not `name`): QNAME triggers.
//!   A `*` anywhere else (`vg.no.*`) is a literal label no query carries: reported invalid.
//!   An owner that looks like an IPv4 address (`1.14.61.188`) is a valid QNAME trigger for
//!   that name, and is also listed in [`ParsedList::ip_literals`].
//! * `….rpz-client-ip` and `….rpz-ip`: client and response address triggers, written in RPZ's
//!   reversed notation (`24.0.2.0.192.rpz-ip` = 192.0.2.0/24; IPv6 words reversed with `zz` for
//!   the longest zero run), turned into [`IpRule`]s.
//! * `….rpz-nsdname` and `….rpz-nsip` (name-server triggers): reported as unsupported.
//!
//! Actions, from the record: `CNAME .` NXDOMAIN, `CNAME *.` NODATA, `CNAME rpz-passthru.`
//! PASSTHRU (an allow rule), `CNAME rpz-drop.` DROP, `CNAME rpz-tcp-only.` TCP-ONLY, any other
//! CNAME a rewrite to that name, and any other type local data, parsed by hickory. Adjacent
//! records of one owner (`x A …` then `x AAAA …`) become one rule with all their data; the
//! compiler merges owners whose records are not adjacent.
//!
//! The zone is read one line at a time ([`Zone::line`]), so a zone can be streamed from a file;
//! the one rule that may still gain data is held back until the next record.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_proto::rr::{
    Name, RData, RecordType,
    rdata::{CNAME, MX, PTR, SRV},
};
use ipnet::IpNet;

use super::{IpRule, IpTrigger, ParsedList, Rule, RuleAction, Shape, SkipReason, clip};
use crate::policy::name::{self, NameError};

/// Records with more words than this (long TXT data) keep their words on the heap.
const STACK_TOKENS: usize = 16;

/// The words of one record; on the stack for the usual record.
struct Tokens<'a> {
    fixed: [&'a str; STACK_TOKENS],
    len: usize,
    spill: Vec<&'a str>,
}

impl<'a> Tokens<'a> {
    fn new() -> Self {
        Self {
            fixed: [""; STACK_TOKENS],
            len: 0,
            spill: Vec::new(),
        }
    }

    fn push(&mut self, token: &'a str) {
        if self.spill.is_empty() {
            if let Some(slot) = self.fixed.get_mut(self.len) {
                *slot = token;
                self.len += 1;
                return;
            }
            self.spill.extend_from_slice(&self.fixed);
        }
        self.spill.push(token);
    }

    fn as_slice(&self) -> &[&'a str] {
        if self.spill.is_empty() {
            self.fixed.get(..self.len).unwrap_or_default()
        } else {
            &self.spill
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Appends the words of one line to `tokens`, up to a `;` comment. Parentheses only group
/// lines (`depth` carries across lines); a quoted string is one token, quotes included, so
/// the record data can be handed to hickory as written.
fn tokenize<'a>(
    line: &'a str,
    depth: &mut u32,
    tokens: &mut Tokens<'a>,
) -> Result<(), &'static str> {
    let bytes = line.as_bytes();
    let mut i = 0;
    let mut result = Ok(());
    // Every index pushed is at an ASCII byte, a character boundary or the end, so `get`
    // always succeeds.
    let mut push = |from: usize, to: usize| {
        if let Some(token) = line.get(from..to).filter(|t| !t.is_empty()) {
            tokens.push(token);
        }
    };
    while let Some(&b) = bytes.get(i) {
        match b {
            b';' => break,
            b' ' | b'\t' | b'\r' => i += 1,
            b'(' => {
                *depth = depth.saturating_add(1);
                i += 1;
            }
            b')' => {
                if *depth == 0 {
                    result = Err("')' without a matching '('");
                } else {
                    *depth -= 1;
                }
                i += 1;
            }
            b'"' => {
                let from = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => {
                            return Err("a quoted string is not closed on its line");
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                push(from, i.min(bytes.len()));
            }
            _ => {
                let from = i;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b' ' | b'\t' | b'\r' | b';' | b'(' | b')' | b'"' => break,
                        // An escaped character (`\;`, `\032`) belongs to the word.
                        b'\\' => i += 2,
                        _ => i += 1,
                    }
                }
                i = i.min(bytes.len());
                // `\` before a multi-byte character would leave `i` inside it.
                while !line.is_char_boundary(i) {
                    i += 1;
                }
                push(from, i);
            }
        }
    }
    result
}

/// The current `$ORIGIN`.
#[derive(Debug, Clone)]
struct Origin {
    /// Lower-case, no trailing dot; relative to the apex unless `fqdn` is set.
    name: String,
    /// The absolute origin, to complete relative names in record data.
    fqdn: Option<Name>,
}

/// An owner name after `@`, the origin and the trailing dot are resolved.
#[derive(Debug, Clone)]
struct Owner<'a> {
    /// As written (case kept), no trailing dot.
    name: Cow<'a, str>,
    absolute: bool,
    /// `name` is relative to the apex already: a relative owner under an `$ORIGIN` that is
    /// the apex (the shape of nearly every line of a big feed), so it is never joined to the
    /// origin only to have the apex stripped off again.
    under_apex: bool,
}

/// A record continued over lines by `(`: its words so far, each followed by `\n` (no word
/// holds one), so nothing borrows from lines already read.
#[derive(Debug)]
struct OpenRecord {
    line: u32,
    text: String,
    blank_start: bool,
    words: String,
    broken: Option<&'static str>,
}

/// The state of a zone being read line by line.
#[derive(Debug, Default)]
pub(super) struct Zone {
    /// `None`: the zone's apex itself, name unknown.
    origin: Option<Origin>,
    /// The zone's name, lower-case without the dot, once known ("" for the root).
    apex: Option<String>,
    /// The last record's owner (as written, no trailing dot), whether it is absolute and
    /// whether it is relative to the apex; the buffer is reused from record to record.
    last_owner: Option<(String, bool, bool)>,
    /// The last A and AAAA record data parsed (text, data as a shared action): feeds repeat
    /// the same block addresses on every line.
    last_address: [Option<(String, Arc<[RData]>)>; 2],
    /// The last merge of local data (before, record added, after): the next owner's records
    /// usually merge the same way, and then share the result instead of building it again.
    last_merge: Option<MergeMemo>,
    soa_seen: bool,
    /// Parentheses open at the end of the last line.
    depth: u32,
    open: Option<OpenRecord>,
    /// The last QNAME rule, held back until the next record shows whether it adds data to it.
    pending: Option<Rule>,
    /// The owner of `pending` as written (`*.` included): the next record of the same owner
    /// (AAAA after A) joins it without normalizing the name again.
    pending_raw: String,
    /// Tests: read every line the general way, to compare with [`Zone::simple_record`].
    general_only: bool,
}

/// What the owner of a record is, relative to the apex.
enum Trigger<'o> {
    Apex,
    Qname(&'o str),
    Ip(IpTrigger, &'o str),
    Unsupported(&'static str),
}

impl Zone {
    /// `raw` is one line without its line ending (BOM already removed from the first).
    pub(super) fn line(&mut self, raw: &str, line: u32, list: &mut ParsedList) {
        if self.open.is_none()
            && self.depth == 0
            && !self.general_only
            && self.simple_record(raw, line, list)
        {
            return;
        }
        let mut tokens = Tokens::new();
        let result = tokenize(raw, &mut self.depth, &mut tokens);
        if let Some(open) = self.open.as_mut() {
            for token in tokens.as_slice() {
                open.words.push_str(token);
                open.words.push('\n');
            }
            if let Err(why) = result {
                open.broken.get_or_insert(why);
            }
            if self.depth > 0 {
                return;
            }
            if let Some(open) = self.open.take() {
                let mut joined = Tokens::new();
                for word in open.words.split('\n').filter(|w| !w.is_empty()) {
                    joined.push(word);
                }
                let (line, text) = (open.line, open.text.as_str());
                match open.broken {
                    Some(why) => list.skip(line, SkipReason::Malformed(why.into()), text),
                    None => self.record(joined.as_slice(), line, open.blank_start, text, list),
                }
            }
            return;
        }
        let broken = result.err();
        if tokens.is_empty() && self.depth == 0 && broken.is_none() {
            return;
        }
        let blank_start = raw.starts_with([' ', '\t']);
        let text = raw.trim();
        if self.depth > 0 {
            let mut words = String::with_capacity(raw.len());
            for token in tokens.as_slice() {
                words.push_str(token);
                words.push('\n');
            }
            self.open = Some(OpenRecord {
                line,
                text: clip(text).to_owned(),
                blank_start,
                words,
                broken,
            });
            return;
        }
        match broken {
            Some(why) => list.skip(line, SkipReason::Malformed(why.into()), text),
            None => self.record(tokens.as_slice(), line, blank_start, text, list),
        }
    }

    /// The shape of nearly every line of a big feed, read in one pass: exactly `owner type data`
    /// with the type A, AAAA or CNAME, the owner relative to an `$ORIGIN` that is the zone's
    /// apex and no TTL, class, comment, quote, escape, parenthesis or non-ASCII byte. It goes
    /// straight to the owner's rule, skipping the general tokenizer, owner resolution and
    /// trigger classification, which cost more than the rule itself (4M-record feed: see
    /// `benches/time_to_ready.sh`). Returns false, having changed nothing a later line can
    /// see, for any other line or any record data it cannot use; the general path then reads
    /// that line and reports what is wrong with it in the same words as ever.
    fn simple_record(&mut self, raw: &str, line: u32, list: &mut ParsedList) -> bool {
        match (&self.origin, &self.apex) {
            (Some(origin), Some(apex))
                if origin.fqdn.is_some() && !origin.name.is_empty() && origin.name == *apex => {}
            _ => return false,
        }
        let bytes = raw.as_bytes();
        if matches!(bytes.first(), None | Some(b' ' | b'\t' | b'$')) {
            return false;
        }
        if has_special(bytes) {
            return false;
        }
        // Now a byte up to ' ' is blank space (space, tab, CR) and anything above is a word's.
        let mut bounds = [(0usize, 0usize); 3];
        let mut count = 0;
        let mut i = 0;
        loop {
            while bytes.get(i).is_some_and(|&b| b <= b' ') {
                i += 1;
            }
            if i >= bytes.len() {
                break;
            }
            let from = i;
            i = word_end(bytes, i);
            let Some(slot) = bounds.get_mut(count) else {
                return false;
            };
            *slot = (from, i);
            count += 1;
        }
        // Boundaries are at ASCII bytes.
        let word = |(from, to): (usize, usize)| raw.get(from..to).unwrap_or_default();
        let (owner, rtype, data) = (word(bounds[0]), word(bounds[1]), word(bounds[2]));
        if count != 3 || owner == "@" || owner.ends_with('.') {
            return false;
        }
        // `rpz-ip`, `rpz-client-ip`, `rpz-nsip`, `rpz-nsdname` and look-alikes: general path.
        let last_label = match owner.bytes().rposition(|b| b == b'.') {
            Some(dot) => owner.get(dot + 1..).unwrap_or_default(),
            None => owner,
        };
        if last_label
            .get(..4)
            .is_some_and(|l| l.eq_ignore_ascii_case("rpz-"))
        {
            return false;
        }
        let rtype = if rtype.eq_ignore_ascii_case("A") {
            RecordType::A
        } else if rtype.eq_ignore_ascii_case("AAAA") {
            RecordType::AAAA
        } else if rtype.eq_ignore_ascii_case("CNAME") {
            RecordType::CNAME
        } else {
            return false;
        };
        let Ok(action) = self.action(rtype, &[data]) else {
            return false;
        };
        // As `record` does for an owner written out: the next line may start with blank space.
        let (name, absolute, under_apex) = self.last_owner.get_or_insert_with(Default::default);
        name.clear();
        name.push_str(owner);
        *absolute = true;
        *under_apex = true;
        self.qname_rule(owner, action, line, raw.trim_end(), list);
        true
    }

    /// After the last line: a record still open is reported, a rule held back is handed over.
    pub(super) fn finish(mut self, list: &mut ParsedList) {
        if let Some(open) = self.open.take() {
            list.skip(
                open.line,
                SkipReason::Malformed("'(' not closed before the end of the file".into()),
                &open.text,
            );
        }
        if let Some(rule) = self.pending.take() {
            list.rules.push(rule);
        }
    }

    fn record(
        &mut self,
        tokens: &[&str],
        line: u32,
        blank_start: bool,
        text: &str,
        list: &mut ParsedList,
    ) {
        let (owner_token, rest) = match tokens.split_first() {
            Some((first, rest)) if !blank_start => (Some(*first), rest),
            _ => (None, tokens),
        };
        if let Some(directive) = owner_token.filter(|t| t.starts_with('$')) {
            self.directive(directive, rest, line, text, list);
            return;
        }
        match owner_token {
            Some(token) => {
                let owner = self.resolve(token);
                let (name, absolute, under_apex) =
                    self.last_owner.get_or_insert_with(Default::default);
                name.clear();
                name.push_str(&owner.name);
                *absolute = owner.absolute;
                *under_apex = owner.under_apex;
                self.owned_record(&owner, rest, line, text, list);
            }
            // A line that starts with blank space has the previous record's owner.
            None => match self.last_owner.take() {
                Some(saved) => {
                    let owner = Owner {
                        name: Cow::Borrowed(&saved.0),
                        absolute: saved.1,
                        under_apex: saved.2,
                    };
                    self.owned_record(&owner, rest, line, text, list);
                    self.last_owner = Some(saved);
                }
                None => {
                    let why = "the line starts with blank space (same owner as the record before) \
                               but there is no record before";
                    list.skip(line, SkipReason::Malformed(why.into()), text);
                }
            },
        }
    }

    /// A record whose owner is known: `rest` is `[ttl] [class] type rdata…`.
    fn owned_record(
        &mut self,
        owner: &Owner<'_>,
        rest: &[&str],
        line: u32,
        text: &str,
        list: &mut ParsedList,
    ) {
        let Some((rtype, rdata)) = split_type(rest) else {
            let why = "no record type after the owner, TTL and class (expected e.g. CNAME or A)";
            list.skip(line, SkipReason::Malformed(why.into()), text);
            return;
        };
        if rtype == RecordType::SOA && owner.absolute && self.apex.is_none() {
            self.apex = Some(owner.name.to_ascii_lowercase());
        }
        let trigger = match self.trigger(owner) {
            Ok(trigger) => trigger,
            Err(why) => {
                list.skip(line, SkipReason::Malformed(why.into()), text);
                return;
            }
        };
        match (trigger, rtype) {
            (Trigger::Apex, RecordType::SOA) => self.soa(rdata, line, text, list),
            (Trigger::Apex, RecordType::NS) => {}
            (Trigger::Apex, _) => {
                let why = "a record at the zone apex is not a policy trigger";
                list.skip(line, SkipReason::Malformed(why.into()), text);
            }
            (_, RecordType::SOA) => {
                let why = "SOA record below the zone apex";
                list.skip(line, SkipReason::Malformed(why.into()), text);
            }
            (_, RecordType::NS) => list.skip(
                line,
                SkipReason::Unsupported("NS record below the zone apex (a delegation)"),
                text,
            ),
            (Trigger::Unsupported(what), _) => list.skip(line, SkipReason::Unsupported(what), text),
            (Trigger::Qname(qname), _) => match self.action(rtype, rdata) {
                Ok(action) => self.qname_rule(qname, action, line, text, list),
                Err(why) => list.skip(line, SkipReason::Malformed(why.into()), text),
            },
            (Trigger::Ip(kind, address), _) => {
                let rule = parse_rpz_ip(address).and_then(|net| {
                    let action = self.action(rtype, rdata)?;
                    Ok(IpRule {
                        net,
                        kind,
                        action,
                        line,
                    })
                });
                match rule {
                    Ok(rule) => push_ip_rule(rule, text, list),
                    Err(why) => list.skip(line, SkipReason::Malformed(why.into()), text),
                }
            }
        }
    }

    fn directive(
        &mut self,
        directive: &str,
        args: &[&str],
        line: u32,
        text: &str,
        list: &mut ParsedList,
    ) {
        if directive.eq_ignore_ascii_case("$INCLUDE") {
            list.skip(
                line,
                SkipReason::Unsupported(
                    "$INCLUDE: a list never makes Rampart open another file; the included records are missing",
                ),
                text,
            );
            return;
        }
        let is_origin = directive.eq_ignore_ascii_case("$ORIGIN");
        if !is_origin && !directive.eq_ignore_ascii_case("$TTL") {
            list.skip(
                line,
                SkipReason::Unsupported("master-file directive other than $ORIGIN and $TTL"),
                text,
            );
            return;
        }
        let [value] = args else {
            let why = "$ORIGIN and $TTL take exactly one value";
            list.skip(line, SkipReason::Malformed(why.into()), text);
            return;
        };
        if !is_origin {
            // Answers use the policy TTL, so the value is checked but not kept.
            if !is_ttl(value) {
                let why = "$TTL value is not a number of seconds (units s, m, h, d, w allowed)";
                list.skip(line, SkipReason::Malformed(why.into()), text);
            }
            return;
        }
        let owner = self.resolve(value);
        let lower = owner.name.to_ascii_lowercase();
        let fqdn = if owner.absolute {
            match Name::from_ascii(format!("{lower}.")) {
                Ok(name) => Some(name),
                Err(_) => {
                    let why = "$ORIGIN is not a valid domain name";
                    list.skip(line, SkipReason::Malformed(why.into()), text);
                    return;
                }
            }
        } else {
            None
        };
        if owner.absolute && self.apex.is_none() {
            self.apex = Some(lower.clone());
        }
        self.origin = Some(Origin { name: lower, fqdn });
    }

    /// Resolves `@`, the origin and the trailing dot of a name as written.
    fn resolve<'a>(&self, token: &'a str) -> Owner<'a> {
        let (origin, origin_absolute) = match &self.origin {
            Some(origin) => (origin.name.as_str(), origin.fqdn.is_some()),
            None => ("", false),
        };
        if token == "@" {
            return Owner {
                name: Cow::Owned(origin.to_owned()),
                absolute: origin_absolute,
                under_apex: false,
            };
        }
        if let Some(name) = token.strip_suffix('.') {
            return Owner {
                name: Cow::Borrowed(name),
                absolute: true,
                under_apex: false,
            };
        }
        if origin_absolute && !origin.is_empty() && self.apex.as_deref() == Some(origin) {
            return Owner {
                name: Cow::Borrowed(token),
                absolute: true,
                under_apex: true,
            };
        }
        Owner {
            name: if origin.is_empty() {
                Cow::Borrowed(token)
            } else {
                Cow::Owned(format!("{token}.{origin}"))
            },
            absolute: origin_absolute,
            under_apex: false,
        }
    }

    /// The owner relative to the apex, classified by its RPZ suffix.
    fn trigger<'o>(&self, owner: &'o Owner<'_>) -> Result<Trigger<'o>, &'static str> {
        let name: &'o str = &owner.name;
        let relative = match (&self.apex, owner.absolute) {
            _ if owner.under_apex => name,
            (Some(apex), true) if !apex.is_empty() => {
                if name.eq_ignore_ascii_case(apex) {
                    ""
                } else {
                    strip_suffix_ignore_case(name, apex)
                        .and_then(|rest| rest.strip_suffix('.'))
                        .filter(|rest| !rest.is_empty())
                        .ok_or("owner name outside the zone")?
                }
            }
            _ => name,
        };
        if relative.is_empty() {
            return Ok(Trigger::Apex);
        }
        for (suffix, trigger) in [
            ("rpz-client-ip", Some(IpTrigger::ClientIp)),
            ("rpz-ip", Some(IpTrigger::ResponseIp)),
            ("rpz-nsip", None),
            ("rpz-nsdname", None),
        ] {
            let Some(before) = strip_suffix_ignore_case(relative, suffix) else {
                continue;
            };
            let before = match before.strip_suffix('.') {
                Some(before) => before,
                None if before.is_empty() => "",
                // `…xrpz-ip`: a different label that only ends the same way.
                None => continue,
            };
            return Ok(match trigger {
                Some(kind) => Trigger::Ip(kind, before),
                None if suffix == "rpz-nsip" => {
                    Trigger::Unsupported("rpz-nsip trigger (name server address)")
                }
                None => Trigger::Unsupported("rpz-nsdname trigger (name server name)"),
            });
        }
        Ok(Trigger::Qname(relative))
    }

    fn soa(&mut self, rdata: &[&str], line: u32, text: &str, list: &mut ParsedList) {
        if self.soa_seen {
            let why = "a second SOA record at the zone apex";
            list.skip(line, SkipReason::Malformed(why.into()), text);
            return;
        }
        self.soa_seen = true;
        match RData::try_from_str(RecordType::SOA, &rdata.join(" ")) {
            Ok(RData::SOA(soa)) => list.serial = Some(soa.serial),
            _ => {
                let why = "SOA record data is not valid (mname rname serial refresh retry expire minimum)";
                list.skip(line, SkipReason::Malformed(why.into()), text);
            }
        }
    }

    /// The policy a record's data asks for.
    fn action(&mut self, rtype: RecordType, rdata: &[&str]) -> Result<RuleAction, &'static str> {
        let origin = self.origin.as_ref().and_then(|o| o.fqdn.as_ref());
        if rtype == RecordType::CNAME {
            let [target] = rdata else {
                return Err("a CNAME record has exactly one target name");
            };
            let special = [
                (".", RuleAction::NxDomain),
                ("*.", RuleAction::NoData),
                ("rpz-passthru.", RuleAction::Passthru),
                ("rpz-drop.", RuleAction::Drop),
                ("rpz-tcp-only.", RuleAction::TcpOnly),
            ];
            if let Some((_, action)) = special
                .into_iter()
                .find(|(name, _)| target.eq_ignore_ascii_case(name))
            {
                return Ok(action);
            }
            let name = Name::parse(target, origin).map_err(|_| "CNAME target is not a name")?;
            let name = absolute(name, origin)?;
            return Ok(RuleAction::LocalData(
                vec![RData::CNAME(CNAME(name))].into(),
            ));
        }
        // Address records are most of a big feed's local data: parse them directly rather
        // than through the general zone-file lexer (4M records load several times faster).
        if let (RecordType::A | RecordType::AAAA, [addr]) = (rtype, rdata) {
            let slot = usize::from(rtype == RecordType::AAAA);
            if let Some((text, data)) = &self.last_address[slot]
                && text == addr
            {
                return Ok(RuleAction::LocalData(data.clone()));
            }
            let value = match rtype {
                RecordType::A => RData::A(hickory_proto::rr::rdata::A(
                    addr.parse()
                        .map_err(|_| "record data not valid for its type")?,
                )),
                _ => RData::AAAA(hickory_proto::rr::rdata::AAAA(
                    addr.parse()
                        .map_err(|_| "record data not valid for its type")?,
                )),
            };
            let data: Arc<[RData]> = Arc::from([value]);
            self.last_address[slot] = Some(((*addr).to_owned(), data.clone()));
            return Ok(RuleAction::LocalData(data));
        }
        let data = RData::try_from_str(rtype, &rdata.join(" "))
            .map_err(|_| "record data not valid for its type")?;
        let data = match data {
            RData::MX(mx) => RData::MX(MX::new(mx.preference, absolute(mx.exchange, origin)?)),
            RData::SRV(srv) => RData::SRV(SRV::new(
                srv.priority,
                srv.weight,
                srv.port,
                absolute(srv.target, origin)?,
            )),
            RData::PTR(PTR(target)) => RData::PTR(PTR(absolute(target, origin)?)),
            other => other,
        };
        Ok(RuleAction::LocalData(vec![data].into()))
    }

    /// Turns a QNAME trigger (relative to the apex, case as written) into a rule.
    fn qname_rule(
        &mut self,
        qname: &str,
        action: RuleAction,
        line: u32,
        text: &str,
        list: &mut ParsedList,
    ) {
        if self.pending_raw == qname
            && let Some(previous) = self.pending.as_mut().and_then(|p| p.action.as_mut())
            && settle(
                merge_shared(&mut self.last_merge, previous, &action),
                line,
                text,
                list,
            )
        {
            return;
        }
        let (base, subdomains_only) = match qname.strip_prefix("*.") {
            Some(base) => (base, true),
            None if qname == "*" => {
                list.skip(
                    line,
                    SkipReason::Unsupported("`*` trigger at the zone apex (every name)"),
                    text,
                );
                return;
            }
            None => (qname, false),
        };
        let shape = Shape {
            allow: action == RuleAction::Passthru,
            exact: !subdomains_only,
            subdomains_only,
            action: Some(action),
            ..Shape::default()
        };
        // One pass over the owner instead of a search per question.
        let (mut ascii, mut star, mut numeric) = (true, false, true);
        for b in base.bytes() {
            ascii &= b.is_ascii();
            star |= b == b'*';
            numeric &= b.is_ascii_digit() || b == b'.';
        }
        // Zone files carry raw bytes: a non-ASCII owner is not an IDN any query would use.
        if !ascii {
            list.invalid(base, NameError::BadCharacter, line, text);
            return;
        }
        // "a..b" resolves to "a.", which the one-root-dot rule must not forgive.
        if base.ends_with('.') {
            list.invalid(base, NameError::EmptyLabel, line, text);
            return;
        }
        if star {
            list.invalid(base, NameError::Wildcard, line, text);
            return;
        }
        // `*.name` right after `name`, as feeds list a name and its subdomains: the name was
        // checked and normalized for the rule held back (the same steps give the same name).
        if subdomains_only
            && !numeric
            && self.pending_raw == base
            && let Some(pending) = &self.pending
            && !pending.subdomains_only
        {
            let name = pending.name.clone();
            self.emit(name, shape, line, text, list);
            self.pending_raw.clear();
            self.pending_raw.push_str(qname);
            return;
        }
        // A name that reads like an IPv4 address is still a name a client can ask for.
        if numeric && let Some(ip @ IpAddr::V4(_)) = name::parse_ip_literal(base) {
            list.ip_literals.push(ip);
            self.emit(base.to_owned(), shape, line, text, list);
            self.pending_raw.clear();
            self.pending_raw.push_str(qname);
            return;
        }
        // A word from the tokenizer: no blank space to trim.
        match name::normalize_word(base) {
            Ok(name) if name::is_localhost_class(&name) => {
                list.skip(line, SkipReason::Localhost, text);
            }
            Ok(name) => {
                self.emit(name, shape, line, text, list);
                self.pending_raw.clear();
                self.pending_raw.push_str(qname);
            }
            Err(err) => list.invalid(base, err, line, text),
        }
    }

    /// Adjacent records of one trigger: local data is gathered into the rule held back; an
    /// equal policy record is a duplicate that becomes its own rule; anything else next to a
    /// CNAME or a policy action is the "CNAME and other data" error.
    fn emit(&mut self, name: String, shape: Shape, line: u32, text: &str, list: &mut ParsedList) {
        if let Some(pending) = self.pending.as_mut()
            && pending.name == name
            && pending.subdomains_only == shape.subdomains_only
            && let (Some(previous), Some(new)) = (pending.action.as_mut(), shape.action.as_ref())
        {
            let merge = merge_shared(&mut self.last_merge, previous, new);
            if settle(merge, line, text, list) {
                return;
            }
        }
        if let Some(done) = self.pending.take() {
            list.rules.push(done);
        }
        self.pending = Some(shape.into_rule(name, line));
    }
}

/// Completes a relative name in record data with the origin, as a master file means it.
fn absolute(name: Name, origin: Option<&Name>) -> Result<Name, &'static str> {
    if name.is_fqdn() {
        return Ok(name);
    }
    let origin = origin.ok_or(
        "relative name in the record data and no absolute $ORIGIN to complete it: end it with '.'",
    )?;
    name.append_domain(origin)
        .map_err(|_| "name in the record data too long with the origin")
}

/// Splits `[ttl] [class] type rdata…` (TTL and class in either order, both optional).
fn split_type<'a, 't>(tokens: &'a [&'t str]) -> Option<(RecordType, &'a [&'t str])> {
    let mut rest = tokens;
    let (mut ttl, mut class) = (false, false);
    while let Some((first, tail)) = rest.split_first() {
        if !class && is_class(first) {
            class = true;
        } else if !ttl && is_ttl(first) {
            ttl = true;
        } else {
            break;
        }
        rest = tail;
    }
    let (rtype, rdata) = rest.split_first()?;
    Some((record_type(rtype)?, rdata))
}

fn is_class(token: &str) -> bool {
    ["IN", "CH", "HS", "CS"]
        .iter()
        .any(|c| token.eq_ignore_ascii_case(c))
}

/// BIND's TTL syntax: seconds, or numbers with units (`1h30m`, `2W`).
fn is_ttl(token: &str) -> bool {
    let mut digits = false;
    for b in token.bytes() {
        match b {
            b'0'..=b'9' => digits = true,
            b's' | b'm' | b'h' | b'd' | b'w' | b'S' | b'M' | b'H' | b'D' | b'W' if digits => {
                digits = false;
            }
            _ => return false,
        }
    }
    // Starts with a digit, and every unit followed digits.
    token.as_bytes().first().is_some_and(u8::is_ascii_digit)
}

/// Record type mnemonics in any case (hickory reads upper case only).
fn record_type(token: &str) -> Option<RecordType> {
    let mut upper = [0u8; 16];
    let dest = upper.get_mut(..token.len())?;
    dest.copy_from_slice(token.as_bytes());
    dest.make_ascii_uppercase();
    RecordType::from_str(std::str::from_utf8(dest).ok()?).ok()
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let split = text.len().checked_sub(suffix.len())?;
    let tail = text.get(split..)?;
    tail.eq_ignore_ascii_case(suffix)
        .then(|| text.get(..split))
        .flatten()
}

/// IP rules are kept whole in [`ParsedList::ip_rules`], so adjacent records merge there.
fn push_ip_rule(rule: IpRule, text: &str, list: &mut ParsedList) {
    if let Some(last) = list.ip_rules.last_mut()
        && last.net == rule.net
        && last.kind == rule.kind
    {
        let merge = merge_actions(&mut last.action, &rule.action);
        if settle(merge, rule.line, text, list) {
            return;
        }
    }
    list.ip_rules.push(rule);
}

enum Merge {
    /// The new record's data went into the previous rule.
    Merged,
    /// The same policy again: a duplicate record, kept as its own rule.
    Duplicate,
    /// A CNAME or a policy action next to other data at the same owner.
    Conflict,
}

/// Reports a conflict; true when the record needs no rule of its own.
fn settle(merge: Merge, line: u32, text: &str, list: &mut ParsedList) -> bool {
    match merge {
        Merge::Merged => true,
        Merge::Duplicate => false,
        Merge::Conflict => {
            let why = "a CNAME or policy record must be its owner's only record";
            list.skip(line, SkipReason::Malformed(why.into()), text);
            true
        }
    }
}

fn merge_actions(previous: &mut RuleAction, new: &RuleAction) -> Merge {
    let is_cname = |data: &[RData]| data.iter().any(|d| matches!(d, RData::CNAME(_)));
    match (previous, new) {
        (RuleAction::LocalData(old), RuleAction::LocalData(new))
            if !is_cname(old) && !is_cname(new) =>
        {
            if new.iter().any(|data| !old.contains(data)) {
                let mut merged = old.to_vec();
                for data in new.iter() {
                    if !merged.contains(data) {
                        merged.push(data.clone());
                    }
                }
                *old = merged.into();
            }
            Merge::Merged
        }
        (previous, new) if *previous == *new => Merge::Duplicate,
        _ => Merge::Conflict,
    }
}

/// Whether a line has a byte the tokenizer gives a meaning to (comment, parenthesis, quote,
/// escape), a control byte other than tab and CR, or a non-ASCII byte. Sixteen bytes at a time
/// without branches, which the compiler turns into vector compares.
fn has_special(bytes: &[u8]) -> bool {
    let special = |b: u8| {
        (b > 0x7e)
            | (b < b' ' && b != b'\t' && b != b'\r')
            | (b == b';')
            | (b == b'(')
            | (b == b')')
            | (b == b'"')
            | (b == b'\\')
    };
    let mut chunks = bytes.chunks_exact(16);
    let mut found = false;
    for chunk in &mut chunks {
        let mut any = false;
        for &b in chunk {
            any |= special(b);
        }
        found |= any;
    }
    found || chunks.remainder().iter().any(|&b| special(b))
}

/// The end of the word starting at `i`: the index of the next byte up to ' ', or the length.
/// Every byte is below 0x80 (see [`has_special`]), so eight are tested at once: subtracting
/// 0x21 from each sets a byte's top bit exactly when it is below 0x21, and the lowest such
/// byte is never disturbed by a borrow.
fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let below =
            u64::from_le_bytes(word).wrapping_sub(0x2121_2121_2121_2121) & 0x8080_8080_8080_8080;
        if below != 0 {
            return i + (below.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while bytes.get(i).is_some_and(|&b| b > b' ') {
        i += 1;
    }
    i
}

/// One merge of local data: before, the record added, after.
type MergeMemo = (Arc<[RData]>, RData, Arc<[RData]>);

/// [`merge_actions`] for one added record, through `cache`: a feed's owners all gain the same
/// AAAA after the same A, and then share the merged data instead of each building a copy.
fn merge_shared(
    cache: &mut Option<MergeMemo>,
    previous: &mut RuleAction,
    new: &RuleAction,
) -> Merge {
    let (RuleAction::LocalData(old), RuleAction::LocalData(added)) = (&*previous, new) else {
        return merge_actions(previous, new);
    };
    let [added] = &added[..] else {
        return merge_actions(previous, new);
    };
    if let Some((before, with, after)) = cache.as_ref()
        && Arc::ptr_eq(before, old)
        && with == added
    {
        *previous = RuleAction::LocalData(after.clone());
        return Merge::Merged;
    }
    let before = old.clone();
    let merge = merge_actions(previous, new);
    if let (Merge::Merged, RuleAction::LocalData(after)) = (&merge, &*previous) {
        *cache = Some((before, added.clone(), after.clone()));
    }
    merge
}

/// RPZ's reversed address notation: `prefix.o4.o3.o2.o1` for IPv4, `prefix.w8.….w1` for IPv6
/// with `zz` standing for the longest run of zero words. Host bits beyond the prefix are an
/// error, as in BIND.
fn parse_rpz_ip(text: &str) -> Result<IpNet, &'static str> {
    const WHAT: &str =
        "address trigger is not `prefix.reversed-address` (e.g. 24.0.2.0.192 for 192.0.2.0/24)";
    let mut labels = text.split('.');
    let prefix: u8 = labels
        .next()
        .filter(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
        .ok_or(WHAT)?;
    let mut parts = [""; 8];
    let mut count = 0;
    for label in labels {
        *parts.get_mut(count).ok_or(WHAT)? = label;
        count += 1;
    }
    let parts = parts.get(..count).ok_or(WHAT)?;
    let has_zz = parts.iter().any(|p| p.eq_ignore_ascii_case("zz"));
    let address = if count == 4 && !has_zz {
        let mut octets = [0u8; 4];
        for (octet, part) in octets.iter_mut().rev().zip(parts) {
            if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(WHAT);
            }
            *octet = part.parse().map_err(|_| WHAT)?;
        }
        if !(1..=32).contains(&prefix) {
            return Err("IPv4 prefix length must be 1 to 32");
        }
        IpAddr::V4(Ipv4Addr::from(octets))
    } else {
        let mut words = [0u16; 8];
        let mut index = 0usize;
        let zeros = 8usize.checked_sub(count.saturating_sub(1)).ok_or(WHAT)?;
        let mut zz_used = false;
        // Reversed: the first label is the last word.
        for part in parts {
            if part.eq_ignore_ascii_case("zz") {
                if zz_used || zeros == 0 {
                    return Err(WHAT);
                }
                zz_used = true;
                index += zeros;
                continue;
            }
            if part.is_empty() || part.len() > 4 {
                return Err(WHAT);
            }
            let word = u16::from_str_radix(part, 16).map_err(|_| WHAT)?;
            *words
                .get_mut(7usize.checked_sub(index).ok_or(WHAT)?)
                .ok_or(WHAT)? = word;
            index += 1;
        }
        if index != 8 {
            return Err(WHAT);
        }
        if !(1..=128).contains(&prefix) {
            return Err("IPv6 prefix length must be 1 to 128");
        }
        IpAddr::V6(Ipv6Addr::from(words))
    };
    let net = IpNet::new(address, prefix).map_err(|_| WHAT)?;
    if net.trunc() != net {
        return Err("address trigger has bits set beyond its prefix length");
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    use std::str::FromStr;

    use hickory_proto::rr::{
        Name, RData,
        rdata::{A, AAAA, CNAME, MX, TXT},
    };

    use super::parse_rpz_ip;
    use crate::policy::formats::{Format, IpTrigger, ParsedList, RuleAction, SkipReason, parse};
    use crate::policy::name::NameError;

    /// Every line through the general path only.
    fn parse_general(text: &str) -> ParsedList {
        let mut zone = super::Zone {
            general_only: true,
            ..Default::default()
        };
        let mut list = ParsedList::default();
        for (i, raw) in text.lines().enumerate() {
            list.lines = i as u32 + 1;
            zone.line(raw, i as u32 + 1, &mut list);
        }
        zone.finish(&mut list);
        list
    }

    #[test]
    fn the_shortcut_for_simple_lines_reads_them_as_the_general_path_does() {
        let heads = [
            "$ORIGIN rpz.example.\n@ SOA ns. host. 7 1 1 1 1\n",
            "$ORIGIN rpz.example.\n",
            "@ SOA ns. host. 7 1 1 1 1\n",
            "",
            "$ORIGIN rpz.example.\n$ORIGIN sub.rpz.example.\n",
        ];
        let owners = [
            "bad.example",
            "BAD.Example",
            "*.bad.example",
            "*",
            "a..b",
            "a.*.b",
            "_srv.x",
            "1.2.3.4",
            "1.2.3",
            "localhost",
            "-x.example",
            "x-.example",
            "24.0.2.0.192.rpz-ip",
            "32.1.0.0.127.rpz-client-ip",
            "ns.rpz-nsdname",
            "x.rpz-nothing",
            "@",
            "abs.example.",
            "tab\tsep",
            &"l".repeat(64),
            &format!("{}.example", "a.".repeat(130)),
        ];
        let records = [
            "A 192.0.2.1",
            "AAAA 2001:db8::1",
            "a 192.0.2.2",
            "A 300.1.1.1",
            "A",
            "A 1 2",
            "CNAME .",
            "CNAME *.",
            "CNAME rpz-passthru.",
            "CNAME rpz-drop.",
            "cname rpz-tcp-only.",
            "CNAME walled.garden.",
            "CNAME relative",
            "CNAME bad..name",
            "TXT \"x\"",
            "300 A 192.0.2.1",
            "IN A 192.0.2.1",
            "AAAA zz",
            "A 192.0.2.1 ; why",
            "NS ns.example.",
        ];
        let mut cases = 0;
        for head in heads {
            let mut text = head.to_owned();
            for (i, owner) in owners.iter().enumerate() {
                for (j, record) in records.iter().enumerate() {
                    // Runs of one owner (merges, duplicates, conflicts), blank-start lines
                    // and trailing blanks and CRs between them.
                    text.push_str(&format!("{owner} {record}\n"));
                    if (i + j) % 3 == 0 {
                        text.push_str(&format!("\t{record}\n"));
                    }
                    if (i + j) % 5 == 0 {
                        text.push_str(&format!("{owner}\t{record} \r\n"));
                    }
                }
            }
            let fast = parse(Format::Rpz, &text);
            let general = parse_general(&text);
            assert_eq!(format!("{fast:?}"), format!("{general:?}"), "{head}");
            assert!(!fast.rules.is_empty());
            cases += fast.rules.len() + fast.skipped.len();
        }
        assert!(cases > 1000, "{cases}");
    }

    /// (name, line, exact, subdomains_only, allow, action)
    fn rules(list: &ParsedList) -> Vec<(&str, u32, bool, bool, bool, &RuleAction)> {
        list.rules
            .iter()
            .filter_map(|r| {
                let action = r.action.as_ref()?;
                Some((
                    r.name.as_str(),
                    r.line,
                    r.exact,
                    r.subdomains_only,
                    r.allow,
                    action,
                ))
            })
            .collect()
    }

    fn malformed_lines(list: &ParsedList) -> Vec<u32> {
        list.skipped
            .iter()
            .filter(|s| matches!(s.reason, SkipReason::Malformed(_)))
            .map(|s| s.line)
            .collect()
    }

    fn cname(target: &str) -> RuleAction {
        RuleAction::LocalData(
            vec![RData::CNAME(CNAME(Name::from_ascii(target).expect("name")))].into(),
        )
    }

    const NX: &RuleAction = &RuleAction::NxDomain;

    #[test]
    fn urlhaus_header_ttl_soa_and_indented_ns() {
        let text = "; Title: Malicious Domains RPZ Blocklist\n\n$TTL 30\n\
                    @ IN SOA localhost. root.localhost. 1752927088 86400 3600 604800 30\n \
                    NS localhost.\n\n0022a601.pphost.net CNAME .\nXN--80AK6AA92E.com CNAME .\n";
        let list = parse(Format::Rpz, text);
        assert_eq!(
            rules(&list),
            [
                ("0022a601.pphost.net", 7, true, false, false, NX),
                ("xn--80ak6aa92e.com", 8, true, false, false, NX),
            ]
        );
        assert_eq!(list.serial, Some(1_752_927_088));
        assert!(list.skipped.is_empty());
        assert_eq!(list.lines, 8);
    }

    #[test]
    fn ttl_without_soa_and_no_header_at_all() {
        // BIND would refuse both as a primary zone; as a list they are still clear.
        let list = parse(Format::Rpz, "$TTL 60\na.example CNAME .\n");
        assert_eq!(rules(&list), [("a.example", 2, true, false, false, NX)]);
        assert_eq!(list.serial, None);
        assert!(list.skipped.is_empty());
        let list = parse(Format::Rpz, "\u{feff}b.example CNAME .\r\n");
        assert_eq!(rules(&list), [("b.example", 1, true, false, false, NX)]);
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn soa_without_class_and_wildcard_only_triggers() {
        let text = "$TTL 3600\n@ SOA localhost. root.localhost. 1772016660 14400 3600 86400 3600\n  \
                    NS  localhost.\n;\n*.actor CNAME .\n*.dpdns.org CNAME .\n";
        let list = parse(Format::Rpz, text);
        assert_eq!(
            rules(&list),
            [
                ("actor", 5, false, true, false, NX),
                ("dpdns.org", 6, false, true, false, NX),
            ]
        );
        assert_eq!(list.serial, Some(1_772_016_660));
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn multi_line_soa_explicit_ttl_and_class_and_rewrites() {
        let text = ";\n$TTL 300\n@ IN SOA dns.example.net.id. hostmaster.example.net.id. (\n    \
                    1787202336 ; Serial\n    10800 ; Refresh\n    120 ; Retry\n    604800; Expire\n    \
                    3600 ) ; Minimum TTL\n@ IN NS lamanlabuh.resolver.id.\n\
                    google.ad 3600 IN CNAME forcesafesearch.google.com.\n\
                    *.google.ad 3600 IN CNAME forcesafesearch.google.com.\n\
                    189cube.com IN 3600 CNAME rpz-passthru.\n\
                    *.189cube.com 1h30m in cname RPZ-PASSTHRU.\n";
        let list = parse(Format::Rpz, text);
        let safe = cname("forcesafesearch.google.com.");
        let pass = &RuleAction::Passthru;
        assert_eq!(
            rules(&list),
            [
                ("google.ad", 10, true, false, false, &safe),
                ("google.ad", 11, false, true, false, &safe),
                ("189cube.com", 12, true, false, true, pass),
                ("189cube.com", 13, false, true, true, pass),
            ]
        );
        assert_eq!(list.serial, Some(1_787_202_336));
        assert!(list.skipped.is_empty(), "{:?}", list.skipped);
        assert_eq!(list.lines, 13);
    }

    #[test]
    fn every_policy_action() {
        let text = "a.example CNAME .\nb.example CNAME *.\nc.example CNAME rpz-passthru.\n\
                    d.example CNAME rpz-drop.\ne.example CNAME rpz-tcp-only.\n\
                    f.example CNAME walled.garden.example.\ng.example CNAME *.rewrite.example.\n";
        let list = parse(Format::Rpz, text);
        let actions: Vec<_> = list
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.allow, r.action.clone()))
            .collect();
        assert_eq!(
            actions,
            [
                ("a.example", false, Some(RuleAction::NxDomain)),
                ("b.example", false, Some(RuleAction::NoData)),
                ("c.example", true, Some(RuleAction::Passthru)),
                ("d.example", false, Some(RuleAction::Drop)),
                ("e.example", false, Some(RuleAction::TcpOnly)),
                ("f.example", false, Some(cname("walled.garden.example."))),
                ("g.example", false, Some(cname("*.rewrite.example."))),
            ]
        );
    }

    #[test]
    fn local_data_of_other_types_is_merged_per_owner() {
        let text = "$ORIGIN rpz.example.\n@ SOA ns.rpz.example. h.rpz.example. 7 1 1 1 1\n\
                    page.example A 192.0.2.1\n  AAAA 2001:db8::1\n  A 192.0.2.1\n\
                    txt.example 60 TXT \"blocked by policy; see the portal\" \"two\"\n\
                    mail.example MX 10 mx\nother.example A 192.0.2.2\n";
        let list = parse(Format::Rpz, text);
        let page = RuleAction::LocalData(
            vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                RData::AAAA(AAAA(Ipv6Addr::from_str("2001:db8::1").expect("v6"))),
            ]
            .into(),
        );
        let txt = RuleAction::LocalData(
            vec![RData::TXT(TXT::new(vec![
                "blocked by policy; see the portal".into(),
                "two".into(),
            ]))]
            .into(),
        );
        let mx = RuleAction::LocalData(
            vec![RData::MX(MX::new(
                10,
                Name::from_ascii("mx.rpz.example.").expect("name"),
            ))]
            .into(),
        );
        let other = RuleAction::LocalData(vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 2)))].into());
        assert_eq!(
            rules(&list),
            [
                ("page.example", 3, true, false, false, &page),
                ("txt.example", 6, true, false, false, &txt),
                ("mail.example", 7, true, false, false, &mx),
                ("other.example", 8, true, false, false, &other),
            ]
        );
        assert_eq!(list.serial, Some(7));
        assert!(list.skipped.is_empty(), "{:?}", list.skipped);
    }

    #[test]
    fn cname_next_to_other_data_is_an_error() {
        let text = "x.example CNAME .\nx.example A 192.0.2.1\ny.example A 192.0.2.1\n\
                    y.example CNAME other.example.\nz.example CNAME .\nz.example CNAME .\n";
        let list = parse(Format::Rpz, text);
        assert_eq!(malformed_lines(&list), [2, 4]);
        let names: Vec<_> = list.rules.iter().map(|r| r.name.as_str()).collect();
        // The duplicate policy record is kept as a rule, like duplicates in every format.
        assert_eq!(names, ["x.example", "y.example", "z.example", "z.example"]);
    }

    #[test]
    fn relative_names_in_data_need_an_origin() {
        let list = parse(
            Format::Rpz,
            "a.example CNAME portal\nb.example MX 10 mx\nc.example MX 10 mx.example.\n",
        );
        assert_eq!(malformed_lines(&list), [1, 2]);
        assert_eq!(list.rules.len(), 1);
    }

    #[test]
    fn origin_relative_absolute_and_outside_names() {
        let text = "$ORIGIN rpz.example.\nbad.com CNAME .\nbad.org.rpz.example. CNAME .\n\
                    @ NS ns.rpz.example.\n$ORIGIN sub.com.rpz.example.\n@ CNAME .\n* CNAME .\n\
                    www CNAME .\nother.zone. CNAME .\nrpz.example. CNAME .\n";
        let list = parse(Format::Rpz, text);
        assert_eq!(
            rules(&list),
            [
                ("bad.com", 2, true, false, false, NX),
                ("bad.org", 3, true, false, false, NX),
                ("sub.com", 6, true, false, false, NX),
                ("sub.com", 7, false, true, false, NX),
                ("www.sub.com", 8, true, false, false, NX),
            ]
        );
        assert_eq!(malformed_lines(&list), [9, 10]);
    }

    #[test]
    fn absolute_owners_without_a_zone_name_are_the_triggers() {
        let list = parse(
            Format::Rpz,
            "bad.example. CNAME .\n*.Bad.Example. CNAME .\n@ CNAME .\n",
        );
        assert_eq!(
            rules(&list),
            [
                ("bad.example", 1, true, false, false, NX),
                ("bad.example", 2, false, true, false, NX),
            ]
        );
        assert_eq!(malformed_lines(&list), [3]);
    }

    #[test]
    fn soa_owner_names_the_zone() {
        let text = "rpz.example. 60 IN SOA ns. h. 3 1 1 1 1\nrpz.example. NS ns.\n\
                    bad.com.rpz.example. CNAME .\nx.rpz.example. SOA ns. h. 4 1 1 1 1\n\
                    @ SOA ns. h. 5 1 1 1 1\n";
        let list = parse(Format::Rpz, text);
        assert_eq!(rules(&list), [("bad.com", 3, true, false, false, NX)]);
        assert_eq!(list.serial, Some(3));
        assert_eq!(malformed_lines(&list), [4, 5]);
    }

    #[test]
    fn nordic_tricky_lines() {
        let text = "\u{feff}; Title: 📔 Dandelion Sprouts nordiske filtre\n\
                    ; Beskrivelse: svindel på norske nettsteder\n\
                    vg.no.* CNAME .\nvevlysingar.*.* CNAME .\npaypal.*.no CNAME .\n\
                    *.gratis-reisebilletter.* CNAME .\n104.160.10.0/24 CNAME .\n\
                    1.14.61.188 CNAME .\n!*.cas.ms\nsvindel.no CNAME rpz-passthru.\n\
                    svindel.no CNAME rpz-passthru.\n";
        let list = parse(Format::Rpz, text);
        let pass = &RuleAction::Passthru;
        assert_eq!(
            rules(&list),
            [
                ("1.14.61.188", 8, true, false, false, NX),
                ("svindel.no", 10, true, false, true, pass),
                ("svindel.no", 11, true, false, true, pass),
            ]
        );
        assert_eq!(
            list.ip_literals,
            [IpAddr::V4(Ipv4Addr::new(1, 14, 61, 188))]
        );
        assert_eq!(
            list.reasons()
                .iter()
                .map(|(line, reason)| (*line, reason.to_string()))
                .collect::<Vec<_>>(),
            [
                (3, SkipReason::InvalidName(NameError::Wildcard).to_string()),
                (4, SkipReason::InvalidName(NameError::Wildcard).to_string()),
                (5, SkipReason::InvalidName(NameError::Wildcard).to_string()),
                (6, SkipReason::InvalidName(NameError::Wildcard).to_string()),
                (
                    7,
                    SkipReason::InvalidName(NameError::BadCharacter).to_string()
                ),
                (
                    9,
                    "malformed line: no record type after the owner, TTL and class \
                     (expected e.g. CNAME or A)"
                        .into()
                ),
            ]
        );
    }

    #[test]
    fn include_is_refused_and_never_opens_a_file() {
        let list = parse(
            Format::Rpz,
            "$INCLUDE /etc/passwd\n$include other.zone rpz.example.\na.example CNAME .\n",
        );
        assert_eq!(list.rules.len(), 1);
        assert_eq!(list.skipped.len(), 2);
        for skipped in &list.skipped {
            let SkipReason::Unsupported(what) = skipped.reason else {
                panic!("{skipped:?}");
            };
            assert!(what.contains("$INCLUDE"), "{what}");
        }
        assert_eq!(list.rejected().count(), 0);
    }

    #[test]
    fn other_directives() {
        let text = "$TTL 1h\n$TTL forever\n$TTL\n$GENERATE 1-3 x$ CNAME .\n$ORIGIN bad..name.\n";
        let list = parse(Format::Rpz, text);
        assert!(list.rules.is_empty());
        assert_eq!(malformed_lines(&list), [2, 3, 5]);
        assert!(matches!(list.skipped[2].reason, SkipReason::Unsupported(_)));
    }

    #[test]
    fn parentheses_quotes_and_continuations() {
        let text = "a.example ( CNAME\n  . )\n)\nb.example TXT \"open\nc.example CNAME . ; (\n\
                    \tA 192.0.2.1\nd.example CNAME (\n";
        let list = parse(Format::Rpz, text);
        let names: Vec<_> = list
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.line))
            .collect();
        assert_eq!(names, [("a.example", 1), ("c.example", 5)]);
        // Line 3: ')' alone; line 4: open quote; line 6: A next to the CNAME of line 5;
        // line 7: parenthesis still open at the end.
        assert_eq!(malformed_lines(&list), [3, 4, 6, 7]);
    }

    #[test]
    fn continuation_without_owner() {
        let list = parse(Format::Rpz, "  CNAME .\n\t\n");
        assert_eq!(malformed_lines(&list), [1]);
    }

    #[test]
    fn ip_triggers() {
        let text = "32.1.0.0.127.rpz-client-ip CNAME rpz-passthru.\n\
                    24.0.2.0.192.rpz-ip CNAME .\n128.1.zz.db8.2001.rpz-ip CNAME rpz-drop.\n\
                    48.zz.db8.2001.rpz-client-ip A 192.0.2.1\n  AAAA 2001:db8::1\n\
                    24.1.2.0.192.rpz-ip CNAME .\nns.example.rpz-nsdname CNAME .\n\
                    32.1.0.0.127.rpz-nsip CNAME .\n*.24.0.2.0.192.rpz-ip CNAME .\n\
                    x.notrpz-ip CNAME .\n";
        let list = parse(Format::Rpz, text);
        let ip_rules: Vec<_> = list
            .ip_rules
            .iter()
            .map(|r| (r.net.to_string(), r.kind, r.line, &r.action))
            .collect();
        let local = RuleAction::LocalData(
            vec![
                RData::A(A(Ipv4Addr::new(192, 0, 2, 1))),
                RData::AAAA(AAAA(Ipv6Addr::from_str("2001:db8::1").expect("v6"))),
            ]
            .into(),
        );
        assert_eq!(
            ip_rules,
            [
                (
                    "127.0.0.1/32".into(),
                    IpTrigger::ClientIp,
                    1,
                    &RuleAction::Passthru
                ),
                ("192.0.2.0/24".into(), IpTrigger::ResponseIp, 2, NX),
                (
                    "2001:db8::1/128".into(),
                    IpTrigger::ResponseIp,
                    3,
                    &RuleAction::Drop
                ),
                ("2001:db8::/48".into(), IpTrigger::ClientIp, 4, &local),
            ]
        );
        // A QNAME trigger whose last label merely ends in "rpz-ip".
        let names: Vec<_> = list.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["x.notrpz-ip"]);
        let kinds: Vec<_> = list
            .skipped
            .iter()
            .map(|s| (s.line, matches!(s.reason, SkipReason::Unsupported(_))))
            .collect();
        assert_eq!(kinds, [(6, false), (7, true), (8, true), (9, false)]);
    }

    #[test]
    fn rpz_ip_notation() {
        let ok = |t: &str| parse_rpz_ip(t).map(|n| n.to_string());
        assert_eq!(ok("32.4.3.2.1").as_deref(), Ok("1.2.3.4/32"));
        assert_eq!(ok("8.0.0.0.10").as_deref(), Ok("10.0.0.0/8"));
        assert_eq!(
            ok("128.1.0.0.0.0.0.db8.2001").as_deref(),
            Ok("2001:db8::1/128")
        );
        assert_eq!(ok("128.1.zz.db8.2001").as_deref(), Ok("2001:db8::1/128"));
        assert_eq!(ok("128.zz.1").as_deref(), Ok("1::/128"));
        assert_eq!(ok("128.1.zz").as_deref(), Ok("::1/128"));
        assert_eq!(ok("64.zz.DB8.2001").as_deref(), Ok("2001:db8::/64"));
        for bad in [
            "",
            "32",
            "33.4.3.2.1",
            "0.4.3.2.1",
            "32.4.3.2",
            "32.256.3.2.1",
            "32.4.3.2.1.0",
            "24.1.2.3.4",
            "x.4.3.2.1",
            "129.1.zz.2001",
            "128.1.zz.zz.2001",
            "128.1.2.3.4.5.6.7.8.9",
            "128.1.2.3.4.5.6.7",
            "128.12345.zz.1",
            "128.g.zz.1",
            "128.zz.1.2.3.4.5.6.7.8",
            "0128.1.zz.1",
            "-1.1.zz.1",
        ] {
            assert!(parse_rpz_ip(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn non_ascii_and_odd_owners() {
        let text = "bücher.example CNAME .\na..b CNAME .\nlocalhost CNAME .\n* CNAME .\n\
                    a\\.b.example CNAME .\n2001:db8::1 CNAME .\n";
        let list = parse(Format::Rpz, text);
        assert!(list.rules.is_empty());
        assert_eq!(
            list.reasons(),
            [
                (1, &SkipReason::InvalidName(NameError::BadCharacter)),
                (2, &SkipReason::InvalidName(NameError::EmptyLabel)),
                (3, &SkipReason::Localhost),
                (
                    4,
                    &SkipReason::Unsupported("`*` trigger at the zone apex (every name)")
                ),
                (5, &SkipReason::InvalidName(NameError::BadCharacter)),
                (6, &SkipReason::InvalidName(NameError::IpLiteral)),
            ]
        );
        assert_eq!(list.ip_literals.len(), 1);
    }

    #[test]
    fn bad_record_data() {
        let text = "a.example A not-an-address\nb.example CNAME\nc.example CNAME a. b.\n\
                    d.example AAAA 1.2.3.4\ne.example ANY x\nf.example DNAME x.\n";
        let list = parse(Format::Rpz, text);
        assert!(list.rules.is_empty());
        assert_eq!(malformed_lines(&list), [1, 2, 3, 4, 5, 6]);
    }
}
