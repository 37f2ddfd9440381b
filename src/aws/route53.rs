//! Route53: the weighted record set of the runbook's record.

use serde::Serialize;

use super::{AwsError, AwsResult, sdk_error};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WeightedRecord {
    pub set_identifier: String,
    pub weight: u8,
    pub ttl: Option<u32>,
    pub values: Vec<String>,
    /// Kept on every change: dropping it would send traffic to a dead side.
    pub health_check_id: Option<String>,
    /// An alias record (to an ALB); cutover does not change those yet.
    pub alias_target: Option<String>,
}

fn strip(id: &str) -> &str {
    id.trim_start_matches("/hostedzone/").trim_start_matches("/change/")
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.')).to_ascii_lowercase()
}

/// Resolves a zone given by id or by name; a name held by several zones is an error.
pub async fn zone_id(r53: &aws_sdk_route53::Client, zone: &str) -> AwsResult<String> {
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

/// Every weighted record with this name and type.
pub async fn weighted_records(
    r53: &aws_sdk_route53::Client,
    zone_id: &str,
    name: &str,
    record_type: &str,
) -> AwsResult<Vec<WeightedRecord>> {
    let rtype = aws_sdk_route53::types::RrType::from(record_type);
    let mut out = Vec::new();
    let mut start_id: Option<String> = None;
    loop {
        let resp = r53
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .start_record_name(name)
            .start_record_type(rtype.clone())
            .set_start_record_identifier(start_id.clone())
            .send()
            .await
            .map_err(|e| sdk_error("ListResourceRecordSets", e))?;
        let mut past = false;
        for r in resp.resource_record_sets() {
            if fqdn(r.name()) != fqdn(name) || r.r#type() != &rtype {
                past = true;
                break;
            }
            if let (Some(id), Some(w)) = (r.set_identifier(), r.weight()) {
                out.push(WeightedRecord {
                    set_identifier: id.to_string(),
                    weight: u8::try_from(w).unwrap_or(u8::MAX),
                    ttl: r.ttl().and_then(|t| u32::try_from(t).ok()),
                    values: r.resource_records().iter().map(|v| v.value().to_string()).collect(),
                    health_check_id: r.health_check_id().map(str::to_string),
                    alias_target: r.alias_target().map(|a| a.dns_name().to_string()),
                });
            }
        }
        if past || !resp.is_truncated() || resp.next_record_identifier().is_none() {
            break;
        }
        start_id = resp.next_record_identifier().map(str::to_string);
    }
    Ok(out)
}
