//! atoll-sim-tests (placeholder)
