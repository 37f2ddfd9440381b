//! Shifting the weighted records: both sides in one change batch, then wait
//! until Route53 reports INSYNC.

use std::time::{Duration, Instant};

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use serde::Serialize;

use super::PlanError;
use crate::aws::route53::{WeightedRecord, weighted_records, zone_id};
use crate::aws::{AwsError, Clients, sdk_error};
use crate::engine::Weights;
use crate::runbook::Runbook;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub environment: String,
    pub record: WeightedRecord,
}

/// A weight change, fully planned from what Route53 says now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShiftPlan {
    pub zone_id: String,
    pub name: String,
    pub record_type: String,
    pub from: Side,
    pub to: Side,
    /// The new weights (from, to).
    pub weights: Weights,
}

impl ShiftPlan {
    pub fn before(&self) -> serde_json::Value {
        serde_json::json!({ &self.from.environment: self.from.record.weight, &self.to.environment: self.to.record.weight })
    }
    pub fn after(&self) -> serde_json::Value {
        serde_json::json!({ &self.from.environment: self.weights.0, &self.to.environment: self.weights.1 })
    }
    pub fn is_noop(&self) -> bool {
        (self.from.record.weight, self.to.record.weight) == self.weights
    }
    /// `production (prod) 100 → 70, staging (staging) 0 → 30`.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}) {} → {}, {} ({}) {} → {} on {} {}",
            self.from.environment,
            self.from.record.set_identifier,
            self.from.record.weight,
            self.weights.0,
            self.to.environment,
            self.to.record.set_identifier,
            self.to.record.weight,
            self.weights.1,
            self.name,
            self.record_type
        )
    }

    /// The change batch as it will be sent (both records, same TTL and values).
    pub fn batch(&self) -> Result<ChangeBatch, String> {
        let set = |side: &Side, weight: u8| -> Result<Change, String> {
            let mut rrs = ResourceRecordSet::builder()
                .name(&self.name)
                .r#type(RrType::from(self.record_type.as_str()))
                .set_identifier(&side.record.set_identifier)
                .weight(i64::from(weight));
            if let Some(ttl) = side.record.ttl {
                rrs = rrs.ttl(i64::from(ttl));
            }
            if let Some(hc) = &side.record.health_check_id {
                rrs = rrs.health_check_id(hc);
            }
            for v in &side.record.values {
                rrs = rrs.resource_records(ResourceRecord::builder().value(v).build().map_err(|e| e.to_string())?);
            }
            let rrs = rrs.build().map_err(|e| e.to_string())?;
            Change::builder().action(ChangeAction::Upsert).resource_record_set(rrs).build().map_err(|e| e.to_string())
        };
        ChangeBatch::builder()
            .changes(set(&self.from, self.weights.0)?)
            .changes(set(&self.to, self.weights.1)?)
            .comment(format!("cutover: {}", self.describe()))
            .build()
            .map_err(|e| e.to_string())
    }

    /// The batch as JSON, for --dry-run.
    pub fn batch_json(&self) -> serde_json::Value {
        let change = |side: &Side, w: u8| {
            serde_json::json!({"Action": "UPSERT", "ResourceRecordSet": {
                "Name": self.name, "Type": self.record_type, "SetIdentifier": side.record.set_identifier,
                "Weight": w, "TTL": side.record.ttl, "HealthCheckId": side.record.health_check_id, "ResourceRecords": side.record.values.iter().map(|v| serde_json::json!({"Value": v})).collect::<Vec<_>>()}})
        };
        serde_json::json!({"HostedZoneId": self.zone_id, "ChangeBatch": {"Changes": [change(&self.from, self.weights.0), change(&self.to, self.weights.1)]}})
    }
}

/// Plans putting `to_weights` on the records; refuses anything unsafe before
/// a single byte is sent.
pub async fn plan(clients: &Clients, rb: &Runbook, weights: Weights) -> Result<ShiftPlan, PlanError> {
    let aws = |e: AwsError| PlanError::Aws(e.to_string());
    let zone = zone_id(&clients.route53, &rb.dns.zone).await.map_err(aws)?;
    let records = weighted_records(&clients.route53, &zone, &rb.dns.record, &rb.dns.record_type).await.map_err(aws)?;
    let side = |env: &str| -> Result<Side, String> {
        let id = rb.dns.set_identifiers.get(env).ok_or_else(|| format!("environment {env} has no set identifier"))?;
        let record = records.iter().find(|r| &r.set_identifier == id).cloned().ok_or_else(|| {
            format!(
                "no weighted record {} {} with set identifier `{id}` in zone {zone}; create it first",
                rb.dns.record, rb.dns.record_type
            )
        })?;
        Ok(Side { environment: env.to_string(), record })
    };
    let (from, to) = (side(&rb.rollout.from)?, side(&rb.rollout.to)?);
    for s in [&from, &to] {
        if let Some(target) = &s.record.alias_target {
            return Err(PlanError::Refused(format!(
                "record `{}` is an alias to {target}; cutover does not change alias records yet (a change must keep the alias target and its health evaluation): shift it in the console or with the AWS CLI",
                s.record.set_identifier
            )));
        }
    }
    if from.record.ttl != to.record.ttl {
        let ttl = |t: Option<u32>| t.map_or("no TTL".to_string(), |t| format!("{t} s"));
        return Err(PlanError::Refused(format!(
            "the weighted records' TTLs differ ({} has {}, {} has {}); Route53 needs the same TTL on every record of the group: make them equal first",
            from.record.set_identifier,
            ttl(from.record.ttl),
            to.record.set_identifier,
            ttl(to.record.ttl)
        )));
    }
    Ok(ShiftPlan {
        zone_id: zone,
        name: rb.dns.record.clone(),
        record_type: rb.dns.record_type.clone(),
        from,
        to,
        weights,
    })
}

