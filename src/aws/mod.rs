//! AWS adapters. Each returns domain types; SDK types stay in this folder.

pub mod acm;
pub mod autoscaling;
pub mod cloudwatch;
pub mod ec2;
pub mod elasticache;
pub mod elb;
pub mod route53;
pub mod s3;
pub mod sts;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk::ec2::config::{Credentials, Region};
use aws_sdk::ec2::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::runbook::{Runbook, Side};

/// One client per service, built from one SDK config, all counting their calls.
#[derive(Clone, Debug)]
pub struct Clients {
    pub ec2: aws_sdk::ec2::Client,
    pub autoscaling: aws_sdk::autoscaling::Client,
    pub elb: aws_sdk::elasticloadbalancingv2::Client,
    pub elasticache: aws_sdk::elasticache::Client,
    pub cloudwatch: aws_sdk::cloudwatch::Client,
    /// Certificates of HTTPS listeners (their names and expiry).
    pub acm: aws_sdk::acm::Client,
    pub route53: aws_sdk::route53::Client,
    pub sts: aws_sdk::sts::Client,
    pub region: String,
    pub calls: CallCounter,
    /// AWS's clock against this machine's, from the answers' `Date` headers.
    pub clock: AwsClock,
    /// Some when these clients run on keys from the environment, which
    /// nothing can refresh.
    pub fixed_keys: Option<FixedCredentials>,
}

impl Clients {
    pub fn new(config: &SdkConfig) -> Self {
        let calls = CallCounter::default();
        let clock = AwsClock::default();
        macro_rules! client {
            ($svc:ident) => {
                aws_sdk::$svc::Client::from_conf(
                    aws_sdk::$svc::config::Builder::from(config)
                        .interceptor(calls.clone())
                        .interceptor(clock.clone())
                        .build(),
                )
            };
        }
        Self {
            ec2: client!(ec2),
            autoscaling: client!(autoscaling),
            elb: client!(elasticloadbalancingv2),
            elasticache: client!(elasticache),
            cloudwatch: client!(cloudwatch),
            acm: client!(acm),
            route53: client!(route53),
            sts: client!(sts),
            region: config.region().map(|r| r.to_string()).unwrap_or_default(),
            calls,
            clock,
            fixed_keys: None,
        }
    }
}

/// How one side is reached once the runbook's keys and the global flags are
/// combined: sides with equal `Reach` share their clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Reach {
    /// None: the standard chain decides (`AWS_REGION`, the profile's).
    pub region: Option<String>,
    pub profile: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
}

impl Reach {
    /// A side's reach: its own keys, else the global flags, else `[runbook]`.
    pub fn of(rb: &Runbook, side: &Side, flags: &Reach) -> Reach {
        let a = rb.access(side);
        Reach {
            region: a.region.or_else(|| flags.region.clone()).or_else(|| rb.region.clone()),
            profile: a.profile.or_else(|| flags.profile.clone()),
            role_arn: a.role_arn,
            external_id: a.external_id,
        }
    }

    /// How the credentials are got, in words: `profile prod, role arn:…`.
    pub fn describe(&self) -> String {
        let mut parts = vec![match &self.profile {
            Some(p) => format!("profile {p}"),
            None => "the default credentials".to_string(),
        }];
        if let Some(r) = &self.role_arn {
            parts.push(format!("role {r}"));
        }
        parts.join(", ")
    }
}

/// The clients of every side of a runbook: the hosted zone's (`[dns]`), each
/// environment's, and the runbook's own (alarms that name no environment).
/// Sides reached the same way share one [`Clients`] (and its call counter).
#[derive(Clone, Debug)]
pub struct SideClients {
    runbook: Clients,
    dns: Clients,
    environments: BTreeMap<String, Clients>,
    reach: BTreeMap<Side, Reach>,
}

impl SideClients {
    /// The same clients for every side: a runbook of one account and region.
    pub fn one(clients: Clients) -> Self {
        Self { runbook: clients.clone(), dns: clients, environments: BTreeMap::new(), reach: BTreeMap::new() }
    }

    /// The hosted zone's side: Route53 reads and changes.
    pub fn dns(&self) -> &Clients {
        &self.dns
    }

    /// An environment's side (the runbook's for an unknown name).
    pub fn environment(&self, name: &str) -> &Clients {
        self.environments.get(name).unwrap_or(&self.runbook)
    }

    /// The runbook's own side: `[runbook]` and the global flags.
    pub fn runbook(&self) -> &Clients {
        &self.runbook
    }

