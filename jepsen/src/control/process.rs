//! One `atoll-node` process: how it is started (inside its namespace or on loopback), its log
//! file, and the signals the nemeses send it (SIGKILL, SIGTERM, SIGSTOP, SIGCONT).

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::shell;
use super::ControlError;

/// How to start one node; `argv` is everything after the binary.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    /// `host:port` that clients and peers use.
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The network namespace to run in; `None` on loopback.
    pub namespace: Option<String>,
    pub binary: PathBuf,
    pub args: Vec<String>,
    /// More environment (libfaketime's, for the `clock` nemesis).
    pub env: Vec<(String, String)>,
}

/// A node and, while it runs, its process.
#[derive(Debug)]
pub struct NodeProc {
    pub spec: NodeSpec,
    child: Option<Child>,
    paused: bool,
}

impl NodeProc {
    pub fn new(spec: NodeSpec) -> Self {
        NodeProc {
            spec,
            child: None,
            paused: false,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Running (possibly paused): started and not yet reaped.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_)) | Err(_)) => {
                self.child = None;
                self.paused = false;
                false
            }
            None => false,
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Starts the process if it is not running. Output is appended to the node's log. The
    /// process gets its own process group so a Ctrl-C at the terminal reaches only the
    /// harness, which then stops it.
    pub fn start(&mut self) -> Result<(), ControlError> {
        if self.is_running() {
            return Ok(());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.spec.log)
            .map_err(|source| ControlError::Io {
                what: format!("opening log {}", self.spec.log.display()),
                source,
            })?;
        let err = log.try_clone().map_err(|source| ControlError::Io {
            what: "duplicating the log handle".into(),
            source,
        })?;
        let mut cmd = match &self.spec.namespace {
            Some(ns) => {
                // `ip netns exec` execs the binary in place: the child's pid is the node's.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.spec.binary);
                c
            }
            None => Command::new(&self.spec.binary),
        };
        cmd.args(&self.spec.args)
            .env("RUST_LOG", "info,openraft=warn")
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let child = cmd.spawn().map_err(|source| ControlError::Spawn {
            what: format!("{} (node {})", self.spec.binary.display(), self.spec.id),
            source,
        })?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// SIGKILL and reap: nothing of the node's shutdown path runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGTERM (graceful), then SIGKILL if it has not exited within `grace`.
    pub fn stop(&mut self, grace: Duration) {
        let Some(pid) = self.pid() else { return };
        if self.paused {
            let _ = shell::signal(pid, "CONT");
        }
        let _ = shell::signal(pid, "TERM");
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if !self.is_running() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    /// SIGSTOP: the process freezes with its sockets open.
    pub fn pause(&mut self) -> Result<(), ControlError> {
        if let Some(pid) = self.pid() {
            shell::signal(pid, "STOP")?;
            self.paused = true;
        }
        Ok(())
    }

    /// SIGCONT.
    pub fn resume(&mut self) -> Result<(), ControlError> {
        if let Some(pid) = self.pid() {
            shell::signal(pid, "CONT")?;
        }
        self.paused = false;
        Ok(())
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}
