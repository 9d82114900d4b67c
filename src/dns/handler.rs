//! The query pipeline: hickory-server hands every decoded request to [`DnsHandler`], which runs
//! the steps in order and writes exactly one response.
//!
//! Order, and why:
//! 1. **Sanity** (opcode, one question, class IN, no zone transfers): cheap, and nothing later
//!    has to handle odd requests.
//! 2. **Policy** before the cache: a list update must take effect at once, not after cached
//!    answers for a newly blocked name expire. Allow beats block.
//! 3. **Cache**, then **upstream** under the configured deadline; failures become SERVFAIL.
//!
//! Every path ends in one `Outcome`, which the metrics read once at the end.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Header, HeaderCounts, Metadata, OpCode, Query, ResponseCode},
    rr::{DNSClass, Name, Record, RecordType},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponseBuilder,
};
use tracing::debug;

use super::{answer, cache::Cache, upstream::Upstream};
use crate::{
    config::BlockConfig,
    metrics::{Metrics, Outcome, qtype_label},
    policy::{Decision, QueryName, Snapshot},
};

/// Everything a query needs, shared by all listener tasks.
pub struct DnsHandler {
    /// The current policy; swapped whole on reload, read without locking.
    pub policy: Arc<ArcSwap<Snapshot>>,
    pub cache: Arc<Cache>,
    pub upstream: Upstream,
    pub metrics: Metrics,
    pub block: BlockConfig,
    /// Our EDNS UDP payload limit (the smaller of this and the client's is used).
    pub max_udp_payload: u16,
}

impl std::fmt::Debug for DnsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHandler").finish_non_exhaustive()
    }
}

/// The records of a response we are about to send.
struct Reply {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
}

impl Reply {
    fn empty(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
        }
    }
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Udp => "udp",
        Protocol::Tcp => "tcp",
        _ => "other",
    }
}

#[async_trait::async_trait]
impl RequestHandler for DnsHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let started = Instant::now();
        let protocol = protocol_label(request.protocol());
        let queries = request.queries.queries();
        let qtype = queries
            .first()
            .map_or("other", |q| qtype_label(q.query_type()));

        let (reply, outcome) = self.run(request).await;

        // EDNS: answer in kind (RFC 6891). Version 0 is all we speak; others get BADVERS.
        let mut edns = None;
        let mut rcode = reply.rcode;
        if let Some(req_edns) = &request.edns {
            let mut e = Edns::new();
            let payload = req_edns.max_payload().max(512).min(self.max_udp_payload);
            e.set_max_payload(payload);
            e.set_version(0);
            if req_edns.version() > 0 {
                rcode = ResponseCode::BADVERS;
            }
            edns = Some(e);
        }
        let (answers, authorities): (&[Record], &[Record]) = if rcode == ResponseCode::BADVERS {
            (&[], &[])
        } else {
            (&reply.answers, &reply.authorities)
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = false;
        metadata.recursion_available = true;
        metadata.authentic_data = false;
        metadata.response_code = rcode;

        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let response = builder.build(metadata, answers.iter(), authorities.iter(), [], []);
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                debug!(error = %e, client = %request.src(), "could not send response");
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
        };
        self.metrics
            .observe(qtype, protocol, outcome, started.elapsed());
        info
    }
}

impl DnsHandler {
    async fn run(&self, request: &Request) -> (Reply, Outcome) {
        if request.metadata.op_code != OpCode::Query {
            return (Reply::empty(ResponseCode::NotImp), Outcome::NotImp);
        }
        let [query] = request.queries.queries() else {
            return (Reply::empty(ResponseCode::FormErr), Outcome::FormErr);
        };
        let qtype = query.query_type();
        let qclass = query.query_class();
        if qclass != DNSClass::IN
            || matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT)
        {
            return (Reply::empty(ResponseCode::Refused), Outcome::Refused);
        }
        let qname: &Name = query.original().name();

        // Policy.
        let snapshot = self.policy.load();
        let canonical = QueryName::new(qname);
        let group = snapshot.group_of(request.src().ip());
        match snapshot.decide(canonical.as_bytes(), group) {
            Decision::Blocked(m) => {
                let Some(list) = snapshot.list(m) else {
                    return (Reply::empty(ResponseCode::ServFail), Outcome::ServFail);
                };
                self.metrics.blocked_by(&list.name);
                let zone_labels = canonical.as_bytes()
                    [canonical.as_bytes().len() - m.hit.suffix_len..]
                    .iter()
                    .filter(|&&b| b == b'.')
                    .count()
                    + 1;
                let zone = qname.trim_to(zone_labels);
                let action = snapshot.action(m, group);
                let s = answer::blocked(action, qname, qtype, &zone, &self.block);
                return (
                    Reply {
                        rcode: s.rcode,
                        answers: s.answers,
                        authorities: s.authorities,
                    },
                    Outcome::Blocked,
                );
            }
            Decision::Allowed(m) => {
                if let Some(list) = snapshot.list(m) {
                    self.metrics.allowlisted_by(&list.name);
                }
            }
            Decision::Pass => {}
        }
        drop(snapshot);

        // Cache.
        let lower = query.name();
        if let Some(hit) = self.cache.get(lower, qtype, qclass) {
            return (
                Reply {
                    rcode: hit.rcode,
                    answers: hit.answers,
                    authorities: hit.authorities,
                },
                Outcome::CacheHit,
            );
        }

        // Upstream.
        let mut upstream_query = Query::query(Name::from(lower.clone()), qtype);
        upstream_query.set_query_class(qclass);
        let started = Instant::now();
        let result = self.upstream.resolve(upstream_query).await;
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(answer) => {
                self.cache.insert(lower, qtype, qclass, &answer);
                self.metrics.cache_entries.set(self.cache.len() as i64);
                (
                    Reply {
                        rcode: answer.rcode,
                        answers: answer.answers,
                        authorities: answer.authorities,
                    },
                    Outcome::Allowed,
                )
            }
            Err(e) => {
                debug!(name = %qname, %qtype, error = %e, "upstream failed");
                self.metrics
                    .upstream_errors
                    .with_label_values(&[e.reason()])
                    .inc();
                (Reply::empty(ResponseCode::ServFail), Outcome::ServFail)
            }
        }
    }
}

/// How often the cache is swept of expired entries.
pub const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
