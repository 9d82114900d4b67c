//! Figures about one parsed list, for `rampart lists stats` and for checking the parsers against
//! the reference counter of the real lists (`shared/lists/real/SOURCES.md` §2). The central
//! figure is the number of *distinct names*, defined per format as that counter defines it, so a
//! list can be compared with its published entry count and with the same list in other formats:
//!
//! * plain, hosts, wildcard, dnsmasq, CSV: every valid name of every rule (for dnsmasq that
//!   includes the passthru names of `server=/x/<resolver>` lines);
//! * adblock: only block rules for a name and its subdomains (`||name^`, `||name^|`, with no
//!   modifier or only `$important`), not exceptions and not `|name^` exact rules;
//! * RPZ: the union of the base names of all QNAME triggers (`name` and `*.name` give `name`),
//!   whatever their action.
//!
//! IP literals are never names: an RPZ owner such as `1.14.61.188` is a valid trigger (it is in
//! `rules`) but is counted under IP literals only.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::policy::formats::{Format, ParsedList, RuleAction, SkipReason};
use crate::policy::name;

/// What one list holds. Built by [`ListStats::new`]; printed by `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListStats {
    pub format: Format,
    /// Lines in the file (a last line without newline counts).
    pub lines: u32,
    /// Rules accepted, duplicates included.
    pub rules: usize,
    /// Distinct names as defined for the format (see the module documentation).
    pub distinct_names: usize,
    /// Rules that exempt names (adblock `@@`, RPZ passthru, dnsmasq forwards to a resolver).
    pub exceptions: usize,
    /// Rules for one name only (adblock `|name^`, RPZ triggers without `*.`).
    pub exact_rules: usize,
    /// Rules for the subdomains of a name only (`*.name`).
    pub subdomains_only_rules: usize,
    /// Rules that carry provenance (CSV feeds).
    pub rules_with_provenance: usize,
    /// IP addresses written where a name was expected, and how many differ.
    pub ip_literals: usize,
    pub distinct_ip_literals: usize,
    /// Hosts-file boilerplate names (`localhost`, `ip6-allnodes`, …) left out.
    pub localhost: usize,
    /// Address-keyed rules (RPZ `rpz-client-ip`, `rpz-ip`).
    pub ip_triggers: usize,
    /// Rules by the action their line asks for, in a fixed order, zero counts left out;
    /// "list action" is the action configured for the list.
    pub actions: Vec<(&'static str, usize)>,
    /// Skipped entries that point at a mistake (malformed lines, invalid names).
    pub rejected: usize,
    /// Skipped entries for features deliberately not supported.
    pub unsupported: usize,
    /// Every skip reason with its count, most frequent first.
    pub skipped_by_reason: Vec<(SkipReason, usize)>,
    /// The RPZ SOA serial.
    pub serial: Option<u32>,
}

impl ListStats {
    pub fn new(format: Format, parsed: &ParsedList) -> Self {
        let rules = &parsed.rules;
        let mut actions = [
            ("list action", 0usize),
            ("NXDOMAIN", 0),
            ("NODATA", 0),
            ("PASSTHRU", 0),
            ("DROP", 0),
            ("TCP-ONLY", 0),
            ("local data", 0),
        ];
        for rule in rules {
            let slot = match &rule.action {
                None => 0,
                Some(RuleAction::NxDomain) => 1,
                Some(RuleAction::NoData) => 2,
                Some(RuleAction::Passthru) => 3,
                Some(RuleAction::Drop) => 4,
                Some(RuleAction::TcpOnly) => 5,
                Some(RuleAction::LocalData(_)) => 6,
            };
            if let Some((_, count)) = actions.get_mut(slot) {
                *count += 1;
            }
        }
        let mut by_reason: HashMap<&SkipReason, usize> = HashMap::new();
        let (mut rejected, mut unsupported, mut localhost) = (0, 0, 0);
        for skipped in &parsed.skipped {
            *by_reason.entry(&skipped.reason).or_default() += 1;
            match skipped.reason {
                SkipReason::Malformed(_) | SkipReason::InvalidName(_) => rejected += 1,
                SkipReason::Unsupported(_) => unsupported += 1,
                SkipReason::Localhost => localhost += 1,
            }
        }
        let mut skipped_by_reason: Vec<(SkipReason, usize)> = by_reason
            .into_iter()
            .map(|(reason, count)| (reason.clone(), count))
            .collect();
        skipped_by_reason.sort_by(|a, b| {
            b.1.cmp(&a.1)
                .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
        });
        Self {
            format,
            lines: parsed.lines,
            rules: rules.len(),
            distinct_names: distinct_names(format, parsed).len(),
            exceptions: rules.iter().filter(|r| r.allow).count(),
            exact_rules: rules.iter().filter(|r| r.exact).count(),
            subdomains_only_rules: rules.iter().filter(|r| r.subdomains_only).count(),
            rules_with_provenance: rules.iter().filter(|r| r.provenance.is_some()).count(),
            ip_literals: parsed.ip_literals.len(),
            distinct_ip_literals: parsed.ip_literals.iter().collect::<HashSet<_>>().len(),
            localhost,
            ip_triggers: parsed.ip_rules.len(),
            actions: actions.into_iter().filter(|(_, n)| *n > 0).collect(),
            rejected,
            unsupported,
            skipped_by_reason,
            serial: parsed.serial,
        }
    }
}

