//! Commands on one Redis endpoint, whose errors name it (redacted, with
//! secrets scrubbed), and per-key commands on a target that may be a
//! cluster. Shared by the copy and the verify.

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::cluster::{self, Cluster};
use super::url::Endpoint;

/// Commands that each touch one key, on one side: pipelined to one server,
/// or on a cluster each on the shard owning its key (all shards at once).
/// A command's error is its answer.
pub(crate) async fn per_key<K: AsRef<[u8]>>(
    e: &Endpoint,
    c: &MultiplexedConnection,
    cluster: Option<&Cluster>,
    cmds: Vec<(K, redis::Cmd)>,
) -> Result<Vec<Value>, String> {
    match cluster {
        Some(cl) => {
            let routed: Vec<(u16, redis::Cmd)> =
                cmds.into_iter().map(|(k, c)| (cluster::key_slot(k.as_ref()), c)).collect();
            cl.run(routed).await
        }
        None => {
            let mut p = redis::Pipeline::with_capacity(cmds.len());
            p.ignore_errors();
            for (_, c) in cmds {
                p.add_command(c);
            }
            qp(e, &mut c.clone(), &p).await
        }
    }
}

/// A server's error as its code and text (`BUSYKEY Target key name already exists.`).
pub(crate) fn error_text(e: &redis::ServerError) -> String {
    format!("{} {}", e.code(), e.details().unwrap_or(""))
}

/// The target's connection for `key`: the node of the shard that owns its
/// slot in a cluster, else `dst`.
pub(crate) async fn node_for_key(
    dst: &MultiplexedConnection,
    cluster: Option<&Cluster>,
    key: &[u8],
) -> Result<MultiplexedConnection, String> {
    match cluster {
        Some(cl) => cl.node_for(cluster::key_slot(key)).await,
        None => Ok(dst.clone()),
    }
}

/// A command on `e`; errors name the endpoint, redacted and scrubbed.
pub(crate) async fn q<T: redis::FromRedisValue>(
    e: &Endpoint,
    c: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
) -> Result<T, String> {
    cmd.query_async(c).await.map_err(|err| format!("{} {}: {}", e.role, e.redacted(), e.scrub(&err.to_string())))
}

/// As `q`, for a pipeline.
pub(crate) async fn qp<T: redis::FromRedisValue>(
    e: &Endpoint,
    c: &mut MultiplexedConnection,
    p: &redis::Pipeline,
) -> Result<T, String> {
    p.query_async(c).await.map_err(|err| format!("{} {}: {}", e.role, e.redacted(), short(&e.scrub(&err.to_string()))))
}

/// A pipeline's error lists every failed command: keep the start.
pub(crate) fn short(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// (keys, expiring keys) of the endpoint's database.
pub async fn key_counts(e: &Endpoint, c: &mut MultiplexedConnection) -> Result<(u64, u64), String> {
    let info: String = q(e, c, redis::cmd("INFO").arg("keyspace")).await?;
    Ok(super::keyspace(&info, e.db()))
}
