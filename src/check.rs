//! `rampart lists check NAME`: explain, in words an operator can act on, what the policy does
//! with a name (which list and which line blocks it, or why it is allowed), and what each list
//! skipped at load time, with file and line.

use std::fmt::Write as _;

use crate::{
    config::{BlockConfig, ListKind},
    policy::{Decision, Match, Snapshot, Trigger, Verdict, name::normalize},
};

/// The report for `name` asked by `client` (None: a client of the default group). Errors only
/// for a name that is not a valid domain name.
pub fn explain(
    snapshot: &Snapshot,
    block: &BlockConfig,
    name: &str,
    client: Option<std::net::IpAddr>,
) -> Result<String, String> {
    let canonical = normalize(name).map_err(|e| format!("`{name}` is not a usable name: {e}"))?;
    let bytes = canonical.as_bytes();
    let group = client.map_or(0, |ip| snapshot.group_of(ip));
    let mut out = String::new();
    if let Some(g) = snapshot.groups.get(group) {
        let names: Vec<&str> = g
            .lists
            .iter()
            .filter_map(|&i| snapshot.lists.get(i).map(|l| l.info.name.as_str()))
            .collect();
        let who = client.map_or("a client outside every group".to_string(), |ip| {
            ip.to_string()
        });
        let _ = writeln!(
            out,
            "client: {who} → group \"{}\" (lists: {})",
            g.name,
            if names.is_empty() {
                "none".into()
            } else {
                names.join(", ")
            }
        );
    }
    let evaluation = snapshot.evaluate(&snapshot.prepare(bytes), client, group);
    if let Some(m) = evaluation.logged {
        describe_rule(
            &mut out,
            snapshot,
            &canonical,
            m,
            "log-only match (counted, not applied)",
        );
    }
    match evaluation.decision {
        Decision::Blocked(m) => {
            let _ = writeln!(out, "{canonical}: BLOCKED");
            describe_rule(&mut out, snapshot, &canonical, m, "block rule");
            let verdict = snapshot.verdict(m, group);
            let _ = writeln!(out, "  answer: {}", describe_verdict(verdict, block));
        }
        Decision::Passthru(m) => {
            let _ = writeln!(
                out,
                "{canonical}: PASSTHRU (resolved normally; later lists are not consulted)"
            );
            describe_rule(&mut out, snapshot, &canonical, m, "passthru rule");
        }
        Decision::Allowed(m) => {
            let _ = writeln!(
                out,
                "{canonical}: ALLOWED (an allow rule matches; allow beats block)"
            );
            describe_rule(&mut out, snapshot, &canonical, m, "allow rule");
            match snapshot.block_match(bytes, group) {
                Some(b) => {
                    let _ = writeln!(out, "  without it, this rule would block it:");
                    describe_rule(&mut out, snapshot, &canonical, b, "block rule");
                }
                None => {
                    let _ = writeln!(out, "  no block list matches it either");
                }
            }
        }
        Decision::Pass => {
            let _ = writeln!(
                out,
                "{canonical}: ALLOWED (no list matches this name or its parents)"
            );
            let _ = writeln!(
                out,
                "  (its answer is still checked: CNAME targets and RESPONSE-IP rules)"
            );
        }
    }
    let _ = writeln!(out);
    lists_report(&mut out, snapshot);
    Ok(out)
}

