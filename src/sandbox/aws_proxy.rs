//! A loopback HTTP proxy in front of moto that makes it behave as AWS does
//! where moto is kinder, each switch changeable while it runs:
//! - every `nth` request answered with AWS's own throttling error for that
//!   service (throttling rehearsed against real SDK clients, retries, backoff);
//! - Route53 changes PENDING for a while before INSYNC (moto: INSYNC at once);
//! - a ChangeResourceRecordSets applied whose reply never arrives (a timeout
//!   after sending).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::task::JoinHandle;

/// Requests seen and requests throttled, and the current share.
#[derive(Debug, Default)]
pub struct AwsFaults {
    pub seen: AtomicU64,
    pub throttled: AtomicU64,
    /// Every `every`-th request is throttled; 0 lets every request through.
    pub every: AtomicU64,
    /// GetChange says PENDING until this many milliseconds after the change
    /// was accepted (AWS: usually under 60 s); 0 answers as moto does.
    pub pending_ms: AtomicU64,
    /// ChangeResourceRecordSets is applied, then its reply dropped (the
    /// connection closes with no answer).
    pub drop_change_replies: AtomicBool,
    /// Changes accepted through the proxy.
    pub changes: AtomicU64,
    /// Each change id this proxy handed out: moto's own id for it (moto gives
    /// every change the same one; AWS never does) and when it was accepted.
    accepted: Mutex<HashMap<String, (String, Instant)>>,
}

struct Proxy {
    upstream: SocketAddr,
    http: reqwest::Client,
    counts: Arc<AwsFaults>,
}

/// The text between `<tag>` and `</tag>`, first occurrence.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(&body[start..start + len])
}

fn change_id(path_or_id: &str) -> String {
    path_or_id.trim_start_matches("/change/").to_string()
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
    let mut path = parts.uri.path_and_query().map_or("/", |q| q.as_str()).to_string();
    let route53 = parts.uri.path().strip_prefix("/2013-04-01/");
    // ChangeResourceRecordSets is a POST; ListResourceRecordSets a GET of the same path.
    let is_change = parts.method == axum::http::Method::POST
        && route53.is_some_and(|p| p.ends_with("/rrset") || p.ends_with("/rrset/"));
    let asked_change = route53.and_then(|p| p.strip_prefix("change/")).map(change_id);
    if let Some(id) = &asked_change
        && let Some((upstream_id, _)) = p.counts.accepted.lock().unwrap_or_else(|e| e.into_inner()).get(id)
    {
        path = format!("/2013-04-01/change/{upstream_id}");
    }
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
            let mut bytes: Bytes = resp.bytes().await.unwrap_or_default();
            if is_change && status.is_success() {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if let Some(upstream_id) = xml_field(&text, "Id").map(change_id) {
                    let n = p.counts.changes.fetch_add(1, Ordering::SeqCst) + 1;
                    let id = format!("CPROXY{n:08}");
                    bytes = Bytes::from(text.replace(&format!("/change/{upstream_id}<"), &format!("/change/{id}<")));
                    let mut accepted = p.counts.accepted.lock().unwrap_or_else(|e| e.into_inner());
                    accepted.insert(id, (upstream_id, Instant::now()));
                }
                if p.counts.drop_change_replies.load(Ordering::SeqCst) {
                    // Applied in moto; the caller hears nothing until its own timeout.
                    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
                    return StatusCode::GATEWAY_TIMEOUT.into_response();
                }
            }
            if let Some(id) = asked_change {
                let pending = std::time::Duration::from_millis(p.counts.pending_ms.load(Ordering::SeqCst));
                let accepted = p.counts.accepted.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned();
                if let Some((upstream_id, at)) = accepted {
                    let mut text = String::from_utf8_lossy(&bytes).replace(&upstream_id, &id);
                    if at.elapsed() < pending {
                        text = text.replace("<Status>INSYNC</Status>", "<Status>PENDING</Status>");
                    }
                    bytes = Bytes::from(text);
                }
            }
            (status, headers, Body::from(bytes)).into_response()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Starts the proxy on a free loopback port, throttling every `nth` request
/// (0: none); abort the handle to stop it.
pub async fn start(upstream: SocketAddr, nth: u64) -> std::io::Result<(SocketAddr, JoinHandle<()>, Arc<AwsFaults>)> {
    let counts = Arc::new(AwsFaults { every: AtomicU64::new(nth), ..Default::default() });
    let state = Arc::new(Proxy { upstream, http: reqwest::Client::new(), counts: counts.clone() });
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task, counts))
}
