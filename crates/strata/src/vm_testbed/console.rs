//! Times each guest's workload on the host's clock, from the progress lines
//! its init prints on the console, so that analyses of the host trace can
//! pick the period when every guest was running its workload.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// The init's line when the workload starts (`... workload cpu started`).
const STARTED: &str = "strata-guest: workload ";
/// The init's line when it has stopped the workload.
const STOPPED: &str = "strata-guest: workload stopped";

/// What a console shows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The workload has started.
    pub started: bool,
    /// The workload has been stopped.
    pub stopped: bool,
}

/// Reads the progress lines of a console log.
pub fn progress(text: &str) -> Progress {
    let mut p = Progress::default();
    for l in text.lines().map(str::trim) {
        if l == STOPPED {
            p.stopped = true;
        } else if l.starts_with(STARTED) && l.ends_with(" started") {
            p.started = true;
        }
    }
    p
}

/// When (ns since the epoch, host clock) a guest's console first showed
/// its workload start and stop: late by at most one poll period.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WorkloadTimes {
    /// The workload started.
    pub begin_ns: Option<u64>,
    /// The workload was stopped.
    pub end_ns: Option<u64>,
}

/// Polls one console log.
#[derive(Debug)]
pub struct ConsoleWatch {
    path: PathBuf,
    /// What was seen so far.
    pub times: WorkloadTimes,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl ConsoleWatch {
    /// Watches `path` (which may not exist yet).
    pub fn new(path: PathBuf) -> ConsoleWatch {
        ConsoleWatch {
            path,
            times: WorkloadTimes::default(),
        }
    }

    /// Reads the log again and stamps what newly appeared.
    pub fn poll(&mut self) {
        if self.times.end_ns.is_some() {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return;
        };
        let p = progress(&text);
        let now = now_ns();
        if p.started && self.times.begin_ns.is_none() {
            self.times.begin_ns = Some(now);
        }
        if p.stopped {
            self.times.end_ns = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress("booting\nstrata-guest: up name=g0\n"),
            Progress::default()
        );
        let started = "strata-guest: up\nstrata-guest: workload cpu started\nstrata-sync 1 2 3\n";
        assert_eq!(
            progress(started),
            Progress {
                started: true,
                stopped: false
            }
        );
        let both = format!("{started}strata-guest: workload stopped\r\n");
        assert_eq!(
            progress(&both),
            Progress {
                started: true,
                stopped: true
            }
        );
    }
}
