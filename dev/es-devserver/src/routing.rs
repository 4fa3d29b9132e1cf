//! Which shard a document lives on, computed as Elasticsearch does: Murmur3 (x86, 32-bit,
//! seed 0) over the routing value's UTF-16 code units, taken modulo
//! `index.number_of_routing_shards` and divided down to `index.number_of_shards`.
//!
//! The server keeps one document space per index, so a shard is not a separate store: it
//! decides visibility. A get, exists, mget or delete whose routing (or, without one, the id)
//! points to another shard than the document's does not find it, as in Elasticsearch.

use crate::error::{EsError, EsResult};

/// The shard layout of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRouting {
    shards: u32,
    routing_shards: u32,
    partition_size: u32,
}

impl ShardRouting {
    /// The layout for `index.number_of_shards`, `index.number_of_routing_shards` (default:
    /// as Elasticsearch computes it) and `index.routing_partition_size` (default 1).
    pub fn new(
        shards: u32,
        routing_shards: Option<u32>,
        partition_size: Option<u32>,
    ) -> EsResult<ShardRouting> {
        let shards = shards.max(1);
        let routing_shards = routing_shards.unwrap_or_else(|| default_routing_shards(shards));
        if routing_shards < shards || !routing_shards.is_multiple_of(shards) {
            return Err(EsError::illegal_argument(format!(
                "the number of source shards [{shards}] must be a factor of [{routing_shards}]"
            )));
        }
        let partition_size = partition_size.unwrap_or(1);
        if partition_size == 0 || (partition_size > 1 && partition_size >= routing_shards) {
            return Err(EsError::illegal_argument(format!(
                "routing partition size [{partition_size}] should be a positive number less than the number of routing shards [{routing_shards}]"
            )));
        }
        Ok(ShardRouting {
            shards,
            routing_shards,
            partition_size,
        })
    }

    /// `index.number_of_routing_shards` as reported in settings.
    pub fn routing_shards(&self) -> u32 {
        self.routing_shards
    }

    /// The shard of a document with this id and routing.
    pub fn shard(&self, id: &str, routing: Option<&str>) -> u32 {
        let hash = match routing {
            None => es_hash(id),
            Some(r) if self.partition_size > 1 => {
                // A partitioned index spreads one routing value over `partition_size`
                // shards, chosen by the id.
                let offset = es_hash(id).rem_euclid(self.partition_size as i32);
                es_hash(r).wrapping_add(offset)
            }
            Some(r) => es_hash(r),
        };
        let factor = self.routing_shards / self.shards;
        // Elasticsearch uses `Math.floorMod(hash, routingNumShards) / routingFactor`.
        (i64::from(hash).rem_euclid(i64::from(self.routing_shards)) as u32) / factor.max(1)
    }
}

/// Elasticsearch's default `number_of_routing_shards`: the shard count doubled as often as
/// fits under 1024 (at least once), so the index can later be split.
fn default_routing_shards(shards: u32) -> u32 {
    let log2_shards = 32 - (shards - 1).leading_zeros();
    let splits = 10u32.saturating_sub(log2_shards).max(1);
    shards.checked_shl(splits).unwrap_or(shards)
}

/// `Murmur3HashFunction.hash(String)`: the string as little-endian UTF-16 code units.
pub fn es_hash(s: &str) -> i32 {
    let bytes: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    murmur3_x86_32(&bytes, 0) as i32
}

fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |k: u32| k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let k = u32::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
            b.get(2).copied().unwrap_or(0),
            b.get(3).copied().unwrap_or(0),
        ]);
        h ^= mix(k);
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail
            .iter()
            .enumerate()
            .fold(0u32, |k, (i, b)| k ^ (u32::from(*b) << (8 * i)));
        h ^= mix(k);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_elasticsearch() {
        // Values from Elasticsearch's own Murmur3HashFunction tests.
        for (s, h) in [
            ("hell", 0x5a0c_b7c3u32),
            ("hello", 0xd7c3_1989),
            ("hello w", 0x22ab_2984),
            ("hello wo", 0xdf0c_a123),
            ("hello wor", 0xe774_4d61),
            ("The quick brown fox jumps over the lazy dog", 0xe07d_b09c),
            ("The quick brown fox jumps over the lazy cog", 0x4e63_d2ad),
        ] {
            assert_eq!(es_hash(s) as u32, h, "{s}");
        }
    }

    #[test]
    fn default_routing_shards_match_elasticsearch() {
        assert_eq!(default_routing_shards(1), 1024);
        assert_eq!(default_routing_shards(5), 640);
        assert_eq!(default_routing_shards(2), 1024);
        assert_eq!(default_routing_shards(1000), 2000);
    }

    #[test]
    fn one_shard_takes_everything() {
        let r = ShardRouting::new(1, None, None).unwrap();
        assert!(["a", "b", "c"].iter().all(|id| r.shard(id, None) == 0));
        assert!(ShardRouting::new(5, Some(7), None).is_err());
    }
}
