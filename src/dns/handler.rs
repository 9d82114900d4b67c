//! The query pipeline: hickory-server hands every decoded request to [`DnsHandler`], which runs
//! the steps in order and writes exactly one response.
//!
//! Order, and why:
//! 1. **Sanity** (opcode, one question, class IN, no zone transfers): cheap, and nothing later
//!    has to handle odd requests.
//! 2. **Policy** before the cache: a list update must take effect at once, not after cached
//!    answers for a newly blocked name expire. Allow beats block.
//! 3. **Cache**, then **upstream** under the configured deadline and within the bounds on
//!    resolutions in flight; failures (and queries over a bound) get the expired cached answer
//!    if there is one (serve-stale, RFC 8767; never stored in the packet cache), else SERVFAIL.
//!
//! Every path ends in one `Outcome`, which the metrics read once at the end.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use hickory_proto::{
    op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, Query, ResponseCode},
    rr::{DNSClass, LowerName, Name, Record, RecordType, rdata::opt::EdnsOption},
    serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder},
};
use hickory_server::{
    net::{runtime::Time, xfer::Protocol},
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::{MessageResponse, MessageResponseBuilder, Queries},
};
use tracing::{debug, info};

use super::{
    answer,
    cache::{Answer, Cache, Lookup},
    limits::Limits,
    packet_cache::{PacketCache, Tally},
    upstream::{Permit, Upstream, UpstreamError},
    wire,
};
use crate::{
    config::{BlockConfig, DenyAction},
    feeds::manager::{Feeds, NotifyResult},
    metrics::{Metrics, Outcome, qtype_label},
    policy::{Decision, Match, QueryName, Snapshot, Verdict, groups::GroupId},
    querylog::{Entry, QueryLog, Transport},
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
    /// The list updater, told about NOTIFYs for zone-transfer lists.
    pub feeds: Option<Arc<Feeds>>,
    /// Ready UDP responses, filled here and served by the fast path.
    pub packets: Arc<PacketCache>,
    /// Access control and rate limits (checked by every listener before this pipeline).
    pub limits: Arc<Limits>,
    /// The query log; None when off (then the query path pays one branch for it).
    pub query_log: Option<Arc<QueryLog>>,
    /// Upstream resolutions in flight, so identical questions share one.
    pub fills: Arc<Fills>,
}

/// The outcome of one upstream resolution, as the questions waiting on it receive it.
type Filled = Option<Result<Answer, UpstreamError>>;

/// Upstream resolutions in flight, by question. Identical questions wait for one resolution,
/// and it stores its answer in the cache before it lets them go: a question that missed the
/// cache just as the resolution ended then finds the answer in the cache (checked again once
/// it leads a resolution of its own) instead of asking upstream a second time.
#[derive(Default)]
pub struct Fills(
    dashmap::DashMap<(LowerName, RecordType, DNSClass), tokio::sync::watch::Receiver<Filled>>,
);

/// Removes a question from [`Fills`] when its resolution ends or is dropped.
struct FillGuard<'a> {
    fills: &'a Fills,
    key: &'a (LowerName, RecordType, DNSClass),
}

impl Drop for FillGuard<'_> {
    fn drop(&mut self) {
        self.fills.0.remove(self.key);
    }
}

impl std::fmt::Debug for DnsHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsHandler").finish_non_exhaustive()
    }
}

/// The records of a response we are about to send.
#[derive(Default)]
struct Reply {
    rcode: ResponseCode,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    /// Send nothing (RPZ DROP).
    drop: bool,
    /// Set TC (RPZ TCP-ONLY over UDP).
    truncated: bool,
}

impl Reply {
    fn empty(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            ..Self::default()
        }
    }
}

impl From<answer::Synthesized> for Reply {
    fn from(s: answer::Synthesized) -> Self {
        Self {
            rcode: s.rcode,
            answers: s.answers,
            authorities: s.authorities,
            drop: s.drop,
            truncated: s.truncated,
        }
    }
}

