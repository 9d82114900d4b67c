//! The admin HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /health`.
//! It binds to loopback by default; later issues add the list and check APIs here.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    /// Set once the DNS listeners are serving; /health reports 503 until then and after
    /// shutdown starts, so a load balancer never sends traffic to a server that cannot answer.
    serving: Arc<AtomicBool>,
}

/// Serve the admin endpoint on an already-bound listener until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    metrics: Metrics,
    serving: Arc<AtomicBool>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(AdminState { metrics, serving });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics_handler(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
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
