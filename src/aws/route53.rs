//! Route53: the weighted record set of the runbook's record.

use serde::Serialize;

use aws_sdk::route53::types::{
    AliasTarget, Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};

use super::{AwsError, AwsResult, sdk_error};

/// An alias record's target (an ALB: its canonical hosted zone and DNS name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Alias {
    pub hosted_zone_id: String,
    pub dns_name: String,
    /// With it, an unhealthy target gets no traffic whatever the weight.
    pub evaluate_target_health: bool,
}

/// One weighted record: the fields cutover shows, and the record exactly as
/// Route53 returned it, which a change sends back with only its weight changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WeightedRecord {
    pub set_identifier: String,
    /// `A`, `AAAA` or `CNAME`.
    pub record_type: String,
    pub weight: u8,
    /// None on an alias record (it has no TTL of its own).
    pub ttl: Option<u32>,
    pub values: Vec<String>,
    /// Kept on every change: dropping it would send traffic to a dead side.
    pub health_check_id: Option<String>,
    pub alias_target: Option<Alias>,
    /// Every field as read (routing, health check, alias, values, future
    /// fields); None only for records made up in tests.
    #[serde(skip)]
    pub read: Option<ResourceRecordSet>,
}

impl WeightedRecord {
    /// A weighted record as read; None when it has no set identifier or weight.
    pub fn from_sdk(r: &ResourceRecordSet) -> Option<WeightedRecord> {
        let (id, w) = (r.set_identifier()?, r.weight()?);
        Some(WeightedRecord {
            set_identifier: id.to_string(),
            record_type: r.r#type().as_str().to_string(),
            weight: u8::try_from(w).unwrap_or(u8::MAX),
            ttl: r.ttl().and_then(|t| u32::try_from(t).ok()),
            values: r.resource_records().iter().map(|v| v.value().to_string()).collect(),
            health_check_id: r.health_check_id().map(str::to_string),
            alias_target: r.alias_target().map(|a| Alias {
                hosted_zone_id: a.hosted_zone_id().to_string(),
                dns_name: a.dns_name().to_string(),
                evaluate_target_health: a.evaluate_target_health(),
            }),
            read: Some(r.clone()),
        })
    }

    /// The name the record sends its share to: an alias's target or a
    /// CNAME's value (None for addresses).
    pub fn points_at(&self) -> Option<&str> {
        match (&self.alias_target, self.record_type.as_str()) {
            (Some(a), _) => Some(a.dns_name.as_str()),
            (None, "CNAME") => self.values.first().map(String::as_str),
            _ => None,
        }
    }

    /// The record as read (for a DELETE, which must match it exactly).
    pub fn as_read(&self, name: &str) -> Result<ResourceRecordSet, String> {
        match &self.read {
            Some(r) => Ok(r.clone()),
            None => self.build(name),
        }
    }

    /// The record as read with only its weight changed.
    pub fn with_weight(&self, name: &str, weight: u8) -> Result<ResourceRecordSet, String> {
        let mut r = self.as_read(name)?;
        r.weight = Some(i64::from(weight));
        Ok(r)
    }

