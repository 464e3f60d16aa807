//! The cases: how many clients, which operations in which mix, which keys.
//! Pure: no I/O, so the key choice and op mix are tested directly.

use rand::Rng;
use rand_distr::{Distribution, Zipf};

use crate::kv::{Read, Target};

/// One benchmark case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    /// Puts of uniform random keys, from this many clients.
    Write(usize),
    /// Linearizable gets of uniform random keys, from this many clients.
    ReadLin(usize),
    /// Stale (Atoll) / serializable (etcd) gets, from this many clients.
    ReadStale(usize),
    /// YCSB workload A: 50 % reads, 50 % updates, zipfian keys, 64 clients.
    YcsbA,
    /// YCSB workload B: 95 % reads, 5 % updates, zipfian keys, 64 clients.
    YcsbB,
}

/// One operation a worker issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Get(Read),
}

/// Every case, in the order the script runs them.
pub const ALL: [Case; 7] = [
    Case::Write(1),
    Case::Write(64),
    Case::Write(256),
    Case::ReadLin(64),
    Case::ReadStale(64),
    Case::YcsbA,
    Case::YcsbB,
];

impl Case {
    pub fn name(self) -> String {
        match self {
            Case::Write(n) => format!("write-{n}"),
            Case::ReadLin(n) => format!("read-lin-{n}"),
            Case::ReadStale(n) => format!("read-stale-{n}"),
            Case::YcsbA => "ycsb-a".into(),
            Case::YcsbB => "ycsb-b".into(),
        }
    }

    /// A case of [`ALL`] by name, or `write-N`, `read-lin-N`,
    /// `read-stale-N` for any other number of clients (not in the default
    /// run; for a look between 1 and 64).
    pub fn parse(name: &str) -> Option<Case> {
        let clients = |prefix: &str| -> Option<usize> {
            let n: usize = name.strip_prefix(prefix)?.parse().ok()?;
            (n > 0).then_some(n)
        };
        ALL.into_iter()
            .find(|c| c.name() == name)
            .or_else(|| clients("write-").map(Case::Write))
            .or_else(|| clients("read-lin-").map(Case::ReadLin))
            .or_else(|| clients("read-stale-").map(Case::ReadStale))
    }

    pub fn clients(self) -> usize {
        match self {
            Case::Write(n) | Case::ReadLin(n) | Case::ReadStale(n) => n,
            Case::YcsbA | Case::YcsbB => 64,
        }
    }

    /// Where etcd connections point in this case.
    pub fn etcd_target(self) -> Target {
        match self {
            Case::ReadStale(_) => Target::All,
            Case::Write(_) | Case::ReadLin(_) | Case::YcsbA | Case::YcsbB => Target::Leader,
        }
    }

    /// Percentage of operations that are puts.
    fn put_percent(self) -> u32 {
        match self {
            Case::Write(_) => 100,
            Case::ReadLin(_) | Case::ReadStale(_) => 0,
            Case::YcsbA => 50,
            Case::YcsbB => 5,
        }
    }

    fn zipfian(self) -> bool {
        match self {
            Case::YcsbA | Case::YcsbB => true,
            Case::Write(_) | Case::ReadLin(_) | Case::ReadStale(_) => false,
        }
    }

    /// The key chooser of this case over `keys` preloaded keys.
    pub fn keys(self, keys: u64) -> KeyChooser {
        if self.zipfian() {
            KeyChooser::zipfian(keys)
        } else {
            KeyChooser::Uniform(keys)
        }
    }

    /// The next operation.
    pub fn next_op(self, rng: &mut impl Rng) -> Op {
        if rng.gen_range(0..100) < self.put_percent() {
            Op::Put
        } else if matches!(self, Case::ReadStale(_)) {
            Op::Get(Read::Stale)
        } else {
            Op::Get(Read::Linearizable)
        }
    }
}

/// YCSB's zipfian constant.
const ZIPF_THETA: f64 = 0.99;

/// Picks key indexes in `0..n`.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    Uniform(u64),
    /// YCSB's "scrambled zipfian": zipfian ranks, hashed so the hot keys are
    /// spread over the key space rather than clustered at its start.
    Zipfian {
        n: u64,
        zipf: Zipf<f64>,
    },
}

impl KeyChooser {
    pub fn zipfian(n: u64) -> KeyChooser {
        let zipf = Zipf::new(n.max(1), ZIPF_THETA).expect("n >= 1 and theta > 0");
        KeyChooser::Zipfian { n: n.max(1), zipf }
    }

    pub fn pick(&self, rng: &mut impl Rng) -> u64 {
        match self {
            KeyChooser::Uniform(n) => rng.gen_range(0..(*n).max(1)),
            KeyChooser::Zipfian { n, zipf } => {
                // Zipf samples ranks 1..=n as floats.
                let rank = zipf.sample(rng) as u64 - 1;
                fnv1a(rank) % n
            }
        }
    }
}

fn fnv1a(x: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in x.to_le_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The key of index `i`: `key` and 8 digits, 11 bytes, in key order.
pub fn key(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

/// A value of `size` bytes, different per `seed`.
pub fn value(size: usize, seed: u64) -> Vec<u8> {
    let mut x = fnv1a(seed) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn every_case_name_parses_back_to_itself() {
        for case in ALL {
            assert_eq!(Case::parse(&case.name()), Some(case));
        }
        assert_eq!(Case::parse("write-4"), Some(Case::Write(4)));
        assert_eq!(Case::parse("write-0"), None);
        assert_eq!(Case::parse("write-x"), None);
        assert_eq!(Case::parse("read-2"), None);
        assert_eq!(Case::parse("read-lin-1"), Some(Case::ReadLin(1)));
        assert_eq!(Case::parse("read-stale-8"), Some(Case::ReadStale(8)));
        assert_eq!(Case::parse("read-stale-0"), None);
    }

    #[test]
    fn op_mix_follows_the_case() {
        let mut rng = StdRng::seed_from_u64(7);
        let puts = |case: Case, rng: &mut StdRng| {
            (0..10_000).filter(|_| case.next_op(rng) == Op::Put).count()
        };
        assert_eq!(puts(Case::Write(1), &mut rng), 10_000);
        assert_eq!(puts(Case::ReadLin(64), &mut rng), 0);
        let a = puts(Case::YcsbA, &mut rng);
        assert!((4_500..5_500).contains(&a), "{a}");
        let b = puts(Case::YcsbB, &mut rng);
        assert!((300..700).contains(&b), "{b}");
        assert_eq!(Case::ReadStale(64).next_op(&mut rng), Op::Get(Read::Stale));
    }

    #[test]
    fn zipfian_keys_stay_in_range_and_are_skewed() {
        let mut rng = StdRng::seed_from_u64(1);
        let chooser = KeyChooser::zipfian(100_000);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..100_000 {
            let k = chooser.pick(&mut rng);
            assert!(k < 100_000);
            *counts.entry(k).or_insert(0u32) += 1;
        }
        let hottest = counts.values().max().copied().unwrap_or(0);
        // Uniform would give ~1 hit per key; zipf(0.99) gives its top key
        // several percent of all picks.
        assert!(hottest > 2_000, "hottest key got {hottest} picks");
    }

    #[test]
    fn keys_sort_like_their_indexes_and_values_have_the_size() {
        assert!(key(9) < key(10));
        assert_eq!(key(42), b"key00000042");
        assert_eq!(value(256, 3).len(), 256);
        assert_ne!(value(16, 1), value(16, 2));
    }
}
