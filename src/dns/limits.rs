//! Who may query and how much: the access table, the rate limiter and the TCP limits, kept
//! together so one call swaps them on reload, and the gate the UDP workers run every packet
//! through before the fast path.

use std::{net::IpAddr, sync::Arc, time::Instant};

use arc_swap::{ArcSwap, Guard};
use prometheus::IntCounter;

use super::{
    access::AccessTable,
    ratelimit::{Limit, RateLimiter, Scope, Settings},
    wire::HEADER,
};
use crate::{
    config::{Config, DenyAction, TcpConfig},
    metrics::Metrics,
};

const RCODE_REFUSED: u8 = 5;

/// The limits in force; shared by every listener.
#[derive(Debug)]
pub struct Limits {
    access: ArcSwap<AccessTable>,
    pub rate: RateLimiter,
    tcp: ArcSwap<TcpConfig>,
    metrics: Metrics,
    /// `rampart_access_denied_total` and `rampart_rate_limited_total` series the UDP gate
    /// counts into, in [`Tally`] order.
    udp_counters: [IntCounter; Tally::COUNT],
}

impl Limits {
    pub fn new(config: &Config, metrics: &Metrics) -> Self {
        let denied = |a: &str| metrics.access_denied.with_label_values(&["udp", a]);
        let limited = |s: &str, a: &str| metrics.rate_limited.with_label_values(&[s, a]);
        Self {
            access: ArcSwap::from_pointee(AccessTable::new(&config.access)),
            rate: RateLimiter::new(&config.rate_limit),
            tcp: ArcSwap::from_pointee(config.tcp.clone()),
            metrics: metrics.clone(),
            udp_counters: [
                denied("refuse"),
                denied("drop"),
                limited("client", "drop"),
                limited("client", "slip"),
                limited("prefix", "drop"),
                limited("prefix", "slip"),
            ],
        }
    }

    /// Put the access table, rate limits and TCP limits of `config` in force.
    pub fn reload(&self, config: &Config) {
        self.access
            .store(Arc::new(AccessTable::new(&config.access)));
        self.rate.reload(&config.rate_limit);
        self.tcp.store(Arc::new(config.tcp.clone()));
    }

    /// What to do with a query from `client` (`None`: it may query).
    pub fn denied(&self, client: IpAddr) -> Option<DenyAction> {
        self.access.load().denied(client)
    }

    /// Count a denied query.
    pub fn count_denied(&self, protocol: &str, action: DenyAction) {
        self.metrics
            .access_denied
            .with_label_values(&[protocol, action.label()])
            .inc();
    }

    /// The TCP limits in force.
    pub fn tcp(&self) -> Arc<TcpConfig> {
        self.tcp.load_full()
    }

    /// The gate for one batch of UDP packets received at `now`.
    pub fn udp_gate(&self, now: Instant) -> UdpGate<'_> {
        UdpGate {
            access: self.access.load(),
            rate: self.rate.settings(),
            limits: self,
            now: self.rate.clock(now),
        }
    }
}

/// What the gate decided for one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go on to the fast path.
    Pass,
    /// A short answer of this many bytes is in the output buffer.
    Reply(usize),
    /// Send nothing.
    Drop,
}

/// A UDP worker's counts of gate decisions, published once per batch.
#[derive(Debug, Default)]
pub struct Tally([u64; Tally::COUNT]);

impl Tally {
    const COUNT: usize = 6;
    const DENIED_REFUSE: usize = 0;
    const DENIED_DROP: usize = 1;

    fn limited(scope: Scope, slipped: bool) -> usize {
        2 + 2 * usize::from(scope == Scope::Prefix) + usize::from(slipped)
    }

    /// Publish and reset.
    pub fn flush(&mut self, limits: &Limits) {
        for (n, counter) in self.0.iter_mut().zip(&limits.udp_counters) {
            if *n > 0 {
                counter.inc_by(std::mem::take(n));
            }
        }
    }
}

/// The access table and rate settings loaded once for a batch of datagrams.
pub struct UdpGate<'a> {
    access: Guard<Arc<AccessTable>>,
    rate: Guard<Arc<Settings>>,
    limits: &'a Limits,
    now: u64,
}

