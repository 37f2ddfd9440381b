//! ElastiCache: what a replication group says of itself (node type, engine
//! version, snapshots, encryption, auth), for parity and readiness.

use super::{AwsError, AwsResult, sdk_error};
use crate::analysis::parity::ElastiCacheShape;

/// One replication group by id (DescribeReplicationGroups), with its first
/// member cluster's engine version (DescribeCacheClusters), when it has one.
pub async fn replication_group(client: &aws_sdk_elasticache::Client, id: &str) -> AwsResult<ElastiCacheShape> {
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
        at_rest_encryption: g.at_rest_encryption_enabled(),
        auth_token: g.auth_token_enabled(),
    })
}