    pub fn side(&self, side: &Side) -> &Clients {
        match side {
            Side::Dns => &self.dns,
            Side::Environment(e) => self.environment(e),
        }
    }

    /// How a side was reached (default for `one`).
    pub fn reach(&self, side: &Side) -> Reach {
        self.reach.get(side).cloned().unwrap_or_default()
    }

    /// Whether a side is reached with the runbook's own clients (as the
    /// alarms that name no environment are read).
    pub fn reached_as_runbook(&self, side: &Side) -> bool {
        Arc::ptr_eq(&self.side(side).calls.0, &self.runbook.calls.0)
    }

    /// Whether two sides are reached with the same clients (one account and region).
    pub fn same_reach(&self, a: &Side, b: &Side) -> bool {
        Arc::ptr_eq(&self.side(a).calls.0, &self.side(b).calls.0)
    }

    /// The indices of `sides` grouped by the clients that reach them, so
    /// each distinct account and region is asked once.
    pub fn group<'a>(&'a self, sides: &[Side]) -> Vec<(&'a Clients, Vec<usize>)> {
        let mut groups: Vec<(&Clients, Vec<usize>)> = Vec::new();
        for (i, side) in sides.iter().enumerate() {
            let c = self.side(side);
            match groups.iter_mut().find(|(g, _)| Arc::ptr_eq(&g.calls.0, &c.calls.0)) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((c, vec![i])),
            }
        }
        groups
    }

    /// Every distinct set of clients, once.
    fn distinct(&self) -> Vec<&Clients> {
        let mut out: Vec<&Clients> = Vec::new();
        for c in std::iter::once(&self.runbook).chain(std::iter::once(&self.dns)).chain(self.environments.values()) {
            if !out.iter().any(|o| Arc::ptr_eq(&o.calls.0, &c.calls.0)) {
                out.push(c);
            }
        }
        out
    }

    /// The CloudWatch client of every distinct side, once each.
    pub fn cloudwatch_clients(&self) -> Vec<aws_sdk::cloudwatch::Client> {
        self.distinct().iter().map(|c| c.cloudwatch.clone()).collect()
    }

    /// AWS calls made through every side.
    pub fn calls_total(&self) -> u64 {
        self.distinct().iter().map(|c| c.calls.total()).sum()
    }

    pub fn calls_by_operation(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for c in self.distinct() {
            for (op, n) in c.calls.by_operation() {
                *all.entry(op).or_default() += n;
            }
        }
        all
    }

    /// How far this machine's clock is from AWS's, in words, when it is
    /// surely further than [`CLOCK_SKEW_ALLOWED`] by the latest answer any
    /// side got (one AWS, one clock).
    pub fn clock_differs(&self) -> Option<String> {
        self.clock_read().and_then(|r| r.differs())
    }

    /// The latest reading of AWS's clock, by any side; None before any.
    pub fn clock_read(&self) -> Option<ClockReading> {
        self.distinct().iter().filter_map(|c| c.clock.latest()).max_by_key(|r| r.received)
    }

    pub fn reset_calls(&self) {
        for c in self.distinct() {
            c.calls.reset();
        }
    }

    /// Clients for each side of `rb`, each built once per distinct [`Reach`]
    /// by `build` (the standard chain, or the sandbox's endpoint).
    async fn build_with<F, Fut>(
        rb: &Runbook,
        flags: &Reach,
        build: F,
        fixed: impl Fn(&Reach) -> Option<FixedCredentials>,
    ) -> Self
    where
        F: Fn(Reach) -> Fut,
        Fut: std::future::Future<Output = SdkConfig>,
    {
        let mut built: BTreeMap<Reach, Clients> = BTreeMap::new();
        let mut get = async |reach: &Reach| -> Clients {
            if let Some(c) = built.get(reach) {
                return c.clone();
            }
            let mut c = Clients::new(&with_role(build(reach.clone()).await, reach).await);
            c.fixed_keys = fixed(reach);
            built.insert(reach.clone(), c.clone());
            c
        };
        let runbook_reach = Reach {
            region: flags.region.clone().or_else(|| rb.region.clone()),
            profile: flags.profile.clone(),
            ..Reach::default()
        };
        let runbook = get(&runbook_reach).await;
        let mut reach = BTreeMap::new();
        let dns_reach = Reach::of(rb, &Side::Dns, flags);
        let dns = get(&dns_reach).await;
        reach.insert(Side::Dns, dns_reach);
        let mut environments = BTreeMap::new();
        for name in rb.environments.keys() {
            let side = Side::Environment(name.clone());
            let r = Reach::of(rb, &side, flags);
            environments.insert(name.clone(), get(&r).await);
            reach.insert(side, r);
        }
        Self { runbook, dns, environments, reach }
    }

    /// The clients of every side through the standard chain (`--region` and
    /// `--profile` in `flags` are the defaults).
    pub async fn load(rb: &Runbook, flags: &Reach) -> Self {
        // Without a profile the chain takes keys from the environment first.
        Self::build_with(
            rb,
            flags,
            |r| load_config(r.region, r.profile),
            |r| r.profile.is_none().then(fixed_credentials).flatten(),
        )
        .await
    }

    /// The clients of every side against a sandbox: its endpoint and dummy
    /// credentials, each side's role assumed there (moto puts an assumed
    /// role's resources in the role's account). Profiles are not read.
    pub async fn sandbox(rb: &Runbook, endpoint: &str, region: &str) -> Self {
        Self::sandbox_as(rb, endpoint, region, None).await
    }

    /// As `sandbox`, its requests signed as coming from `app` (the user
    /// agent's `app/NAME`): the sandbox's own reads are told from cutover's.
    pub async fn sandbox_as(rb: &Runbook, endpoint: &str, region: &str, app: Option<&'static str>) -> Self {
        let flags = Reach { region: Some(region.to_string()), ..Reach::default() };
        Self::build_with(
            rb,
            &flags,
            |r| {
                let region = r.region.unwrap_or_else(|| region.to_string());
                async move {
                    let config = sandbox_config(endpoint, &region).await;
                    match app.and_then(|a| aws_config::AppName::new(a).ok()) {
                        Some(a) => config.into_builder().app_name(a).build(),
                        None => config,
                    }
                }
            },
            |_| None,
        )
        .await
    }
}

