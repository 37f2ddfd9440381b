//! The benches' keys, shared by redis_copy and redis_cluster.

use redis::aio::MultiplexedConnection;

/// `n` small keys: 60% strings, 10% each hash, list, set, sorted set; every
/// other key with a one-hour TTL. Pipelines of 10,000 keys, four in flight,
/// so 10,000,000 keys seed in about a minute.
pub async fn seed(c: &MultiplexedConnection, n: u64) {
    use futures::StreamExt;
    const KEYS_PER_PIPELINE: u64 = 10_000;
    let pipelines = (0..n.div_ceil(KEYS_PER_PIPELINE)).map(|block| {
        let mut c = c.clone();
        async move {
            let mut p = redis::pipe();
            for i in block * KEYS_PER_PIPELINE..((block + 1) * KEYS_PER_PIPELINE).min(n) {
                let k = format!("bench:{i:08}");
                match i % 10 {
                    0 => p.cmd("HSET").arg(&k).arg("name").arg("n").arg("id").arg(i).ignore(),
                    1 => p.cmd("RPUSH").arg(&k).arg("a").arg("b").arg(i).ignore(),
                    2 => p.cmd("SADD").arg(&k).arg("a").arg("b").arg(i).ignore(),
                    3 => p.cmd("ZADD").arg(&k).arg(1).arg("a").arg(2).arg(i).ignore(),
                    _ => p.cmd("SET").arg(&k).arg(format!("value-{i}-xxxxxxxxxxxxxxxx")).ignore(),
                };
                if i % 2 == 0 {
                    p.cmd("EXPIRE").arg(&k).arg(3600).ignore();
                }
            }
            let _: () = p.query_async(&mut c).await.unwrap();
        }
    });
    futures::stream::iter(pipelines).buffer_unordered(4).collect::<Vec<()>>().await;
}