impl From<Answer> for Reply {
    fn from(a: Answer) -> Self {
        Self {
            rcode: a.rcode,
            answers: a.answers,
            authorities: a.authorities,
            ..Self::default()
        }
    }
}

pub(crate) fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Udp => "udp",
        Protocol::Tcp => "tcp",
        Protocol::Tls => "tls",
        Protocol::Https => "https",
        _ => "other",
    }
}

/// The response message type both listeners build.
type Built<'q, 'a> = MessageResponse<
    'q,
    'a,
    std::slice::Iter<'a, Record>,
    std::slice::Iter<'a, Record>,
    std::array::IntoIter<&'a Record, 0>,
    std::array::IntoIter<&'a Record, 0>,
>;

/// What the pipeline learnt about a query beyond its reply, for the packet cache.
#[derive(Debug, Default)]
pub struct Notes {
    /// The answer depends on more than the packet-cache key (a log-only match must be logged
    /// on every query), or must not be served again from it (a stale answer).
    pub uncacheable: bool,
    pub blocked_by: Option<usize>,
    pub allowed_by: Option<usize>,
    /// The rule that blocked or rewrote the answer (for the query log).
    pub blocked: Option<Match>,
    /// The policy generation the query was answered under.
    pub generation: u64,
    /// Extended DNS Error data (INFO-CODE and EXTRA-TEXT) of a synthesized answer.
    pub ede: Option<Vec<u8>>,
    /// A prefetch: resolve upstream even if the cache has the answer.
    pub prefetch: bool,
}

/// hickory-server's listeners (TCP) and our UDP workers share one handler.
#[derive(Debug, Clone)]
pub struct SharedHandler(pub Arc<DnsHandler>);

#[async_trait::async_trait]
impl RequestHandler for SharedHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.0
            .handle_request::<R, T>(request, response_handle)
            .await
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
        let wall = self.query_log.as_ref().map(|_| crate::querylog::now_ns());
        let protocol = protocol_label(request.protocol());
        let qtype = request_qtype(request);

        // Listeners of hickory-server (DoT, DoH) are checked here; UDP and plain TCP are
        // checked by our own listeners before they decode anything. Denied queries are
        // counted in `rampart_access_denied_total`, not with the queries answered.
        let denied = self.limits.denied(request.src().ip());
        let mut notes = Notes::default();
        let (reply, outcome) = match denied {
            None => self.run(request, &mut notes).await,
            Some(action) => {
                self.limits.count_denied(protocol, action);
                let reply = Reply {
                    drop: action == DenyAction::Drop,
                    ..Reply::empty(ResponseCode::Refused)
                };
                (reply, Outcome::Refused)
            }
        };
        let observe = |outcome| {
            if denied.is_none() {
                self.metrics
                    .observe(qtype, protocol, outcome, started.elapsed());
            }
        };
        if let (Some(log), Some(wall), None) = (&self.query_log, wall, denied) {
            let rcode = (!reply.drop).then(|| self.response_edns(request, reply.rcode, None).1);
            log_query(
                log,
                wall,
                started,
                request,
                outcome,
                &notes,
                rcode.map(u16::from),
                None,
            );
        }
        if reply.drop {
            // RPZ DROP: the client hears nothing, as if the packet were lost.
            observe(outcome);
            let mut metadata = Metadata::response_from_request(&request.metadata);
            metadata.response_code = ResponseCode::NoError;
            return ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            });
        }
        let (edns, rcode) = self.response_edns(request, reply.rcode, notes.ede.take());
        let response = self.build(request, &reply, edns.as_ref(), rcode);
        let metadata = *response.metadata();
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
        observe(outcome);
        info
    }
}

fn request_qtype(request: &Request) -> &'static str {
    request
        .queries
        .queries()
        .first()
        .map_or("other", |q| qtype_label(q.query_type()))
}

