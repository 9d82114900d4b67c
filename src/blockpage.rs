//! The block page server (`[block_page]`): plain HTTP on the block addresses, so a subscriber
//! whose browser was sent to a block address learns what was blocked and why.
//!
//! - A request whose Host the policy blocks gets a page naming the domain, its category, the
//!   reason (the deciding list's `basis`), the legal reference, the list, the operator with
//!   contact and appeal link, and the time: status 451 (RFC 7725) with
//!   `Link: <legal_link>; rel="blocked-by"` for legal lists, 403 otherwise.
//! - A request that arrives on a category's own block address (`[[block_page.categories]]`)
//!   but whose Host is unknown (an address typed by hand, a client that lost the name) gets
//!   the page for that category without domain details (403).
//! - Anything else gets a neutral 200 page with no details.
//!
//! Pages are English or Vietnamese, chosen by `Accept-Language` (q-values respected; English
//! by default), from built-in templates an operator can replace file by file
//! (`blocked.en.html`, `blocked.vi.html`, `neutral.en.html`, `neutral.vi.html`). Templates know
//! `{{name}}` (the value, HTML-escaped), `{{#name}}…{{/name}}` (shown when the value is not
//! empty) and `{{^name}}…{{/name}}` (shown when it is). Pages load nothing from elsewhere
//! (inline CSS, a Content-Security-Policy that forbids the rest) and are never cached.

use std::{
    convert::Infallible,
    fmt,
    net::{IpAddr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use arc_swap::ArcSwap;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::Bytes,
    header::{self, HeaderValue},
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::{
    admin,
    config::{Basis, BlockConfig, BlockPageConfig, Config},
    metrics::{BlockPageMetrics, Metrics},
    policy::Snapshot,
};

/// Most page connections open at once; more are closed on accept. The page server faces every
/// subscriber whose browser followed a block answer, so it must not be exhausted by a few.
const MAX_CONNECTIONS: usize = 4096;
/// A client must send its request headers within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection (keep-alive included) is closed gracefully after this long.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// After a graceful close starts, the response in progress gets this long.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------------

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Vi,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Vi => "vi",
        }
    }
}

/// Which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Blocked,
    Neutral,
}

/// The values a template can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Domain,
    Category,
    Reason,
    Reference,
    List,
    Operator,
    Contact,
    AppealUrl,
    Time,
    Status,
    Lang,
}

const VARS: [(&str, Var); 11] = [
    ("domain", Var::Domain),
    ("category", Var::Category),
    ("reason", Var::Reason),
    ("reference", Var::Reference),
    ("list", Var::List),
    ("operator", Var::Operator),
    ("contact", Var::Contact),
    ("appeal_url", Var::AppealUrl),
    ("time", Var::Time),
    ("status", Var::Status),
    ("lang", Var::Lang),
];

#[derive(Debug, Clone)]
enum Seg {
    Text(String),
    Var(Var),
    /// Shown when the value is non-empty (or empty, when `inverted`).
    Section {
        var: Var,
        inverted: bool,
        body: Vec<Seg>,
    },
}

/// One parsed template.
#[derive(Debug, Clone)]
struct Template(Vec<Seg>);

/// The file names, in the order of [`Templates::slot`].
const FILES: [&str; 4] = [
    "blocked.en.html",
    "blocked.vi.html",
    "neutral.en.html",
    "neutral.vi.html",
];

const BUILT_IN: [&str; 4] = [
    include_str!("../templates/blockpage/blocked.en.html"),
    include_str!("../templates/blockpage/blocked.vi.html"),
    include_str!("../templates/blockpage/neutral.en.html"),
    include_str!("../templates/blockpage/neutral.vi.html"),
];

/// The four page templates (blocked and neutral, English and Vietnamese).
#[derive(Clone)]
pub struct Templates {
    pages: [Template; 4],
    /// Which files came from the operator's folder.
    overridden: Vec<&'static str>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("overridden", &self.overridden)
            .finish_non_exhaustive()
    }
}

