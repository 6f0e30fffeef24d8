//! Child processes that are stopped and reaped whatever happens: each runs in
//! its own process group, and dropping the guard ends the group.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A child process that is ended (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Starts `cmd` in a new process group.
    pub fn spawn(name: &str, cmd: &mut Command) -> anyhow::Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        let child = cmd
            .process_group(0)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {name}: {e}"))?;
        Ok(ChildGuard {
            name: name.to_string(),
            child: Some(child),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Whether it has exited (reaping it if so).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut() {
            None => true,
            Some(c) => !matches!(c.try_wait(), Ok(None)),
        }
    }

    /// Sends `signal` to the process and waits up to `grace` for it to exit;
    /// then kills its whole group. Returns whether it exited by itself.
    pub fn stop(&mut self, signal: i32, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let pid = child.id() as i32;
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, signal) };
        }
        let deadline = Instant::now() + grace;
        let mut clean = false;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                clean = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: the group was created for this child; ending what is left
        // of it (helpers it started) cannot touch other processes.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = child.wait();
        if !clean {
            eprintln!("testbed: {} did not stop in {grace:?}; killed", self.name);
        }
        clean
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(libc::SIGTERM, Duration::from_secs(3));
    }
}