impl DnsHandler {
    /// The general path for a UDP datagram the fast path passed on (see
    /// [`DnsHandler::answer_bytes`]).
    pub async fn answer_udp(&self, raw: Vec<u8>, src: SocketAddr) -> Option<Vec<u8>> {
        self.answer_bytes(raw, src, Protocol::Udp).await
    }

    /// Decode one message read off the wire. `Err(None)`: send nothing (shorter than a header,
    /// so not DNS; or a response, never answered, against reflection). `Err(Some(bytes))`: the
    /// header reads but the rest does not, so FORMERR (counted under `protocol`).
    pub(crate) fn decode(
        &self,
        raw: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
        started: Instant,
    ) -> Result<Request, Option<Vec<u8>>> {
        let header = Header::read(&mut BinDecoder::new(&raw)).map_err(|_| None)?;
        if header.metadata.message_type == MessageType::Response {
            return Err(None);
        }
        Request::from_bytes(raw, src, protocol).map_err(|_| {
            self.metrics.observe(
                "other",
                protocol_label(protocol),
                Outcome::FormErr,
                started.elapsed(),
            );
            Some(formerr(&header))
        })
    }

    /// Answer one DNS message received over `protocol` (UDP or TCP): decode it, run the
    /// pipeline and encode the response. Over UDP the response is cut to the client's payload
    /// size (TC set) and stored in the packet cache when the fast path may serve it next
    /// time; over TCP it may be as large as a message can be. `None`: send nothing.
    pub async fn answer_bytes(
        &self,
        raw: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        self.answer_bytes_with(raw, src, protocol, Notes::default())
            .await
    }

    /// Refresh the answer to a UDP query the fast path just answered from the packet cache
    /// (prefetch): resolved upstream again, stored in both caches, sent to nobody and not
    /// counted as a query.
    pub async fn prefetch(&self, raw: Vec<u8>, src: SocketAddr) {
        self.metrics.upstream_bounds.prefetches.inc();
        let notes = Notes {
            prefetch: true,
            ..Notes::default()
        };
        let _ = self.answer_bytes_with(raw, src, Protocol::Udp, notes).await;
    }

