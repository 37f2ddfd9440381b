//! ElastiCache: what a replication group says of itself (node type, engine
//! version, snapshots, encryption, auth), for parity and readiness.

use super::{AwsError, AwsResult, sdk_error};
use crate::analysis::parity::ElastiCacheShape;

/// One replication group by id (DescribeReplicationGroups), with its first
/// member cluster's engine version (DescribeCacheClusters), when it has one.
pub async fn replication_group(client: &aws_sdk::elasticache::Client, id: &str) -> AwsResult<ElastiCacheShape> {
    let resp = client
        .describe_replication_groups()
        .replication_group_id(id)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeReplicationGroups", e))?;
    let g = resp.replication_groups().first().ok_or_else(|| {
        AwsError::not_found("DescribeReplicationGroups", format!("replication group `{id}` not found"))
    })?;
    let engine_version = match g.member_clusters().first() {
        Some(member) => client
            .describe_cache_clusters()
            .cache_cluster_id(member)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeCacheClusters", e))?
            .cache_clusters()
            .first()
            .and_then(|c| c.engine_version())
            .map(str::to_string),
        None => None,
    };
    Ok(ElastiCacheShape {
        replication_group: id.to_string(),
        node_type: g.cache_node_type().map(str::to_string),
        engine_version,
        snapshot_retention_days: g.snapshot_retention_limit().and_then(|d| u32::try_from(d).ok()),
        transit_encryption: g.transit_encryption_enabled(),
        transit_encryption_mode: g.transit_encryption_mode().map(|m| m.as_str().to_string()),
        at_rest_encryption: g.at_rest_encryption_enabled(),
        auth_token: g.auth_token_enabled(),
        user_groups: g.user_group_ids().to_vec(),
        automatic_failover: g.automatic_failover().map(|s| s.as_str().to_string()),
        multi_az: g.multi_az().map(|s| s.as_str().to_string()),
        shards: Some(g.node_groups().len()).filter(|n| *n > 0),
        nodes: Some(g.member_clusters().len()).filter(|n| *n > 0),
        cluster_mode: g.cluster_enabled(),
    })
}

/// CreateSnapshot of a replication group, tagged. Returns the snapshot's
/// status as created (AWS: `creating`).
pub async fn create_snapshot(
    client: &aws_sdk::elasticache::Client,
    replication_group: &str,
    name: &str,
    tags: &[(String, String)],
) -> AwsResult<String> {
    use aws_sdk::elasticache::types::Tag;
    let out = client
        .create_snapshot()
        .replication_group_id(replication_group)
        .snapshot_name(name)
        .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
        .send()
        .await
        .map_err(|e| sdk_error("CreateSnapshot", e))?;
    Ok(out.snapshot().and_then(|s| s.snapshot_status()).unwrap_or_default().to_string())
}

/// A snapshot's status by name (DescribeSnapshots): creating, available,
/// restoring, copying, deleting; None when there is no such snapshot.
pub async fn snapshot_status(client: &aws_sdk::elasticache::Client, name: &str) -> AwsResult<Option<String>> {
    let out = match client.describe_snapshots().snapshot_name(name).send().await {
        Ok(out) => out,
        // SnapshotNotFoundFault: gone (deleted, or its creation failed).
        Err(e) => match sdk_error("DescribeSnapshots", e) {
            e if e.kind == super::AwsErrorKind::NotFound => return Ok(None),
            e => return Err(e),
        },
    };
    Ok(out.snapshots().first().map(|s| s.snapshot_status().unwrap_or_default().to_string()))
}
