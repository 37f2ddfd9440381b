//! A loopback HTTP proxy in front of moto that answers every `nth` request
//! with AWS's own throttling error for that service (the rest pass through):
//! throttling rehearsed against real SDK clients, retries and backoff. The
//! share can change while it runs (`ThrottleCounts::every`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

/// Requests seen and requests throttled, and the current share.
#[derive(Debug, Default)]
pub struct ThrottleCounts {
    pub seen: AtomicU64,
    pub throttled: AtomicU64,
    /// Every `every`-th request is throttled; 0 lets every request through.
    pub every: AtomicU64,
}

struct Proxy {
    upstream: SocketAddr,
    http: reqwest::Client,
    counts: Arc<ThrottleCounts>,
}

/// The error body AWS sends when it throttles, in the service's protocol.
fn throttled(uri: &Uri, body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body);
    let (status, xml) = if text.contains("Version=2016-11-15") {
        // EC2's own query dialect.
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttle-proxy</RequestID></Response>".to_string(),
        )
    } else {
        let ns = if uri.path().starts_with("/2013-04-01/") {
            " xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\""
        } else {
            ""
        };
        (
            StatusCode::BAD_REQUEST,
            format!(
                "<ErrorResponse{ns}><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>throttle-proxy</RequestId></ErrorResponse>"
            ),
        )
    };
    (status, [("content-type", "text/xml")], xml).into_response()
}

async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let n = p.counts.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let every = p.counts.every.load(Ordering::SeqCst);
    if every > 0 && n.is_multiple_of(every) {
        p.counts.throttled.fetch_add(1, Ordering::SeqCst);
        return throttled(&parts.uri, &body);
    }
    let path = parts.uri.path_and_query().map_or("/", |q| q.as_str());
    let url = format!("http://{}{path}", p.upstream);
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = p.http.request(method, url).body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
    }
    match rb.send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut headers = HeaderMap::new();
            for (k, v) in resp.headers() {
                if k == "content-length" || k == "transfer-encoding" {
                    continue;
                }
                if let (Ok(k), Ok(v)) = (
                    axum::http::HeaderName::from_bytes(k.as_str().as_bytes()),
                    axum::http::HeaderValue::from_bytes(v.as_bytes()),
                ) {
                    headers.insert(k, v);
                }
            }
            let bytes: Bytes = resp.bytes().await.unwrap_or_default();
            (status, headers, Body::from(bytes)).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Starts the proxy on a free loopback port, throttling every `nth` request
/// (0: none); abort the handle to stop it.
pub async fn throttle_proxy(
    upstream: SocketAddr,
    nth: u64,
) -> std::io::Result<(SocketAddr, JoinHandle<()>, Arc<ThrottleCounts>)> {
    let counts = Arc::new(ThrottleCounts { every: AtomicU64::new(nth), ..Default::default() });
    let state = Arc::new(Proxy { upstream, http: reqwest::Client::new(), counts: counts.clone() });
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task, counts))
}