    async fn answer_bytes_with(
        &self,
        raw: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
        mut notes: Notes,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        // A prefetch is not a client's query: not logged.
        let wall = self
            .query_log
            .as_ref()
            .filter(|_| !notes.prefetch)
            .map(|_| crate::querylog::now_ns());
        let label = protocol_label(protocol);
        let udp = protocol == Protocol::Udp;
        let request = match self.decode(raw, src, protocol, started) {
            Ok(request) => request,
            Err(reply) => return reply,
        };
        let (generation, client_rules, group) = {
            let s = self.policy.load();
            (s.generation, s.client_rules, s.group_of(src.ip()))
        };
        let (reply, outcome) = self.run(&request, &mut notes).await;
        if !notes.prefetch {
            self.metrics
                .observe(request_qtype(&request), label, outcome, started.elapsed());
        }
        if reply.drop {
            if let (Some(log), Some(wall)) = (&self.query_log, wall) {
                log_query(log, wall, started, &request, outcome, &notes, None, None);
            }
            return None;
        }
        let (edns, rcode) = self.response_edns(&request, reply.rcode, notes.ede.take());
        let max_size = match (udp, &edns) {
            (false, _) => u16::MAX,
            (true, None) => 512,
            (true, Some(e)) => e.max_payload(),
        };
        let response = self.build(&request, &reply, edns.as_ref(), rcode);
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max_size);
        if let Err(e) = response.destructive_emit(&mut encoder) {
            debug!(error = %e, "could not encode a response");
            let mut header = Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: HeaderCounts::default(),
            };
            header.metadata.response_code = ResponseCode::ServFail;
            return Some(formerr_like(&header));
        }
        if let (Some(log), Some(wall)) = (&self.query_log, wall) {
            let rcode = Some(u16::from(bytes.get(3).map_or(0, |b| b & 0x0f)));
            log_query(
                log,
                wall,
                started,
                &request,
                outcome,
                &notes,
                rcode,
                Some(&bytes),
            );
        }
        if !udp {
            return Some(bytes);
        }
        // Fill the packet cache with answers that depend on nothing but its key.
        let tally_outcome = match outcome {
            Outcome::Allowed | Outcome::CacheHit => Some(Outcome::CacheHit),
            Outcome::Blocked => Some(Outcome::Blocked),
            _ => None,
        };
        let truncated = bytes.get(2).is_some_and(|b| b & 0x02 != 0);
        if let Some(tally_outcome) = tally_outcome
            && !notes.uncacheable
            && !client_rules
            && !reply.truncated
            && !truncated
            && matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain)
            && let Some(view) = wire::parse_query(request.as_slice())
            && view.edns.is_none_or(|e| e.version == 0)
            && let Some(index) = wire::index_response(&bytes)
        {
            let mut key = [0u8; wire::MAX_KEY];
            let n = wire::cache_key(request.as_slice(), &view, group as u16, &mut key);
            // An answer that followed no CNAME or DNAME depends on the policy only through
            // its question name's decision, so it can be revalidated after a list update.
            let revalidatable = tally_outcome == Outcome::CacheHit
                && !reply
                    .answers
                    .iter()
                    .any(|r| matches!(r.record_type(), RecordType::CNAME | RecordType::DNAME));
            self.packets.store(
                &key[..n],
                &bytes,
                index,
                generation,
                Tally {
                    outcome: tally_outcome,
                    blocked_by: notes.blocked_by,
                    allowed_by: notes.allowed_by,
                },
                revalidatable,
            );
        }
        Some(bytes)
    }

    /// The response's EDNS record (answered in kind, RFC 6891: the smaller of the client's
    /// payload size and ours), with the Extended DNS Error `ede` if any (RFC 8914: only to
    /// clients that sent EDNS), and the RCODE after the version check (BADVERS above 0).
    fn response_edns(
        &self,
        request: &Request,
        rcode: ResponseCode,
        ede: Option<Vec<u8>>,
    ) -> (Option<Edns>, ResponseCode) {
        let Some(req_edns) = &request.edns else {
            return (None, rcode);
        };
        let mut e = Edns::new();
        e.set_max_payload(self.advertised_payload(req_edns.max_payload()));
        e.set_version(0);
        let rcode = if req_edns.version() > 0 {
            ResponseCode::BADVERS
        } else {
            if let Some(data) = ede {
                e.options_mut()
                    .insert(EdnsOption::Unknown(super::ede::OPTION, data));
            }
            rcode
        };
        (Some(e), rcode)
    }

    /// The UDP payload size we advertise to a client that advertised `theirs`.
    pub fn advertised_payload(&self, theirs: u16) -> u16 {
        theirs.max(512).min(self.max_udp_payload)
    }

    fn build<'q, 'a>(
        &self,
        request: &'q Request,
        reply: &'a Reply,
        edns: Option<&'q Edns>,
        rcode: ResponseCode,
    ) -> Built<'q, 'a> {
        let (answers, authorities): (&[Record], &[Record]) = if rcode == ResponseCode::BADVERS {
            (&[], &[])
        } else {
            (&reply.answers, &reply.authorities)
        };
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = false;
        metadata.recursion_available = true;
        metadata.authentic_data = false;
        metadata.truncation = reply.truncated;
        metadata.response_code = rcode;
        // hickory echoes the question as received; a compression pointer in it would point
        // into our response's header (see `compressed_question`), so such a question is left
        // out.
        let mut builder = if compressed_question(request) {
            MessageResponseBuilder::new(&NO_QUESTIONS, None)
        } else {
            MessageResponseBuilder::from_message_request(request)
        };
        if let Some(e) = edns {
            builder.edns(e);
        }
        builder.build(metadata, answers.iter(), authorities.iter(), [], [])
    }
}

/// An empty question section, for responses that must not echo the request's.
static NO_QUESTIONS: std::sync::LazyLock<Queries> = std::sync::LazyLock::new(|| {
    Queries::read(&mut BinDecoder::new(&[]), 0).expect("zero questions read from nothing")
});

