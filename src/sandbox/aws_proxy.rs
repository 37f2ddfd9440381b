//! A loopback HTTP proxy in front of moto that makes it behave as AWS does
//! where moto is kinder, each switch changeable while it runs:
//! - every `nth` request answered with AWS's own throttling error for that
//!   service (throttling rehearsed against real SDK clients, retries, backoff),
//!   retries included or, with `retries_pass`, first attempts only;
//! - Route53 changes PENDING for a while before INSYNC (moto: INSYNC at once);
//! - a ChangeResourceRecordSets applied whose reply never arrives (a timeout
//!   after sending), or refused with PriorRequestNotComplete (Route53 busy
//!   with an earlier request for the zone);
//! - a ChangeResourceRecordSets batch walked in order, as AWS does: a DELETE
//!   that does not match a record exactly (one the batch already deleted
//!   included), or a CREATE of a record that exists (one the batch already
//!   created included), refuses the whole batch with AWS's
//!   InvalidChangeBatch (moto checks neither the weight nor the values), as
//!   does a name outside the zone (moto applies the changes before it);
//!   a DELETE removes only the record of its name, type and set identifier
//!   (moto's removes every record of the set identifier in the zone, of any
//!   name or type: the proxy puts the others back in the same batch); a
//!   CREATE is sent as an UPSERT (moto refuses one identical to any earlier
//!   CREATE, even one deleted since);
//! - RevokeSecurityGroupIngress of a rule the group does not hold answered
//!   with success and the rule in `unknownIpPermissionSet`, as AWS answers
//!   for a VPC group (moto refuses it with InvalidPermission.NotFound);
//! - GetChange of an id the proxy never handed out answered NoSuchChange
//!   (HTTP 404), as AWS does (moto says INSYNC of any id);
//! - another client's change to a record just before cutover's batch arrives;
//! - GetHealthCheckStatus of an HTTP check on 127.0.0.1 answered from a real
//!   request to that address (moto always says Success); checks on any
//!   other address are left to moto, never contacted;
//! - ListResourceRecordSets pages as AWS does, 300 records at most with
//!   `NextRecordName`/`Type`/`Identifier` (moto ignores the identifier).
//! - CloudWatch percentiles, late datapoints and composite alarms (see
//!   `sandbox::cloudwatch`);
//! - short-lived credentials: `GET /_sandbox/credentials?seconds=N` hands out
//!   keys of an assumed role (as a `credential_process` prints them) that the
//!   proxy refuses with AWS's `ExpiredToken` once N seconds have passed
//!   (moto never expires a session);
//! - S3 conditional writes (`If-Match`, `If-None-Match`) atomic, one at a
//!   time: moto checks the condition and writes apart, so two writers racing
//!   on one version could both succeed, which S3 never allows; S3's own
//!   `503 SlowDown` on demand;
//! - AMIs (CreateImage) `pending` and ElastiCache snapshots (CreateSnapshot)
//!   `creating` for `backup_pending_ms` before `available` (moto: available
//!   at once; AWS: minutes), so a wait for them really waits; not found at
//!   all for their first `backup_unseen_ms` (AWS's eventual consistency: a
//!   resource just created may not be described yet); on demand, an
//!   AMI that goes `failed` instead, with the StateReason AWS documents
//!   (`Client.InstanceTerminated`; moto never fails one).
//! - DeregisterTargets matches a target by id and port (the group's port
//!   when none is given) and leaves any other alone, still answering
//!   success, as AWS documents (moto removes by id whatever the port); a
//!   deregistered target stays listed by DescribeTargetHealth as `draining`
//!   (Target.DeregistrationInProgress) for its group's deregistration delay
//!   (moto drops it at once), unless registered again meanwhile;
//! - an instance's primary network interface goes with it when it is
//!   terminated (DeleteOnTermination, AWS's default for the interface
//!   RunInstances makes; moto says false and keeps it attached, so a group
//!   would look used by a terminated instance for ever);
//! - AWS's clock, in every answer's `Date`, ahead of or behind this
//!   machine's on demand (moto's is this machine's);
//! - instances `stopping`, `pending` or `shutting-down` for
//!   `instance_transition_ms` after StopInstances, StartInstances or
//!   TerminateInstances (moto: the end state at once; AWS: tens of seconds
//!   to minutes), in DescribeInstances and the calls' own replies; and
//!   AWS's IncorrectInstanceState, whatever the window, for a start of an
//!   instance stopping, shutting down or terminated, and a stop of one
//!   pending, shutting down or terminated (moto starts or stops any);
//! - a target registered while `registration_ms` is set is `initial`
//!   (Elb.RegistrationInProgress) for that long, as an ALB keeps it for its
//!   health check's interval × healthy threshold (moto: healthy at once).

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

use super::cloudwatch::Handling;

/// Requests seen and requests throttled, and the current share.
#[derive(Debug, Default)]
pub struct AwsFaults {
    pub seen: AtomicU64,
    pub throttled: AtomicU64,
    /// Every `every`-th request (every `every`-th first attempt, with
    /// `retries_pass`) is throttled; 0 lets every request through.
    pub every: AtomicU64,
    /// Only first attempts (the SDK's `amz-sdk-request: attempt=1`) count
    /// toward `every`, and a retry always goes through: throttling the SDK's
    /// retries are sure to absorb. Off (AWS's way), a retry may be throttled
    /// again, and three in a row reach the caller.
    pub retries_pass: AtomicBool,
    first_attempts: AtomicU64,
    /// Requests throttled on the last attempt their `amz-sdk-request` allows
    /// (calls that then fail; an SDK whose retry budget ran out gives up
    /// sooner, unseen here).
    pub throttled_last_attempts: AtomicU64,
    /// Requests that are a retry (`attempt` above 1).
    pub retries: AtomicU64,
    /// GetChange says PENDING until this many milliseconds after the change
    /// was accepted (AWS: usually under 60 s); 0 answers as moto does.
    pub pending_ms: AtomicU64,
    /// ChangeResourceRecordSets is applied, then its reply dropped (the
    /// connection closes with no answer).
    pub drop_change_replies: AtomicBool,
    /// Each ChangeResourceRecordSets is processed this many milliseconds
    /// before it is applied and answered, whether or not the caller still
    /// waits (Route53 finishes a request its client gave up on); 0: at once.
    pub hold_changes_ms: AtomicU64,
    /// Before the next ChangeResourceRecordSets is looked at, the record with
    /// this set identifier gets this weight (every other field kept), as if
    /// another client changed it between cutover's read and its send.
    pub reweight_before_change: Mutex<Option<(String, u8)>>,
    /// Changes accepted through the proxy.
    pub changes: AtomicU64,
    /// The next this many ChangeResourceRecordSets requests (retries
    /// included) are refused with PriorRequestNotComplete, as Route53 does
    /// while it still processes an earlier request for the zone; nothing is
    /// applied (moto never refuses one).
    pub refuse_changes: AtomicU64,
    /// ChangeResourceRecordSets requests refused so.
    pub changes_refused: AtomicU64,
    /// Every S3 request answered with AWS's `503 SlowDown` (S3's own
    /// throttling, which moto never sends).
    pub s3_slow_down: AtomicBool,
    /// GetHealthCheckStatus refused with AccessDenied, as for a reading
    /// role without `route53:GetHealthCheckStatus`.
    pub deny_health_check_status: AtomicBool,
    /// DescribeNetworkInterfaces refused with UnauthorizedOperation, as for a
    /// reading role without `ec2:DescribeNetworkInterfaces`.
    pub deny_network_interfaces: AtomicBool,
    /// Every S3 request left unanswered for two minutes (an S3 that froze:
    /// the client hears nothing until its own timeout).
    pub s3_frozen: AtomicBool,
    /// The next this many S3 PUTs whose path holds this text (`/audit/`,
    /// `progress.json`) are written, then answered 504 as a reply lost on
    /// the way: the SDK sends the same PUT again, which its own condition
    /// (If-None-Match, If-Match) then refuses (412).
    pub lose_s3_put_replies: Mutex<Option<(String, u64)>>,
    /// Requests per service, by the signature's credential scope
    /// (`.../<region>/<service>/aws4_request`): what a whole team spends.
    pub by_service: Mutex<std::collections::BTreeMap<String, u64>>,
    /// Each change id this proxy handed out: moto's own id for it (moto gives
    /// every change the same one; AWS never does) and when it was accepted.
    accepted: Mutex<HashMap<String, (String, Instant)>>,
    /// What the proxy adds to moto's CloudWatch.
    pub cloudwatch: super::cloudwatch::CloudWatchState,
    /// Access key → when it expires, for the short-lived keys it issued.
    expiring_keys: Mutex<HashMap<String, std::time::SystemTime>>,
    /// Short-lived credentials issued.
    pub credentials_issued: AtomicU64,
    /// Requests refused because their credentials had expired.
    pub expired_refused: AtomicU64,
    /// How long a new AMI stays `pending` and a new snapshot `creating`.
    pub backup_pending_ms: AtomicU64,
    /// How long a new AMI or snapshot is not found at all, as AWS's
    /// eventually consistent reads answer right after a create.
    pub backup_unseen_ms: AtomicU64,
    /// AMI ids and snapshot names created through the proxy, and when.
    backups: Mutex<HashMap<String, Instant>>,
    /// AMIs created while this is set go `failed`, not `available`, once
    /// their pending time is over.
    pub fail_new_images: AtomicBool,
    /// The AMIs that go `failed`.
    failing_images: Mutex<std::collections::HashSet<String>>,
    /// The next this many successful requests of this query action (EC2's
    /// `CreateImage`, ElastiCache's `CreateSnapshot`) are applied, then
    /// answered 504 as a reply lost on the way: the SDK sends the same
    /// request again.
    pub lose_replies: Mutex<Option<(String, u64)>>,
    /// How far AWS's clock runs ahead of this machine's (negative: behind),
    /// in milliseconds, as every answer's `Date` header tells it (moto's
    /// clock is this machine's).
    pub clock_ahead_ms: std::sync::atomic::AtomicI64,
    /// Instance id → how an ALB health-checks it: DescribeTargetHealth is
    /// answered from these, as moto calls every running target healthy.
    pub targets: Mutex<HashMap<String, TargetCheck>>,
    /// Instance ids whose target health AWS cannot tell: `unavailable`
    /// (Elb.InternalError), which moto never answers.
    pub unavailable_targets: Mutex<std::collections::HashSet<String>>,
    /// (target group ARN, target id, port) → until when it is `draining`.
    draining: Mutex<HashMap<(String, String, String), Instant>>,
    /// How long an instance stays `stopping`, `pending` or `shutting-down`
    /// after a stop, start or terminate sent while this is above 0; 0
    /// answers as moto does (the end state at once).
    pub instance_transition_ms: AtomicU64,
    /// Instance id → the state it passes through, and since when.
    transitions: Mutex<HashMap<String, (&'static str, Instant)>>,
    /// How long a target registered while this is above 0 stays `initial`;
    /// 0 answers as moto does (healthy at once).
    pub registration_ms: AtomicU64,
    /// (target group ARN, target id) → the port it was registered on (none:
    /// the group's) and when.
    registering: Mutex<Registrations>,
}

/// (target group ARN, target id) → the port given, if any, and when.
type Registrations = HashMap<(String, String), (Option<String>, Instant)>;

/// What an ALB health check of a sandbox instance reaches.
#[derive(Debug, Clone)]
pub struct TargetCheck {
    /// Its app's `/health`, on 127.0.0.1.
    pub health_url: String,
    /// Its availability zone (`eu-west-1a`).
    pub zone: String,
}

impl AwsFaults {
    /// Makes `access_key` expire at `at`, as AWS ends a session.
    pub fn expire_key_at(&self, access_key: &str, at: std::time::SystemTime) {
        self.expiring_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(access_key.to_string(), at);
    }