fn describe_rule(out: &mut String, snapshot: &Snapshot, canonical: &str, m: Match, what: &str) {
    let listed = match m.trigger {
        Trigger::ClientIp => "the client's address".to_string(),
        Trigger::ResponseIp => "an address in the answer".to_string(),
        Trigger::QName | Trigger::CnameTarget => {
            format!(
                "`{}`",
                &canonical[canonical.len().saturating_sub(m.hit.suffix_len)..]
            )
        }
    };
    let scope = m.hit.scope.describe();
    let line = m.hit.payload.line;
    match snapshot.list(m) {
        Some(list) => {
            let _ = writeln!(
                out,
                "  {what}: {listed} ({scope}) from list \"{}\", {} line {line}",
                list.name,
                list.path.display()
            );
            if let Some(text) = read_line(&list.path, line) {
                let _ = writeln!(out, "    {line} | {text}");
            }
            let provenance = snapshot
                .lists
                .get(m.list)
                .and_then(|l| l.provenance(&m.hit));
            let category = provenance
                .and_then(|p| p.category.as_deref())
                .or(list.category.as_deref());
            if let Some(c) = category {
                let _ = writeln!(out, "    category: {c}");
            }
            if let Some(p) = provenance {
                if let Some(r) = &p.reference {
                    let _ = writeln!(out, "    reference: {r}");
                }
                if let Some(a) = &p.added {
                    let _ = writeln!(out, "    added: {a}");
                }
            }
        }
        None => {
            let _ = writeln!(out, "  {what}: {listed} ({scope}), line {line}");
        }
    }
}

fn describe_verdict(verdict: Verdict<'_>, block: &BlockConfig) -> String {
    match verdict {
        Verdict::BlockAddress => {
            let v4 = block.ipv4.map_or("NODATA".to_string(), |a| a.to_string());
            let v6 = block.ipv6.map_or("NODATA".to_string(), |a| a.to_string());
            format!(
                "A → {v4}, AAAA → {v6}, other types → NODATA (TTL {} s)",
                block.ttl
            )
        }
        Verdict::NxDomain => format!("NXDOMAIN (TTL {} s)", block.ttl),
        Verdict::NoData => format!("NODATA for every type (TTL {} s)", block.ttl),
        Verdict::Refused => "REFUSED".into(),
        Verdict::Drop => "no answer at all (DROP)".into(),
        Verdict::TcpOnly => "over UDP an empty truncated answer (the client retries over TCP); over TCP resolved normally".into(),
        Verdict::Passthru => "resolved normally (PASSTHRU)".into(),
        Verdict::Local(records) => {
            let shown: Vec<String> = records
                .iter()
                .map(|r| format!("{} {r}", r.record_type()))
                .collect();
            format!("local data: {} (TTL {} s)", shown.join(", "), block.ttl)
        }
    }
}

/// Per list: what was loaded and every skipped line kept, with file and line number.
pub fn lists_report(out: &mut String, snapshot: &Snapshot) {
    let _ = writeln!(out, "Lists (in the order they are consulted):");
    if snapshot.lists.is_empty() {
        let _ = writeln!(out, "  none configured");
    }
    for l in snapshot.lists.iter().map(|l| &l.info) {
        let kind = match l.kind {
            ListKind::Block => "block",
            ListKind::Allow => "allow",
        };
        if let Some(e) = &l.error {
            let _ = writeln!(out, "  {} ({kind}): NOT LOADED: {e}", l.name);
            continue;
        }
        let _ = writeln!(
            out,
            "  {} ({kind}, {}, {}): {} entries, {} rejected lines, {} unsupported lines — {}",
            l.name,
            l.format,
            if l.exact { "exact" } else { "subtree" },
            l.entries,
            l.rejected,
            l.unsupported,
            l.path.display()
        );
        if !l.skipped_by_reason.is_empty() {
            let reasons: Vec<String> = l
                .skipped_by_reason
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(out, "    skipped by reason: {}", reasons.join(", "));
        }
        for line in l.skipped_lines() {
            let _ = writeln!(out, "    {line}");
        }
        if l.skipped_not_shown() > 0 {
            let _ = writeln!(out, "    … and {} more", l.skipped_not_shown());
        }
    }
}

/// The text of line `n` (1-based) of a file, for showing the rule as written.
fn read_line(path: &std::path::Path, n: u32) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text);
    let line = text.split('\n').nth(n.checked_sub(1)? as usize)?;
    let line = line.trim_end_matches('\r').trim_start_matches('\u{feff}');
    Some(line.chars().take(200).collect())
}