/// `config` with `reach`'s role assumed from its credentials, when it names
/// one: aws-config's provider, whose sessions the clients' identity cache
/// renews before they expire.
async fn with_role(config: SdkConfig, reach: &Reach) -> SdkConfig {
    let Some(role) = &reach.role_arn else { return config };
    let mut builder = aws_config::sts::AssumeRoleProvider::builder(role.clone()).session_name("cutover");
    if let Some(x) = &reach.external_id {
        builder = builder.external_id(x.clone());
    }
    let provider = builder.configure(&config).build().await;
    config.into_builder().credentials_provider(aws_sdk::sts::config::SharedCredentialsProvider::new(provider)).build()
}

/// Keys in the environment (`AWS_ACCESS_KEY_ID`, as aws-vault or a CI job
/// sets them), which a side without a profile runs on (its role, if any, is
/// assumed from them) and nothing can refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedCredentials {
    /// When they expire (`AWS_CREDENTIAL_EXPIRATION`, RFC 3339), if said.
    pub expires_at: Option<std::time::SystemTime>,
    /// `AWS_CREDENTIAL_EXPIRATION` when it is set but cannot be read: when
    /// the keys expire is then unknown, not never.
    pub unreadable_expiry: Option<String>,
}

/// An expiry as `AWS_CREDENTIAL_EXPIRATION` gives it: RFC 3339, `Z` or an
/// offset (`aws configure export-credentials` writes `+00:00`).
pub fn expiry_of(text: &str) -> Result<std::time::SystemTime, String> {
    let t = aws_smithy_types::DateTime::from_str(text.trim(), aws_smithy_types::date_time::Format::DateTimeWithOffset)
        .map_err(|e| format!("{EXPIRATION_VAR}={text:?} is not an RFC 3339 time ({e})"))?;
    std::time::SystemTime::try_from(t).map_err(|e| format!("{EXPIRATION_VAR}={text:?}: {e}"))
}

pub const EXPIRATION_VAR: &str = "AWS_CREDENTIAL_EXPIRATION";

/// The keys in the environment, when cutover runs on them.
fn fixed_credentials() -> Option<FixedCredentials> {
    std::env::var("AWS_ACCESS_KEY_ID").ok().filter(|k| !k.is_empty())?;
    let said = std::env::var(EXPIRATION_VAR).ok().filter(|t| !t.trim().is_empty());
    let (expires_at, unreadable_expiry) = match said.as_deref().map(expiry_of) {
        None => (None, None),
        Some(Ok(at)) => (Some(at), None),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "the keys' expiry cannot be read");
            (None, Some(e))
        }
    };
    Some(FixedCredentials { expires_at, unreadable_expiry })
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

