//! Downloading a list over HTTP(S): conditional requests (`ETag` / `If-Modified-Since`), gzip,
//! a size limit enforced while reading (a runaway feed cannot fill memory), and a timeout for the
//! whole exchange. TLS is rustls with the webpki roots.

use std::time::Duration;

use reqwest::{StatusCode, header};

/// What the server sent.
#[derive(Debug)]
pub enum Fetched {
    /// 304: the copy we have is current.
    NotModified,
    /// A new body, and the validators to send next time.
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// A failed download, with a low-cardinality reason for metrics.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    /// `timeout`, `connect`, `http_status`, `too_large`, `body` (truncated or broken transfer).
    pub reason: &'static str,
    pub message: String,
}

fn fail(reason: &'static str, message: impl Into<String>) -> FetchError {
    FetchError {
        reason,
        message: message.into(),
    }
}

/// The shared client: connection pooling, gzip, rustls.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("rampart/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// Fetch `url`, conditionally on the validators of the copy we hold.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
    timeout: Duration,
    max_size: u64,
) -> Result<Fetched, FetchError> {
    match tokio::time::timeout(
        timeout,
        fetch_inner(client, url, etag, last_modified, max_size),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(fail(
            "timeout",
            format!("{url}: no complete answer within {timeout:?}"),
        )),
    }
}

async fn fetch_inner(
    client: &reqwest::Client,
    url: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
    max_size: u64,
) -> Result<Fetched, FetchError> {
    let mut request = client.get(url);
    if let Some(e) = etag {
        request = request.header(header::IF_NONE_MATCH, e);
    }
    if let Some(m) = last_modified {
        request = request.header(header::IF_MODIFIED_SINCE, m);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| fail("connect", format!("{url}: {e}")))?;
    let status = response.status();
    if status == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::NotModified);
    }
    if !status.is_success() {
        return Err(fail("http_status", format!("{url}: HTTP {status}")));
    }
    if response.content_length().is_some_and(|n| n > max_size) {
        return Err(fail(
            "too_large",
            format!(
                "{url}: {} bytes announced, limit {max_size}",
                response.content_length().unwrap_or(0)
            ),
        ));
    }
    let header_str = |h: &header::HeaderMap, name| {
        h.get(name)
            .and_then(|v: &header::HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let etag = header_str(response.headers(), header::ETAG);
    let last_modified = header_str(response.headers(), header::LAST_MODIFIED);
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() as u64 + chunk.len() as u64 > max_size {
                    return Err(fail(
                        "too_large",
                        format!("{url}: more than {max_size} bytes"),
                    ));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // A connection closed before Content-Length was reached, a broken chunked or gzip
            // stream: the body is incomplete and must not be used.
            Err(e) => return Err(fail("body", format!("{url}: incomplete body: {e}"))),
        }
    }
    Ok(Fetched::Body {
        bytes,
        etag,
        last_modified,
    })
}