impl Default for Templates {
    /// The built-in templates (a unit test checks they parse; a broken one would show its
    /// error as the page rather than take the server down).
    fn default() -> Self {
        let page = |i: usize| parse(BUILT_IN[i]).unwrap_or_else(|e| Template(vec![Seg::Text(e)]));
        Self {
            pages: [page(0), page(1), page(2), page(3)],
            overridden: Vec::new(),
        }
    }
}

impl Templates {
    fn slot(page: Page, lang: Lang) -> usize {
        match (page, lang) {
            (Page::Blocked, Lang::En) => 0,
            (Page::Blocked, Lang::Vi) => 1,
            (Page::Neutral, Lang::En) => 2,
            (Page::Neutral, Lang::Vi) => 3,
        }
    }

    /// The built-in templates with those in `dir` instead where present. The folder must hold
    /// at least one of them (a folder with none is most likely a typo).
    pub fn load(dir: &Path) -> Result<Self, String> {
        if !dir.is_dir() {
            return Err(format!("{} is not a folder", dir.display()));
        }
        let mut t = Self::default();
        for (i, file) in FILES.iter().enumerate() {
            let path = dir.join(file);
            if !path.exists() {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            t.pages[i] = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            t.overridden.push(file);
        }
        if t.overridden.is_empty() {
            return Err(format!(
                "{} holds none of {}",
                dir.display(),
                FILES.join(", ")
            ));
        }
        Ok(t)
    }

    fn render(&self, page: Page, lang: Lang, values: &Values) -> String {
        let mut out = String::with_capacity(4096);
        render(&self.pages[Self::slot(page, lang)].0, values, &mut out);
        out
    }
}

/// Parse `{{name}}`, `{{#name}}…{{/name}}` and `{{^name}}…{{/name}}`.
fn parse(text: &str) -> Result<Template, String> {
    let line = |rest: &str| text[..text.len() - rest.len()].matches('\n').count() + 1;
    let mut open: Vec<(Var, bool, Vec<Seg>, &str)> = Vec::new();
    let mut out: Vec<Seg> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Seg::Text(rest[..start].to_string()));
        }
        let at = &rest[start..];
        let Some(end) = at.find("}}") else {
            return Err(format!("line {}: `{{{{` without `}}}}`", line(at)));
        };
        let tag = at[2..end].trim();
        let (sigil, name) = match tag.as_bytes().first() {
            Some(b'#' | b'^' | b'/') => (Some(tag.as_bytes()[0]), tag[1..].trim()),
            _ => (None, tag),
        };
        let Some(&(_, var)) = VARS.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = VARS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "line {}: unknown placeholder `{{{{{tag}}}}}` (known: {})",
                line(at),
                known.join(", ")
            ));
        };
        match sigil {
            None => out.push(Seg::Var(var)),
            Some(b'/') => {
                let Some((opened, inverted, parent, _)) = open.pop() else {
                    return Err(format!("line {}: `{{{{{tag}}}}}` closes nothing", line(at)));
                };
                if opened != var {
                    return Err(format!(
                        "line {}: `{{{{{tag}}}}}` closes another section",
                        line(at)
                    ));
                }
                let body = std::mem::replace(&mut out, parent);
                out.push(Seg::Section {
                    var,
                    inverted,
                    body,
                });
            }
            Some(s) => open.push((var, s == b'^', std::mem::take(&mut out), at)),
        }
        rest = &at[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Seg::Text(rest.to_string()));
    }
    if let Some((_, _, _, at)) = open.last() {
        return Err(format!("line {}: section never closed", line(at)));
    }
    Ok(Template(out))
}

/// The values of one page, by [`Var`].
#[derive(Debug, Default)]
struct Values([String; VARS.len()]);

impl Values {
    fn set(&mut self, var: Var, value: impl Into<String>) {
        self.0[var as usize] = value.into();
    }

    fn get(&self, var: Var) -> &str {
        &self.0[var as usize]
    }
}

