//! Ctrl-C and SIGTERM: instead of dying with nodes and namespaces left behind, the harness sets
//! a flag, the run stops at its next check, and the drop guards clean up. A second signal
//! while the first is being handled exits at once (after the guards had their chance).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};

/// Set once SIGINT or SIGTERM arrived.
#[derive(Clone, Debug, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Installs the handlers (once per process is enough; more is harmless).
    pub fn install() -> std::io::Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // A second signal after the flag is set terminates (exit code 130 style).
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
            signal_hook::flag::register(sig, Arc::clone(&flag))?;
        }
        Ok(Interrupt(flag))
    }

    /// A flag no signal sets (tests).
    pub fn never() -> Interrupt {
        Interrupt::default()
    }

    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed)
    }
}
