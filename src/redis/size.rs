//! A key's size by MEMORY USAGE, without letting one big element among
//! many small ones go unseen: what decides whether a key is read whole
//! (DUMP) or in chunks, in `copy` and in `verify`.

use redis::Value;
use redis::aio::MultiplexedConnection;

use super::cluster::Cluster;
use super::query::{error_text, per_key};
use super::url::Endpoint;

/// Elements of a collection MEMORY USAGE walks (its SAMPLES) before it
/// extrapolates from them. Redis's default, 5, misses one big element among
/// many small ones, and that key would be DUMPed whole.
const SIZE_SAMPLES: u64 = 1024;

/// The least one walked element adds to MEMORY USAGE's figure: at least one
/// allocation, and the allocator's smallest is 8 bytes. So a figure of B
/// bytes means at most B / 8 elements.
const MIN_ELEMENT_BYTES: u64 = 8;

/// `MEMORY USAGE key SAMPLES samples`.
fn usage_cmd(key: &[u8], samples: u64) -> redis::Cmd {
    let mut c = redis::Cmd::with_capacity(5, 24 + key.len());
    c.arg("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(samples);
    c
}

/// After `usage_cmd(key, SIZE_SAMPLES)` said `bytes`: the samples that walk
/// the key whole, or none when that figure already came from every
/// element (no more than `SIZE_SAMPLES` fit in `bytes`). The walk costs the
/// server in proportion to the key's elements: less than its DUMP.
fn samples_to_walk_whole(bytes: u64) -> Option<u64> {
    let most_elements = bytes.div_ceil(MIN_ELEMENT_BYTES);
    (most_elements > SIZE_SAMPLES).then_some(most_elements)
}

/// Which of the first figures (`None`: no figure) to ask again walking the
/// key whole, with the samples that do: those at most `bound`, where the
/// answer decides something. A key over `bound` already is not walked.
fn to_walk_whole(figures: impl IntoIterator<Item = Option<u64>>, bound: u64) -> Vec<(usize, u64)> {
    figures
        .into_iter()
        .enumerate()
        .filter_map(|(i, bytes)| Some((i, samples_to_walk_whole(bytes.filter(|b| *b <= bound)?)?)))
        .collect()
}

/// Whether an error's text says MEMORY USAGE was refused: by an ACL, or by
/// a server without it (or with it renamed away, as managed services may).
fn memory_usage_refused(error: &str) -> bool {
    let error = error.to_lowercase();
    ["noperm", "unknown command", "unknown subcommand"].iter().any(|m| error.contains(m))
}

/// The bytes of each key on one side (`None`: gone), by MEMORY USAGE with
/// `SIZE_SAMPLES`, each figure that may be extrapolated and is not over
/// `bound` asked again walking the key whole; on a cluster `c`, each key on
/// the shard owning it. `Ok(None)`: the side refuses MEMORY USAGE (an ACL
/// without `@memory`, a server without it or with it renamed away), so it
/// tells no size. Any other error is an error.
pub(super) async fn sizes<K: AsRef<[u8]>>(
    e: &Endpoint,
    c: &MultiplexedConnection,
    cluster: Option<&Cluster>,
    keys: &[K],
    bound: u64,
) -> Result<Option<Vec<Option<u64>>>, String> {
    if keys.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let Some(mut sizes) = ask(e, c, cluster, keys.iter().map(|k| (k.as_ref(), SIZE_SAMPLES)).collect()).await? else {
        return Ok(None);
    };
    let walk = to_walk_whole(sizes.iter().copied(), bound);
    if !walk.is_empty() {
        let Some(walked) =
            ask(e, c, cluster, walk.iter().map(|(i, samples)| (keys[*i].as_ref(), *samples)).collect()).await?
        else {
            return Ok(None);
        };
        for ((i, _), size) in walk.into_iter().zip(walked) {
            sizes[i] = size;
        }
    }
    Ok(Some(sizes))
}

/// Whether key `i` is at most `bound` bytes by what `sizes` gave; a key
/// gone is. A side that refused MEMORY USAGE told nothing: `if_refused` is
/// what that means to the caller.
pub(super) fn within(sizes: &Option<Vec<Option<u64>>>, i: usize, bound: u64, if_refused: bool) -> bool {
    match sizes {
        None => if_refused,
        Some(s) => s[i].is_none_or(|b| b <= bound),
    }
}

/// One round of `sizes`: MEMORY USAGE of each key with its samples.
async fn ask(
    e: &Endpoint,
    c: &MultiplexedConnection,
    cluster: Option<&Cluster>,
    asks: Vec<(&[u8], u64)>,
) -> Result<Option<Vec<Option<u64>>>, String> {
    let n = asks.len();
    let cmds: Vec<(&[u8], redis::Cmd)> = asks.into_iter().map(|(k, samples)| (k, usage_cmd(k, samples))).collect();
    let answers = per_key(e, c, cluster, cmds).await?;
    if answers.len() != n {
        return Err(format!("{} {}: MEMORY USAGE of {n} keys, but {} answers", e.role, e.redacted(), answers.len()));
    }
    let mut sizes = Vec::with_capacity(n);
    for a in answers {
        sizes.push(match a {
            Value::Int(b) => Some(u64::try_from(b).unwrap_or(0)),
            Value::Nil => None,
            Value::ServerError(err) => {
                let error = error_text(&err);
                if memory_usage_refused(&error) {
                    return Ok(None);
                }
                return Err(format!("{} {}: MEMORY USAGE failed: {}", e.role, e.redacted(), e.scrub(&error)));
            }
            other => return Err(format!("{} {}: MEMORY USAGE answered {other:?}", e.role, e.redacted())),
        });
    }
    Ok(Some(sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_that_may_be_extrapolated_is_asked_again_walking_the_key_whole() {
        // 8 KiB holds at most 1,024 elements of 8 bytes: all were walked.
        assert_eq!(samples_to_walk_whole(8 << 10), None);
        assert_eq!(samples_to_walk_whole((8 << 10) + 1), Some(1025));
        assert_eq!(samples_to_walk_whole(1 << 20), Some(1 << 17));
        // Over the bound already, gone, or walked whole: not asked again.
        let figures = [Some(100), Some(9000), Some(2 << 20), None, Some(1 << 20)];
        assert_eq!(to_walk_whole(figures, 1 << 20), [(1, 1125), (4, 1 << 17)]);
    }
}
