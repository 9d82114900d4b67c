//! Encrypted listeners: DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484), both answered
//! by the same [`DnsHandler`] as UDP and TCP.
//!
//! hickory-server 0.26 has TLS and HTTPS listeners, but its DoH side answers only POST (GET is
//! "unimplemented") and it uses one timeout both for the handshake and for idle connections,
//! so both listeners are small loops here: rustls (ring) through tokio-rustls, hyper for
//! HTTP/2 and HTTP/1.1. Queries go through the handler's `RequestHandler` entry point with
//! protocol `Tls` or `Https`, so metrics label them "tls" and "https" and responses are never
//! truncated to a UDP size.
//!
//! The certificate is served by [`CertStore`], a `ResolvesServerCert` whose key pair sits in
//! an `ArcSwap`: [`CertStore::reload`] swaps in a newly read pair for new handshakes, while
//! connections already open keep the session they negotiated. A file that fails to load
//! leaves the old pair in service.

use std::{
    convert::Infallible,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use arc_swap::ArcSwap;
use data_encoding::BASE64URL_NOPAD;
use hickory_proto::{rr::Record, serialize::binary::BinEncoder};
use hickory_server::{
    net::{NetError, runtime::TokioTime, xfer::Protocol},
    server::{RequestHandler, ResponseHandler, ResponseInfo},
    zone_handler::MessageResponse,
};
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, StatusCode,
    body::{Bytes, Incoming},
    header::{CACHE_CONTROL, CONTENT_TYPE},
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc},
    task::JoinHandle,
    time::timeout,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info};

use super::{handler::DnsHandler, wire};
use crate::{
    config::TlsConfig,
    metrics::{Metrics, TlsMetrics},
};

/// Queries one DoT connection may have in progress at once; the next waits for a slot.
const MAX_IN_FLIGHT: usize = 64;
/// HTTP/2 streams one DoH connection may open at once.
const MAX_STREAMS: u32 = 64;
/// The DoH media type (RFC 8484 section 6).
const DNS_MESSAGE: &str = "application/dns-message";

/// The certificate chain and private key files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate or key did not load: the config key it is about and what is wrong, with
/// the file named.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LoadError {
    pub key: &'static str,
    pub message: String,
}

/// A loaded certificate and key, and the leaf's notAfter.
pub struct Loaded {
    pub key: CertifiedKey,
    /// notAfter of the leaf certificate, Unix time (None if it could not be read).
    pub not_after: Option<i64>,
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

impl CertFiles {
    /// Read and check the pair: PEM that parses, at least one certificate, a key rustls can
    /// sign with, and a key that belongs to the leaf certificate.
    pub fn load(&self) -> Result<Loaded, LoadError> {
        let read = |key: &'static str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| LoadError {
                key,
                message: format!("cannot read {}: {e}", path.display()),
            })
        };
        let cert_pem = read("tls.certificate", &self.certificate)?;
        let key_pem = read("tls.key", &self.key)?;
        let bad_cert = |what: String| LoadError {
            key: "tls.certificate",
            message: format!("{}: {what}", self.certificate.display()),
        };
        let bad_key = |what: String| LoadError {
            key: "tls.key",
            message: format!("{}: {what}", self.key.display()),
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_cert(format!("not a valid PEM certificate file ({e})")))?;
        if chain.is_empty() {
            return Err(bad_cert("no CERTIFICATE block found".into()));
        }
        let private = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad_key(format!("no usable PEM private key ({e})")))?;
        let not_after = not_after(&chain[0]);
        let key = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => bad_key(format!(
                "this key does not belong to the certificate {}",
                self.certificate.display()
            )),
            other => bad_key(format!("cannot use this key: {other}")),
        })?;
        Ok(Loaded { key, not_after })
    }
}

/// The certificate in service, swapped whole on reload.
pub struct CertStore {
    files: CertFiles,
    current: ArcSwap<CertifiedKey>,
    metrics: TlsMetrics,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Load the pair; the server does not start without a usable certificate.
    pub fn new(files: CertFiles, metrics: TlsMetrics) -> anyhow::Result<Self> {
        let loaded = files.load()?;
        metrics.reloads.with_label_values(&["ok"]).inc();
        if let Some(t) = loaded.not_after {
            metrics.expiry.set(t);
        }
        Ok(Self {
            files,
            current: ArcSwap::from_pointee(loaded.key),
            metrics,
        })
    }