/// Whether a name in the question section uses a compression pointer. The only bytes before
/// the first question are the header, so such a pointer points into the header: the name
/// decodes to whatever the ID and flags spell, and echoing the question verbatim (as hickory
/// does) would point it at the response's own header instead, which no client can read. Such
/// a request gets FORMERR without a question.
fn compressed_question(request: &Request) -> bool {
    let bytes = request.queries.as_bytes();
    let mut pos = 0;
    for _ in 0..request.queries.len() {
        loop {
            let Some(&len) = bytes.get(pos) else {
                return false;
            };
            if len & 0xc0 != 0 {
                return true;
            }
            pos += 1 + usize::from(len);
            if len == 0 {
                break;
            }
        }
        // Type and class.
        pos += 4;
    }
    false
}

/// A header-only error response to a request whose header we could read.
fn formerr(request: &Header) -> Vec<u8> {
    let mut header = Header {
        metadata: Metadata::response_from_request(&request.metadata),
        counts: HeaderCounts::default(),
    };
    header.metadata.response_code = ResponseCode::FormErr;
    formerr_like(&header)
}

fn formerr_like(header: &Header) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(wire::HEADER);
    let mut encoder = BinEncoder::new(&mut bytes);
    let _ = header.emit(&mut encoder);
    bytes
}

impl DnsHandler {
    async fn run(&self, request: &Request, notes: &mut Notes) -> (Reply, Outcome) {
        if compressed_question(request) {
            return (Reply::empty(ResponseCode::FormErr), Outcome::FormErr);
        }
        if request.metadata.op_code == OpCode::Notify {
            return self.notify(request);
        }
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
        let client = request.src().ip();
        let udp = request.protocol() == Protocol::Udp;

        // Policy, question phase.
        let snapshot = self.policy.load();
        notes.generation = snapshot.generation;
        let canonical = QueryName::new(qname);
        let group = snapshot.group_of(client);
        let evaluation =
            snapshot.evaluate(&snapshot.prepare(canonical.as_bytes()), Some(client), group);
        self.report_logged(&snapshot, evaluation.logged, qname, notes);
        let q = Question {
            qname,
            canonical: &canonical,
            qtype,
            qclass,
            udp,
            client,
        };
        let mut check_answer = true;
        match evaluation.decision {
            Decision::Blocked(m) => {
                if let Some(reply) = self.enforce(&snapshot, m, group, &q, notes).await {
                    return (reply, Outcome::Blocked);
                }
                check_answer = false;
            }
            Decision::Allowed(m) => {
                if let Some(list) = snapshot.list(m) {
                    self.metrics.allowlisted_by(&list.name);
                    notes.allowed_by = Some(m.list);
                }
                check_answer = false;
            }
            Decision::Passthru(_) => check_answer = false,
            Decision::Pass => {}
        }

        // Cache, then upstream.
        let Ok((answer, outcome)) = self
            .lookup(query.name(), qtype, qclass, client, notes)
            .await
        else {
            return (Reply::empty(ResponseCode::ServFail), Outcome::ServFail);
        };

        // Policy, answer phase: CNAME targets and answer addresses. Runs on cached answers
        // too, so a list update applies to them at once.
        if check_answer && !answer.answers.is_empty() {
            let evaluation = snapshot.evaluate_answer(&answer.answers, group);
            self.report_logged(&snapshot, evaluation.logged, qname, notes);
            if let Decision::Blocked(m) = evaluation.decision
                && let Some(reply) = self.enforce(&snapshot, m, group, &q, notes).await
            {
                return (reply, Outcome::Blocked);
            }
        }
        (Reply::from(answer), outcome)
    }