/// Sends the batch; returns the change id. Only under an authorised `Actor`.
pub async fn apply(clients: &Clients, _who: &super::Actor, plan: &ShiftPlan) -> Result<String, AwsError> {
    let batch = plan.batch().map_err(|e| AwsError {
        operation: "ChangeResourceRecordSets".into(),
        kind: crate::aws::AwsErrorKind::Other,
        message: e,
    })?;
    let resp = clients
        .route53
        .change_resource_record_sets()
        .hosted_zone_id(&plan.zone_id)
        .change_batch(batch)
        .send()
        .await
        .map_err(|e| sdk_error("ChangeResourceRecordSets", e))?;
    Ok(resp.change_info().map(|c| c.id().trim_start_matches("/change/").to_string()).unwrap_or_default())
}

/// How a wait for INSYNC ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Waited {
    InSync(Duration),
    /// `interrupt` said stop (an abort was asked for); the change still applies.
    Interrupted,
}

/// GetChange failures in a row that end the wait with the error, well before
/// the time limit: the change was accepted, but its progress cannot be seen.
const GET_CHANGE_ERRORS: u32 = 5;

/// Polls GetChange until INSYNC (every second, backing off to 5 s), or `limit`.
pub async fn wait_insync(clients: &Clients, change_id: &str, limit: Duration) -> Result<Duration, String> {
    match wait_insync_or(clients, change_id, limit, &|| false).await? {
        Waited::InSync(took) => Ok(took),
        Waited::Interrupted => Err(format!("waiting for change {change_id} was interrupted")),
    }
}

/// As `wait_insync`, and stops early when `interrupt` returns true (checked
/// every 200 ms).
pub async fn wait_insync_or(
    clients: &Clients,
    change_id: &str,
    limit: Duration,
    interrupt: &(dyn Fn() -> bool + Sync),
) -> Result<Waited, String> {
    let start = Instant::now();
    let mut every = Duration::from_secs(1);
    let mut errors = 0;
    loop {
        match clients.route53.get_change().id(change_id).send().await {
            Ok(r) if r.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync) => {
                return Ok(Waited::InSync(start.elapsed()));
            }
            Ok(_) => errors = 0,
            Err(e) => {
                let e = sdk_error("GetChange", e);
                errors += 1;
                tracing::warn!(error = %e, errors, "GetChange failed");
                if errors >= GET_CHANGE_ERRORS {
                    return Err(format!(
                        "cannot see whether change {change_id} is INSYNC: {errors} GetChange calls failed in a row ({e}); the change was accepted and will still apply"
                    ));
                }
            }
        }
        if start.elapsed() >= limit {
            return Err(format!("change {change_id} still PENDING after {} s", limit.as_secs()));
        }
        let until = Instant::now() + every;
        while Instant::now() < until {
            if interrupt() {
                return Ok(Waited::Interrupted);
            }
            tokio::time::sleep(Duration::from_millis(200).min(until - Instant::now())).await;
        }
        every = (every * 2).min(Duration::from_secs(5));
    }
}

/// Carries out a confirmed shift: refused under a running rollout, the intent
/// audited before anything is sent, then applied and INSYNC audited.
pub async fn execute(
    clients: &Clients,
    rb: &Runbook,
    who: &super::Actor,
    plan: &ShiftPlan,
    say: &mut (dyn FnMut(&str) + Send),
) -> Result<String, PlanError> {
    let log = crate::audit::AuditLog::for_runbook(&rb.name);
    let percent = plan.weights.1;
    let line = |stage: &str, detail: String| {
        who.audit_line(&rb.name, format!("shift_weights to {percent}%"), stage, (plan.before(), plan.after()), detail)
    };
    if plan.is_noop() {
        return Ok("nothing to change: the records already have these weights".into());
    }
    // Never under a running rollout's feet.
    let _lock = super::rollout::RolloutLock::try_take(&rb.name).map_err(PlanError::Failed)?.ok_or_else(|| {
        PlanError::Refused(format!(
            "a rollout of {} is running; use `cutover abort` or wait; nothing was changed",
            rb.name
        ))
    })?;
    // The intent is on disk before anything is sent.
    log.append(&line("intent", plan.describe())).map_err(|e| PlanError::Failed(format!("{e}; nothing was changed")))?;
    let change = match apply(clients, who, plan).await {
        Ok(id) => id,
        Err(e) => {
            let _ = log.append(&line("failed", e.to_string()));
            return Err(PlanError::Failed(format!("the change was not accepted: {e}; weights are unchanged")));
        }
    };
    log.append(&line("applied", format!("change {change}"))).map_err(PlanError::Failed)?;
    say(&format!("change {change} sent; waiting for INSYNC"));
    match wait_insync(clients, &change, Duration::from_secs(300)).await {
        Ok(took) => {
            log.append(&line("insync", format!("change {change} INSYNC after {:.1} s", took.as_secs_f64())))
                .map_err(PlanError::Failed)?;
            Ok(format!(
                "{} INSYNC after {:.1} s; resolvers may serve the old answer for one TTL more",
                plan.describe(),
                took.as_secs_f64()
            ))
        }
        Err(e) => {
            let _ = log.append(&line("failed", e.clone()));
            let accepted =
                if e.contains("will still apply") { "" } else { "; the change was accepted and will still apply" };
            Err(PlanError::Failed(format!("{e}{accepted}")))
        }
    }
}