impl aws_sdk::ec2::config::Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _ctx: &aws_sdk::ec2::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk::ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk::ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk::ec2::error::BoxError> {
        let op = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map_or_else(|| "unknown".to_string(), |m| m.name().to_string());
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_default() += 1;
        }
        Ok(())
    }
}

/// How far this machine's clock may be from AWS's. A gate judges AWS's
/// datapoints and alarm history over a soak timed by this machine's clock:
/// a clock behind AWS's judges minutes before the step and leaves the
/// soak's last ones unjudged (the SDK corrects its signing for any skew, so
/// nothing else would tell).
pub const CLOCK_SKEW_ALLOWED: Duration = Duration::from_secs(5);

/// One answer's `Date` against this machine's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockReading {
    /// AWS's clock minus this machine's, in milliseconds, at least and at
    /// most: the header has whole seconds, and AWS wrote it at some moment
    /// between the send and the answer.
    pub ahead_ms: (i64, i64),
    /// When the answer came, by this machine's clock.
    pub received: SystemTime,
}

fn signed_ms(a: SystemTime, b: SystemTime) -> i64 {
    match a.duration_since(b) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

impl ClockReading {
    /// `date`: the header's time; sent and received by this machine's clock.
    pub fn new(date: SystemTime, sent: SystemTime, received: SystemTime) -> Self {
        let at_least = signed_ms(date, received);
        let at_most = signed_ms(date + Duration::from_secs(1), sent);
        Self { ahead_ms: (at_least, at_most.max(at_least)), received }
    }

    /// In words, when the clocks surely differ by more than allowed.
    pub fn differs(&self) -> Option<String> {
        let allowed = CLOCK_SKEW_ALLOWED.as_millis() as i64;
        let secs = |ms: i64| format!("{:.1}", ms.unsigned_abs() as f64 / 1000.0);
        let (least, most) = self.ahead_ms;
        let (how, by) = if least > allowed {
            ("behind", least)
        } else if most < -allowed {
            ("ahead of", most)
        } else {
            return None;
        };
        Some(format!(
            "this machine's clock is at least {} s {how} AWS's (by the Date of AWS's answers; {} s allowed): gates \
             judge AWS's datapoints over soaks timed by this clock. Set the clock right (`timedatectl \
             set-ntp true`, or `chronyc makestep`)",
            secs(by),
            CLOCK_SKEW_ALLOWED.as_secs()
        ))
    }
}

/// Reads AWS's clock from each answer's `Date` header.
#[derive(Clone, Debug, Default)]
pub struct AwsClock(Arc<Mutex<Option<ClockReading>>>);

/// When an attempt was sent, by this machine's clock.
#[derive(Clone, Copy, Debug)]
struct SentAt(SystemTime);

impl aws_smithy_types::config_bag::Storable for SentAt {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl AwsClock {
    /// The latest answer's reading; None before any answer with a `Date`.
    pub fn latest(&self) -> Option<ClockReading> {
        self.0.lock().ok().and_then(|r| *r)
    }
}

impl aws_sdk::ec2::config::Intercept for AwsClock {
    fn name(&self) -> &'static str {
        "AwsClock"
    }

    fn read_before_transmit(
        &self,
        _ctx: &aws_sdk::ec2::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_sdk::ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk::ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk::ec2::error::BoxError> {
        cfg.interceptor_state().store_put(SentAt(SystemTime::now()));
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        ctx: &aws_sdk::ec2::config::interceptors::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &aws_sdk::ec2::config::RuntimeComponents,
        cfg: &mut aws_sdk::ec2::config::ConfigBag,
    ) -> Result<(), aws_sdk::ec2::error::BoxError> {
        let received = SystemTime::now();
        let date = ctx
            .response()
            .headers()
            .get("date")
            .and_then(|d| aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::HttpDate).ok())
            .and_then(|d| SystemTime::try_from(d).ok());
        // A cached answer's Date is not AWS's clock now.
        let cached = ctx.response().headers().get("age").is_some();
        if let (Some(date), Some(SentAt(sent)), false) = (date, cfg.load::<SentAt>().copied(), cached)
            && let Ok(mut latest) = self.0.lock()
        {
            *latest = Some(ClockReading::new(date, sent, received));
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

/// The normal chain (env, profile, SSO); `AWS_ENDPOINT_URL` is honoured. A
/// profile named here is what the credentials come from, even when keys are
/// in the environment (the SDK's chain would take those first).
pub async fn load_config(region: Option<String>, profile: Option<String>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
    if let Some(r) = &region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = profile {
        let conf = aws_config::provider_config::ProviderConfig::without_region()
            .with_region(region.map(Region::new))
            .with_behavior_version(Some(BehaviorVersion::latest()));
        let provider =
            aws_config::profile::ProfileFileCredentialsProvider::builder().configure(&conf).profile_name(&p).build();
        loader = loader.profile_name(p).credentials_provider(provider);
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
    /// The credentials' session expired (`ExpiredToken`): AWS is up, the
    /// credentials need renewing.
    Expired,
    /// No credentials could be got (a missing profile, an SSO session to log
    /// in again, a role that cannot be assumed): nothing was sent to AWS.
    Credentials,
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
    /// Throttled or AWS not reached: the same request may pass later.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, AwsErrorKind::Throttled | AwsErrorKind::Unreachable)
    }

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

/// Whether an error was raised getting credentials, before any request.
fn credentials_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.downcast_ref::<aws_credential_types::provider::error::CredentialsError>().is_some() {
            return true;
        }
        next = err.source();
    }
    false
}

/// Classifies an SDK error: throttling and connection failures are told apart
/// so callers can back off or mark values stale.
pub fn sdk_error<E, R>(operation: &str, e: aws_sdk::ec2::error::SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug + Send + Sync + 'static,
{
    use aws_sdk::ec2::error::SdkError;
    let (kind, message) = match &e {
        SdkError::DispatchFailure(_) if credentials_failed(&e) => {
            (AwsErrorKind::Credentials, format!("cannot get credentials: {}", causes(&e)))
        }
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
            } else if ["ExpiredToken", "ExpiredTokenException"].contains(&code) {
                AwsErrorKind::Expired
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
    use std::time::{Duration, UNIX_EPOCH};

    use super::ClockReading;

    /// AWS's Date has whole seconds and was written between the send and
    /// the answer: the clocks differ only when every moment in there says so.
    #[test]
    fn a_clock_differs_only_when_the_whole_round_trip_says_so() {
        let t = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        // Sent at 100.0 s, answered at 100.4 s, Date 100 s: in step.
        let r = ClockReading::new(t(100_000), t(100_000), t(100_400));
        assert_eq!(r.ahead_ms, (-400, 1_000));
        assert_eq!(r.differs(), None);
        // Date 106 s: AWS is 5.6 s ahead at least, over the 5 s allowed.
        let r = ClockReading::new(t(106_000), t(100_000), t(100_400));
        let why = r.differs().expect("this machine is behind");
        assert!(why.starts_with("this machine's clock is at least 5.6 s behind AWS's"), "{why}");
        // Date 105 s: AWS could be 4.6 s ahead only, within what is allowed.
        assert_eq!(ClockReading::new(t(105_000), t(100_000), t(100_400)).differs(), None);
        // Date 94 s: AWS is at least 5 s behind at most 5.0 s: not surely over.
        assert_eq!(ClockReading::new(t(94_000), t(100_000), t(100_400)).differs(), None);
        // Date 93 s: AWS is 6 s behind at least.
        let why = ClockReading::new(t(93_000), t(100_000), t(100_400)).differs().expect("ahead");
        assert!(why.starts_with("this machine's clock is at least 6.0 s ahead of AWS's"), "{why}");
        // A slow answer (30 s round trip) cannot tell 20 s off.
        assert_eq!(ClockReading::new(t(120_000), t(100_000), t(130_000)).differs(), None);
    }

    #[test]
    fn an_expiry_is_read_with_z_or_an_offset_and_anything_else_is_said() {
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        // 2026-12-05T18:00:00Z
        assert_eq!(super::expiry_of("2026-12-05T18:00:00Z"), Ok(at(1_796_493_600)));
        // As `aws configure export-credentials --format env` writes it.
        assert_eq!(super::expiry_of("2026-12-05T18:00:00+00:00"), Ok(at(1_796_493_600)));
        assert_eq!(super::expiry_of("2026-12-05T20:00:00+02:00\n"), Ok(at(1_796_493_600)));
        let e = super::expiry_of("tomorrow").unwrap_err();
        assert!(e.starts_with("AWS_CREDENTIAL_EXPIRATION=\"tomorrow\" is not an RFC 3339 time"), "{e}");
    }

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