    /// The answer from the cache, else from upstream; when upstream fails (or its limits are
    /// reached) an expired answer inside the serve-stale window is served instead (RFC 8767).
    async fn lookup(
        &self,
        lower: &LowerName,
        qtype: RecordType,
        qclass: DNSClass,
        client: IpAddr,
        notes: &mut Notes,
    ) -> Result<(Answer, Outcome), UpstreamError> {
        if notes.prefetch {
            // The cached copy is about to expire: ask upstream now, and keep serving the
            // cached copy if that fails.
            return self
                .resolve(lower, qtype, qclass, client, false)
                .await
                .map(|answer| (answer, Outcome::Allowed));
        }
        let stale = match self.cache.lookup(lower, qtype, qclass) {
            Lookup::Fresh(hit) => return Ok((hit, Outcome::CacheHit)),
            // A refresh failed moments ago: do not make this client wait for another.
            Lookup::Stale {
                answer,
                refresh: false,
            } => return Ok(self.serve_stale(answer, notes)),
            Lookup::Stale { answer, .. } => Some(answer),
            Lookup::Miss => None,
        };
        let after = self.cache.stale_answer_after();
        let result = if stale.is_some() && !after.is_zero() && after < self.upstream.deadline() {
            self.refresh(lower, qtype, qclass, client, after).await
        } else {
            self.resolve(lower, qtype, qclass, client, true).await
        };
        match result {
            Ok(answer) => Ok((answer, Outcome::Allowed)),
            Err(e) => {
                debug!(name = %lower, %qtype, error = %e, stale = stale.is_some(), "upstream failed");
                let Some(answer) = stale else {
                    return Err(e);
                };
                if !matches!(e, UpstreamError::Limited(_)) {
                    self.cache.refresh_failed(lower, qtype, qclass);
                }
                Ok(self.serve_stale(answer, notes))
            }
        }
    }

    /// A stale answer: counted, and kept out of the packet cache.
    fn serve_stale(&self, answer: Answer, notes: &mut Notes) -> (Answer, Outcome) {
        notes.uncacheable = true;
        self.metrics.upstream_bounds.stale_answers.inc();
        (answer, Outcome::CacheHit)
    }

    /// Cache miss: ask upstream (within the bounds on resolutions in flight), store the answer.
    /// `recheck`: look in the cache again before asking upstream (not for a prefetch, which
    /// replaces a cached answer on purpose).
    async fn resolve(
        &self,
        lower: &LowerName,
        qtype: RecordType,
        qclass: DNSClass,
        client: IpAddr,
        recheck: bool,
    ) -> Result<Answer, UpstreamError> {
        let _permit = self.admit(client)?;
        let fill = Fill {
            upstream: &self.upstream,
            cache: &self.cache,
            fills: &self.fills,
            metrics: &self.metrics,
        };
        fill.fetch(lower, qtype, qclass, recheck).await
    }

    /// A slot for one upstream resolution, or the bound that refuses it (counted).
    fn admit(&self, client: IpAddr) -> Result<Permit, UpstreamError> {
        let bounds = &self.metrics.upstream_bounds;
        self.upstream
            .admit(client, &bounds.outstanding)
            .map_err(|scope| {
                bounds.limited(scope.label());
                UpstreamError::Limited(scope)
            })
    }

    /// Refresh an expired entry, but wait no longer than `after` (RFC 8767's client response
    /// timer): past it the caller serves the stale copy ([`UpstreamError::Timeout`]) while the
    /// refresh goes on in its own task, which holds its slot among the outstanding
    /// resolutions and ends by the resolver deadline.
    async fn refresh(
        &self,
        lower: &LowerName,
        qtype: RecordType,
        qclass: DNSClass,
        client: IpAddr,
        after: Duration,
    ) -> Result<Answer, UpstreamError> {
        let permit = self.admit(client)?;
        let (upstream, cache, fills, metrics, lower) = (
            self.upstream.clone(),
            self.cache.clone(),
            self.fills.clone(),
            self.metrics.clone(),
            lower.clone(),
        );
        let mut task = tokio::spawn(async move {
            let _permit = permit;
            let fill = Fill {
                upstream: &upstream,
                cache: &cache,
                fills: &fills,
                metrics: &metrics,
            };
            let result = fill.fetch(&lower, qtype, qclass, true).await;
            if result.is_err() {
                cache.refresh_failed(&lower, qtype, qclass);
            }
            result
        });
        match tokio::time::timeout(after, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(UpstreamError::Failed(e.to_string())),
            Err(_) => Err(UpstreamError::Timeout(after)),
        }
    }

