//! dnsmasq configuration lines, as block lists publish them: `address=/name/…/target`,
//! `server=/name/…/target` and its synonym `local=`. Every component between the first and the
//! last `/` is a domain (the name and its subdomains, as dnsmasq matches them); the last one is
//! the target, and the target decides what the rule does:
//!
//! | line | dnsmasq does | rule |
//! |---|---|---|
//! | `address=/x/0.0.0.0`, `/::`, `/#` (null address), `/127.0.0.1`, `/::1` | answers a sink address | block, the list's action |
//! | `address=/x/` | answers NXDOMAIN | block, NXDOMAIN |
//! | `address=/x/192.0.2.1` | answers that address | local data (A or AAAA) |
//! | `server=/x/`, `local=/x/` | "local only": never forwards, NXDOMAIN | block, NXDOMAIN |
//! | `server=/x/127.0.0.1`, `/0.0.0.0`, `/::1` (port 53) | forwards to itself, a sink | block, the list's action |
//! | `server=/x/89.233.43.71`, `server=/x/#`, `server=/x/127.0.0.1#8600` | resolves x through a real resolver | **passthru** |
//!
//! The last row is how dnsmasq lists write an allowlist: the Dandelion Nordic list forwards its
//! 18 allowlisted names to a public resolver while the blocked ones go to 127.0.0.1. Rampart
//! reads such a forward as "resolve normally, exempt from blocking": an allow rule with the
//! [`RuleAction::Passthru`] action. It does not forward to the named server; the configured
//! upstream resolves the name. A loopback server on another port (Consul, a local stub) is a
//! real service, so it is a passthru too.
//!
//! A `#` domain (every name), a leading `*` (dnsmasq's substring match), `//` (names without a
//! dot), options other than these three and options without a `/domain/` are reported as
//! unsupported. `server=/104.160.10.0/24` (a CIDR range pasted into the domain slot) gives the
//! domain `104.160.10.0`, reported as an IP literal.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::rr::{
    RData,
    rdata::{A, AAAA},
};

use super::{ParsedList, RuleAction, Shape, SkipReason};
use crate::policy::name;

/// `text` is one trimmed, non-empty line.
pub(super) fn parse_line(text: &str, line: u32, list: &mut ParsedList) {
    if text.starts_with('#') {
        return;
    }
    let body = strip_comment(text);
    let Some((key, value)) = body.split_once('=') else {
        let reason = if body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            SkipReason::Unsupported("dnsmasq option other than address, server and local")
        } else {
            SkipReason::Malformed("not a dnsmasq `option=value` line".into())
        };
        list.skip(line, reason, text);
        return;
    };
    let key = key.trim();
    let value = value.trim();
    let is_address = match key {
        "address" => true,
        "server" | "local" => false,
        _ => {
            list.skip(
                line,
                SkipReason::Unsupported("dnsmasq option other than address, server and local"),
                text,
            );
            return;
        }
    };
    let Some(rest) = value.strip_prefix('/') else {
        // `server=9.9.9.9` sets an upstream for every name; it is resolver configuration.
        list.skip(
            line,
            SkipReason::Unsupported("address or server without a /domain/ (applies to every name)"),
            text,
        );
        return;
    };
    let Some((domains, target)) = rest.rsplit_once('/') else {
        list.skip(
            line,
            SkipReason::Malformed("no '/' between the domain and the target".into()),
            text,
        );
        return;
    };
    if domains.is_empty() {
        list.skip(
            line,
            SkipReason::Unsupported("`//` (names without a dot)"),
            text,
        );
        return;
    }
    let shape = if is_address {
        address_target(target)
    } else {
        server_target(target)
    };
    let mut valid_names = 0;
    for domain in domains.split('/') {
        let domain = domain.trim();
        if domain == "#" {
            list.skip(
                line,
                SkipReason::Unsupported("`#` domain (matches every name)"),
                text,
            );
            continue;
        }
        if domain.starts_with('*') {
            list.skip(
                line,
                SkipReason::Unsupported("`*` domain pattern (dnsmasq matches it inside labels)"),
                text,
            );
            continue;
        }
        match &shape {
            Some(shape) => {
                list.add(domain, name::normalize, line, shape.clone(), text);
            }
            // Count the names that would have made rules, so a bad target is reported once
            // while bad names still get their own reason.
            None => match name::normalize(domain) {
                Ok(_) => valid_names += 1,
                Err(err) => list.invalid(domain, err, line, text),
            },
        }
    }
    if shape.is_none() && valid_names > 0 {
        let why = if is_address {
            "the target after the last '/' is not an IP address, '#' or empty"
        } else {
            "the server after the last '/' is not an IP address[#port], '#' or empty"
        };
        list.skip(line, SkipReason::Malformed(why.into()), text);
    }
}

