//! Webhook notifications: Slack-compatible `{"text": …}` posts saying what a
//! rollout and each change did. A change never waits for them: `post` only
//! queues (a bounded queue; a full one drops the post), and one thread sends
//! them in order, each with a timeout and a bounded number of retries.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::runbook::Runbook;

/// Overrides the runbook's `[notify] webhook_url_env`.
pub const URL_OVERRIDE: &str = "CUTOVER_WEBHOOK_URL";
/// Posts waiting at most; more are dropped (and logged), never waited for.
const QUEUE: usize = 64;
/// Attempts per post, and how long each may take.
const ATTEMPTS: u32 = 3;
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

struct Notifier {
    url: Option<String>,
    sender: Mutex<Option<SyncSender<String>>>,
    /// Posts queued and not yet sent or given up on.
    pending: AtomicUsize,
}

static NOTIFIER: OnceLock<Notifier> = OnceLock::new();

/// The webhook URL for a runbook and the variable it came from:
/// `CUTOVER_WEBHOOK_URL`, else the variable its `[notify]` names; None when
/// neither is set (no posts).
pub fn webhook_url(rb: &Runbook) -> Option<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty()).map(|v| (name.to_string(), v));
    var(URL_OVERRIDE).or_else(|| rb.notify.as_ref().and_then(|n| var(&n.webhook_url_env)))
}

/// Sets where this process posts (the first call wins). Nothing is started
/// until the first post. A URL set but not http(s) is an error: the team
/// would wait for posts that never come, with nothing said but a log line.
pub fn install(webhook: Option<(String, String)>) -> Result<(), String> {
    if let Some((var, url)) = &webhook
        && !reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
    {
        // The URL itself is a secret (a Slack webhook's path is its key): not shown.
        return Err(format!(
            "${var} is set but is not an http(s) URL, so no notification could be posted; give the whole \
             https://… URL, or unset it to post none"
        ));
    }
    let url = webhook.map(|(_, url)| url);
    let _ = NOTIFIER.set(Notifier { url, sender: Mutex::new(None), pending: AtomicUsize::new(0) });
    Ok(())
}

/// Queues `text` for the webhook; returns at once. A no-op without a webhook.
pub fn post(text: String) {
    let Some(n) = NOTIFIER.get() else { return };
    let Some(url) = &n.url else { return };
    let mut sender = n.sender.lock().unwrap_or_else(|e| e.into_inner());
    let tx = sender.get_or_insert_with(|| spawn_sender(url.clone()));
    n.pending.fetch_add(1, Ordering::SeqCst);
    match tx.try_send(text) {
        Ok(()) => {}
        Err(TrySendError::Full(text) | TrySendError::Disconnected(text)) => {
            n.pending.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(%text, "webhook queue full or closed: notification dropped");
        }
    }
}

/// Waits, at most `limit`, for queued posts to be sent (at exit); returns
/// how many were not, which the log says (the process ends them).
pub fn flush(limit: Duration) -> usize {
    let Some(n) = NOTIFIER.get() else { return 0 };
    let start = Instant::now();
    while n.pending.load(Ordering::SeqCst) > 0 && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    let unsent = n.pending.load(Ordering::SeqCst);
    if unsent > 0 {
        tracing::warn!(unsent, "webhook: notifications not delivered at exit (the webhook did not answer in time)");
    }
    unsent
}

fn spawn_sender(url: String) -> SyncSender<String> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(QUEUE);
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        let client = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build().unwrap_or_default();
        while let Ok(text) = rx.recv() {
            rt.block_on(send(&client, &url, &text));
            if let Some(n) = NOTIFIER.get() {
                n.pending.fetch_sub(1, Ordering::SeqCst);
            }
        }
    });
    tx
}

async fn send(client: &reqwest::Client, url: &str, text: &str) {
    let body = serde_json::json!({ "text": text });
    for attempt in 1..=ATTEMPTS {
        match client.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => return,
            // A 4xx other than 429 will not get better by retrying.
            Ok(r) if r.status().is_client_error() && r.status() != reqwest::StatusCode::TOO_MANY_REQUESTS => {
                tracing::warn!(status = %r.status(), "webhook refused a notification");
                return;
            }
            Ok(r) => tracing::warn!(status = %r.status(), attempt, "webhook failed"),
            // reqwest names the URL in its errors, and the URL is a secret.
            Err(e) => tracing::warn!(error = %e.without_url(), attempt, "webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(500) * attempt).await;
        }
    }
    tracing::warn!(%text, "notification given up after {ATTEMPTS} attempts");
}
