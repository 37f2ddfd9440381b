//! What a Redis key holds, read the same way by every Redis test.

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, Value};

/// A key's expiry as the absolute Unix time (ms) its server keeps; -1 none, -2 no key.
pub async fn pexpiretime(c: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME").arg(key).query_async(c).await.unwrap()
}

/// The logical value of a key, independent of encodings.
pub async fn value_of(c: &mut MultiplexedConnection, key: &str) -> (String, Value) {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(c).await.unwrap();
    let v: Value = match kind.as_str() {
        "string" => c.get(key).await.unwrap(),
        "hash" => {
            let mut h: Vec<(Vec<u8>, Vec<u8>)> = c.hgetall(key).await.unwrap();
            h.sort();
            Value::Array(h.into_iter().flat_map(|(a, b)| [Value::BulkString(a), Value::BulkString(b)]).collect())
        }
        "list" => c.lrange(key, 0, -1).await.unwrap(),
        "set" => {
            let mut s: Vec<Vec<u8>> = c.smembers(key).await.unwrap();
            s.sort();
            Value::Array(s.into_iter().map(Value::BulkString).collect())
        }
        "zset" => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES").query_async(c).await.unwrap(),
        "stream" => redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(c).await.unwrap(),
        "none" => Value::Nil,
        other => panic!("unexpected type {other}"),
    };
    (kind, v)
}
