//! Synthesized answers for blocked names.
//!
//! A/AAAA get the configured block page address (the category's own when
//! `[[block_page.categories]]` gives one); other types, and address types without a
//! configured address, get NODATA. Lists can choose NXDOMAIN, NODATA or REFUSED instead.
//! Negative answers carry an SOA whose owner is the listed name and whose minimum is the block
//! TTL, so downstream caches can cache them (RFC 2308) and a reader can see which rule applied.

use hickory_proto::{
    op::ResponseCode,
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, SOA},
    },
};

use crate::{config::BlockConfig, policy::Verdict};

/// The parts of a synthesized response.
#[derive(Debug, Clone, Default)]
pub struct Synthesized {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    /// Send nothing at all (RPZ DROP).
    pub drop: bool,
    /// Set TC so the client retries over TCP (RPZ TCP-ONLY over UDP).
    pub truncated: bool,
    /// Local data rewrote the name to this one (a CNAME): the caller resolves it and appends
    /// its answer, so the client gets the whole chain.
    pub cname_target: Option<Name>,
}

/// Build the answer for `qname`/`qtype` under `verdict`. `zone` is the listed name that matched
/// (the query name itself or one of its parents). PASSTHRU, and TCP-ONLY over TCP, mean
/// "resolve normally" and are not synthesized: the caller does not call this for them.
/// `category` is the match's category (see [`BlockConfig::addresses`]).
pub fn blocked(
    verdict: Verdict<'_>,
    qname: &Name,
    qtype: RecordType,
    zone: &Name,
    block: &BlockConfig,
    category: Option<&str>,
) -> Synthesized {
    let nodata = |rcode| Synthesized {
        rcode,
        authorities: vec![soa(zone, block.ttl)],
        ..Synthesized::default()
    };
    match verdict {
        Verdict::Refused => Synthesized {
            rcode: ResponseCode::Refused,
            ..Synthesized::default()
        },
        Verdict::Drop => Synthesized {
            drop: true,
            ..Synthesized::default()
        },
        Verdict::TcpOnly => Synthesized {
            truncated: true,
            ..Synthesized::default()
        },
        Verdict::NxDomain => nodata(ResponseCode::NXDomain),
        Verdict::NoData | Verdict::Passthru => nodata(ResponseCode::NoError),
        Verdict::BlockAddress => {
            let (ipv4, ipv6) = block.addresses(category);
            let data = match (qtype, ipv4, ipv6) {
                (RecordType::A, Some(v4), _) => Some(RData::A(A(v4))),
                (RecordType::AAAA, _, Some(v6)) => Some(RData::AAAA(AAAA(v6))),
                _ => None,
            };
            match data {
                Some(data) => Synthesized {
                    answers: vec![Record::from_rdata(qname.clone(), block.ttl, data)],
                    ..Synthesized::default()
                },
                None => nodata(ResponseCode::NoError),
            }
        }
        Verdict::Local(records) => {
            // Records of the asked type answer directly; otherwise a CNAME rewrites the name;
            // otherwise the name exists with no data of this type.
            let own: Vec<Record> = records
                .iter()
                .filter(|r| r.record_type() == qtype || qtype == RecordType::ANY)
                .map(|r| Record::from_rdata(qname.clone(), block.ttl, r.clone()))
                .collect();
            if !own.is_empty() {
                return Synthesized {
                    answers: own,
                    ..Synthesized::default()
                };
            }
            let cname = records.iter().find_map(|r| match r {
                RData::CNAME(c) => Some(c.0.clone()),
                _ => None,
            });
            match cname {
                Some(target) => Synthesized {
                    answers: vec![Record::from_rdata(
                        qname.clone(),
                        block.ttl,
                        RData::CNAME(hickory_proto::rr::rdata::CNAME(target.clone())),
                    )],
                    cname_target: Some(target),
                    ..Synthesized::default()
                },
                None => nodata(ResponseCode::NoError),
            }
        }
    }
}

fn soa(zone: &Name, ttl: u32) -> Record {
    // The names are fixed and valid; a failure here would be a bug in the literal, so fall
    // back to the root rather than panic on the query path.
    let mname = Name::from_ascii("policy.rampart.invalid.").unwrap_or_else(|_| Name::root());
    let rname = Name::from_ascii("hostmaster.rampart.invalid.").unwrap_or_else(|_| Name::root());
    let mut owner = zone.clone();
    owner.set_fqdn(true);
    Record::from_rdata(
        owner,
        ttl,
        RData::SOA(SOA::new(mname, rname, 1, 3600, 600, 86_400, ttl)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn cfg(v4: bool, v6: bool) -> BlockConfig {
        BlockConfig {
            ipv4: v4.then_some(Ipv4Addr::new(127, 0, 0, 1)),
            ipv6: v6.then_some(Ipv6Addr::LOCALHOST),
            ttl: 60,
            categories: Vec::new(),
        }
    }

    #[test]
    fn addresses_and_nodata() {
        let q = Name::from_ascii("x.ads.example.").unwrap();
        let z = Name::from_ascii("ads.example.").unwrap();
        let a = blocked(
            Verdict::BlockAddress,
            &q,
            RecordType::A,
            &z,
            &cfg(true, true),
            None,
        );
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].ttl, 60);
        let mx = blocked(
            Verdict::BlockAddress,
            &q,
            RecordType::MX,
            &z,
            &cfg(true, true),
            None,
        );
        assert!(mx.answers.is_empty());
        assert_eq!(mx.rcode, ResponseCode::NoError);
        assert_eq!(mx.authorities[0].name, z);
        let aaaa = blocked(
            Verdict::BlockAddress,
            &q,
            RecordType::AAAA,
            &z,
            &cfg(true, false),
            None,
        );
        assert!(aaaa.answers.is_empty());
        let nx = blocked(
            Verdict::NxDomain,
            &q,
            RecordType::A,
            &z,
            &cfg(true, true),
            None,
        );
        assert_eq!(nx.rcode, ResponseCode::NXDomain);
        let r = blocked(
            Verdict::Refused,
            &q,
            RecordType::A,
            &z,
            &cfg(true, true),
            None,
        );
        assert_eq!(r.rcode, ResponseCode::Refused);
    }

    #[test]
    fn a_category_with_its_own_address_gets_it() {
        let q = Name::from_ascii("casino.example.").unwrap();
        let mut block = cfg(true, true);
        block.categories.push(crate::config::CategoryAddress {
            name: "gambling".into(),
            ipv4: Some(Ipv4Addr::new(127, 0, 0, 10)),
            ipv6: None,
        });
        let addr = |qtype, category| {
            blocked(Verdict::BlockAddress, &q, qtype, &q, &block, category).answers[0]
                .data
                .clone()
        };
        assert_eq!(
            addr(RecordType::A, Some("Gambling")),
            RData::A(A(Ipv4Addr::new(127, 0, 0, 10)))
        );
        // The category sets no IPv6 address: [block]'s.
        assert_eq!(
            addr(RecordType::AAAA, Some("gambling")),
            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))
        );
        assert_eq!(
            addr(RecordType::A, Some("malware")),
            RData::A(A(Ipv4Addr::LOCALHOST))
        );
        assert_eq!(addr(RecordType::A, None), RData::A(A(Ipv4Addr::LOCALHOST)));
        assert_eq!(
            block.category_of(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10))),
            Some("gambling")
        );
        assert_eq!(block.category_of(IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    }
}