fn render(segs: &[Seg], values: &Values, out: &mut String) {
    for seg in segs {
        match seg {
            Seg::Text(t) => out.push_str(t),
            Seg::Var(v) => escape_into(values.get(*v), out),
            Seg::Section {
                var,
                inverted,
                body,
            } => {
                if values.get(*var).is_empty() == *inverted {
                    render(body, values, out);
                }
            }
        }
    }
}

/// HTML-escape `s` for text and quoted attributes.
pub fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Request details
// ---------------------------------------------------------------------------------------------

/// The page language for an `Accept-Language` header: the supported language with the highest
/// q-value (the first one on a tie), English when none is acceptable or the header is absent.
pub fn pick_language(header: Option<&str>) -> Lang {
    let mut best: Option<(f32, Lang)> = None;
    for item in header.unwrap_or_default().split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or_default().trim();
        let mut q = 1.0f32;
        for p in parts {
            let p = p.trim();
            if let Some(v) = p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")) {
                // RFC 9110 qvalues are digits and a dot; anything else ("nan", "inf") is
                // not acceptable rather than guessed at.
                let v = v.trim();
                q = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                    v.parse::<f32>().unwrap_or(0.0).min(1.0)
                } else {
                    0.0
                };
            }
        }
        // q=0 means "not acceptable".
        if q <= 0.0 {
            continue;
        }
        let primary = tag.split('-').next().unwrap_or_default();
        let lang = if primary.eq_ignore_ascii_case("vi") {
            Lang::Vi
        } else if primary.eq_ignore_ascii_case("en") || tag == "*" {
            Lang::En
        } else {
            continue;
        };
        if best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map_or(Lang::En, |(_, l)| l)
}

/// The host name a request is for (absolute URI first, then Host), without port; None for an
/// address literal or no host at all.
fn host_name<B>(req: &Request<B>) -> Option<&str> {
    let raw = req.uri().host().or_else(|| {
        req.headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })?;
    let raw = raw.trim();
    if raw.starts_with('[') {
        return None;
    }
    let name = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    (!name.is_empty() && name.parse::<IpAddr>().is_err()).then_some(name)
}

/// "2026-12-06 13:05:09 UTC" for a time since the Unix epoch.
pub fn format_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian), by 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn reason(basis: &str, lang: Lang) -> &'static str {
    let legal = Basis::Legal.as_str();
    let security = Basis::Security.as_str();
    match (lang, basis) {
        (Lang::En, b) if b == legal => "Order of a competent authority",
        (Lang::En, b) if b == security => "Security threat (malware, phishing)",
        (Lang::En, _) => "The network operator's policy",
        (Lang::Vi, b) if b == legal => "Theo quyết định của cơ quan nhà nước có thẩm quyền",
        (Lang::Vi, b) if b == security => "Mối đe dọa an ninh mạng (mã độc, lừa đảo)",
        (Lang::Vi, _) => "Chính sách của nhà cung cấp dịch vụ mạng",
    }
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

struct State {
    policy: Arc<ArcSwap<Snapshot>>,
    page: BlockPageConfig,
    block: BlockConfig,
    metrics: BlockPageMetrics,
    shutdown: CancellationToken,
    slots: Arc<Semaphore>,
}

/// The listeners started and their tasks.
#[derive(Default)]
pub struct Started {
    pub addrs: Vec<SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
}

