//! A sandbox app instance: a real HTTP server on 127.0.0.1 whose `/health`
//! really connects to its Redis (through the security-group proxy).
//! It stops answering while moto says the instance is not running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::firewall::LiveWorld;

pub struct AppSpec {
    pub instance_id: String,
    pub name: String,
    /// Redis as the app sees it: the proxy address; None when it has none.
    pub redis_url: Option<String>,
}

/// The key an app counts its hits in.
pub fn hits_key(app: &str) -> String {
    format!("hits:{app}")
}

const REDIS_TIMEOUT: Duration = Duration::from_millis(800);

async fn redis_command(
    url: &str,
    f: impl AsyncFnOnce(&mut redis::aio::MultiplexedConnection) -> redis::RedisResult<i64>,
) -> Result<i64, String> {
    let attempt = async {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
        f(&mut conn).await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(REDIS_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms connecting to Redis", REDIS_TIMEOUT.as_millis())),
    }
}

async fn health(State(app): State<Arc<AppSpec>>) -> impl IntoResponse {
    let Some(url) = &app.redis_url else {
        return (
            StatusCode::OK,
            Json(
                json!({"instance_id": app.instance_id, "name": app.name, "status": "ok", "redis": {"ok": null, "error": "no Redis configured"}}),
            ),
        );
    };
    let started = Instant::now();
    let ping = redis_command(url, async |c| redis::cmd("PING").query_async::<String>(c).await.map(|_| 0)).await;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match ping {
        Ok(_) => (
            StatusCode::OK,
            Json(
                json!({"instance_id": app.instance_id, "name": app.name, "status": "ok", "redis": {"ok": true, "latency_ms": latency_ms}}),
            ),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"instance_id": app.instance_id, "name": app.name, "status": "degraded", "redis": {"ok": false, "error": e}}),
            ),
        ),
    }
}

async fn index(State(app): State<Arc<AppSpec>>) -> impl IntoResponse {
    let Some(url) = &app.redis_url else {
        return (StatusCode::OK, format!("ok {}\n", app.name));
    };
    let key = hits_key(&app.name);
    match redis_command(url, async |c| redis::cmd("INCR").arg(&key).query_async::<i64>(c).await).await {
        Ok(n) => (StatusCode::OK, format!("ok {} hits={n}\n", app.name)),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("error {}: {e}\n", app.name)),
    }
}

/// Whether the instance serves: running (a `pending` one is still booting,
/// a `stopping` one shutting down; neither serves on AWS).
fn is_running(world: &LiveWorld, id: &str) -> bool {
    world.instances.iter().find(|i| i.id == id).is_none_or(|i| i.state == "running")
}

/// Serves while the instance runs; closes the port while it is stopped.
pub async fn supervise(first: TcpListener, spec: AppSpec, mut world: watch::Receiver<LiveWorld>) {
    let port = first.local_addr().map(|a| a.port()).unwrap_or(0);
    let spec = Arc::new(spec);
    let mut listener = Some(first);
    loop {
        while !is_running(&world.borrow(), &spec.instance_id) {
            if world.changed().await.is_err() {
                return;
            }
        }
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => l,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let router = Router::new().route("/health", get(health)).route("/", get(index)).with_state(spec.clone());
        let mut stop_rx = world.clone();
        let id = spec.instance_id.clone();
        let stopped = async move {
            loop {
                if stop_rx.changed().await.is_err() || !is_running(&stop_rx.borrow(), &id) {
                    return;
                }
            }
        };
        let _ = axum::serve(l, router).with_graceful_shutdown(stopped).await;
        if world.has_changed().is_err() {
            return;
        }
    }
}
