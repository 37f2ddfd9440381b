//! What the copy and the verify read of a stream besides its entries, and
//! how they page through its entries.

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::url::Endpoint;

/// What XADD with `*` and XREADGROUP go on from: the last generated ID
/// and each consumer group's last delivered ID (by name). A group's
/// consumers and pending entries are left out: the type-by-type copy does
/// not rebuild them (DUMP/RESTORE keeps them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub last_id: String,
    pub groups: Vec<(String, String)>,
}

/// XINFO STREAM and XINFO GROUPS of `key`; `None` once the key is gone
/// (expired or deleted while it was read: XRANGE answers that with no
/// entries, XINFO with an error).
pub(crate) async fn meta(e: &Endpoint, c: &mut MultiplexedConnection, key: &[u8]) -> Result<Option<Meta>, String> {
    let Some(info) = xinfo(e, c, "STREAM", key).await? else { return Ok(None) };
    let last_id = info_field(&info, "last-generated-id").unwrap_or_else(|| "0-0".into());
    let Some(replies) = xinfo(e, c, "GROUPS", key).await? else { return Ok(None) };
    let replies: Vec<Value> = redis::from_redis_value(replies).map_err(|err| format!("XINFO GROUPS: {err}"))?;
    let mut groups: Vec<(String, String)> =
        replies.iter().filter_map(|g| Some((info_field(g, "name")?, info_field(g, "last-delivered-id")?))).collect();
    groups.sort();
    Ok(Some(Meta { last_id, groups }))
}

/// `XINFO what key`, or `None` if there is no such key.
async fn xinfo(e: &Endpoint, c: &mut MultiplexedConnection, what: &str, key: &[u8]) -> Result<Option<Value>, String> {
    match redis::cmd("XINFO").arg(what).arg(key).query_async::<Value>(c).await {
        Err(err) if err.detail() == Some("no such key") => Ok(None),
        Err(err) => Err(format!("{} {}: XINFO {what}: {}", e.role, e.redacted(), e.scrub(&err.to_string()))),
        Ok(v) => Ok(Some(v)),
    }
}

/// A text field of an XINFO reply, in RESP2 (flat array) or RESP3 (map) shape.
pub(crate) fn info_field(info: &Value, name: &str) -> Option<String> {
    let items: Vec<Value> = match info {
        Value::Array(a) => a.clone(),
        Value::Map(m) => m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect(),
        _ => return None,
    };
    items.chunks(2).find_map(|kv| match (&kv[0], kv.get(1)) {
        (Value::BulkString(k), Some(Value::BulkString(v))) if k == name.as_bytes() => {
            Some(String::from_utf8_lossy(v).into_owned())
        }
        (Value::SimpleString(k), Some(Value::SimpleString(v))) if k == name => Some(v.clone()),
        _ => None,
    })
}

/// The smallest entry ID after `id` (`MS-SEQ`), to start the next XRANGE
/// page from: the exclusive `(ID` form needs Redis 6.2, and ElastiCache
/// still runs 5.0 and 6.0. `None` after the last possible ID, or for an
/// ID that is not `MS-SEQ`.
pub(crate) fn after(id: &str) -> Option<String> {
    let (ms, seq) = id.split_once('-')?;
    let (ms, seq): (u64, u64) = (ms.parse().ok()?, seq.parse().ok()?);
    match seq.checked_add(1) {
        Some(seq) => Some(format!("{ms}-{seq}")),
        None => Some(format!("{}-0", ms.checked_add(1)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_found_in_resp2_and_resp3_shapes() {
        let arr = Value::Array(vec![
            Value::BulkString(b"length".to_vec()),
            Value::Int(2),
            Value::BulkString(b"last-generated-id".to_vec()),
            Value::BulkString(b"5-1".to_vec()),
        ]);
        assert_eq!(info_field(&arr, "last-generated-id").as_deref(), Some("5-1"));
        assert_eq!(info_field(&arr, "nope"), None);
        let map =
            Value::Map(vec![(Value::BulkString(b"last-generated-id".to_vec()), Value::BulkString(b"7-0".to_vec()))]);
        assert_eq!(info_field(&map, "last-generated-id").as_deref(), Some("7-0"));
    }

    #[test]
    fn the_next_page_starts_at_the_smallest_id_after_the_last() {
        assert_eq!(after("5-1").as_deref(), Some("5-2"));
        assert_eq!(after("0-0").as_deref(), Some("0-1"));
        assert_eq!(after("7-18446744073709551615").as_deref(), Some("8-0"));
        assert_eq!(after("18446744073709551615-18446744073709551615"), None);
        assert_eq!(after("5"), None);
        assert_eq!(after("x-1"), None);
    }
}
