//! AWS adapters. Each returns domain types; SDK types stay in this folder.

pub mod autoscaling;
pub mod cloudwatch;
pub mod ec2;
pub mod elasticache;
pub mod elb;
pub mod route53;
pub mod sts;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};

/// One client per service, built from one SDK config, all counting their calls.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub elasticache: aws_sdk_elasticache::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub route53: aws_sdk_route53::Client,
    pub sts: aws_sdk_sts::Client,
    pub region: String,
    pub calls: CallCounter,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        let calls = CallCounter::default();
        macro_rules! client {
            ($svc:ident) => {
                $svc::Client::from_conf($svc::config::Builder::from(config).interceptor(calls.clone()).build())
            };
        }
        Self {
            ec2: client!(aws_sdk_ec2),
            autoscaling: client!(aws_sdk_autoscaling),
            elb: client!(aws_sdk_elasticloadbalancingv2),
            elasticache: client!(aws_sdk_elasticache),
            cloudwatch: client!(aws_sdk_cloudwatch),
            route53: client!(aws_sdk_route53),
            sts: client!(aws_sdk_sts),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            calls,
        }
    }
}

/// Counts HTTP requests sent to AWS per operation, retries included.
#[derive(Clone, Debug, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    pub fn total(&self) -> u64 {
        self.0.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn reset(&self) {
        if let Ok(mut m) = self.0.lock() {
            m.clear();
        }
    }
}

impl aws_sdk_ec2::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &aws_sdk_ec2::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk_ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk_ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk_ec2::error::BoxError> {
        let op = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or_else(|| "unknown".to_string(), |m| m.name().to_string());
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_default() += 1;
        }
        Ok(())
    }
}

/// Bounds every call: a hung endpoint must never hang the cockpit.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(5))
        .operation_timeout(Duration::from_secs(12))
        .build()
}

/// The normal chain (env, profile, SSO); `AWS_ENDPOINT_URL` is honoured.
pub async fn load_config(region: Option<String>, profile: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
    if let Some(r) = region {
        loader = loader.region(Region::new(r));
    }
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    loader.load().await
}

/// A config for the local sandbox: fixed endpoint, dummy credentials.
pub async fn sandbox_config(endpoint: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeouts())
        .endpoint_url(endpoint)
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("sandbox", "sandbox", None, None, "cutover-sandbox"))
        .load()
        .await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AwsErrorKind {
    Throttled,
    Unreachable,
    NotFound,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AwsError {
    pub operation: String,
    pub kind: AwsErrorKind,
    pub message: String,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.message)
    }
}

impl std::error::Error for AwsError {}

impl AwsError {
    pub fn not_found(operation: &str, message: impl Into<String>) -> Self {
        Self { operation: operation.into(), kind: AwsErrorKind::NotFound, message: message.into() }
    }
}

/// An error and its causes, each one's own message, without the debug dump
/// `DisplayErrorContext` appends.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

/// Classifies an SDK error: throttling and connection failures are told apart
/// so callers can back off or mark values stale.
pub fn sdk_error<E, R>(operation: &str, e: aws_sdk_ec2::error::SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk_ec2::error::SdkError;
    let (kind, message) = match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            (AwsErrorKind::Unreachable, format!("cannot reach AWS: {}", causes(&e)))
        }
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            let msg = s.err().message().unwrap_or("");
            let kind = if [
                "Throttling",
                "ThrottlingException",
                "RequestLimitExceeded",
                "TooManyRequestsException",
                "PriorRequestNotComplete",
            ]
            .contains(&code)
                || msg.contains("Rate exceeded")
            {
                AwsErrorKind::Throttled
            } else if code.contains("NotFound") || code.starts_with("NoSuch") {
                AwsErrorKind::NotFound
            } else {
                AwsErrorKind::Other
            };
            (kind, if code.is_empty() { msg.to_string() } else { format!("{code}: {msg}") })
        }
        _ => (AwsErrorKind::Other, DisplayErrorContext(&e).to_string()),
    };
    AwsError { operation: operation.into(), kind, message }
}

pub type AwsResult<T> = Result<T, AwsError>;

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn an_unreachable_endpoint_is_one_readable_line_without_a_debug_dump() {
        // Port 9 on loopback: nothing listens, the connection is refused at once.
        let clients = super::Clients::new(&super::sandbox_config("http://127.0.0.1:9", "us-east-1").await);
        let e = super::sts::identity(&clients).await.unwrap_err();
        assert_eq!(e.kind, super::AwsErrorKind::Unreachable);
        let text = e.to_string();
        assert!(text.starts_with("GetCallerIdentity: cannot reach AWS: dispatch failure"), "{text}");
        assert!(!text.contains('{') && !text.contains("DispatchFailure("), "no debug dump: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }
}