    /// Built from the fields (a record made up in a test, never read).
    fn build(&self, name: &str) -> Result<ResourceRecordSet, String> {
        let mut b = ResourceRecordSet::builder()
            .name(name)
            .r#type(RrType::from(self.record_type.as_str()))
            .set_identifier(&self.set_identifier)
            .weight(i64::from(self.weight))
            .set_ttl(self.ttl.map(i64::from))
            .set_health_check_id(self.health_check_id.clone());
        for v in &self.values {
            b = b.resource_records(ResourceRecord::builder().value(v).build().map_err(|e| e.to_string())?);
        }
        if let Some(a) = &self.alias_target {
            b = b.alias_target(
                AliasTarget::builder()
                    .hosted_zone_id(&a.hosted_zone_id)
                    .dns_name(&a.dns_name)
                    .evaluate_target_health(a.evaluate_target_health)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
        b.build().map_err(|e| e.to_string())
    }
}

/// A Route53 health check and what its checkers say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HealthCheckState {
    pub id: String,
    /// AWS counts a check healthy when more than 18% of its checkers report
    /// success; None when the status could not be read.
    pub healthy: Option<bool>,
    /// A checker's report, or why there is none.
    pub status: String,
}

/// GetHealthCheck, then GetHealthCheckStatus, judged as Route53 judges it:
/// the checkers report the endpoint as they find it, Route53 counts a
/// disabled check healthy whatever they report, and then inverts an
/// inverted one (disabled and inverted: unhealthy, AWS's way to stop
/// routing to a record). What cannot be read is in the state as unknown;
/// Err only for throttling, which the caller backs off from.
pub async fn health_check_state(r53: &aws_sdk::route53::Client, id: &str) -> AwsResult<HealthCheckState> {
    let state = |healthy: Option<bool>, status: String| HealthCheckState { id: id.to_string(), healthy, status };
    let unread = |e: AwsError| match e.kind {
        super::AwsErrorKind::Throttled => Err(e),
        _ => Ok(state(None, e.to_string())),
    };
    let config = match r53.get_health_check().health_check_id(id).send().await {
        Err(e) => return unread(sdk_error("GetHealthCheck", e)),
        Ok(r) => r.health_check().and_then(|h| h.health_check_config()).cloned(),
    };
    let Some(config) = config else { return Ok(state(None, "GetHealthCheck returned no configuration".into())) };
    let (healthy, status) = if config.disabled() == Some(true) {
        (Some(true), "disabled: Route53 counts it healthy whatever its checkers find".to_string())
    } else if config.r#type() == &aws_sdk::route53::types::HealthCheckType::Calculated {
        return Ok(state(
            None,
            "a calculated health check, whose status Route53 reports only in its console and CloudWatch \
             (HealthCheckStatus), not through its API"
                .into(),
        ));
    } else {
        match r53.get_health_check_status().health_check_id(id).send().await {
            Err(e) => return unread(sdk_error("GetHealthCheckStatus", e)),
            Ok(r) => {
                let obs = r.health_check_observations();
                let report = |o: &aws_sdk::route53::types::HealthCheckObservation| {
                    o.status_report().and_then(|s| s.status()).unwrap_or_default().to_string()
                };
                let ok = obs.iter().filter(|o| report(o).starts_with("Success")).count();
                match obs.first() {
                    None => (None, "no checker has reported yet".to_string()),
                    Some(first) => (
                        Some(ok * 100 > obs.len() * 18),
                        format!("{ok} of {} checkers healthy: {}", obs.len(), report(first)),
                    ),
                }
            }
        }
    };
    let disabled = config.disabled() == Some(true);
    Ok(match config.inverted() == Some(true) {
        true if disabled => state(
            Some(false),
            "disabled and inverted: Route53 counts it unhealthy (AWS's way to stop routing to a record)".into(),
        ),
        true => state(healthy.map(|h| !h), format!("inverted, so Route53 reads it the other way round: {status}")),
        false => state(healthy, status),
    })
}

/// A record set as JSON in the API's own field names (for --dry-run).
pub fn record_json(r: &ResourceRecordSet) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("Name".into(), r.name().into());
    m.insert("Type".into(), r.r#type().as_str().into());
    if let Some(id) = r.set_identifier() {
        m.insert("SetIdentifier".into(), id.into());
    }
    if let Some(w) = r.weight() {
        m.insert("Weight".into(), w.into());
    }
    if let Some(t) = r.ttl() {
        m.insert("TTL".into(), t.into());
    }
    if !r.resource_records().is_empty() {
        let values: Vec<_> = r.resource_records().iter().map(|v| serde_json::json!({"Value": v.value()})).collect();
        m.insert("ResourceRecords".into(), values.into());
    }
    if let Some(a) = r.alias_target() {
        m.insert(
            "AliasTarget".into(),
            serde_json::json!({"HostedZoneId": a.hosted_zone_id(), "DNSName": a.dns_name(), "EvaluateTargetHealth": a.evaluate_target_health()}),
        );
    }
    if let Some(hc) = r.health_check_id() {
        m.insert("HealthCheckId".into(), hc.into());
    }
    serde_json::Value::Object(m)
}

