//! `lazyfs BACKING MOUNTPOINT`: mounts the power-loss layer ([`atoll_jepsen::lazyfs`]) for use
//! from the shell. SIGUSR1 cuts the power (drops every un-synced write); SIGTERM or Ctrl-C
//! unmounts and exits. Prints one line per event on stdout, starting with `mounted`.

use std::path::PathBuf;
use std::process::ExitCode;

use atoll_jepsen::lazyfs::LazyMount;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [backing, mountpoint] = args.as_slice() else {
        eprintln!(
            "usage: lazyfs BACKING MOUNTPOINT\n\
             \x20 SIGUSR1: cut the power (drop every write not fsync'ed)\n\
             \x20 SIGTERM, SIGINT: unmount and exit"
        );
        return ExitCode::from(2);
    };
    // Register before mounting so that no signal finds the default action.
    let mut signals = match Signals::new([SIGUSR1, SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("lazyfs: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let layer = match LazyMount::mount(backing, mountpoint) {
        Ok(layer) => layer,
        Err(e) => {
            eprintln!("lazyfs: cannot mount {}: {e}", mountpoint.display());
            return ExitCode::FAILURE;
        }
    };
    println!("mounted {} on {}", backing.display(), mountpoint.display());
    for signal in signals.forever() {
        if signal == SIGUSR1 {
            let lost = layer.cut_power();
            println!(
                "power cut: dropped {} bytes in {} files",
                lost.bytes, lost.files
            );
        } else {
            break;
        }
    }
    match layer.unmount() {
        Ok(()) => {
            println!("unmounted");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lazyfs: unmount failed: {e}");
            ExitCode::FAILURE
        }
    }
}