    /// Apply a block decision: the rewritten reply, or None when the rule does not bite here
    /// (TCP-ONLY over TCP resolves normally).
    async fn enforce(
        &self,
        snapshot: &Snapshot,
        m: Match,
        group: GroupId,
        q: &Question<'_>,
        notes: &mut Notes,
    ) -> Option<Reply> {
        let verdict = snapshot.verdict(m, group);
        if verdict == Verdict::TcpOnly && !q.udp {
            return None;
        }
        notes.ede = super::ede::Ede::of(snapshot, m, group).map(|e| e.data());
        Some(self.rewrite(snapshot, m, verdict, q, notes).await)
    }

    /// The rewritten answer for a match. Local data that rewrites the name to another (an RPZ
    /// CNAME such as a safe-search host or the national block page host) is resolved and
    /// appended, so clients never get a bare CNAME.
    async fn rewrite(
        &self,
        snapshot: &Snapshot,
        m: Match,
        verdict: Verdict<'_>,
        q: &Question<'_>,
        notes: &mut Notes,
    ) -> Reply {
        let Question {
            qname,
            canonical,
            qtype,
            qclass,
            client,
            ..
        } = *q;
        if let Some(list) = snapshot.list(m) {
            self.metrics.blocked_by(&list.name);
            notes.blocked_by = Some(m.list);
        }
        notes.blocked = Some(m);
        // The listed name is the matched suffix of the query; address triggers have none, and
        // their negative answers carry the query name as the SOA owner.
        let zone = match m.hit.suffix_len {
            0 => qname.clone(),
            len => {
                let bytes = canonical.as_bytes();
                let labels = bytes[bytes.len().saturating_sub(len)..]
                    .iter()
                    .filter(|&&b| b == b'.')
                    .count()
                    + 1;
                qname.trim_to(labels)
            }
        };
        let synthesized = answer::blocked(
            verdict,
            qname,
            qtype,
            &zone,
            &self.block,
            snapshot.category(m),
        );
        let target = synthesized.cname_target.clone();
        let mut reply = Reply::from(synthesized);
        if let Some(target) = target {
            let lower = LowerName::from(&target);
            match self.lookup(&lower, qtype, qclass, client, notes).await {
                Ok((a, _)) => {
                    reply.rcode = a.rcode;
                    reply.answers.extend(a.answers);
                    if reply.answers.len() == 1 {
                        reply.authorities = a.authorities;
                    }
                }
                Err(_) => reply = Reply::empty(ResponseCode::ServFail),
            }
        }
        reply
    }

    /// A NOTIFY (RFC 1996) from a primary: acknowledged when it is for a zone-transfer list and
    /// comes from an address allowed to notify it; that list is then checked at once.
    fn notify(&self, request: &Request) -> (Reply, Outcome) {
        let [query] = request.queries.queries() else {
            return (Reply::empty(ResponseCode::FormErr), Outcome::FormErr);
        };
        let Some(feeds) = &self.feeds else {
            return (Reply::empty(ResponseCode::Refused), Outcome::Refused);
        };
        match feeds.notify(query.original().name(), request.src().ip()) {
            NotifyResult::Accepted => {
                info!(zone = %query.original().name(), from = %request.src(), "NOTIFY accepted");
                (Reply::empty(ResponseCode::NoError), Outcome::Notify)
            }
            NotifyResult::Refused | NotifyResult::UnknownZone => {
                info!(zone = %query.original().name(), from = %request.src(), "NOTIFY refused");
                (Reply::empty(ResponseCode::Refused), Outcome::Refused)
            }
        }
    }