/// Bind `[block_page] listen` and serve until `shutdown`; nothing when the list is empty.
pub async fn start(
    config: &Config,
    policy: Arc<ArcSwap<Snapshot>>,
    metrics: &Metrics,
    shutdown: CancellationToken,
) -> anyhow::Result<Started> {
    let mut out = Started::default();
    if config.block_page.listen.is_empty() {
        return Ok(out);
    }
    let state = Arc::new(State {
        policy,
        page: config.block_page.clone(),
        block: config.block.clone(),
        metrics: BlockPageMetrics::new(&metrics.registry)
            .context("registering block page metrics")?,
        shutdown,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    });
    for addr in &config.block_page.listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding block page listener {addr}"))?;
        out.addrs.push(listener.local_addr()?);
        out.tasks
            .push(tokio::spawn(accept_loop(listener, state.clone())));
    }
    info!(addrs = ?out.addrs, "serving the block page");
    Ok(out)
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    loop {
        let (tcp, remote) = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    debug!(error = %e, "block page accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = state.slots.clone().try_acquire_owned() else {
            debug!(client = %remote, "too many block page connections; closing");
            continue;
        };
        // The address the client connected to tells the category when the Host cannot (a
        // listener on 0.0.0.0 accepts on every local address; dual-stack ones map IPv4).
        let local = tcp.local_addr().ok().map(|a| a.ip().to_canonical());
        let state = state.clone();
        tokio::spawn(async move {
            serve_connection(tcp, remote.ip().to_canonical(), local, state).await;
            drop(slot);
        });
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    client: IpAddr,
    local: Option<IpAddr>,
    state: Arc<State>,
) {
    let st = state.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let response = respond(&st, &req, client, local, SystemTime::now());
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(16 * 1024);
    let connection = builder.serve_connection(TokioIo::new(tcp), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                debug!(%client, error = %e, "block page connection ended");
            }
            return;
        }
        _ = state.shutdown.cancelled() => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
    }
    connection.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(CLOSE_GRACE, connection).await;
}

type HttpResponse = Response<Full<Bytes>>;

fn respond<B>(
    state: &State,
    req: &Request<B>,
    client: IpAddr,
    local: Option<IpAddr>,
    now: SystemTime,
) -> HttpResponse {
    let response = page(state, req, client, local, now);
    state.metrics.request(response.status().as_u16());
    response
}