    fn expired(&self, access_key: &str) -> bool {
        let keys = self.expiring_keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.get(access_key).is_some_and(|at| std::time::SystemTime::now() >= *at)
    }
}

/// Which attempt of its call a request is, and how many the SDK allows
/// (`amz-sdk-request: attempt=2; max=3`); attempt 1 when the header is absent.
fn attempt_of(headers: &HeaderMap) -> (u64, Option<u64>) {
    let Some(info) = headers.get("amz-sdk-request").and_then(|v| v.to_str().ok()) else {
        return (1, None);
    };
    let field = |name: &str| {
        info.split(';').find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('=')?.parse::<u64>().ok())
    };
    (field("attempt").unwrap_or(1), field("max"))
}

/// The access key a request is signed with (`Credential=AKID/…`).
fn access_key(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let rest = auth.split("Credential=").nth(1)?;
    Some(rest.split('/').next()?.to_string())
}

/// AWS's answer to a request signed with an expired session, in the
/// service's own dialect.
fn expired_token(body: &[u8]) -> Response {
    let text = String::from_utf8_lossy(body);
    let message = "The security token included in the request is expired";
    let xml = if text.contains("Version=2016-11-15") {
        format!(
            "<Response><Errors><Error><Code>ExpiredToken</Code><Message>{message}</Message></Error></Errors><RequestID>expired-proxy</RequestID></Response>"
        )
    } else {
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>ExpiredToken</Code><Message>{message}</Message></Error><RequestId>expired-proxy</RequestId></ErrorResponse>"
        )
    };
    (StatusCode::FORBIDDEN, [("content-type", "text/xml")], xml).into_response()
}

/// Short-lived credentials of `role_arn` (default: a role in the sandbox's
/// own account), assumed in moto and made to expire after `seconds`, as the
/// JSON a `credential_process` prints.
async fn issue_credentials(p: &Proxy, query: &str) -> Response {
    let pairs: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let Some(seconds) = pairs.get("seconds").and_then(|s| s.parse::<u64>().ok()).filter(|s| (1..=43_200).contains(s))
    else {
        return (StatusCode::BAD_REQUEST, "seconds=N (1 to 43200) is required").into_response();
    };
    let role = pairs.get("role_arn").cloned().unwrap_or_else(|| "arn:aws:iam::123456789012:role/sandbox-short".into());
    let form = format!(
        "Action=AssumeRole&Version=2011-06-15&RoleSessionName=sandbox-short&DurationSeconds=900&RoleArn={}",
        url::form_urlencoded::byte_serialize(role.as_bytes()).collect::<String>()
    );
    let auth =
        "AWS4-HMAC-SHA256 Credential=sandbox/20260101/us-east-1/sts/aws4_request, SignedHeaders=host, Signature=0";
    let resp = p
        .http
        .post(format!("http://{}/", p.upstream))
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await;
    let text = match resp {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("proxy: cannot reach moto: {e}")).into_response(),
    };
    let (Some(key), Some(secret), Some(token)) =
        (xml_field(&text, "AccessKeyId"), xml_field(&text, "SecretAccessKey"), xml_field(&text, "SessionToken"))
    else {
        return (StatusCode::BAD_GATEWAY, format!("proxy: AssumeRole gave no credentials: {text}")).into_response();
    };
    let at = std::time::SystemTime::now() + std::time::Duration::from_secs(seconds);
    p.counts.expire_key_at(key, at);
    p.counts.credentials_issued.fetch_add(1, Ordering::SeqCst);
    let json = serde_json::json!({
        "Version": 1,
        "AccessKeyId": key,
        "SecretAccessKey": secret,
        "SessionToken": token,
        "Expiration": crate::time::rfc3339(at),
    });
    (StatusCode::OK, [("content-type", "application/json")], json.to_string()).into_response()
}

struct Proxy {
    upstream: SocketAddr,
    http: reqwest::Client,
    counts: Arc<AwsFaults>,
    /// Held while a conditional S3 write is checked and applied upstream.
    s3_conditional: tokio::sync::Mutex<()>,
    /// Held from a ChangeResourceRecordSets' check until moto has applied
    /// it (a held change's too): Route53 takes one batch at a time, each
    /// checked against the records the one before left. One for every zone:
    /// the sandbox's changes are few.
    route53_changes: Arc<tokio::sync::Mutex<()>>,
}

/// The text between `<tag>` and `</tag>`, first occurrence.
fn xml_field<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(&body[start..start + len])
}

/// Every `<tag>…</tag>` element, whole, in order (tags not nested in themselves).
fn xml_elements<'a>(body: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(start) = rest.find(&open) {
        let Some(len) = rest[start..].find(&close) else { break };
        out.push(&rest[start..start + len + close.len()]);
        rest = &rest[start + len + close.len()..];
    }
    out
}

/// XML text unescaped (the five entities).
fn unxml(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn dotted(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.')).to_ascii_lowercase()
}

/// A `<ResourceRecordSet>` element as the fields AWS compares, in one string.
/// The sandbox's own reading, kept apart from cutover's.
#[derive(Debug, Clone, PartialEq)]
struct Rrs {
    name: String,
    rtype: String,
    id: Option<String>,
    all: String,
}

fn rrs(el: &str) -> Rrs {
    let f = |t: &str| xml_field(el, t).map(unxml);
    let values: Vec<String> =
        xml_elements(el, "Value").iter().filter_map(|v| xml_field(v, "Value")).map(unxml).collect();
    let name = dotted(&f("Name").unwrap_or_default());
    let rtype = f("Type").unwrap_or_default();
    let id = f("SetIdentifier");
    let all = format!(
        "{name}|{rtype}|{id:?}|w={:?}|ttl={:?}|hc={:?}|alias={:?},{:?},{:?}|{values:?}",
        f("Weight"),
        f("TTL"),
        f("HealthCheckId"),
        f("HostedZoneId"),
        f("DNSName").map(|d| dotted(&d)),
        f("EvaluateTargetHealth"),
    );
    Rrs { name, rtype, id, all }
}

/// InvalidChangeBatch as AWS words it.
fn invalid_change_batch(message: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>{}</Message></Error><RequestId>proxy-invalid-change-batch</RequestId></ErrorResponse>",
        xml_escape(message)
    );
    (StatusCode::BAD_REQUEST, [("content-type", "text/xml")], xml).into_response()
}

/// GetChange of an id Route53 never gave out, as AWS answers it.
fn no_such_change() -> Response {
    let xml = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>NoSuchChange</Code><Message>A change with the specified change ID does not exist.</Message></Error><RequestId>proxy-no-such-change</RequestId></ErrorResponse>";
    (StatusCode::NOT_FOUND, [("content-type", "text/xml")], xml).into_response()
}

/// A request of the proxy's own to moto, signed as the caller's was: moto
/// keeps each account apart by the access key (an assumed role's is in the
/// role's account) and checks no signature.
fn as_caller(req: reqwest::RequestBuilder, caller: &HeaderMap) -> reqwest::RequestBuilder {
    let default =
        "AWS4-HMAC-SHA256 Credential=sandbox/20260101/us-east-1/route53/aws4_request, SignedHeaders=host, Signature=0";
    let mut req = match caller.get("authorization") {
        Some(a) => req.header("authorization", a.as_bytes()),
        None => req.header("authorization", default),
    };
    if let Some(t) = caller.get("x-amz-security-token") {
        req = req.header("x-amz-security-token", t.as_bytes());
    }
    req
}

