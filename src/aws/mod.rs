//! AWS adapters. Each returns domain types; SDK types stay in this folder.

pub mod ec2;
pub mod elb;
pub mod route53;

use std::fmt;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_ec2::config::{Credentials, Region};
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata};

/// One client per service, built from one SDK config.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub route53: aws_sdk_route53::Client,
    pub sts: aws_sdk_sts::Client,
    pub region: String,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        Self {
            ec2: aws_sdk_ec2::Client::new(config),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(config),
            cloudwatch: aws_sdk_cloudwatch::Client::new(config),
            route53: aws_sdk_route53::Client::new(config),
            sts: aws_sdk_sts::Client::new(config),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
        }
    }
}

/// The normal chain (env, profile, SSO); `AWS_ENDPOINT_URL` is honoured.
pub async fn load_config(region: Option<String>, profile: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
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
            (AwsErrorKind::Unreachable, format!("cannot reach AWS: {}", DisplayErrorContext(&e)))
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