    /// Re-read the files. New handshakes get the new certificate; open connections are not
    /// touched. On error the old certificate stays in service, and the error is logged,
    /// counted and returned.
    pub fn reload(&self) -> anyhow::Result<()> {
        match self.files.load() {
            Ok(loaded) => {
                self.current.store(Arc::new(loaded.key));
                self.metrics.reloads.with_label_values(&["ok"]).inc();
                if let Some(t) = loaded.not_after {
                    self.metrics.expiry.set(t);
                }
                info!(
                    certificate = %self.files.certificate.display(),
                    not_after = loaded.not_after,
                    "TLS certificate reloaded"
                );
                Ok(())
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["error"]).inc();
                error!(error = %e, "TLS certificate reload failed; keeping the one in service");
                Err(e.into())
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The started encrypted listeners.
#[derive(Debug, Default)]
pub struct Listeners {
    pub dot_addrs: Vec<SocketAddr>,
    pub doh_addrs: Vec<SocketAddr>,
    /// The certificate, when a listener is configured.
    pub certs: Option<Arc<CertStore>>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Load the certificate, bind the DoT and DoH addresses and start accepting. Nothing is
/// started (and no TLS metric registered) when no listener is configured.
pub async fn start(
    config: &TlsConfig,
    handler: Arc<DnsHandler>,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Listeners> {
    let mut out = Listeners::default();
    let Some(files) = &config.files else {
        return Ok(out);
    };
    if config.dot_listen.is_empty() && config.doh_listen.is_empty() {
        return Ok(out);
    }
    let tls_metrics = TlsMetrics::new(&metrics.registry).context("registering TLS metrics")?;
    let certs = Arc::new(CertStore::new(files.clone(), tls_metrics)?);
    let server_config = |alpn: &[&[u8]]| -> anyhow::Result<Arc<ServerConfig>> {
        let mut c = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_cert_resolver(certs.clone());
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    let conn = Conn {
        handler,
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
        shutdown,
        slots: Arc::new(Semaphore::new(config.max_connections)),
        metrics: certs.metrics.clone(),
    };
    let dot = TlsAcceptor::from(server_config(&[b"dot"])?);
    for addr in &config.dot_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding DNS-over-TLS listener {addr}"))?;
        out.dot_addrs.push(listener.local_addr()?);
        let (conn, acceptor) = (conn.clone(), dot.clone());
        out.tasks.push(tokio::spawn(accept_loop(
            listener, acceptor, conn, serve_dot,
        )));
    }
    let doh = TlsAcceptor::from(server_config(&[b"h2", b"http/1.1"])?);
    let path: Arc<str> = Arc::from(config.doh_path.as_str());
    for addr in &config.doh_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding DNS-over-HTTPS listener {addr}"))?;
        out.doh_addrs.push(listener.local_addr()?);
        let (conn, acceptor, path) = (conn.clone(), doh.clone(), path.clone());
        out.tasks.push(tokio::spawn(accept_loop(
            listener,
            acceptor,
            conn,
            move |stream, src, conn| serve_doh(stream, src, conn, path.clone()),
        )));
    }
    info!(dot = ?out.dot_addrs, doh = ?out.doh_addrs, "serving DNS over TLS and HTTPS");
    out.certs = Some(certs);
    Ok(out)
}

/// What every encrypted connection needs.
#[derive(Clone)]
struct Conn {
    handler: Arc<DnsHandler>,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    shutdown: CancellationToken,
    /// One permit per open connection (`tls.max_connections`), shared by all listeners.
    slots: Arc<Semaphore>,
    metrics: TlsMetrics,
}

type Tls = tokio_rustls::server::TlsStream<TcpStream>;

/// Accept connections until shutdown; each gets its own task, handshake under its deadline.
async fn accept_loop<F, Fut>(listener: TcpListener, acceptor: TlsAcceptor, conn: Conn, serve: F)
where
    F: Fn(Tls, SocketAddr, Conn) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let (tcp, src) = tokio::select! {
            _ = conn.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = conn.slots.clone().try_acquire_owned() else {
            conn.metrics.rejected.inc();
            debug!(client = %src, "too many encrypted connections; closing");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, conn, serve) = (acceptor.clone(), conn.clone(), serve.clone());
        let handshake = timeout(conn.handshake_timeout, acceptor.accept(tcp));
        let serving = async move {
            let metrics = conn.metrics.clone();
            metrics.connections.inc();
            match handshake.await {
                Ok(Ok(stream)) => serve(stream, src, conn).await,
                Ok(Err(e)) => debug!(client = %src, error = %e, "TLS handshake failed"),
                Err(_) => debug!(client = %src, "TLS handshake timed out"),
            }
            metrics.connections.dec();
            drop(slot);
        };
        tokio::spawn(serving);
    }
}

/// One DoT connection: length-prefixed queries (RFC 7766 framing), answered concurrently and
/// written back as they complete (RFC 7858 section 3.3).
async fn serve_dot(stream: Tls, src: SocketAddr, conn: Conn) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT);
    let write = tokio::spawn(async move {
        while let Some(response) = rx.recv().await {
            let Ok(len) = u16::try_from(response.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&response);
            if writer.write_all(&framed).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            _ = conn.shutdown.cancelled() => break,
            r = timeout(conn.idle_timeout, reader.read_exact(&mut len)) => r,
        };
        if !matches!(read, Ok(Ok(_))) {
            break; // idle, closed or broken
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if !matches!(
            timeout(conn.idle_timeout, reader.read_exact(&mut query)).await,
            Ok(Ok(_))
        ) {
            break;
        }
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let (handler, tx) = (conn.handler.clone(), tx.clone());
        tokio::spawn(async move {
            if let Some(response) = answer(&handler, query, src, Protocol::Tls).await {
                let _ = tx.send(response).await;
            }
            drop(slot);
        });
    }
    // Queries still in progress hold a sender; the writer sends their answers, then closes.
    drop(tx);
    let _ = write.await;
}

/// Run one stream query through the handler: the response bytes, or None when nothing is to
/// be sent (a response message, too short to be DNS, or an RPZ DROP).
async fn answer(
    handler: &DnsHandler,
    raw: Vec<u8>,
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let request = match handler.decode(raw, src, protocol, Instant::now()) {
        Ok(request) => request,
        Err(reply) => return reply,
    };
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    capture.0.lock().ok()?.take()
}

/// A `ResponseHandler` that keeps the encoded response (no size limit but the 64 KiB of a
/// DNS message: stream transports never truncate).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(bytes);
        }
        Ok(info)
    }
}