/// Every record of the zone from `name`/`type` on, as moto lists them (one page).
async fn list_all(
    p: &Proxy,
    caller: &HeaderMap,
    zone: &str,
    name: Option<&str>,
    rtype: Option<&str>,
) -> Result<String, String> {
    let mut url = reqwest::Url::parse(&format!("http://{}/2013-04-01/hostedzone/{zone}/rrset", p.upstream))
        .map_err(|e| e.to_string())?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(n) = name {
            q.append_pair("name", n);
        }
        if let Some(t) = rtype {
            q.append_pair("type", t);
        }
        q.append_pair("maxitems", "100000");
    }
    let resp = as_caller(p.http.get(url), caller).send().await.map_err(|e| e.to_string())?;
    resp.text().await.map_err(|e| e.to_string())
}

/// A record's place in a zone: name, type and set identifier.
type RecordKey = (String, String, Option<String>);

/// A batch as AWS takes it, or AWS's refusal. Walked in order against the
/// zone's records (read once): a DELETE must match a record exactly and
/// removes it, a CREATE must meet none and adds it, an UPSERT adds or
/// replaces; one change refused refuses the batch (InvalidChangeBatch), so
/// deleting or creating one record twice is refused, as AWS documents.
/// Taken, it is what moto is sent: CREATEs as UPSERTs (moto refuses a CREATE
/// identical to any earlier one, its journal), then an UPSERT of each record
/// a DELETE of moto's would take beside the one named (every record of the
/// set identifier, of any name or type; with none, of the name and type),
/// so they stay as AWS leaves them.
async fn as_aws_batch(p: &Proxy, caller: &HeaderMap, zone: &str, body: &str) -> Result<String, Response> {
    let text = list_all(p, caller, zone, None, None)
        .await
        .map_err(|e| (StatusCode::BAD_GATEWAY, format!("proxy: cannot read moto: {e}")).into_response())?;
    if !text.contains("<ListResourceRecordSetsResponse") {
        // No such zone: moto's own answer is AWS's.
        return Ok(body.to_string());
    }
    let mut zone_now: std::collections::BTreeMap<RecordKey, String> = xml_elements(&text, "ResourceRecordSet")
        .into_iter()
        .map(|el| {
            let r = rrs(el);
            ((r.name, r.rtype, r.id), el.to_string())
        })
        .collect();
    // The zone's own name: its SOA record's (every zone has one). A change
    // to a name outside it refuses the batch, as AWS's does; moto applies
    // the changes before it and then refuses, half a batch.
    let apex = zone_now.keys().find(|k| k.1 == "SOA").map(|k| k.0.clone());
    // What each DELETE takes in moto: by set identifier, else by name and type.
    let mut swept: Vec<RecordKey> = Vec::new();
    let takes = |by: &RecordKey, k: &RecordKey| match &by.2 {
        Some(id) => k.2.as_ref() == Some(id),
        None => k.0 == by.0 && k.1 == by.1,
    };
    for change in xml_elements(body, "Change") {
        let action = xml_field(change, "Action").unwrap_or_default();
        let Some(el) = xml_elements(change, "ResourceRecordSet").first().copied() else { continue };
        let want = rrs(el);
        let what = format!(
            "[name='{}', type='{}'{}]",
            want.name,
            want.rtype,
            want.id.as_ref().map_or(String::new(), |i| format!(", set-identifier='{i}'"))
        );
        if let Some(apex) = &apex
            && want.name != *apex
            && !want.name.ends_with(&format!(".{apex}"))
        {
            return Err(invalid_change_batch(&format!(
                "[RRSet with DNS name {} is not permitted in zone {apex}]",
                want.name
            )));
        }
        let key = (want.name.clone(), want.rtype.clone(), want.id.clone());
        match action {
            "DELETE" => {
                match zone_now.remove(&key) {
                    None => {
                        return Err(invalid_change_batch(&format!(
                            "[Tried to delete resource record set {what} but it was not found]"
                        )));
                    }
                    Some(live) if rrs(&live).all != want.all => {
                        return Err(invalid_change_batch(&format!(
                            "[Tried to delete resource record set {what} but the values provided do not match the current values]"
                        )));
                    }
                    Some(_) => {}
                }
                swept.push(key);
            }
            "CREATE" if zone_now.contains_key(&key) => {
                return Err(invalid_change_batch(&format!(
                    "[Tried to create resource record set {what} but it already exists]"
                )));
            }
            "CREATE" | "UPSERT" => {
                zone_now.insert(key, el.to_string());
            }
            // Moto refuses an unknown action itself.
            _ => {}
        }
    }
    let kept: String = zone_now
        .iter()
        .filter(|(k, _)| swept.iter().any(|by| takes(by, k)))
        .map(|(_, el)| format!("<Change><Action>UPSERT</Action>{el}</Change>"))
        .collect();
    let sent = body.replace("<Action>CREATE</Action>", "<Action>UPSERT</Action>");
    Ok(match sent.rfind("</Changes>") {
        Some(at) => format!("{}{kept}{}", &sent[..at], &sent[at..]),
        None => sent,
    })
}

/// Another client's change: the live record `id` (of the batch's name) with
/// a new weight, straight to moto.
async fn reweight(p: &Proxy, caller: &HeaderMap, zone: &str, batch: &str, id: &str, weight: u8) -> Result<(), String> {
    let el = xml_elements(batch, "ResourceRecordSet").first().copied().ok_or("an empty batch")?;
    let first = rrs(el);
    let text = list_all(p, caller, zone, Some(&first.name), Some(&first.rtype)).await?;
    let mut changes = String::new();
    for el in xml_elements(&text, "ResourceRecordSet") {
        let r = rrs(el);
        if r.name == first.name && r.id.as_deref() == Some(id) {
            let old = xml_field(el, "Weight").ok_or("a record with no weight")?;
            let el = el.replace(&format!("<Weight>{old}</Weight>"), &format!("<Weight>{weight}</Weight>"));
            changes.push_str(&format!("<Change><Action>UPSERT</Action>{el}</Change>"));
        }
    }
    let body = format!(
        "<ChangeResourceRecordSetsRequest xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ChangeBatch><Changes>{changes}</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
    );
    let url = format!("http://{}/2013-04-01/hostedzone/{zone}/rrset", p.upstream);
    let resp = as_caller(p.http.post(url), caller).body(body).send().await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("moto answered {}: {}", resp.status(), resp.text().await.unwrap_or_default()));
    }
    Ok(())
}

/// GetHealthCheckStatus answered from a real check, as Route53's checkers
/// would make it (moto always says Success; `checker_report`). Other types
/// (calculated, CloudWatch) are moto's.
async fn health_check_status(p: &Proxy, caller: &HeaderMap, id: &str) -> Option<Response> {
    let url = format!("http://{}/2013-04-01/healthcheck/{id}", p.upstream);
    let config = as_caller(p.http.get(url), caller).send().await.ok()?.text().await.ok()?;
    let kind = xml_field(&config, "Type")?.to_string();
    if !(kind.starts_with("HTTP") || kind == "TCP") {
        return None;
    }
    let ip = xml_field(&config, "IPAddress").unwrap_or_default();
    let port: u16 = xml_field(&config, "Port").and_then(|p| p.parse().ok()).unwrap_or(80);
    let path = xml_field(&config, "ResourcePath").map_or("/".to_string(), unxml);
    let search = xml_field(&config, "SearchString").map(unxml);
    let status = checker_report(&p.http, &kind, ip, port, &path, search.as_deref()).await;
    let xml = format!(
        "<?xml version=\"1.0\"?>\n<GetHealthCheckStatusResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><HealthCheckObservations><HealthCheckObservation><Region>us-east-1</Region><IPAddress>{}</IPAddress><StatusReport><Status>{}</Status><CheckedTime>{}</CheckedTime></StatusReport></HealthCheckObservation></HealthCheckObservations></GetHealthCheckStatusResponse>",
        xml_escape(ip),
        xml_escape(&status),
        crate::time::rfc3339(std::time::SystemTime::now())
    );
    Some((StatusCode::OK, [("content-type", "text/xml")], xml).into_response())
}

/// What one of Route53's checkers reports of an HTTP(S) or TCP check
/// (`Success: …` or `Failure: …`), checking it for real: of 127.0.0.1 by its
/// status (2xx and 3xx pass), and for `*_STR_MATCH` by `search` in the
/// first 5,120 bytes of the body; a TCP check by connecting. Any other
/// address fails: the sandbox's checkers reach only 127.0.0.1.
pub async fn checker_report(
    http: &reqwest::Client,
    kind: &str,
    ip: &str,
    port: u16,
    path: &str,
    search: Option<&str>,
) -> String {
    let timeout = std::time::Duration::from_secs(2);
    let search = search.filter(|_| kind.ends_with("_STR_MATCH"));
    if ip != "127.0.0.1" {
        "Failure: the sandbox's health checkers reach only 127.0.0.1".to_string()
    } else if kind == "TCP" {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", port))).await {
            Ok(Ok(_)) => "Success: TCP connection established".into(),
            Ok(Err(_)) => "Failure: Connection refused".into(),
            Err(_) => "Failure: The health checker could not establish a connection within the timeout limit".into(),
        }
    } else {
        match http.get(format!("http://127.0.0.1:{port}{path}")).timeout(timeout).send().await {
            Ok(r) if r.status().is_success() || r.status().is_redirection() => {
                let code = r.status().as_u16();
                let body = r.bytes().await.unwrap_or_default();
                let head = String::from_utf8_lossy(&body[..body.len().min(5120)]).into_owned();
                match search {
                    Some(s) if !head.contains(s) => {
                        format!(
                            "Failure: HTTP Status Code {code}, but the search string was not in the first 5120 bytes of the body"
                        )
                    }
                    _ => format!("Success: HTTP Status Code {code}, OK"),
                }
            }
            Ok(r) => format!("Failure: HTTP Status Code {}", r.status().as_u16()),
            Err(e) if e.is_timeout() => {
                "Failure: The health checker could not establish a connection within the timeout limit".into()
            }
            Err(_) => "Failure: Connection refused".into(),
        }
    }
}

