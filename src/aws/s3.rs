//! Team mode's shared state in S3: every replacing write conditional
//! (`If-None-Match: *` to create, `If-Match: <etag>` to replace), the audit
//! one object per entry under keys that sort by time, so appends from many
//! machines never conflict.
//!
//! The store's interface is blocking (it is called from plain code and from
//! tasks alike), so calls run on this backend's own small runtime and the
//! caller waits for the answer, bounded by the SDK's timeouts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk::s3::error::ProvideErrorMetadata;
use aws_sdk::s3::primitives::ByteStream;

use crate::store::backend::{Backend, Cond, Listed, Object, StoreError, Version};

pub struct S3Backend {
    client: aws_sdk::s3::Client,
    bucket: String,
    /// No slash at either end; may be empty.
    prefix: String,
    rt: Option<tokio::runtime::Runtime>,
    /// Audit entries never change once written: each is fetched once.
    entries: Mutex<HashMap<String, Vec<u8>>>,
    seq: AtomicU64,
}

impl Drop for S3Backend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Answers in a few seconds or not at all: a frozen S3 must leave the
/// cockpit live and the rollout's renewals retrying, not hung.
fn timeouts() -> aws_sdk::s3::config::timeout::TimeoutConfig {
    aws_sdk::s3::config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

fn status_of<E, R: HttpStatus>(e: &aws_sdk::s3::error::SdkError<E, R>) -> Option<u16> {
    e.raw_response().map(|r| r.http_status())
}

/// The HTTP status of a raw response (kept apart so the bound reads plainly).
pub trait HttpStatus {
    fn http_status(&self) -> u16;
}

impl HttpStatus for aws_smithy_runtime_api::http::Response {
    fn http_status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// A failed call as the store sees it: a lost condition, or unavailable
/// with what S3 said (SlowDown, AccessDenied, a timeout).
fn store_error<E>(what: &str, e: aws_sdk::s3::error::SdkError<E, aws_smithy_runtime_api::http::Response>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&e);
    // 412: the condition failed. 409 (ConditionalRequestConflict) is not
    // a write that won: another operation on the key was in progress, and
    // AWS says to try again (the retry meets a 412 if that one landed).
    if status == Some(412) {
        return StoreError::Conflict;
    }
    let code = e.code().map(str::to_string);
    let message = e.message().map(str::to_string);
    let detail = match (code, message, status) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c,
        (None, _, Some(s)) => format!("HTTP {s}"),
        (None, _, None) => aws_sdk::s3::error::DisplayErrorContext(&e).to_string(),
    };
    StoreError::Unavailable(format!("S3 {what}: {detail}"))
}

impl S3Backend {
    /// The store at `url` (`s3://bucket/prefix`), through the standard
    /// chain with `region` (the bucket's) and `profile`.
    pub async fn connect(url: &str, region: Option<String>, profile: Option<String>) -> Result<Self, String> {
        Self::with_config(url, &super::load_config(region, profile).await)
    }

    /// The store at `url` reached with `config` (the sandbox's endpoint).
    pub fn with_config(url: &str, config: &aws_config::SdkConfig) -> Result<Self, String> {
        let (bucket, prefix) = crate::runbook::parse_state_url(url)?;
        // Path-style against an endpoint of our own (the sandbox): a virtual
        // host would be `bucket.127.0.0.1`.
        let conf = aws_sdk::s3::config::Builder::from(config)
            .force_path_style(config.endpoint_url().is_some())
            .timeout_config(timeouts());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cutover-s3")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the S3 worker: {e}"))?;
        Ok(Self {
            client: aws_sdk::s3::Client::from_conf(conf.build()),
            bucket,
            prefix,
            rt: Some(rt),
            entries: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    fn key(&self, runbook: &str, item: &str) -> String {
        // An empty runbook: objects of no runbook (a Redis copy's checkpoint).
        let path = if runbook.is_empty() { item.to_string() } else { format!("{runbook}/{item}") };
        if self.prefix.is_empty() { path } else { format!("{}/{path}", self.prefix) }
    }

    /// Runs `f` on the backend's runtime and waits for it.
    fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let rt = self.rt.as_ref().ok_or_else(|| StoreError::Unavailable("the S3 worker stopped".into()))?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let _ = tx.send(f.await);
        });
        rx.recv().map_err(|_| StoreError::Unavailable("the S3 worker stopped".into()))?
    }

    fn list_keys(&self, prefix: String) -> Result<Vec<(String, Option<std::time::SystemTime>)>, StoreError> {
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        self.block(async move {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let page = client
                    .list_objects_v2()
                    .bucket(&bucket)
                    .prefix(&prefix)
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| store_error("ListObjectsV2", e))?;
                for o in page.contents() {
                    if let Some(k) = o.key() {
                        let modified = o.last_modified().and_then(|t| std::time::SystemTime::try_from(*t).ok());
                        out.push((k.to_string(), modified));
                    }
                }
                // Up to 1,000 keys a page; the token asks for the next.
                match page.next_continuation_token() {
                    Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            Ok(out)
        })
    }
}