fn page<B>(
    state: &State,
    req: &Request<B>,
    client: IpAddr,
    local: Option<IpAddr>,
    now: SystemTime,
) -> HttpResponse {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = Response::new(Full::new(Bytes::from_static(b"method not allowed\n")));
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        let h = r.headers_mut();
        h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    if req.uri().path() == "/favicon.ico" {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return r;
    }
    let lang = pick_language(
        req.headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let snapshot = state.policy.load();
    let report = host_name(req)
        .and_then(|h| admin::check(&snapshot, h, Some(client)).ok())
        .filter(|r| r.decision == "blocked");
    let local_category = local.and_then(|ip| state.block.category_of(ip));

    let cfg = &state.page;
    let mut v = Values::default();
    v.set(Var::Operator, cfg.operator.as_str());
    v.set(Var::Contact, cfg.contact.as_str());
    v.set(Var::AppealUrl, cfg.appeal_url.as_str());
    v.set(Var::Time, format_utc(now));
    v.set(Var::Lang, lang.code());
    let mut legal = false;
    let (kind, status) = match (report, local_category) {
        (Some(r), _) => {
            legal = r.basis == Some(Basis::Legal.as_str());
            v.set(Var::Domain, r.name);
            v.set(
                Var::Category,
                r.category
                    .or_else(|| local_category.map(str::to_string))
                    .unwrap_or_default(),
            );
            v.set(Var::Reason, reason(r.basis.unwrap_or_default(), lang));
            v.set(Var::Reference, r.reference.unwrap_or_default());
            v.set(Var::List, r.list.unwrap_or_default());
            let status = if legal {
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
            } else {
                StatusCode::FORBIDDEN
            };
            (Page::Blocked, status)
        }
        (None, Some(category)) => {
            v.set(Var::Category, category);
            (Page::Blocked, StatusCode::FORBIDDEN)
        }
        (None, None) => (Page::Neutral, StatusCode::OK),
    };
    v.set(Var::Status, status.as_str());
    let html = cfg.templates.render(kind, lang, &v);
    let length = html.len();
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(html)
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.code()),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // Nothing but the page itself and its inline style may load.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
    );
    if legal
        && !cfg.legal_link.is_empty()
        && let Ok(link) =
            HeaderValue::from_str(&format!("<{}>; rel=\"blocked-by\"", cfg.legal_link))
    {
        h.insert(header::LINK, link);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_templates_parse() {
        for (file, text) in FILES.iter().zip(BUILT_IN) {
            parse(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    #[test]
    fn sections_and_escaping() {
        let t = parse("a{{#domain}}[{{domain}}]{{/domain}}{{^reference}}-{{/reference}}b").unwrap();
        let mut v = Values::default();
        let mut out = String::new();
        render(&t.0, &v, &mut out);
        assert_eq!(out, "a-b");
        v.set(Var::Domain, "<x&\"'>");
        v.set(Var::Reference, "r");
        out.clear();
        render(&t.0, &v, &mut out);
        assert_eq!(out, "a[&lt;x&amp;&quot;&#39;&gt;]b");
    }

    #[test]
    fn template_errors_say_where() {
        for (text, want) in [
            ("x\n{{nope}}", "line 2: unknown placeholder `{{nope}}`"),
            ("{{#domain}}x", "section never closed"),
            ("{{/domain}}", "closes nothing"),
            ("{{#domain}}{{/list}}", "closes another section"),
            ("{{domain", "without"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn operator_templates_replace_built_in_ones_file_by_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = Templates::load(dir.path()).unwrap_err();
        assert!(err.contains("holds none of"), "{err}");
        std::fs::write(
            dir.path().join("blocked.vi.html"),
            "<p>{{domain}} bị chặn{{#reference}} ({{reference}}){{/reference}}</p>",
        )
        .unwrap();
        let t = Templates::load(dir.path()).unwrap();
        let mut v = Values::default();
        v.set(Var::Domain, "a.example");
        assert_eq!(
            t.render(Page::Blocked, Lang::Vi, &v),
            "<p>a.example bị chặn</p>"
        );
        // The others stay built in.
        assert!(
            t.render(Page::Blocked, Lang::En, &v)
                .contains("This website has been blocked")
        );
        std::fs::write(dir.path().join("neutral.en.html"), "{{operatr}}").unwrap();
        let err = Templates::load(dir.path()).unwrap_err();
        assert!(
            err.contains("neutral.en.html") && err.contains("{{operatr}}"),
            "{err}"
        );
        assert!(Templates::load(&dir.path().join("nope")).is_err());
    }

    #[test]
    fn accept_language_respects_q_values() {
        for (header, want) in [
            (None, Lang::En),
            (Some(""), Lang::En),
            (Some("vi"), Lang::Vi),
            (Some("vi-VN,vi;q=0.9,en-US;q=0.8,en;q=0.7"), Lang::Vi),
            (Some("en-US,en;q=0.9,vi;q=0.8"), Lang::En),
            (Some("fr, vi;q=0.5, en;q=0.4"), Lang::Vi),
            (Some("en;q=0.1, VI;q=0.2"), Lang::Vi),
            (Some("vi;q=0, en;q=0.1"), Lang::En),
            (Some("fr, de"), Lang::En),
            (Some("*;q=0.5, vi;q=0.4"), Lang::En),
            (Some("vi;q=abc"), Lang::En),
            (Some("vi;q=nan, en;q=0.5"), Lang::En),
            (Some("en;q=0.5, vi;q=inf"), Lang::En),
        ] {
            assert_eq!(pick_language(header), want, "{header:?}");
        }
    }

    #[test]
    fn utc_time_format() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01 00:00:00 UTC");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_563_509);
        assert_eq!(format_utc(t), "2026-12-06 13:25:09 UTC");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_utc(leap), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn host_names_without_ports_and_literals() {
        let req = |host: &str| Request::builder().header("host", host).body(()).unwrap();
        assert_eq!(host_name(&req("a.example:8080")), Some("a.example"));
        assert_eq!(host_name(&req("a.example")), Some("a.example"));
        assert_eq!(host_name(&req("127.0.0.1:80")), None);
        assert_eq!(host_name(&req("[::1]:80")), None);
        let absolute = Request::builder()
            .uri("http://b.example/x")
            .body(())
            .unwrap();
        assert_eq!(host_name(&absolute), Some("b.example"));
    }
}
