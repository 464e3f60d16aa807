//! `netem` settings the nemesis chooses from: delay with jitter, some loss, some reordering.

use rand::Rng;

use crate::control::faults::Netem;

pub fn pick(rng: &mut impl Rng) -> Netem {
    match rng.gen_range(0..3) {
        0 => Netem {
            delay_ms: 100,
            jitter_ms: 50,
            loss_percent: 0,
            reorder_percent: 0,
        },
        1 => Netem {
            delay_ms: 20,
            jitter_ms: 10,
            loss_percent: 10,
            reorder_percent: 0,
        },
        _ => Netem {
            delay_ms: 30,
            jitter_ms: 20,
            loss_percent: 2,
            reorder_percent: 25,
        },
    }
}