/// dnsmasq ends an option at a `#` that follows whitespace; a `#` right after `/` is a value.
fn strip_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    let cut = bytes
        .windows(2)
        .position(|w| w[0].is_ascii_whitespace() && w[1] == b'#');
    match cut {
        // `position` is of an ASCII byte, so `i + 1` is a character boundary.
        Some(i) => text.get(..i + 1).unwrap_or(text).trim_end(),
        None => text,
    }
}

/// What `address=/…/target` means; `None` for a target that is not one.
fn address_target(target: &str) -> Option<Shape> {
    let action = match target {
        "" => Some(RuleAction::NxDomain),
        "#" => None,
        _ => {
            let ip = parse_ip(target)?;
            if is_sink(ip) {
                None
            } else {
                Some(RuleAction::LocalData(Arc::from([match ip {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                }])))
            }
        }
    };
    Some(Shape {
        action,
        ..Shape::default()
    })
}

/// What `server=/…/target` (or `local=`) means; `None` for a target that is not one.
fn server_target(target: &str) -> Option<Shape> {
    let passthru = Shape {
        allow: true,
        action: Some(RuleAction::Passthru),
        ..Shape::default()
    };
    match target {
        "" => Some(Shape {
            action: Some(RuleAction::NxDomain),
            ..Shape::default()
        }),
        // "Use the standard servers": an exception carved out of a wider server= rule.
        "#" => Some(passthru),
        _ => {
            // `address[#port][@source-address|@interface]`
            let with_port = target.split_once('@').map_or(target, |(a, _source)| a);
            let (address, port) = match with_port.split_once('#') {
                Some((address, port)) => (address, Some(port.parse::<u16>().ok()?)),
                None => (with_port, None),
            };
            let ip = parse_ip(address)?;
            if is_sink(ip) && port.is_none_or(|p| p == 53) {
                Some(Shape::default())
            } else {
                Some(passthru)
            }
        }
    }
}

/// An address as dnsmasq writes it: IPv4, or IPv6 with an optional `%scope`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let address = text
        .split_once('%')
        .map_or(text, |(address, _scope)| address);
    address.parse().ok()
}