/// The set behind [`ListStats::distinct_names`], to compare with another parser's names.
pub fn distinct_names(format: Format, parsed: &ParsedList) -> HashSet<&str> {
    parsed
        .rules
        .iter()
        .filter(|r| match format {
            Format::Adblock => !r.allow && !r.exact,
            _ => true,
        })
        .map(|r| r.name.as_str())
        // Only RPZ keeps address-like names as rules; they are counted as IP literals.
        .filter(|n| format != Format::Rpz || !name::is_ip_literal(n))
        .collect()
}

impl fmt::Display for ListStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "format:          {}", self.format)?;
        writeln!(f, "lines:           {}", self.lines)?;
        writeln!(
            f,
            "rules:           {} ({} exceptions, {} exact, {} subdomains only)",
            self.rules, self.exceptions, self.exact_rules, self.subdomains_only_rules
        )?;
        writeln!(f, "distinct names:  {}", self.distinct_names)?;
        if !self.actions.is_empty() {
            let actions: Vec<String> = self
                .actions
                .iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect();
            writeln!(f, "actions:         {}", actions.join(", "))?;
        }
        if self.rules_with_provenance > 0 {
            writeln!(f, "with provenance: {}", self.rules_with_provenance)?;
        }
        writeln!(
            f,
            "IP literals:     {} ({} distinct; addresses where a name was expected)",
            self.ip_literals, self.distinct_ip_literals
        )?;
        writeln!(f, "localhost:       {}", self.localhost)?;
        if self.ip_triggers > 0 || self.format == Format::Rpz {
            writeln!(f, "IP triggers:     {}", self.ip_triggers)?;
        }
        if let Some(serial) = self.serial {
            writeln!(f, "SOA serial:      {serial}")?;
        }
        let skipped: usize = self.skipped_by_reason.iter().map(|(_, n)| n).sum();
        writeln!(
            f,
            "skipped:         {skipped} ({} rejected, {} unsupported, {} localhost)",
            self.rejected, self.unsupported, self.localhost
        )?;
        for (reason, count) in &self.skipped_by_reason {
            writeln!(f, "  {count:>8}  {reason}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{ListStats, distinct_names};
    use crate::policy::formats::{Format, SkipReason, parse};
    use crate::policy::name::NameError;

    fn stats(format: Format, text: &str) -> ListStats {
        ListStats::new(format, &parse(format, text))
    }

    #[test]
    fn hosts_figures() {
        let s = stats(
            Format::Hosts,
            "127.0.0.1 localhost\n0.0.0.0 0.0.0.0\n0.0.0.0 a.example\n:: a.example\n\
             127.0.0.1 109.201.135.46\n127.0.0.1 109.201.135.46\nnot-an-ip x\n",
        );
        assert_eq!(s.lines, 7);
        assert_eq!(s.rules, 2);
        assert_eq!(s.distinct_names, 1);
        assert_eq!((s.ip_literals, s.distinct_ip_literals), (3, 2));
        assert_eq!(s.localhost, 1);
        assert_eq!((s.rejected, s.unsupported), (4, 0));
        assert_eq!(s.actions, [("list action", 2)]);
        assert_eq!(
            s.skipped_by_reason.first(),
            Some(&(SkipReason::InvalidName(NameError::IpLiteral), 3))
        );
        assert_eq!(s.skipped_by_reason.len(), 3);
    }

    #[test]
    fn adblock_counts_only_plain_subtree_block_rules() {
        let text = "||a.example^\n||a.example^|\n||b.example^$important\n@@||c.example^\n\
                    |d.example^\n||e.example^$dnstype=A\n||f.example^$badfilter\n||1.2.3.4^\n";
        let s = stats(Format::Adblock, text);
        assert_eq!(s.rules, 5);
        assert_eq!(s.distinct_names, 2);
        assert_eq!(s.exceptions, 1);
        assert_eq!(s.exact_rules, 1);
        assert_eq!(s.ip_literals, 1);
        assert_eq!(s.unsupported, 2);
    }

    #[test]
    fn rpz_union_of_base_names_without_ip_looking_owners() {
        let text = "$TTL 30\n@ SOA ns. h. 42 1 1 1 1\n NS ns.\na.example CNAME .\n\
                    *.a.example CNAME .\n*.tld CNAME .\nok.example CNAME rpz-passthru.\n\
                    1.14.61.188 CNAME .\n1.14.61.188 CNAME .\nvg.no.* CNAME .\n\
                    32.1.0.0.127.rpz-client-ip CNAME rpz-drop.\nrw.example CNAME x.example.\n";
        let parsed = parse(Format::Rpz, text);
        let s = ListStats::new(Format::Rpz, &parsed);
        let mut names: Vec<_> = distinct_names(Format::Rpz, &parsed).into_iter().collect();
        names.sort_unstable();
        assert_eq!(names, ["a.example", "ok.example", "rw.example", "tld"]);
        assert_eq!(s.distinct_names, 4);
        assert_eq!(s.rules, 7);
        assert_eq!((s.ip_literals, s.distinct_ip_literals), (2, 1));
        assert_eq!(s.ip_triggers, 1);
        assert_eq!(s.serial, Some(42));
        assert_eq!(s.exceptions, 1);
        assert_eq!((s.exact_rules, s.subdomains_only_rules), (5, 2));
        assert_eq!(
            s.actions,
            [("NXDOMAIN", 5), ("PASSTHRU", 1), ("local data", 1)]
        );
        assert_eq!(s.rejected, 1);
    }

    #[test]
    fn dnsmasq_counts_every_domain_including_passthru() {
        let text = "server=/a.example/127.0.0.1\nserver=/ok.example/89.233.43.71\n\
                    server=/104.160.10.0/24\naddress=/a.example/::\n";
        let s = stats(Format::Dnsmasq, text);
        assert_eq!(s.distinct_names, 2);
        assert_eq!(s.exceptions, 1);
        assert_eq!(s.ip_literals, 1);
    }

    /// The one place where these figures and the reference counter's part: an exact-anchored
    /// adblock rule on an address (`|167.206.10.148^`, once in the AdGuard DNS filter and once
    /// in the Dandelion AGH compilation). Here `|name^` is an exact rule like any other, so an
    /// address in it is an IP literal; the reference sorts every `|…` line into "start anchor"
    /// before looking at names and never counts it. Distinct names are unaffected: exact rules
    /// are outside that figure in both.
    #[test]
    fn exact_anchored_address_is_an_ip_literal_here_not_in_the_reference() {
        let s = stats(
            Format::Adblock,
            "|167.206.10.148^\n||1.2.3.4^\n||a.example^\n",
        );
        assert_eq!((s.ip_literals, s.distinct_ip_literals), (2, 2));
        assert_eq!(s.distinct_names, 1);
    }

    #[test]
    fn report_reads_well() {
        let s = stats(
            Format::Csv,
            "domain,category\na.example,gambling\nb.example,\nfoo bar,x\n1.2.3.4,x\n",
        );
        let text = s.to_string();
        for want in [
            "format:          csv\n",
            "lines:           5\n",
            "rules:           2 (0 exceptions, 0 exact, 0 subdomains only)\n",
            "distinct names:  2\n",
            "with provenance: 1\n",
            "IP literals:     1 (1 distinct;",
            "skipped:         2 (2 rejected, 0 unsupported, 0 localhost)\n",
            "         1  invalid name: IP address where a domain name was expected\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("SOA serial"));
    }
}