/// ListResourceRecordSets paged as AWS pages it (by name, type and set
/// identifier, `maxitems` or 300 records a page).
async fn list_page(p: &Proxy, caller: &HeaderMap, zone: &str, query: &str) -> Response {
    let pairs: HashMap<String, String> = reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|u| u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default();
    let max: usize = pairs.get("maxitems").and_then(|m| m.parse().ok()).unwrap_or(300).clamp(1, 300);
    let text =
        match list_all(p, caller, zone, pairs.get("name").map(String::as_str), pairs.get("type").map(String::as_str))
            .await
        {
            Ok(t) => t,
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("proxy: cannot read moto: {e}")).into_response(),
        };
    let mut all: Vec<&str> = xml_elements(&text, "ResourceRecordSet");
    if let Some(id) = pairs.get("identifier") {
        let (n, t) =
            (dotted(pairs.get("name").map_or("", String::as_str)), pairs.get("type").cloned().unwrap_or_default());
        // Skip the start name and type's records before that identifier.
        if let Some(at) = all.iter().position(|el| {
            let r = rrs(el);
            r.name != n || r.rtype != t || r.id.as_deref() == Some(id.as_str())
        }) {
            all.drain(..at);
        }
    }
    let page = &all[..all.len().min(max)];
    let mut xml = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListResourceRecordSetsResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><ResourceRecordSets>",
    );
    for el in page {
        xml.push_str(el);
    }
    xml.push_str("</ResourceRecordSets>");
    match all.get(max) {
        Some(next) => {
            let r = rrs(next);
            xml.push_str(&format!(
                "<IsTruncated>true</IsTruncated><NextRecordName>{}</NextRecordName><NextRecordType>{}</NextRecordType>",
                xml_escape(&r.name),
                xml_escape(&r.rtype)
            ));
            if let Some(id) = r.id {
                xml.push_str(&format!("<NextRecordIdentifier>{}</NextRecordIdentifier>", xml_escape(&id)));
            }
        }
        None => xml.push_str("<IsTruncated>false</IsTruncated>"),
    }
    xml.push_str(&format!("<MaxItems>{max}</MaxItems></ListResourceRecordSetsResponse>"));
    (StatusCode::OK, [("content-type", "text/xml")], xml).into_response()
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

/// The user agent's app name of the sandbox's own clients.
pub const OWN_APP: &str = "cutover-sandbox";

/// The service a request is signed for (`route53`, `s3`), or `unsigned`;
/// `sandbox/<service>` for the sandbox's own requests (its traffic, its
/// rules), which no cutover process sent.
fn service_of(headers: &HeaderMap) -> String {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    let service = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split(',').next())
        .and_then(|scope| scope.split('/').nth(3))
        .unwrap_or("unsigned");
    let own = ["x-amz-user-agent", "user-agent"]
        .iter()
        .filter_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .any(|ua| ua.contains(&format!("app/{OWN_APP}")));
    if own { format!("sandbox/{service}") } else { service.to_string() }
}

/// Every answer, its `Date` written by the sandbox's AWS clock.
async fn forward(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let ahead_ms = p.counts.clock_ahead_ms.load(Ordering::SeqCst);
    let mut resp = forward_to_moto(State(p), req).await;
    if ahead_ms != 0 {
        let now = std::time::SystemTime::now();
        let shift = std::time::Duration::from_millis(ahead_ms.unsigned_abs());
        let aws_now = if ahead_ms > 0 { now + shift } else { now - shift };
        if let Ok(v) = axum::http::HeaderValue::from_str(&httpdate::fmt_http_date(aws_now)) {
            resp.headers_mut().insert(axum::http::header::DATE, v);
        }
    }
    resp
}

