//! The sandbox's webhook receiver: what a Slack incoming webhook does for
//! cutover's posts (a JSON object with `text`, answered `ok`), keeping each
//! text so a rehearsal (or a test) can read what was posted.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use color_eyre::Result;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Default)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT/webhook`.
    pub url: String,
    texts: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// The texts posted so far, in order.
    pub fn texts(&self) -> Vec<String> {
        self.texts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Listens on loopback until `stop` changes.
pub async fn start(mut stop: watch::Receiver<bool>) -> Result<(Receiver, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let receiver = Receiver { url: format!("http://{}/webhook", listener.local_addr()?), texts: Default::default() };
    let router = Router::new().route("/webhook", post(receive)).with_state(receiver.texts.clone());
    let task = tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.changed().await;
        };
        let _ = axum::serve(listener, router).with_graceful_shutdown(stopped).await;
    });
    Ok((receiver, task))
}

/// As Slack: 400 `invalid_payload` without a string `text`.
async fn receive(
    State(texts): State<Arc<Mutex<Vec<String>>>>,
    Json(body): Json<serde_json::Value>,
) -> (StatusCode, &'static str) {
    match body.get("text").and_then(|t| t.as_str()) {
        Some(text) => {
            tracing::info!(%text, "sandbox webhook");
            texts.lock().unwrap_or_else(|e| e.into_inner()).push(text.to_string());
            (StatusCode::OK, "ok")
        }
        None => (StatusCode::BAD_REQUEST, "invalid_payload"),
    }
}