/// Requests in progress and the time of the last one, to close idle HTTP connections.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.last.lock().map_or_else(|_| Instant::now(), |l| *l)
    }
}

/// One DoH connection (HTTP/2, or HTTP/1.1 for clients without ALPN h2).
async fn serve_doh(stream: Tls, src: SocketAddr, conn: Conn, path: Arc<str>) {
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: Mutex::new(Instant::now()),
    });
    let (handler, act) = (conn.handler.clone(), activity.clone());
    let service = hyper::service::service_fn(move |request| {
        let (handler, path, act) = (handler.clone(), path.clone(), act.clone());
        async move {
            act.in_flight.fetch_add(1, Ordering::AcqRel);
            act.touch();
            let response = doh_request(request, &handler, &path, src).await;
            act.touch();
            act.in_flight.fetch_sub(1, Ordering::AcqRel);
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(MAX_STREAMS);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    // After a graceful shutdown (GOAWAY) the client gets one more idle period to finish and
    // acknowledge; a client that never does is cut off.
    let mut cut_off_at: Option<Instant> = None;
    loop {
        // While a request is in progress the connection is not idle: look again later.
        let idle_at = if activity.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + conn.idle_timeout
        } else {
            activity.last() + conn.idle_timeout
        };
        let closing = cut_off_at.is_some();
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!(client = %src, error = %e, "DoH connection ended");
                }
                return;
            }
            _ = conn.shutdown.cancelled(), if !closing => {
                cut_off_at = Some(Instant::now() + conn.idle_timeout);
                connection.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_at.into()), if !closing => {
                if activity.in_flight.load(Ordering::Acquire) == 0
                    && activity.last() + conn.idle_timeout <= Instant::now()
                {
                    cut_off_at = Some(Instant::now() + conn.idle_timeout);
                    connection.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(cut_off_at.unwrap_or(idle_at).into()), if closing => {
                debug!(client = %src, "DoH connection cut off after GOAWAY");
                return;
            }
        }
    }
}

