//! Partition shapes, as the set of links to cut (pure: tested without a cluster).
//!
//! - `halves`: two random halves;
//! - `majority-minority`: a random minority cut off from the rest;
//! - `isolate-leader`: the leader alone (a random node if no leader is known);
//! - `bridge`: two halves that only one node (the bridge) still connects;
//! - `ring`: each node reaches only its two neighbours in a random ring.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::Rng;

pub const SHAPES: [&str; 5] = [
    "halves",
    "majority-minority",
    "isolate-leader",
    "bridge",
    "ring",
];

/// Links are `(a, b)` with `a < b`.
pub type Cut = BTreeSet<(u64, u64)>;

fn link(a: u64, b: u64) -> (u64, u64) {
    (a.min(b), a.max(b))
}

/// Every link between `left` and `right`.
pub fn between(left: &[u64], right: &[u64]) -> Cut {
    left.iter()
        .flat_map(|&a| right.iter().map(move |&b| link(a, b)))
        .filter(|(a, b)| a != b)
        .collect()
}

/// The links to cut for `shape`, and a description of the groups.
pub fn shape(shape: &str, nodes: &[u64], leader: Option<u64>, rng: &mut impl Rng) -> (Cut, String) {
    let mut shuffled = nodes.to_vec();
    shuffled.shuffle(rng);
    let n = shuffled.len();
    match shape {
        "halves" => {
            let (a, b) = shuffled.split_at(n / 2);
            (between(a, b), format!("halves {a:?} | {b:?}"))
        }
        "majority-minority" => {
            let minority = rng.gen_range(1..=((n - 1) / 2).max(1));
            let (a, b) = shuffled.split_at(minority);
            (between(a, b), format!("minority {a:?} | majority {b:?}"))
        }
        "isolate-leader" => {
            let l = leader.unwrap_or(shuffled[0]);
            let rest: Vec<u64> = nodes.iter().copied().filter(|&x| x != l).collect();
            (
                between(&[l], &rest),
                format!("leader {l} isolated from {rest:?}"),
            )
        }
        "bridge" => {
            let bridge = shuffled[0];
            let rest = &shuffled[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            (
                between(a, b),
                format!("{a:?} | {b:?}, both reach bridge {bridge}"),
            )
        }
        _ => {
            // ring: cut every link except between neighbours.
            let mut keep = BTreeSet::new();
            for i in 0..n {
                keep.insert(link(shuffled[i], shuffled[(i + 1) % n]));
            }
            let all = between(&shuffled, &shuffled);
            (
                all.difference(&keep).copied().collect(),
                format!("ring {shuffled:?}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn halves_cut_every_link_across_and_none_within() {
        let (cut, _) = shape("halves", &[1, 2, 3, 4, 5], None, &mut rng());
        assert_eq!(cut.len(), 2 * 3);
    }

    #[test]
    fn isolate_leader_cuts_exactly_the_leaders_links() {
        let (cut, _) = shape("isolate-leader", &[1, 2, 3], Some(2), &mut rng());
        assert_eq!(cut, BTreeSet::from([(1, 2), (2, 3)]));
    }

    #[test]
    fn bridge_leaves_the_bridge_connected_to_everyone() {
        let (cut, desc) = shape("bridge", &[1, 2, 3, 4, 5], None, &mut rng());
        assert_eq!(cut.len(), 4, "{desc}");
        let cut_nodes: BTreeSet<u64> = cut.iter().flat_map(|&(a, b)| [a, b]).collect();
        assert_eq!(cut_nodes.len(), 4, "the bridge has no cut link: {desc}");
    }

    #[test]
    fn ring_keeps_two_links_per_node() {
        let nodes = [1, 2, 3, 4, 5];
        let (cut, _) = shape("ring", &nodes, None, &mut rng());
        // 10 links in a full mesh of 5, 5 kept.
        assert_eq!(cut.len(), 5);
    }

    #[test]
    fn majority_minority_leaves_a_majority_together() {
        let (cut, _) = shape("majority-minority", &[1, 2, 3], None, &mut rng());
        assert_eq!(cut.len(), 2);
    }
}