/// A name as Route53 returns it, its octal escapes decoded (`\052` is `*`).
pub fn decode_name(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
            && let Ok(v) = u8::from_str_radix(&name[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn strip(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/").trim_start_matches("/change/")
}

/// Lowercase, decoded, with the final dot: how two names are compared.
fn fqdn(name: &str) -> String {
    format!("{}.", decode_name(name).trim_end_matches('.')).to_ascii_lowercase()
}

/// Resolves a zone given by id or by name; a name held by several zones is an error.
pub async fn zone_id(r53: &aws_sdk::route53::Client, zone: &str) -> AwsResult<String> {
    if zone.starts_with("/hostedzone/") || (zone.starts_with('Z') && !zone.contains('.')) {
        return Ok(strip(zone).to_string());
    }
    let resp = r53
        .list_hosted_zones_by_name()
        .dns_name(zone)
        .send()
        .await
        .map_err(|e| sdk_error("ListHostedZonesByName", e))?;
    let matches: Vec<_> = resp.hosted_zones().iter().filter(|z| fqdn(z.name()) == fqdn(zone)).collect();
    match matches.as_slice() {
        [one] => Ok(strip(one.id()).to_string()),
        [] => Err(AwsError::not_found("ListHostedZonesByName", format!("no hosted zone named {zone}"))),
        many => Err(AwsError {
            operation: "ListHostedZonesByName".into(),
            kind: super::AwsErrorKind::Other,
            message: format!(
                "{} hosted zones are named {zone} ({}); give the zone id in the runbook",
                many.len(),
                many.iter().map(|z| strip(z.id())).collect::<Vec<_>>().join(", ")
            ),
        }),
    }
}

/// Every weighted record with this name, of each of these types.
pub async fn weighted_group(
    r53: &aws_sdk::route53::Client,
    zone_id: &str,
    name: &str,
    record_types: &[String],
) -> AwsResult<Vec<WeightedRecord>> {
    let mut out = Vec::new();
    for t in record_types {
        out.extend(weighted_records(r53, zone_id, name, t).await?);
    }
    Ok(out)
}

/// Every weighted record with this name and type, page after page
/// (`StartRecordName`, `StartRecordType`, `StartRecordIdentifier` from each
/// page's `Next…`, as AWS pages: 300 records at most per page).
pub async fn weighted_records(
    r53: &aws_sdk::route53::Client,
    zone_id: &str,
    name: &str,
    record_type: &str,
) -> AwsResult<Vec<WeightedRecord>> {
    let rtype = RrType::from(record_type);
    let mut out = Vec::new();
    let mut start = (name.to_string(), rtype.clone(), None::<String>);
    loop {
        let resp = r53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(&start.0)
            .start_record_type(start.1.clone())
            .set_start_record_identifier(start.2.clone())
            .send()
            .await
            .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
        let mut past = false;
        for r in resp.resource_record_sets() {
            if fqdn(r.name()) != fqdn(name) || r.r#type() != &rtype {
                past = true;
                break;
            }
            out.extend(WeightedRecord::from_sdk(r));
        }
        if past || !resp.is_truncated() {
            break;
        }
        let next = (
            resp.next_record_name().unwrap_or_default().to_string(),
            resp.next_record_type().cloned().unwrap_or_else(|| rtype.clone()),
            resp.next_record_identifier().map(str::to_string),
        );
        if fqdn(&next.0) != fqdn(name) || next.1 != rtype {
            break;
        }
        if (fqdn(&next.0), &next.1, &next.2) == (fqdn(&start.0), &start.1, &start.2) {
            return Err(AwsError {
                operation: "ListResourceRecordSets".into(),
                kind: super::AwsErrorKind::Other,
                message: format!(
                    "the listing of {name} {record_type} is truncated but its next page starts where this one did (no NextRecordIdentifier); {} records read",
                    out.len()
                ),
            });
        }
        start = next;
    }
    Ok(out)
}

/// A weight change to send: the records of `name` as read, each with its new
/// weight.
pub struct WeightChange<'a> {
    pub zone_id: &'a str,
    pub name: &'a str,
    pub records: Vec<(&'a WeightedRecord, u8)>,
}

impl WeightChange<'_> {
    /// The batch as it will be sent: a DELETE of every record exactly as read,
    /// then a CREATE of it with only its weight changed. Route53 refuses the
    /// whole batch when a record changed since it was read (an UPSERT would
    /// overwrite that change). DELETEs go first: a record's CREATE must not
    /// meet its own old self.
    fn changes(&self) -> Result<Vec<Change>, String> {
        let change = |action: ChangeAction, rrs| {
            Change::builder().action(action).resource_record_set(rrs).build().map_err(|e| e.to_string())
        };
        let mut out = Vec::new();
        for (r, _) in &self.records {
            out.push(change(ChangeAction::Delete, r.as_read(self.name)?)?);
        }
        for (r, w) in &self.records {
            out.push(change(ChangeAction::Create, r.with_weight(self.name, *w)?)?);
        }
        Ok(out)
    }

    /// The batch as JSON, as the API takes it (for --dry-run).
    pub fn to_json(&self) -> serde_json::Value {
        match self.changes() {
            Ok(changes) => {
                let changes: Vec<_> = changes
                    .iter()
                    .map(|c| {
                        let rrs = c.resource_record_set().map(record_json).unwrap_or_default();
                        serde_json::json!({"Action": c.action().as_str(), "ResourceRecordSet": rrs})
                    })
                    .collect();
                serde_json::json!({"HostedZoneId": self.zone_id, "ChangeBatch": {"Changes": changes}})
            }
            Err(e) => serde_json::json!({"error": e}),
        }
    }

    /// Sends the batch in one ChangeResourceRecordSets; returns the change id.
    pub async fn send(&self, r53: &aws_sdk::route53::Client, comment: &str) -> AwsResult<String> {
        let op = "ChangeResourceRecordSets";
        let invalid = |message: String| AwsError { operation: op.into(), kind: super::AwsErrorKind::Other, message };
        let batch = ChangeBatch::builder()
            .set_changes(Some(self.changes().map_err(invalid)?))
            .comment(comment)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        let resp = r53
            .change_resource_record_sets()
            .hosted_zone_id(self.zone_id)
            .change_batch(batch)
            .send()
            .await
            .map_err(|e| sdk_error(op, e))?;
        Ok(resp.change_info().map(|c| c.id().trim_start_matches("/change/").to_string()).unwrap_or_default())
    }
}

/// Whether a change has reached every Route53 server (GetChange).
pub async fn change_insync(r53: &aws_sdk::route53::Client, change_id: &str) -> AwsResult<bool> {
    let r = r53.get_change().id(change_id).send().await.map_err(|e| sdk_error("GetChange", e))?;
    Ok(r.change_info().map(|c| c.status()) == Some(&ChangeStatus::Insync))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_escapes_decode() {
        assert_eq!(decode_name("\\052.example.com."), "*.example.com.");
        assert_eq!(decode_name("a\\100b.example.com."), "a@b.example.com.");
        assert_eq!(decode_name("sp\\040ace."), "sp ace.");
        // Not three octal digits: kept as it is.
        assert_eq!(decode_name("x\\09.y\\0"), "x\\09.y\\0");
        assert_eq!(decode_name("plain.example.com"), "plain.example.com");
        assert_eq!(fqdn("\\052.Example.COM"), "*.example.com.");
    }

    #[test]
    fn a_record_sent_back_differs_from_the_one_read_in_its_weight_only() {
        use aws_sdk::route53::types::{CidrRoutingConfig, GeoLocation, GeoProximityLocation, ResourceRecordSetRegion};
        let read = ResourceRecordSet::builder()
            .name("\\052.shop.example.org.")
            .r#type(RrType::A)
            .set_identifier("alb")
            .weight(17)
            .region(ResourceRecordSetRegion::EuCentral1)
            .geo_location(GeoLocation::builder().country_code("DE").build())
            .failover(aws_sdk::route53::types::ResourceRecordSetFailover::Primary)
            .multi_value_answer(true)
            .ttl(61)
            .resource_records(ResourceRecord::builder().value("192.0.2.7").build().unwrap())
            .alias_target(
                AliasTarget::builder()
                    .hosted_zone_id("Z215JYRZR1TBD5")
                    .dns_name("dualstack.shop-alb-1.eu-central-1.elb.amazonaws.com.")
                    .evaluate_target_health(true)
                    .build()
                    .unwrap(),
            )
            .health_check_id("hc-1")
            .traffic_policy_instance_id("tp-1")
            .cidr_routing_config(CidrRoutingConfig::builder().collection_id("c").location_name("l").build().unwrap())
            .geo_proximity_location(GeoProximityLocation::builder().bias(5).build())
            .build()
            .unwrap();
        let rec = WeightedRecord::from_sdk(&read).unwrap();
        assert_eq!(rec.alias_target.as_ref().map(|a| a.hosted_zone_id.as_str()), Some("Z215JYRZR1TBD5"));
        let sent = rec.with_weight("ignored.", 200).unwrap();
        assert_eq!(sent.weight(), Some(200));
        // Every other field, one by one.
        assert_eq!(sent.name(), read.name());
        assert_eq!(sent.r#type(), read.r#type());
        assert_eq!(sent.set_identifier(), read.set_identifier());
        assert_eq!(sent.region(), read.region());
        assert_eq!(sent.geo_location(), read.geo_location());
        assert_eq!(sent.failover(), read.failover());
        assert_eq!(sent.multi_value_answer(), read.multi_value_answer());
        assert_eq!(sent.ttl(), read.ttl());
        assert_eq!(sent.resource_records(), read.resource_records());
        assert_eq!(sent.alias_target(), read.alias_target());
        assert_eq!(sent.health_check_id(), read.health_check_id());
        assert_eq!(sent.traffic_policy_instance_id(), read.traffic_policy_instance_id());
        assert_eq!(sent.cidr_routing_config(), read.cidr_routing_config());
        assert_eq!(sent.geo_proximity_location(), read.geo_proximity_location());
        // And as a whole (fields added to the SDK later included).
        let mut back = sent.clone();
        back.weight = read.weight;
        assert_eq!(back, read);
        assert_eq!(rec.as_read("ignored.").unwrap(), read);
    }

    #[test]
    fn a_record_made_up_without_a_read_is_built_from_its_fields() {
        let rec = WeightedRecord {
            set_identifier: "box".into(),
            record_type: "A".into(),
            weight: 3,
            ttl: Some(60),
            values: vec!["192.0.2.1".into()],
            health_check_id: Some("hc".into()),
            ..Default::default()
        };
        let r = rec.with_weight("shop.example.org.", 9).unwrap();
        assert_eq!(
            (r.name(), r.weight(), r.ttl(), r.health_check_id()),
            ("shop.example.org.", Some(9), Some(60), Some("hc"))
        );
        assert_eq!(
            WeightedRecord::from_sdk(&r).map(|w| (w.values, w.set_identifier)),
            Some((rec.values.clone(), "box".into()))
        );
    }
}