type HttpResponse = hyper::Response<Full<Bytes>>;

fn status(code: StatusCode, why: &'static str) -> HttpResponse {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(why.as_bytes())));
    *r.status_mut() = code;
    r
}

/// One DoH request (RFC 8484 section 4.1): GET with `?dns=` (base64url, no padding) or POST
/// with an `application/dns-message` body.
async fn doh_request(
    request: hyper::Request<Incoming>,
    handler: &DnsHandler,
    path: &str,
    src: SocketAddr,
) -> HttpResponse {
    if request.uri().path() != path {
        return status(StatusCode::NOT_FOUND, "not found\n");
    }
    let query = match *request.method() {
        Method::GET => {
            let param = request
                .uri()
                .query()
                .unwrap_or_default()
                .split('&')
                .find_map(|kv| kv.strip_prefix("dns="));
            let Some(param) = param else {
                return status(StatusCode::BAD_REQUEST, "missing dns parameter\n");
            };
            match BASE64URL_NOPAD.decode(param.trim_end_matches('=').as_bytes()) {
                Ok(q) => q,
                Err(_) => return status(StatusCode::BAD_REQUEST, "dns is not base64url\n"),
            }
        }
        Method::POST => {
            let media = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !media.eq_ignore_ascii_case(DNS_MESSAGE) {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected application/dns-message\n",
                );
            }
            let body = Limited::new(request.into_body(), usize::from(u16::MAX));
            match body.collect().await {
                Ok(b) => b.to_bytes().to_vec(),
                Err(_) => return status(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n"),
            }
        }
        _ => return status(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n"),
    };
    if query.len() < wire::HEADER {
        return status(StatusCode::BAD_REQUEST, "not a DNS message\n");
    }
    let Some(response) = answer(handler, query, src, Protocol::Https).await else {
        // A response message, or an RPZ DROP: nothing to relay.
        return status(StatusCode::BAD_GATEWAY, "no answer\n");
    };
    // HTTP caches may keep the answer as long as its shortest TTL (RFC 8484 section 5.1).
    let max_age = wire::index_response(&response)
        .and_then(|i| i.min_ttl)
        .unwrap_or(0);
    let mut r = hyper::Response::new(Full::new(Bytes::from(response)));
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(DNS_MESSAGE),
    );
    if let Ok(v) = format!("max-age={max_age}").parse() {
        headers.insert(CACHE_CONTROL, v);
    }
    r
}

/// notAfter of a DER certificate as Unix time: a short walk of
/// `Certificate → tbsCertificate → [version] serial signature issuer validity`.
/// x509-parser would pull in a dozen crates for this one field.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, certificate, _) = der_tlv(cert).filter(|t| t.0 == 0x30)?;
    let (_, tbs, _) = der_tlv(certificate).filter(|t| t.0 == 0x30)?;
    let mut rest = tbs;
    let (tag, _, after) = der_tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        rest = der_tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = der_tlv(rest).filter(|t| t.0 == 0x30)?;
    let after_not_before = der_tlv(validity)?.2;
    let (tag, time, _) = der_tlv(after_not_before)?;
    parse_time(tag, time)
}

/// One DER tag-length-value: (tag, content, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ) to Unix time.
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let digits = |s: &[u8]| -> Option<i64> {
        s.iter().try_fold(0i64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, rest) = match tag {
        0x17 if text.len() == 13 => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        0x18 if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    if rest.last() != Some(&b'Z') {
        return None;
    }
    let field = |i: usize| digits(&rest[i..i + 2]);
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (years counted from March so the leap
/// day comes last).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days_match_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2038, 1, 19), 24_855);
    }

    #[test]
    fn both_asn1_time_forms_parse() {
        assert_eq!(parse_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(parse_time(0x18, b"20380119031408Z"), Some(2_147_483_648));
        assert_eq!(parse_time(0x18, b"2038011903140Z"), None);
        assert_eq!(parse_time(0x17, b"701301000000Z"), None);
    }

    #[test]
    fn truncated_der_is_rejected_not_a_panic() {
        assert_eq!(not_after(&[]), None);
        assert_eq!(not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(not_after(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }
}
