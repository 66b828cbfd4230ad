//! Partition choice as the Java producer makes it: keyed records go to
//! `toPositive(murmur2(key)) % numPartitions`, so a key lands where Java clients put it;
//! keyless records stick to one partition per batch and move on after each batch (Kafka's
//! sticky partitioning, KIP-480).

/// Java's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`, little-endian words.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Java truncates the length to int; keys over 2 GiB cannot reach here.
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`, which overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition Java's default partitioner picks for `key` among `num_partitions`.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

/// Chooses partitions for keyless records: one partition until [`Sticky::next_batch`].
#[derive(Debug)]
pub struct Sticky {
    /// The partition the current batch goes to.
    current: i32,
}

impl Sticky {
    /// Starts on a random partition, as Java does, so producers spread over partitions.
    pub fn new(num_partitions: i32) -> Self {
        Sticky {
            current: random_partition(num_partitions, None),
        }
    }

    /// The partition for the next keyless record.
    pub fn partition(&self) -> i32 {
        self.current
    }

    /// Moves to another partition once a batch is sent.
    pub fn next_batch(&mut self, num_partitions: i32) {
        self.current = random_partition(num_partitions, Some(self.current));
    }
}

/// A random partition in `0..num_partitions`, different from `avoid` when there is a choice.
fn random_partition(num_partitions: i32, avoid: Option<i32>) -> i32 {
    if num_partitions <= 1 {
        return 0;
    }
    loop {
        let p = rand::random_range(0..num_partitions);
        if Some(p) != avoid {
            return p;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_javas_utils_test_values() {
        // From Apache Kafka's clients/src/test/.../utils/UtilsTest.java testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn murmur2_of_empty_key_is_the_mixed_seed() {
        // Computed from Java's algorithm by hand: seed ^ 0, then the final avalanche.
        assert_eq!(murmur2(b""), 275_646_681);
    }

    #[test]
    fn keyed_partition_is_positive_hash_modulo_partition_count() {
        // murmur2("21") is negative; toPositive keeps the low 31 bits.
        assert_eq!(
            partition_for_key(b"21", 7),
            (-973_932_308i32 & 0x7fff_ffff) % 7
        );
        assert_eq!(partition_for_key(b"foobar", 1), 0);
        assert_eq!(to_positive(i32::MIN), 0);
    }

    #[test]
    fn sticky_partition_changes_between_batches_when_there_is_a_choice() {
        let mut sticky = Sticky::new(3);
        for _ in 0..20 {
            let before = sticky.partition();
            assert!((0..3).contains(&before));
            sticky.next_batch(3);
            assert_ne!(sticky.partition(), before);
        }
        let mut single = Sticky::new(1);
        single.next_batch(1);
        assert_eq!(single.partition(), 0);
    }
}
