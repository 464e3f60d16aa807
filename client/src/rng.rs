//! The client's source of randomness (client ids, backoff jitter). Under
//! `--cfg madsim` it is madsim's seeded RNG, so a simulated run replays
//! exactly from its seed; `rand::thread_rng` would carry state from one
//! simulated run to the next on the same thread.

#[cfg(not(madsim))]
pub fn rng() -> rand::rngs::ThreadRng {
    rand::thread_rng()
}

#[cfg(madsim)]
pub fn rng() -> madsim::rand::GlobalRng {
    madsim::rand::thread_rng()
}