impl UdpGate<'_> {
    /// Access control, then the rate limits, for a datagram `req` from `client`; a short
    /// answer (REFUSED, or TC=1 for a slip) is written to `out`.
    #[inline]
    pub fn admit(&self, req: &[u8], client: IpAddr, out: &mut [u8], tally: &mut Tally) -> Admit {
        if let Some(action) = self.access.denied(client) {
            let reply = match action {
                DenyAction::Refuse => short_reply(req, RCODE_REFUSED, false, out),
                DenyAction::Drop => None,
            };
            let (slot, admit) = match reply {
                Some(len) => (Tally::DENIED_REFUSE, Admit::Reply(len)),
                None => (Tally::DENIED_DROP, Admit::Drop),
            };
            tally.0[slot] += 1;
            return admit;
        }
        let (scope, reply) = match self.limits.rate.check(&self.rate, client, self.now) {
            Limit::Pass => return Admit::Pass,
            Limit::Drop(scope) => (scope, None),
            Limit::Slip(scope) => (scope, short_reply(req, 0, true, out)),
        };
        tally.0[Tally::limited(scope, reply.is_some())] += 1;
        reply.map_or(Admit::Drop, Admit::Reply)
    }
}

/// A header-and-question answer to `req` with `rcode` (and TC when `truncated`), RD copied and
/// RA set, in `out`. None when `req` is not a query with one readable question (or none).
pub fn short_reply(req: &[u8], rcode: u8, truncated: bool, out: &mut [u8]) -> Option<usize> {
    if req.len() < HEADER || req[2] & 0x80 != 0 {
        return None;
    }
    let questions = u16::from_be_bytes([req[4], req[5]]);
    let end = match questions {
        0 => HEADER,
        1 => {
            let mut pos = HEADER;
            loop {
                let len = usize::from(*req.get(pos)?);
                pos += 1;
                if len == 0 {
                    break;
                }
                if len & 0xc0 != 0 || pos + len - HEADER > 255 {
                    return None;
                }
                pos += len;
            }
            pos + 4
        }
        _ => return None,
    };
    if end > req.len() || end > out.len() {
        return None;
    }
    out[..end].copy_from_slice(&req[..end]);
    // QR, the opcode and RD as asked, TC; RA and the RCODE.
    out[2] = 0x80 | (req[2] & 0x79) | if truncated { 0x02 } else { 0 };
    out[3] = 0x80 | rcode;
    out[6..HEADER].fill(0);
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_replies_echo_the_question() {
        let mut q = vec![0x12, 0x34, 0x01, 0x20, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03www\x07example\x00\x00\x01\x00\x01");
        q.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0]);
        let mut out = [0u8; 512];
        let n = short_reply(&q, RCODE_REFUSED, false, &mut out).unwrap();
        assert_eq!(n, 12 + 13 + 4);
        assert_eq!(&out[..4], &[0x12, 0x34, 0x81, 0x85]);
        assert_eq!(&out[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&out[12..n], &q[12..n]);
        let n = short_reply(&q, 0, true, &mut out).unwrap();
        assert_eq!(&out[2..4], &[0x83, 0x80]);
        assert_eq!(n, 29);
        // No RD asked, none echoed.
        q[2] = 0;
        short_reply(&q, 0, true, &mut out).unwrap();
        assert_eq!(out[2], 0x82);
    }

    #[test]
    fn malformed_or_responses_get_nothing() {
        let mut out = [0u8; 512];
        let mut q = vec![0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x01a\x00\x00\x01\x00\x01");
        assert_eq!(short_reply(&q, 5, false, &mut out), None, "a response");
        q[2] = 1;
        assert!(short_reply(&q, 5, false, &mut out).is_some());
        assert_eq!(short_reply(&q[..q.len() - 1], 5, false, &mut out), None);
        assert_eq!(short_reply(&q[..5], 5, false, &mut out), None);
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(short_reply(&two, 5, false, &mut out), None);
        let mut pointer = q.clone();
        pointer[12] = 0xc0;
        assert_eq!(short_reply(&pointer, 5, false, &mut out), None);
        let header_only = &q[..12];
        let mut none = header_only.to_vec();
        none[5] = 0;
        assert_eq!(short_reply(&none, 5, false, &mut out), Some(12));
    }
}
