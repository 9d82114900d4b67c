//! The admin HTTP endpoint, on loopback by default:
//! - `GET /metrics` (Prometheus text format) and `GET /health`;
//! - `GET /v1/lists`: every list's source, format, size, validators, last success and error,
//!   age, and a version held back for shrinking too much;
//! - `POST /v1/lists/{name}/refresh` and `POST /v1/lists/{name}/accept` (bearer token);
//! - `GET /v1/check?name=…&client=…`: the decision for a name, with list, line, category and
//!   reference;
//! - `GET /v1/enforcement`: proof of enforcement per list: source, serial or ETag, content
//!   hash, entries, active since, hits since then, and the delay from publication.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use arc_swap::ArcSwap;
use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    feeds::manager::{API_REFRESH_DEADLINE, Feeds},
    metrics::Metrics,
    policy::{Decision, Snapshot, Trigger, Verdict, name::normalize},
};

/// What the admin endpoint serves from.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Metrics,
    /// Set once the DNS listeners are serving; /health reports 503 until then and after
    /// shutdown starts, so a load balancer never sends traffic to a server that cannot answer.
    pub serving: Arc<AtomicBool>,
    pub feeds: Arc<Feeds>,
    pub policy: Arc<ArcSwap<Snapshot>>,
    /// Bearer token for mutating calls; None disables them.
    pub token: Option<String>,
}

/// Serve the admin endpoint on an already-bound listener until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .route("/v1/lists", get(lists_handler))
        .route("/v1/lists/{name}/refresh", post(refresh_handler))
        .route("/v1/lists/{name}/accept", post(accept_handler))
        .route("/v1/check", get(check_handler))
        .route("/v1/enforcement", get(enforcement_handler))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Error {
        error: String,
    }
    (
        status,
        Json(Error {
            error: message.into(),
        }),
    )
        .into_response()
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    state.feeds.publish_all_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn health_handler(State(state): State<AdminState>) -> impl IntoResponse {
    if state.serving.load(Ordering::Acquire) {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving\n")
    }
}

async fn lists_handler(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.feeds.statuses())
}

async fn enforcement_handler(State(state): State<AdminState>) -> impl IntoResponse {
    Json(state.feeds.enforcements())
}

/// Mutating calls need `Authorization: Bearer <admin.token>`.
fn authorize(state: &AdminState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &state.token else {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "mutating calls are disabled: set admin.token in the configuration",
        )));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare without an early exit, so response time does not reveal the matching prefix.
    let ok = given.is_some_and(|g| {
        g.len() == token.len()
            && g.bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if ok {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        )))
    }
}

/// A mutating call on a list: the bearer token must match and the list must exist.
fn authorized_list(
    state: &AdminState,
    headers: &HeaderMap,
    name: &str,
) -> Result<usize, Box<Response>> {
    authorize(state, headers)?;
    state.feeds.index(name).ok_or_else(|| {
        Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no list named `{name}`"),
        ))
    })
}

async fn refresh_handler(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let i = match authorized_list(&state, &headers, &name) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match tokio::time::timeout(API_REFRESH_DEADLINE, state.feeds.refresh(i)).await {
        Ok(status) => Json(status).into_response(),
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            "the refresh is still running; see GET /v1/lists",
        ),
    }
}

async fn accept_handler(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let i = match authorized_list(&state, &headers, &name) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    match state.feeds.accept(i).await {
        Ok(status) => Json(status).into_response(),
        Err(message) => error(StatusCode::CONFLICT, message),
    }
}

/// The decision for a name, as `/v1/check` reports it.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub name: String,
    pub client: Option<IpAddr>,
    pub group: String,
    /// "blocked", "allowed", "passthru" or "pass".
    pub decision: &'static str,
    pub list: Option<String>,
    pub line: Option<u32>,
    /// The listed name that matched (the name itself or a parent).
    pub rule: Option<String>,
    pub scope: Option<&'static str>,
    pub trigger: Option<&'static str>,
    pub category: Option<String>,
    pub reference: Option<String>,
    /// Why the deciding list blocks: "policy", "legal" or "security".
    pub basis: Option<&'static str>,
    /// How a blocked name is answered.
    pub answer: Option<String>,
    /// A log-only list that matched (counted, not applied).
    pub logged_by: Option<String>,
}

/// Explain the policy's decision for `name` asked by `client`.
pub fn check(
    snapshot: &Snapshot,
    name: &str,
    client: Option<IpAddr>,
) -> Result<CheckReport, String> {
    let canonical = normalize(name).map_err(|e| format!("`{name}` is not a usable name: {e}"))?;
    let group = client.map_or(0, |ip| snapshot.group_of(ip));
    let evaluation = snapshot.evaluate(&snapshot.prepare(canonical.as_bytes()), client, group);
    let (decision, m) = match evaluation.decision {
        Decision::Blocked(m) => ("blocked", Some(m)),
        Decision::Allowed(m) => ("allowed", Some(m)),
        Decision::Passthru(m) => ("passthru", Some(m)),
        Decision::Pass => ("pass", None),
    };
    let mut report = CheckReport {
        name: canonical.clone(),
        client,
        group: snapshot
            .groups
            .get(group)
            .map_or_else(|| "default".into(), |g| g.name.clone()),
        decision,
        list: None,
        line: None,
        rule: None,
        scope: None,
        trigger: None,
        category: None,
        reference: None,
        basis: None,
        answer: None,
        logged_by: evaluation
            .logged
            .and_then(|l| snapshot.list(l).map(|i| i.name.clone())),
    };
    if let Some(m) = m {
        let compiled = &snapshot.lists[m.list];
        let provenance = compiled.provenance(&m.hit);
        report.list = Some(compiled.info.name.clone());
        report.line = Some(m.hit.payload.line);
        report.scope = Some(m.hit.scope.describe());
        report.trigger = Some(match m.trigger {
            Trigger::QName => "qname",
            Trigger::ClientIp => "client_ip",
            Trigger::CnameTarget => "cname_target",
            Trigger::ResponseIp => "response_ip",
        });
        if m.hit.suffix_len > 0 {
            report.rule = Some(canonical[canonical.len() - m.hit.suffix_len..].to_string());
        }
        report.category = provenance
            .and_then(|p| p.category.clone())
            .or_else(|| compiled.info.category.clone());
        report.reference = provenance
            .and_then(|p| p.reference.clone())
            .or_else(|| compiled.info.reference.clone());
        report.basis = Some(compiled.info.basis.as_str());
        if decision == "blocked" {
            report.answer = Some(match snapshot.verdict(m, group) {
                Verdict::BlockAddress => "block_address".into(),
                Verdict::NxDomain => "nxdomain".into(),
                Verdict::NoData => "nodata".into(),
                Verdict::Refused => "refused".into(),
                Verdict::Drop => "drop".into(),
                Verdict::TcpOnly => "tcp_only".into(),
                Verdict::Passthru => "passthru".into(),
                Verdict::Local(records) => format!(
                    "local data: {}",
                    records
                        .iter()
                        .map(|r| format!("{} {r}", r.record_type()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    Ok(report)
}

async fn check_handler(
    State(state): State<AdminState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(name) = params.get("name") else {
        return error(StatusCode::BAD_REQUEST, "missing query parameter `name`");
    };
    let client = match params.get("client").map(|c| c.parse::<IpAddr>()) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            return error(StatusCode::BAD_REQUEST, "`client` is not an IP address");
        }
    };
    let snapshot = state.policy.load();
    match check(&snapshot, name, client) {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}