async fn forward_to_moto(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if parts.uri.path() == "/_sandbox/credentials" {
        return issue_credentials(&p, parts.uri.query().unwrap_or("")).await;
    }
    if access_key(&parts.headers).is_some_and(|k| p.counts.expired(&k)) {
        p.counts.expired_refused.fetch_add(1, Ordering::SeqCst);
        return expired_token(&body);
    }
    let service = service_of(&parts.headers);
    {
        let mut counts = p.counts.by_service.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(service.clone()).or_default() += 1;
        // S3 prices a LIST (a GET of the bucket) as a PUT: counted apart.
        let list = parts.uri.query().is_some_and(|q| q.contains("list-type"));
        let verb = if list { "LIST" } else { parts.method.as_str() };
        *counts.entry(format!("{service} {verb}")).or_default() += 1;
    }
    let s3_put_path =
        (service == "s3" && parts.method == axum::http::Method::PUT).then(|| parts.uri.path().to_string());
    if service == "s3" && p.counts.s3_frozen.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        return StatusCode::GATEWAY_TIMEOUT.into_response();
    }
    if service == "s3" && p.counts.s3_slow_down.load(Ordering::SeqCst) {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>proxy-slow-down</RequestId></Error>";
        return (StatusCode::SERVICE_UNAVAILABLE, [("content-type", "application/xml")], xml).into_response();
    }
    let n = p.counts.seen.fetch_add(1, Ordering::SeqCst) + 1;
    let every = p.counts.every.load(Ordering::SeqCst);
    let (attempt, max_attempts) = attempt_of(&parts.headers);
    if attempt > 1 {
        p.counts.retries.fetch_add(1, Ordering::SeqCst);
    }
    let n = if p.counts.retries_pass.load(Ordering::SeqCst) {
        if attempt > 1 { 0 } else { p.counts.first_attempts.fetch_add(1, Ordering::SeqCst) + 1 }
    } else {
        n
    };
    if every > 0 && n > 0 && n.is_multiple_of(every) {
        p.counts.throttled.fetch_add(1, Ordering::SeqCst);
        if max_attempts.is_some_and(|max| attempt >= max) {
            p.counts.throttled_last_attempts.fetch_add(1, Ordering::SeqCst);
        }
        return throttled(&parts.uri, &body);
    }
    let (mut body, finish) = match p.counts.cloudwatch.handle(&body) {
        None => (body, None),
        Some(Handling::Answer(xml)) => return (StatusCode::OK, [("content-type", "text/xml")], xml).into_response(),
        Some(Handling::Refuse(xml)) => {
            return (StatusCode::BAD_REQUEST, [("content-type", "text/xml")], xml).into_response();
        }
        Some(Handling::Forward(b, finish)) => (Bytes::from(b), Some(finish)),
    };
    let conditional = service == "s3"
        && (parts.method == axum::http::Method::PUT || parts.method == axum::http::Method::DELETE)
        && (parts.headers.contains_key("if-match") || parts.headers.contains_key("if-none-match"));
    let _one_at_a_time = if conditional { Some(p.s3_conditional.lock().await) } else { None };
    let action = query_action(&body);
    if action.as_deref() == Some("DescribeNetworkInterfaces") && p.counts.deny_network_interfaces.load(Ordering::SeqCst)
    {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. User is not authorized to perform: ec2:DescribeNetworkInterfaces</Message></Error></Errors><RequestID>proxy-denied</RequestID></Response>";
        return (StatusCode::FORBIDDEN, [("content-type", "text/xml")], xml).into_response();
    }
    let health_of = (action.as_deref() == Some("DescribeTargetHealth"))
        .then(|| url::form_urlencoded::parse(&body).find(|(k, _)| k == "TargetGroupArn").map(|(_, v)| v.into_owned()))
        .flatten();
    // Applied once moto has taken the request: a registration's end of
    // draining, a deregistration's start of it.
    let register_body = (action.as_deref() == Some("RegisterTargets")).then(|| body.clone());
    let revoke_body = (action.as_deref() == Some("RevokeSecurityGroupIngress")).then(|| body.clone());
    let mut drained: Vec<((String, String, String), Instant)> = Vec::new();
    if let Some(refusal) = action.as_deref().and_then(|a| unseen_backup(&p, a, &body)) {
        return refusal;
    }
    if action.as_deref() == Some("CreateImage")
        && let Some(refusal) = ami_name_taken(&p, &parts.headers, &body).await
    {
        return refusal;
    }
    if action.as_deref() == Some("DeregisterTargets") {
        match deregistered_as_aws(&p, &parts.headers, &body).await {
            Ok(Some((kept, draining))) => {
                body = Bytes::from(kept);
                drained = draining;
            }
            Ok(None) => {
                let xml = "<DeregisterTargetsResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><DeregisterTargetsResult/><ResponseMetadata><RequestId>proxy-deregister</RequestId></ResponseMetadata></DeregisterTargetsResponse>";
                return (StatusCode::OK, [("content-type", "text/xml")], xml).into_response();
            }
            Err(e) => return (StatusCode::BAD_GATEWAY, format!("proxy: cannot read moto: {e}")).into_response(),
        }
    }
    // What AWS shows of the instances a stop, start or terminate names, read
    // before it is sent: refused as AWS refuses, and its transitions begun
    // from it once moto has taken it.
    let instances_before = match action.as_deref() {
        Some("StopInstances" | "StartInstances" | "TerminateInstances") => {
            states_before(&p, &parts.headers, &body).await
        }
        _ => None,
    };
    if let (Some(a), Some(before)) = (action.as_deref(), &instances_before)
        && let Some(refusal) = wrong_state(a, before)
    {
        return refusal;
    }
    let registering = match register_body.as_ref() {
        Some(b) => newly_registered(&p, &parts.headers, b).await,
        None => Vec::new(),
    };
    let mut path = parts.uri.path_and_query().map_or("/", |q| q.as_str()).to_string();
    let route53 = parts.uri.path().strip_prefix("/2013-04-01/");
    // ChangeResourceRecordSets is a POST; ListResourceRecordSets a GET of the same path.
    let is_change = parts.method == axum::http::Method::POST
        && route53.is_some_and(|p| p.ends_with("/rrset") || p.ends_with("/rrset/"));
    let asked_change = route53.and_then(|p| p.strip_prefix("change/")).map(change_id);
    let rrset_zone = route53
        .and_then(|p| p.strip_prefix("hostedzone/"))
        .and_then(|p| p.trim_end_matches('/').strip_suffix("/rrset"))
        .map(str::to_string);
    let status_of = route53.and_then(|p| p.strip_prefix("healthcheck/")).and_then(|p| p.strip_suffix("/status"));
    if parts.method == axum::http::Method::GET
        && status_of.is_some()
        && p.counts.deny_health_check_status.load(Ordering::SeqCst)
    {
        let xml = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User is not authorized to perform: route53:GetHealthCheckStatus</Message></Error><RequestId>proxy-denied</RequestId></ErrorResponse>";
        return (StatusCode::FORBIDDEN, [("content-type", "text/xml")], xml).into_response();
    }
    if parts.method == axum::http::Method::GET
        && let Some(id) = status_of
        && let Some(answer) = health_check_status(&p, &parts.headers, id).await
    {
        return answer;
    }
    let mut change_turn = None;
    if let Some(zone) = &rrset_zone {
        if is_change
            && p.counts.refuse_changes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
        {
            p.counts.changes_refused.fetch_add(1, Ordering::SeqCst);
            let xml = "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"https://route53.amazonaws.com/doc/2013-04-01/\"><Error><Type>Sender</Type><Code>PriorRequestNotComplete</Code><Message>The request was rejected because Route 53 was still processing a prior request.</Message></Error><RequestId>proxy-busy</RequestId></ErrorResponse>";
            return (StatusCode::BAD_REQUEST, [("content-type", "text/xml")], xml).into_response();
        }
        if is_change {
            change_turn = Some(p.route53_changes.clone().lock_owned().await);
            let text = String::from_utf8_lossy(&body).into_owned();
            let other = p.counts.reweight_before_change.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((id, weight)) = other
                && let Err(e) = reweight(&p, &parts.headers, zone, &text, &id, weight).await
            {
                return (StatusCode::BAD_GATEWAY, format!("proxy: another client's change failed: {e}"))
                    .into_response();
            }
            match as_aws_batch(&p, &parts.headers, zone, &text).await {
                Ok(sent) => body = Bytes::from(sent),
                Err(refused) => return refused,
            }
        } else if parts.method == axum::http::Method::GET {
            return list_page(&p, &parts.headers, zone, parts.uri.query().unwrap_or("")).await;
        }
    }
    if let Some(id) = &asked_change {
        let upstream_id = p.counts.accepted.lock().unwrap_or_else(|e| e.into_inner()).get(id).map(|(u, _)| u.clone());
        match upstream_id {
            Some(upstream_id) => path = format!("/2013-04-01/change/{upstream_id}"),
            // AWS knows only the changes it gave out; moto says INSYNC of any id.
            None => return no_such_change(),
        }
    }
    let url = format!("http://{}{path}", p.upstream);
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut rb = p.http.request(method, url).body(body);
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
    }
    let hold = std::time::Duration::from_millis(p.counts.hold_changes_ms.load(Ordering::SeqCst));
    let sent = if is_change && !hold.is_zero() {
        // Its own task: a caller that leaves does not stop it, nor lets
        // another change be checked before it lands.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let turn = change_turn.take();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            let sent = rb.send().await;
            drop(turn);
            let _ = tx.send(sent);
        });
        match rx.await {
            Ok(sent) => sent,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        }
    } else {
        rb.send().await
    };
    drop(change_turn);
    match sent {
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
            // A body cut off (moto closed the connection under load) is a
            // gateway error, which the SDK retries, never a 2xx with nothing.
            let mut bytes: Bytes = match resp.bytes().await {
                Ok(b) => b,
                Err(e) => {
                    return (StatusCode::BAD_GATEWAY, format!("proxy: cannot read moto's answer: {e}")).into_response();
                }
            };
            if let Some(asked) = &revoke_body
                && status == StatusCode::BAD_REQUEST
                && String::from_utf8_lossy(&bytes).contains("InvalidPermission.NotFound")
            {
                return revoked_nothing(asked, &bytes);
            }
            if let Some(path) = s3_put_path.filter(|_| status.is_success()) {
                let mut lose = p.counts.lose_s3_put_replies.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((text, n)) = lose.as_mut()
                    && *n > 0
                    && path.contains(text.as_str())
                {
                    *n -= 1;
                    return StatusCode::GATEWAY_TIMEOUT.into_response();
                }
            }
            if let Some(finish) = finish
                && status.is_success()
            {
                bytes = Bytes::from(finish.apply(&p.counts.cloudwatch, String::from_utf8_lossy(&bytes).into_owned()));
            }
            if status.is_success() {
                if let Some(b) = &register_body {
                    registered_again(&p, b);
                }
                let now = Instant::now();
                let mut young = p.counts.registering.lock().unwrap_or_else(|e| e.into_inner());
                for ((arn, id, _), _) in &drained {
                    young.remove(&(arn.clone(), id.clone()));
                }
                young.extend(registering.into_iter().map(|(arn, id, port)| ((arn, id), (port, now))));
                drop(young);
                p.counts.draining.lock().unwrap_or_else(|e| e.into_inner()).extend(drained);
            }
            if let Some(action) = action.as_deref().filter(|_| status.is_success()) {
                let mut text = young_backups(&p, action, String::from_utf8_lossy(&bytes).into_owned());
                if action == "DescribeInstances" {
                    text = described_as_aws(&p, text);
                }
                if let Some(before) = &instances_before {
                    text = changed_as_aws(&p, action, before, text);
                }
                let lost = {
                    let mut lose = p.counts.lose_replies.lock().unwrap_or_else(|e| e.into_inner());
                    match lose.as_mut() {
                        Some((lost, n)) if *n > 0 && lost == action => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    }
                };
                if lost {
                    return StatusCode::GATEWAY_TIMEOUT.into_response();
                }
                if action == "DescribeNetworkInterfaces" {
                    // The instances' primary interfaces, each with AWS's default
                    // (the Redis nodes' stand alone, with no attachment to say it).
                    text = text.replace(
                        "<deleteOnTermination>false</deleteOnTermination>",
                        "<deleteOnTermination>true</deleteOnTermination>",
                    );
                }
                if let Some(arn) = &health_of {
                    text = target_health_as_aws(&p, &parts.headers, arn, text).await;
                    text = with_registering(&p, arn, text);
                    text = with_draining(&p, arn, text);
                }
                bytes = Bytes::from(text);
            }
            if is_change && status.is_success() {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                if let Some(upstream_id) = xml_field(&text, "Id").map(change_id) {
                    let n = p.counts.changes.fetch_add(1, Ordering::SeqCst) + 1;
                    let id = format!("CPROXY{n:08}");
                    // AWS answers a change PENDING, always; moto INSYNC.
                    let text = text.replace("<Status>INSYNC</Status>", "<Status>PENDING</Status>");
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

/// AWS's answer to a CreateImage naming an AMI name the account already
/// has in the region (AMI names are unique there; moto takes any):
/// InvalidAMIName.Duplicate. None when the name is free (or unread).
async fn ami_name_taken(p: &Proxy, caller: &HeaderMap, body: &[u8]) -> Option<axum::response::Response> {
    let name = url::form_urlencoded::parse(body).find(|(k, _)| k == "Name").map(|(_, v)| v.into_owned())?;
    let params = [
        ("Action", "DescribeImages"),
        ("Owner.1", "self"),
        ("Filter.1.Name", "name"),
        ("Filter.1.Value.1", name.as_str()),
    ];
    let text = moto_query(p, caller, "2016-11-15", &params).await.ok()?;
    let id = xml_field(&text, "imageId")?;
    let xml = format!(
        "<Response><Errors><Error><Code>InvalidAMIName.Duplicate</Code><Message>AMI name {} is already in use by \
         AMI {}</Message></Error></Errors><RequestID>proxy-duplicate</RequestID></Response>",
        xml_escape(&name),
        xml_escape(id)
    );
    Some((StatusCode::BAD_REQUEST, [("content-type", "text/xml")], xml).into_response())
}

/// An ELB query of moto's as the caller, with these parameters.
async fn elb_query(p: &Proxy, caller: &HeaderMap, params: &[(&str, &str)]) -> Result<String, String> {
    moto_query(p, caller, "2015-12-01", params).await
}

/// A query (ELB's, EC2's: the API `version`) of moto's as the caller.
async fn moto_query(p: &Proxy, caller: &HeaderMap, version: &str, params: &[(&str, &str)]) -> Result<String, String> {
    let body = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("Version", version);
        for (k, v) in params {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let req = p
        .http
        .post(format!("http://{}/", p.upstream))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let resp = as_caller(req, caller).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    if status.is_success() { Ok(text) } else { Err(format!("{status}: {text}")) }
}

/// Whether an HTTP code matches a target group's success codes (`200`,
/// `200,202`, `200-299`).
fn matcher_accepts(matcher: &str, code: u16) -> bool {
    matcher.split(',').any(|part| match part.trim().split_once('-') {
        Some((lo, hi)) => lo.parse().is_ok_and(|lo: u16| hi.parse().is_ok_and(|hi: u16| (lo..=hi).contains(&code))),
        None => part.trim().parse() == Ok(code),
    })
}

/// A DescribeTargetHealth reply as an ALB's: moto calls every registered
/// running instance healthy. A target moto calls healthy is checked here
/// as AWS would: `unused` (Target.NotInUse) when its group serves no load
/// balancer or its zone is not one the load balancer enables; else its
/// `/health` is asked, and a code outside the group's matcher, a timeout
/// or no answer is `unhealthy`. (At once, where an ALB waits for its
/// thresholds: the sandbox's states change sooner, never differently.)
async fn target_health_as_aws(p: &Proxy, caller: &HeaderMap, group_arn: &str, text: String) -> String {
    let checks = p.counts.targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let unknown = p.counts.unavailable_targets.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let healthy: Vec<(String, TargetCheck)> = xml_elements(&text, "member")
        .into_iter()
        .filter(|m| xml_field(m, "State") == Some("healthy"))
        .filter_map(|m| {
            let id = xml_field(m, "Id")?;
            Some((m.to_string(), checks.get(id)?.clone()))
        })
        .collect();
    if healthy.is_empty() {
        return text;
    }
    let Ok(group) =
        elb_query(p, caller, &[("Action", "DescribeTargetGroups"), ("TargetGroupArns.member.1", group_arn)]).await
    else {
        return text;
    };
    let matcher = xml_field(&group, "HttpCode").unwrap_or("200").to_string();
    // The group's timeout, at most 2 s: every target is asked at once, and
    // the whole reply must come well within a client's own timeout.
    let timeout = xml_field(&group, "HealthCheckTimeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(5u64);
    let timeout = std::time::Duration::from_secs(timeout).min(std::time::Duration::from_secs(2));
    let lb = xml_elements(&group, "LoadBalancerArns").first().and_then(|l| xml_field(l, "member")).map(unxml);
    let zones: Option<Vec<String>> = match &lb {
        Some(lb) => {
            match elb_query(p, caller, &[("Action", "DescribeLoadBalancers"), ("LoadBalancerArns.member.1", lb)]).await
            {
                Ok(found) => Some(
                    xml_elements(&found, "ZoneName")
                        .iter()
                        .filter_map(|z| xml_field(z, "ZoneName"))
                        .map(str::to_string)
                        .collect(),
                ),
                // Deleted: moto keeps its ARN on the group, where AWS drops
                // it, and the group serves no load balancer.
                Err(e) if e.contains("LoadBalancerNotFound") => None,
                Err(_) => return text,
            }
        }
        None => None,
    };
    let mut out = text;
    let judged = futures::future::join_all(healthy.into_iter().map(|(member, check)| {
        let (zones, matcher, unknown) = (&zones, &matcher, &unknown);
        async move {
            let id = xml_field(&member, "Id").unwrap_or_default();
            let health = match zones {
                _ if unknown.contains(id) => Some((
                    "unavailable",
                    "Elb.InternalError",
                    "Target health is unavailable due to an internal error".to_string(),
                )),
                None => Some((
                    "unused",
                    "Target.NotInUse",
                    "Target group is not configured to receive traffic from the load balancer".to_string(),
                )),
                Some(z) if !z.contains(&check.zone) => Some((
                    "unused",
                    "Target.NotInUse",
                    "Target is in an Availability Zone that is not enabled for the load balancer".to_string(),
                )),
                Some(_) => match p.http.get(&check.health_url).timeout(timeout).send().await {
                    Ok(r) if matcher_accepts(matcher, r.status().as_u16()) => None,
                    Ok(r) => Some((
                        "unhealthy",
                        "Target.ResponseCodeMismatch",
                        format!("Health checks failed with these codes: [{}]", r.status().as_u16()),
                    )),
                    Err(e) if e.is_timeout() => Some(("unhealthy", "Target.Timeout", "Request timed out".to_string())),
                    Err(_) => Some(("unhealthy", "Target.FailedHealthChecks", "Health checks failed".to_string())),
                },
            };
            (member, health)
        }
    }))
    .await;
    for (member, health) in judged {
        let Some((state, reason, description)) = health else { continue };
        let Some(old) = xml_elements(&member, "TargetHealth").first().map(|t| t.to_string()) else { continue };
        let new = format!(
            "<TargetHealth><State>{state}</State><Reason>{reason}</Reason><Description>{}</Description></TargetHealth>",
            xml_escape(&description)
        );
        out = out.replacen(&member, &member.replacen(&old, &new, 1), 1);
    }
    out
}

/// A DeregisterTargets request to forward, and the draining records it makes.
type Deregistration = (String, Vec<((String, String, String), Instant)>);

/// A DeregisterTargets request as AWS reads it: each target is its id and
/// port (the group's own port when none is given), and one not registered
/// so is no target of the group: AWS leaves it and answers success. Returns
/// the request with only registered targets and each one's draining
/// record (to keep once moto has taken it), or None when none is.
async fn deregistered_as_aws(p: &Proxy, caller: &HeaderMap, body: &[u8]) -> Result<Option<Deregistration>, String> {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let arn = get("TargetGroupArn").ok_or("DeregisterTargets without TargetGroupArn")?;
    let ask = |action: &'static str, arg: &'static str| {
        let arn = arn.clone();
        async move { elb_query(p, caller, &[("Action", action), (arg, &arn)]).await.map_err(|e| format!("{action}: {e}")) }
    };
    let group = ask("DescribeTargetGroups", "TargetGroupArns.member.1").await?;
    let group_port = xml_field(&group, "Port").unwrap_or_default().to_string();
    // AWS's default delay is 300 s; a group may set its own.
    let attributes = ask("DescribeTargetGroupAttributes", "TargetGroupArn").await?;
    let delay = xml_elements(&attributes, "member")
        .into_iter()
        .find(|m| xml_field(m, "Key") == Some("deregistration_delay.timeout_seconds"))
        .and_then(|m| xml_field(m, "Value")?.parse().ok())
        .unwrap_or(300u64);
    let health = ask("DescribeTargetHealth", "TargetGroupArn").await?;
    let registered: Vec<(String, String)> = xml_elements(&health, "Target")
        .into_iter()
        .map(|t| {
            let field = |tag: &str| xml_field(t, tag).unwrap_or_default().to_string();
            (field("Id"), field("Port"))
        })
        .collect();
    let mut kept = Vec::new();
    for n in 1.. {
        let Some(id) = get(&format!("Targets.member.{n}.Id")) else { break };
        let port = get(&format!("Targets.member.{n}.Port")).unwrap_or_else(|| group_port.clone());
        if registered.contains(&(id.clone(), port.clone())) {
            kept.push((id, port));
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    let until = Instant::now() + std::time::Duration::from_secs(delay);
    let draining = kept.iter().map(|(id, port)| ((arn.clone(), id.clone(), port.clone()), until)).collect();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in form.iter().filter(|(k, _)| !k.starts_with("Targets.member.")) {
        out.append_pair(k, v);
    }
    for (i, (id, port)) in kept.iter().enumerate() {
        out.append_pair(&format!("Targets.member.{}.Id", i + 1), id);
        out.append_pair(&format!("Targets.member.{}.Port", i + 1), port);
    }
    Ok(Some((out.finish(), draining)))
}

/// AWS's answer to a DescribeImages or DescribeSnapshots naming an AMI or
/// snapshot created less than `backup_unseen_ms` ago: not found (EC2 and
/// ElastiCache reads are eventually consistent). None for any other request.
fn unseen_backup(p: &Proxy, action: &str, body: &[u8]) -> Option<axum::response::Response> {
    let key = match action {
        "DescribeImages" => "ImageId.",
        "DescribeSnapshots" => "SnapshotName",
        _ => return None,
    };
    let unseen = std::time::Duration::from_millis(p.counts.backup_unseen_ms.load(Ordering::SeqCst));
    let backups = p.counts.backups.lock().unwrap_or_else(|e| e.into_inner());
    let asked: Vec<String> =
        url::form_urlencoded::parse(body).filter(|(k, _)| k.starts_with(key)).map(|(_, v)| v.into_owned()).collect();
    let young = asked.into_iter().find(|id| backups.get(id).is_some_and(|t| t.elapsed() < unseen))?;
    let young = xml_escape(&young);
    Some(match action {
        "DescribeImages" => (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/xml")],
            format!(
                "<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>The image id '[{young}]' does not exist</Message></Error></Errors><RequestID>proxy-unseen</RequestID></Response>"
            ),
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            [("content-type", "text/xml")],
            format!(
                "<ErrorResponse xmlns=\"http://elasticache.amazonaws.com/doc/2015-02-02/\"><Error><Type>Sender</Type><Code>SnapshotNotFoundFault</Code><Message>Snapshot {young} not found.</Message></Error><RequestId>proxy-unseen</RequestId></ErrorResponse>"
            ),
        )
            .into_response(),
    })
}

/// A RegisterTargets request: its targets are no longer draining (on the
/// port given, or any when none is).
fn registered_again(p: &Proxy, body: &[u8]) {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(arn) = get("TargetGroupArn") else { return };
    let mut draining = p.counts.draining.lock().unwrap_or_else(|e| e.into_inner());
    for n in 1.. {
        let Some(id) = get(&format!("Targets.member.{n}.Id")) else { break };
        let port = get(&format!("Targets.member.{n}.Port"));
        draining.retain(|(a, i, p), _| !(a == &arn && i == &id && port.as_ref().is_none_or(|want| want == p)));
    }
}

/// A DescribeTargetHealth reply of group `arn` with its targets still
/// draining, as AWS lists them until the deregistration delay ends.
fn with_draining(p: &Proxy, arn: &str, text: String) -> String {
    let now = Instant::now();
    let mut draining = p.counts.draining.lock().unwrap_or_else(|e| e.into_inner());
    draining.retain(|_, until| *until > now);
    let listed: Vec<(String, String)> = xml_elements(&text, "Target")
        .into_iter()
        .map(|t| {
            (xml_field(t, "Id").unwrap_or_default().to_string(), xml_field(t, "Port").unwrap_or_default().to_string())
        })
        .collect();
    let members: String = draining
        .keys()
        .filter(|(a, id, port)| a == arn && !listed.contains(&(id.clone(), port.clone())))
        .map(|(_, id, port)| {
            format!(
                "<member><Target><Id>{id}</Id><Port>{port}</Port></Target><HealthCheckPort>{port}</HealthCheckPort><TargetHealth><State>draining</State><Reason>Target.DeregistrationInProgress</Reason><Description>Target deregistration is in progress</Description></TargetHealth></member>",
                id = xml_escape(id),
                port = xml_escape(port)
            )
        })
        .collect();
    if members.is_empty() {
        return text;
    }
    super::cloudwatch::insert_members(&text, "TargetHealthDescriptions", &members, "</DescribeTargetHealthResult>")
}

/// RevokeSecurityGroupIngress of a rule the group does not hold, as AWS
/// answers it for a VPC group: success, with the rules it did not find in
/// `unknownIpPermissionSet` (moto refuses with InvalidPermission.NotFound,
/// answered here as `not_found` where AWS refuses too). A revoke of several
/// rules moto took part of is answered with all of them (cutover revokes
/// one at a time).
fn revoked_nothing(body: &[u8], not_found: &[u8]) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: String| params.iter().find(|(n, _)| *n == k).map(|(_, v)| xml_escape(v));
    // By rule id, AWS refuses an unknown one (InvalidSecurityGroupRuleId.NotFound): moto's refusal stands.
    if params.iter().any(|(k, _)| k.starts_with("SecurityGroupRuleIds.")) {
        return (StatusCode::BAD_REQUEST, [("content-type", "text/xml")], not_found.to_vec()).into_response();
    }
    let mut unknown = String::new();
    for n in 1.. {
        let Some(protocol) = get(format!("IpPermissions.{n}.IpProtocol")) else { break };
        // No ports (protocol -1): no elements, as AWS leaves them out.
        let port = |which: &str| {
            let tag = format!("{}{}", which[..1].to_ascii_lowercase(), &which[1..]);
            get(format!("IpPermissions.{n}.{which}")).map_or(String::new(), |v| format!("<{tag}>{v}</{tag}>"))
        };
        let groups: String = (1..)
            .map_while(|g| get(format!("IpPermissions.{n}.Groups.{g}.GroupId")))
            .map(|id| format!("<item><groupId>{id}</groupId></item>"))
            .collect();
        let ranges: String = (1..)
            .map_while(|r| get(format!("IpPermissions.{n}.IpRanges.{r}.CidrIp")))
            .map(|cidr| format!("<item><cidrIp>{cidr}</cidrIp></item>"))
            .collect();
        unknown.push_str(&format!(
            "<item><ipProtocol>{protocol}</ipProtocol>{}{}<groups>{groups}</groups><ipRanges>{ranges}</ipRanges></item>",
            port("FromPort"),
            port("ToPort")
        ));
    }
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<RevokeSecurityGroupIngressResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>proxy-revoke</requestId><return>true</return><unknownIpPermissionSet>{unknown}</unknownIpPermissionSet></RevokeSecurityGroupIngressResponse>"
    );
    (StatusCode::OK, [("content-type", "text/xml")], xml).into_response()
}

/// The `Action` of a query-protocol request (EC2, ElastiCache, …).
fn query_action(body: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == "Action").map(|(_, v)| v.into_owned())
}

/// The state an instance passes through on its way to `end` (AWS's
/// names), if any.
fn passing_to(end: &str) -> Option<&'static str> {
    match end {
        "stopped" => Some("stopping"),
        "running" => Some("pending"),
        "terminated" => Some("shutting-down"),
        _ => None,
    }
}

/// An EC2 instance state element, `<tag><code>N</code><name>S</name></tag>`.
fn state_element(tag: &str, name: &str) -> String {
    let code = match name {
        "pending" => 0,
        "running" => 16,
        "shutting-down" => 32,
        "terminated" => 48,
        "stopping" => 64,
        "stopped" => 80,
        _ => 0,
    };
    format!("<{tag}><code>{code}</code><name>{}</name></{tag}>", xml_escape(name))
}

/// What AWS shows of instance `id`, which moto has in state `moto`: the
/// state it passes through while its window lasts (moto reaches the end at
/// once), else moto's.
fn seen_state(p: &Proxy, id: &str, moto: &str) -> String {
    let window = std::time::Duration::from_millis(p.counts.instance_transition_ms.load(Ordering::SeqCst));
    let transitions = p.counts.transitions.lock().unwrap_or_else(|e| e.into_inner());
    match transitions.get(id) {
        Some((through, since)) if since.elapsed() < window && passing_to(moto) == Some(*through) => through.to_string(),
        _ => moto.to_string(),
    }
}

/// Each `<item>` directly inside an `<instancesSet>`, whole: an instance of
/// a DescribeInstances reply, or one result of a stop, start or terminate.
/// Items nest (an instance's groups, interfaces), so depth is counted.
fn instance_items(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(set) = text[from..].find("<instancesSet>") {
        let mut at = from + set + "<instancesSet>".len();
        loop {
            at += text[at..].len() - text[at..].trim_start().len();
            if !text[at..].starts_with("<item>") {
                break;
            }
            let (mut depth, mut i) = (0i64, at);
            loop {
                let (open, close) = (text[i..].find("<item>"), text[i..].find("</item>"));
                match (open, close) {
                    (Some(o), Some(c)) if o < c => {
                        depth += 1;
                        i += o + "<item>".len();
                    }
                    (_, Some(c)) => {
                        depth -= 1;
                        i += c + "</item>".len();
                        if depth <= 0 {
                            break;
                        }
                    }
                    _ => return out,
                }
            }
            out.push(&text[at..i]);
            at = i;
        }
        from = at;
    }
    out
}

/// Each instance of a reply, as its id and its `<tag>` state element, whole.
fn instance_states<'a>(text: &'a str, tag: &str) -> Vec<(&'a str, &'a str, &'a str)> {
    instance_items(text)
        .into_iter()
        .filter_map(|item| Some((item, xml_field(item, "instanceId")?, xml_elements(item, tag).first().copied()?)))
        .collect()
}

/// A DescribeInstances reply with each instance still passing through a
/// state shown in it.
fn described_as_aws(p: &Proxy, text: String) -> String {
    if p.counts.transitions.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return text;
    }
    let mut out = text.clone();
    for (item, id, state) in instance_states(&text, "instanceState") {
        let Some(moto) = xml_field(state, "name") else { continue };
        let seen = seen_state(p, id, moto);
        if seen != moto {
            out = out.replacen(item, &item.replacen(state, &state_element("instanceState", &seen), 1), 1);
        }
    }
    out
}

/// What AWS shows of each instance a stop, start or terminate request
/// names (`InstanceId.N`), by id, read from moto before it is sent; None
/// when moto cannot say (it then answers the request itself).
async fn states_before(p: &Proxy, caller: &HeaderMap, body: &[u8]) -> Option<Vec<(String, String)>> {
    let ids: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .filter(|(k, _)| k.starts_with("InstanceId."))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if ids.is_empty() {
        return None;
    }
    let mut params = vec![("Action", "DescribeInstances")];
    params.extend(ids.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let text = moto_query(p, caller, "2016-11-15", &params).await.ok()?;
    let states = instance_states(&text, "instanceState");
    Some(
        states
            .into_iter()
            .filter_map(|(_, id, s)| Some((id.to_string(), seen_state(p, id, xml_field(s, "name")?))))
            .collect(),
    )
}

/// AWS's IncorrectInstanceState, the whole request refused, for a start of
/// an instance stopping, shutting down or terminated, or a stop of one
/// pending (AWS stops a running instance), shutting down or terminated;
/// None when AWS takes it (a stop of one stopping or stopped, a start of
/// one pending or running, change nothing).
fn wrong_state(action: &str, before: &[(String, String)]) -> Option<Response> {
    let (refused, done): (&[&str], &str) = match action {
        "StartInstances" => (&["stopping", "shutting-down", "terminated"], "started"),
        "StopInstances" => (&["pending", "shutting-down", "terminated"], "stopped"),
        _ => return None,
    };
    let (id, _) = before.iter().find(|(_, s)| refused.contains(&s.as_str()))?;
    let xml = format!(
        "<Response><Errors><Error><Code>IncorrectInstanceState</Code><Message>This instance '{}' is not in a state \
         from which it can be {done}.</Message></Error></Errors><RequestID>proxy-state</RequestID></Response>",
        xml_escape(id)
    );
    Some((StatusCode::BAD_REQUEST, [("content-type", "text/xml")], xml).into_response())
}

/// A stop's, start's or terminate's reply as AWS's, once moto has taken
/// it: each instance it moves (`before`: as shown until then) passes
/// through `stopping`, `pending` or `shutting-down` for the window, and
/// the reply says so, with the state shown before. Unchanged while the
/// window is 0.
fn changed_as_aws(p: &Proxy, action: &str, before: &[(String, String)], text: String) -> String {
    let window = std::time::Duration::from_millis(p.counts.instance_transition_ms.load(Ordering::SeqCst));
    let (end, moves): (&str, &[&str]) = match action {
        "StopInstances" => ("stopped", &["running"]),
        "StartInstances" => ("running", &["stopped"]),
        "TerminateInstances" => ("terminated", &["pending", "running", "stopping", "stopped"]),
        _ => return text,
    };
    if window.is_zero() {
        return text;
    }
    {
        let mut transitions = p.counts.transitions.lock().unwrap_or_else(|e| e.into_inner());
        transitions.retain(|_, (_, since)| since.elapsed() < window);
        let (Some(through), now) = (passing_to(end), Instant::now()) else { return text };
        for (id, _) in before.iter().filter(|(_, was)| moves.contains(&was.as_str())) {
            transitions.insert(id.clone(), (through, now));
        }
    }
    let mut out = text.clone();
    for item in instance_items(&text) {
        let Some(id) = xml_field(item, "instanceId") else { continue };
        let Some((_, was)) = before.iter().find(|(i, _)| i == id) else { continue };
        let mut new = item.to_string();
        for (tag, state) in [("currentState", seen_state(p, id, end)), ("previousState", was.clone())] {
            if let Some(old) = xml_elements(item, tag).first() {
                new = new.replacen(old, &state_element(tag, &state), 1);
            }
        }
        out = out.replacen(item, &new, 1);
    }
    out
}

/// The targets of a RegisterTargets request moto does not list in the
/// group yet (one registered already stays as it is), as (group ARN, id,
/// port if given); none while `registration_ms` is 0.
async fn newly_registered(p: &Proxy, caller: &HeaderMap, body: &[u8]) -> Vec<(String, String, Option<String>)> {
    if p.counts.registration_ms.load(Ordering::SeqCst) == 0 {
        return Vec::new();
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let Some(arn) = get("TargetGroupArn") else { return Vec::new() };
    let listed = elb_query(p, caller, &[("Action", "DescribeTargetHealth"), ("TargetGroupArn", &arn)]).await;
    let listed: Vec<(String, String)> = xml_elements(listed.as_deref().unwrap_or_default(), "Target")
        .into_iter()
        .map(|t| {
            (xml_field(t, "Id").unwrap_or_default().to_string(), xml_field(t, "Port").unwrap_or_default().to_string())
        })
        .collect();
    let mut out = Vec::new();
    for n in 1.. {
        let Some(id) = get(&format!("Targets.member.{n}.Id")) else { break };
        let port = get(&format!("Targets.member.{n}.Port"));
        if !listed.iter().any(|(i, at)| *i == id && port.as_ref().is_none_or(|want| want == at)) {
            out.push((arn.clone(), id, port));
        }
    }
    out
}

/// A DescribeTargetHealth reply of group `arn` with its targets registered
/// less than `registration_ms` ago `initial` (Elb.RegistrationInProgress),
/// as an ALB shows them until their health checks have passed its
/// threshold; one out of service for another reason (`unused`) stays so.
fn with_registering(p: &Proxy, arn: &str, text: String) -> String {
    let window = std::time::Duration::from_millis(p.counts.registration_ms.load(Ordering::SeqCst));
    let registering = p.counts.registering.lock().unwrap_or_else(|e| e.into_inner());
    if registering.is_empty() {
        return text;
    }
    let mut out = text.clone();
    for member in xml_elements(&text, "member") {
        let (Some(id), Some(port)) = (xml_field(member, "Id"), xml_field(member, "Port")) else { continue };
        let young = registering
            .get(&(arn.to_string(), id.to_string()))
            .is_some_and(|(want, at)| at.elapsed() < window && want.as_deref().is_none_or(|w| w == port));
        if !young || !matches!(xml_field(member, "State"), Some("healthy" | "unhealthy")) {
            continue;
        }
        let Some(old) = xml_elements(member, "TargetHealth").first().copied() else { continue };
        let new = "<TargetHealth><State>initial</State><Reason>Elb.RegistrationInProgress</Reason>\
                   <Description>Target registration is in progress</Description></TargetHealth>";
        out = out.replacen(member, &member.replacen(old, new, 1), 1);
    }
    out
}

/// The reply of a backup's creation or description, as AWS gives it while
/// the backup is young: each AMI (`imageId`, `imageState`) or snapshot
/// (`SnapshotName`, `SnapshotStatus`) made through the proxy less than the
/// pending time ago says pending (creating). The n-th id and the n-th state
/// of a reply belong to the same image or snapshot.
fn young_backups(p: &Proxy, action: &str, text: String) -> String {
    let (id_tag, state_tag, done, pending) = match action {
        "CreateImage" | "DescribeImages" => ("imageId", "imageState", "available", "pending"),
        "CreateSnapshot" | "DescribeSnapshots" => ("SnapshotName", "SnapshotStatus", "available", "creating"),
        _ => return text,
    };
    let inner = |e: &str| unxml(&e[id_tag.len() + 2..e.len() - id_tag.len() - 3]);
    let ids: Vec<String> = xml_elements(&text, id_tag).into_iter().map(inner).collect();
    let mut backups = p.counts.backups.lock().unwrap_or_else(|e| e.into_inner());
    let mut failing = p.counts.failing_images.lock().unwrap_or_else(|e| e.into_inner());
    if action.starts_with("Create") {
        for id in &ids {
            backups.entry(id.clone()).or_insert_with(Instant::now);
            if action == "CreateImage" && p.counts.fail_new_images.load(Ordering::SeqCst) {
                failing.insert(id.clone());
            }
        }
    }
    let young = std::time::Duration::from_millis(p.counts.backup_pending_ms.load(Ordering::SeqCst));
    let (open, close) = (format!("<{state_tag}>"), format!("</{state_tag}>"));
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut n = 0;
    while let Some(at) = rest.find(&open) {
        let Some(len) = rest[at..].find(&close) else { break };
        let value = &rest[at + open.len()..at + len];
        let is_young = ids.get(n).and_then(|id| backups.get(id)).is_some_and(|t| t.elapsed() < young);
        let fails = ids.get(n).is_some_and(|id| failing.contains(id));
        out.push_str(&rest[..at + open.len()]);
        out.push_str(match (value == done, is_young, fails) {
            (true, true, _) => pending,
            (true, false, true) => "failed",
            _ => value,
        });
        out.push_str(&close);
        if value == done && !is_young && fails {
            // As AWS says why (StateReason); moto writes none.
            out.push_str(
                "<stateReason><code>Client.InstanceTerminated</code><message>The instance was terminated or rebooted \
                 during AMI creation.</message></stateReason>",
            );
        }
        rest = &rest[at + len + close.len()..];
        n += 1;
    }
    out.push_str(rest);
    out
}

/// Starts the proxy on a free loopback port, throttling every `nth` request
/// (0: none); abort the handle to stop it.
pub async fn start(upstream: SocketAddr, nth: u64) -> std::io::Result<(SocketAddr, JoinHandle<()>, Arc<AwsFaults>)> {
    let counts = Arc::new(AwsFaults {
        every: AtomicU64::new(nth),
        // AWS takes minutes; long enough that a wait polls more than once.
        backup_pending_ms: AtomicU64::new(3000),
        backup_unseen_ms: AtomicU64::new(1000),
        ..Default::default()
    });
    let state = Arc::new(Proxy {
        upstream,
        // Loopback only: never through a proxy the environment names, nor
        // after a redirect (health checkers do not follow them either).
        http: reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?,
        counts: counts.clone(),
        s3_conditional: tokio::sync::Mutex::new(()),
        route53_changes: Arc::default(),
    });
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Instances are told apart by depth: an instance's own items (its
    /// groups, interfaces) are inside it, never instances of their own.
    #[test]
    fn each_instance_of_a_reply_is_found_whole_with_its_own_state() {
        let reply = "<DescribeInstancesResponse><reservationSet><item><instancesSet>\
            <item><groupSet><item><groupId>sg-1</groupId></item></groupSet><instanceId>i-1</instanceId>\
            <instanceState><code>80</code><name>stopped</name></instanceState></item>\
            <item><instanceId>i-2</instanceId><instanceState><code>16</code><name>running</name></instanceState>\
            </item></instancesSet></item><item><instancesSet><item><instanceId>i-3</instanceId>\
            <instanceState><code>48</code><name>terminated</name></instanceState></item></instancesSet></item>\
            </reservationSet></DescribeInstancesResponse>";
        let found: Vec<(&str, Option<&str>)> =
            instance_states(reply, "instanceState").into_iter().map(|(_, id, s)| (id, xml_field(s, "name"))).collect();
        assert_eq!(found, [("i-1", Some("stopped")), ("i-2", Some("running")), ("i-3", Some("terminated"))]);
        assert_eq!(
            state_element("currentState", "stopping"),
            "<currentState><code>64</code><name>stopping</name></currentState>"
        );
    }
}