    fn report_logged(
        &self,
        snapshot: &Snapshot,
        logged: Option<Match>,
        qname: &Name,
        notes: &mut Notes,
    ) {
        let Some(m) = logged else { return };
        notes.uncacheable = true;
        if let Some(list) = snapshot.list(m) {
            self.metrics.log_only_match(&list.name);
            info!(
                list = %list.name,
                line = m.hit.payload.line,
                trigger = ?m.trigger,
                name = %qname,
                "log-only match (not applied)"
            );
        }
    }
}

/// Record one answered query in the query log, if its outcome is wanted.
#[allow(clippy::too_many_arguments)]
fn log_query(
    log: &QueryLog,
    wall: u64,
    started: Instant,
    request: &Request,
    outcome: Outcome,
    notes: &Notes,
    rcode: Option<u16>,
    response: Option<&[u8]>,
) {
    if !log.wants(outcome) {
        return;
    }
    let transport = Transport::from_label(protocol_label(request.protocol()));
    let mut e = Entry::new(wall, request.src(), transport, request.as_slice());
    e.elapsed_us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
    e.outcome = outcome;
    e.rcode = rcode;
    e.generation = notes.generation;
    e.blocked = notes
        .blocked_by
        .or(notes.blocked.map(|m| m.list))
        .map(|list| (list, notes.blocked.filter(|m| m.list == list)));
    e.allowed_by = notes.allowed_by;
    if log.keeps_responses() {
        e.response = response.map(Box::from);
    }
    log.push(e);
}

/// Resolve a cache miss upstream and store the answer.
/// What one upstream resolution needs.
struct Fill<'a> {
    upstream: &'a Upstream,
    cache: &'a Cache,
    fills: &'a Fills,
    metrics: &'a Metrics,
}

impl Fill<'_> {
    /// Ask upstream and store the answer in the cache, or wait for the same question already
    /// in flight and take its outcome.
    async fn fetch(
        &self,
        lower: &LowerName,
        qtype: RecordType,
        qclass: DNSClass,
        recheck: bool,
    ) -> Result<Answer, UpstreamError> {
        let key = (lower.clone(), qtype, qclass);
        let tx = loop {
            let mut rx = match self.fills.0.entry(key.clone()) {
                dashmap::Entry::Occupied(e) => e.get().clone(),
                dashmap::Entry::Vacant(v) => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    v.insert(rx);
                    break tx;
                }
            };
            let done = rx.wait_for(Option::is_some).await.map(|v| v.clone());
            match done {
                Ok(Some(result)) => return result,
                // The resolving query was dropped (its client's deadline): take over.
                _ => tokio::task::yield_now().await,
            }
        };
        // Declared after `tx`, so it goes first: the question leaves the map only after the
        // answer is in the cache.
        let _guard = FillGuard {
            fills: self.fills,
            key: &key,
        };
        if recheck && let Some(answer) = self.cache.get(lower, qtype, qclass) {
            tx.send_replace(Some(Ok(answer.clone())));
            return Ok(answer);
        }
        let mut upstream_query = Query::query(Name::from(lower.clone()), qtype);
        upstream_query.set_query_class(qclass);
        let started = Instant::now();
        let mut result = self.upstream.resolve(upstream_query).await;
        self.metrics
            .upstream_duration
            .observe(started.elapsed().as_secs_f64());
        match &mut result {
            Ok(answer) => {
                self.cache.insert(lower, qtype, qclass, answer);
                self.metrics.cache_entries.set(self.cache.len() as i64);
            }
            Err(e) => {
                self.metrics
                    .upstream_errors
                    .with_label_values(&[e.reason()])
                    .inc();
            }
        }
        tx.send_replace(Some(result.clone()));
        result
    }
}

/// The question being answered, as the rewriting steps need it.
#[derive(Clone, Copy)]
struct Question<'a> {
    qname: &'a Name,
    canonical: &'a QueryName,
    qtype: RecordType,
    qclass: DNSClass,
    udp: bool,
    client: IpAddr,
}

/// How often the cache is swept of expired entries.
pub const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
