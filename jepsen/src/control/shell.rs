//! Running the system tools the control layer drives (`ip`, `nft`, `iptables`, `tc`, `kill`):
//! one function that runs a command and turns a non-zero exit into a [`ControlError`].

use std::process::Command;

use super::ControlError;

/// Runs `program args...`, waits, and returns its stdout; a failure carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, ControlError> {
    let cmd = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| ControlError::Spawn {
            what: cmd.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(ControlError::Command {
            cmd,
            status: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `program args...` inside network namespace `ns` (`ip netns exec`).
pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String, ControlError> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Whether `program` can be found on `PATH` (or in /usr/sbin, /sbin, where root tools live).
pub fn have(program: &str) -> bool {
    let dirs = std::env::var("PATH").unwrap_or_default();
    let found = dirs
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .any(|d| std::path::Path::new(d).join(program).is_file());
    found
}

/// Sends `signal` (e.g. `"KILL"`, `"STOP"`, `"CONT"`, `"TERM"`) to process `pid`.
pub fn signal(pid: u32, signal: &str) -> Result<(), ControlError> {
    run("kill", &[&format!("-{signal}"), &pid.to_string()]).map(|_| ())
}