async fn get_object(client: aws_sdk::s3::Client, bucket: String, key: String) -> Result<Option<Object>, StoreError> {
    match client.get_object().bucket(&bucket).key(&key).send().await {
        Ok(o) => {
            let version = Version(o.e_tag().unwrap_or_default().to_string());
            let body = o
                .body
                .collect()
                .await
                .map_err(|e| StoreError::Unavailable(format!("S3 GetObject {key}: {e}")))?
                .into_bytes()
                .to_vec();
            Ok(Some(Object { body, version }))
        }
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(store_error("GetObject", e)),
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn shared(&self) -> bool {
        true
    }

    fn get(&self, runbook: &str, item: &str) -> Result<Option<Object>, StoreError> {
        self.block(get_object(self.client.clone(), self.bucket.clone(), self.key(runbook, item)))
    }

    fn put(&self, runbook: &str, item: &str, body: &[u8], cond: Cond) -> Result<Version, StoreError> {
        let (client, bucket, key, body) =
            (self.client.clone(), self.bucket.clone(), self.key(runbook, item), body.to_vec());
        self.block(async move {
            let mut req = client
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .content_type("application/json")
                .body(ByteStream::from(body));
            req = match cond {
                Cond::Absent => req.if_none_match("*"),
                Cond::Matches(Version(etag)) => req.if_match(etag),
                Cond::Any => req,
            };
            match req.send().await {
                Ok(o) => Ok(Version(o.e_tag().unwrap_or_default().to_string())),
                // If-Match on an object that is gone: someone deleted it since
                // (a missing bucket is NoSuchBucket, and no conflict).
                Err(e) if status_of(&e) == Some(404) && e.code() == Some("NoSuchKey") => Err(StoreError::Conflict),
                Err(e) => Err(store_error("PutObject", e)),
            }
        })
    }

    fn delete(&self, runbook: &str, item: &str, cond: Cond) -> Result<(), StoreError> {
        let (client, bucket, key) = (self.client.clone(), self.bucket.clone(), self.key(runbook, item));
        self.block(async move {
            let mut req = client.delete_object().bucket(&bucket).key(&key);
            if let Cond::Matches(Version(etag)) = cond {
                req = req.if_match(etag);
            }
            match req.send().await {
                Ok(_) => Ok(()),
                Err(e) if status_of(&e) == Some(404) => Ok(()),
                Err(e) => Err(store_error("DeleteObject", e)),
            }
        })
    }

    fn list(&self, runbook: &str, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let base = self.key(runbook, "");
        Ok(self
            .list_keys(self.key(runbook, prefix))?
            .into_iter()
            .filter_map(|(k, modified)| Some(Listed { item: k.strip_prefix(&base)?.to_string(), modified }))
            .collect())
    }

    fn append(&self, runbook: &str, log: &str, entry: &[u8]) -> Result<(), StoreError> {
        let folder = log.split('.').next().unwrap_or(log);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let (host, pid) = (crate::store::host(), std::process::id());
        for _ in 0..5 {
            let seq = self.seq.fetch_add(1, Ordering::SeqCst);
            // Keys sort by time (fixed width), then writer: one object per entry.
            let item = format!("{folder}/{nanos:020}-{host}-{pid}-{seq:06}.json");
            match self.put(runbook, &item, entry, Cond::Absent) {
                // The key names this process and its sequence: a 412 is most
                // likely its own write, landed with its reply lost before the
                // SDK sent it again. Read back, it is not written twice.
                Err(StoreError::Conflict) => match self.get(runbook, &item) {
                    Ok(Some(o)) if o.body == entry => return Ok(()),
                    _ => continue,
                },
                other => return other.map(|_| ()),
            }
        }
        Err(StoreError::Unavailable("S3 PutObject: the audit entry's key kept being taken".into()))
    }

    fn entries(&self, runbook: &str, log: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let folder = log.split('.').next().unwrap_or(log);
        let keys: Vec<String> =
            self.list_keys(self.key(runbook, &format!("{folder}/")))?.into_iter().map(|(k, _)| k).collect();
        let missing: Vec<String> = {
            let known = self.entries.lock().map_err(|_| StoreError::Unavailable("cache poisoned".into()))?;
            keys.iter().filter(|k| !known.contains_key(*k)).cloned().collect()
        };
        if !missing.is_empty() {
            let (client, bucket) = (self.client.clone(), self.bucket.clone());
            let fetched = self.block(async move {
                use futures::StreamExt;
                let got: Vec<Result<(String, Option<Object>), StoreError>> = futures::stream::iter(missing)
                    .map(|k| {
                        let (client, bucket) = (client.clone(), bucket.clone());
                        async move { get_object(client, bucket, k.clone()).await.map(|o| (k, o)) }
                    })
                    .buffered(8)
                    .collect()
                    .await;
                got.into_iter().collect::<Result<Vec<_>, _>>()
            })?;
            let mut known = self.entries.lock().map_err(|_| StoreError::Unavailable("cache poisoned".into()))?;
            for (k, o) in fetched {
                if let Some(o) = o {
                    known.insert(k, o.body);
                }
            }
        }
        let known = self.entries.lock().map_err(|_| StoreError::Unavailable("cache poisoned".into()))?;
        Ok(keys
            .into_iter()
            .filter_map(|k| known.get(&k).map(|b| (format!("s3://{}/{k}", self.bucket), b.clone())))
            .collect())
    }
}