/// Addresses that answer nothing useful: a name pointed at them is blocked.
fn is_sink(ip: IpAddr) -> bool {
    ip.is_unspecified() || ip.is_loopback()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::rr::{
        RData,
        rdata::{A, AAAA},
    };

    use crate::policy::formats::{Format, ParsedList, RuleAction, SkipReason, parse};
    use crate::policy::name::NameError;

    /// (name, line, allow, action)
    fn rules(list: &ParsedList) -> Vec<(&str, u32, bool, Option<&RuleAction>)> {
        list.rules
            .iter()
            .map(|r| (r.name.as_str(), r.line, r.allow, r.action.as_ref()))
            .collect()
    }

    #[test]
    fn block_targets() {
        let text = "# notracking\naddress=/a.example/0.0.0.0\naddress=/a.example/::\n\
                    address=/b.example/#\nserver=/c.example/\nlocal=/d.example/\naddress=/e.example/\n\
                    server=/f.example/127.0.0.1\naddress=/g.example/127.0.0.1\naddress=/h.example/::1\n";
        let list = parse(Format::Dnsmasq, text);
        let nx = Some(&RuleAction::NxDomain);
        assert_eq!(
            rules(&list),
            [
                ("a.example", 2, false, None),
                ("a.example", 3, false, None),
                ("b.example", 4, false, None),
                ("c.example", 5, false, nx),
                ("d.example", 6, false, nx),
                ("e.example", 7, false, nx),
                ("f.example", 8, false, None),
                ("g.example", 9, false, None),
                ("h.example", 10, false, None),
            ]
        );
        assert!(
            list.rules
                .iter()
                .all(|r| !r.exact && !r.subdomains_only && !r.important)
        );
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn forwards_to_a_real_resolver_are_passthru() {
        let text = "\u{feff}server=/blocked.example/127.0.0.1\nserver=/allowed.example/89.233.43.71\n\
                    server=/v6.example/2001:db8::53\nserver=/std.example/#\n\
                    server=/consul.example/127.0.0.1#8600\nserver=/scoped.example/fe80::1%eth0@eth0\n\
                    server=/port53.example/127.0.0.1#53\nlocal=/fwd.example/192.0.2.53@192.0.2.1\n";
        let list = parse(Format::Dnsmasq, text);
        let pass = Some(&RuleAction::Passthru);
        assert_eq!(
            rules(&list),
            [
                ("blocked.example", 1, false, None),
                ("allowed.example", 2, true, pass),
                ("v6.example", 3, true, pass),
                ("std.example", 4, true, pass),
                ("consul.example", 5, true, pass),
                ("scoped.example", 6, true, pass),
                ("port53.example", 7, false, None),
                ("fwd.example", 8, true, pass),
            ]
        );
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn address_to_a_real_address_is_local_data() {
        let list = parse(
            Format::Dnsmasq,
            "address=/page.example/192.0.2.10\naddress=/page6.example/2001:db8::10\n",
        );
        assert_eq!(
            rules(&list),
            [
                (
                    "page.example",
                    1,
                    false,
                    Some(&RuleAction::LocalData(
                        vec![RData::A(A(Ipv4Addr::new(192, 0, 2, 10)))].into()
                    ))
                ),
                (
                    "page6.example",
                    2,
                    false,
                    Some(&RuleAction::LocalData(
                        vec![RData::AAAA(AAAA(Ipv6Addr::new(
                            0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10
                        )))]
                        .into()
                    ))
                ),
            ]
        );
    }

    #[test]
    fn several_domains_on_one_line() {
        let list = parse(
            Format::Dnsmasq,
            "address=/a.example/B.Example./a..b/0.0.0.0\nserver=/x.example/y.example/\n",
        );
        assert_eq!(
            rules(&list),
            [
                ("a.example", 1, false, None),
                ("b.example", 1, false, None),
                ("x.example", 2, false, Some(&RuleAction::NxDomain)),
                ("y.example", 2, false, Some(&RuleAction::NxDomain)),
            ]
        );
        assert_eq!(
            list.reasons(),
            [(1, &SkipReason::InvalidName(NameError::EmptyLabel))]
        );
    }

    #[test]
    fn cidr_pasted_into_the_domain_slot() {
        // The Nordic list's broken conversion: domain `104.160.10.0`, target `24`.
        let list = parse(Format::Dnsmasq, "server=/104.160.10.0/24\n");
        assert!(list.rules.is_empty());
        assert_eq!(
            list.reasons(),
            [(1, &SkipReason::InvalidName(NameError::IpLiteral))]
        );
        assert_eq!(list.ip_literals.len(), 1);
        // With a real name in the slot, the bad target is the one problem, reported once.
        let list = parse(Format::Dnsmasq, "server=/a.example/b.example/24\n");
        assert!(list.rules.is_empty());
        assert_eq!(list.skipped.len(), 1);
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
        let list = parse(Format::Dnsmasq, "address=/a.example/not-an-ip\n");
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
        let list = parse(Format::Dnsmasq, "server=/a.example/1.2.3.4#port\n");
        assert!(matches!(list.skipped[0].reason, SkipReason::Malformed(_)));
    }

    #[test]
    fn match_all_wildcards_and_other_options() {
        let text = "address=/#/0.0.0.0\nserver=/*google.com/1.2.3.4\nserver=//1.2.3.4\n\
                    server=9.9.9.9\nbogus-priv\nconf-file=/etc/x.conf\naddress=/x.example\n\
                    just words here\n";
        let list = parse(Format::Dnsmasq, text);
        assert!(list.rules.is_empty());
        let kinds: Vec<_> = list
            .skipped
            .iter()
            .map(|s| match s.reason {
                SkipReason::Unsupported(_) => "unsupported",
                SkipReason::Malformed(_) => "malformed",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "unsupported",
                "unsupported",
                "unsupported",
                "unsupported",
                "unsupported",
                "unsupported",
                "malformed",
                "malformed"
            ]
        );
        assert_eq!(list.rejected().count(), 2);
    }

    #[test]
    fn comments_after_whitespace() {
        let list = parse(
            Format::Dnsmasq,
            "address=/a.example/# \t# null address\naddress=/b.example/0.0.0.0 # sink\n  # indented\n",
        );
        assert_eq!(
            rules(&list),
            [("a.example", 1, false, None), ("b.example", 2, false, None)]
        );
        assert!(list.skipped.is_empty());
    }

    #[test]
    fn localhost_and_in_addr_arpa() {
        let list = parse(
            Format::Dnsmasq,
            "server=/localhost/\nserver=/108.60.27.212.in-addr.arpa/127.0.0.1\n",
        );
        assert_eq!(
            rules(&list),
            [("108.60.27.212.in-addr.arpa", 2, false, None)]
        );
        assert_eq!(list.reasons(), [(1, &SkipReason::Localhost)]);
    }
}
