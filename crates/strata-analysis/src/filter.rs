//! Which threads and CPUs an analysis counts (`--tid`, `--proc`, `--cpu`).

use crate::event::Tid;
use crate::state::{Idents, Serial};

/// Thread and CPU selection. An empty list selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Thread ids to keep.
    pub tids: Vec<Tid>,
    /// Names to keep: a thread is kept when its own name or its process's
    /// (its main thread's) name is in the list.
    pub procs: Vec<String>,
    /// CPUs to keep.
    pub cpus: Vec<u32>,
}

impl Filter {
    /// Whether events on `cpu` count.
    #[inline]
    pub fn cpu_ok(&self, cpu: u32) -> bool {
        self.cpus.is_empty() || self.cpus.contains(&cpu)
    }

    /// Whether thread `s` counts. The idle task (tid 0) never does.
    #[inline]
    pub fn thread_ok(&self, ids: &Idents, s: Serial) -> bool {
        let Some(id) = ids.get(s) else { return false };
        if id.tid == 0 {
            return false;
        }
        if !self.tids.is_empty() && !self.tids.contains(&id.tid) {
            return false;
        }
        if !self.procs.is_empty() {
            let own = id.comm.as_bytes();
            let process = ids.process_comm(s).map(|c| c.as_bytes()).unwrap_or(own);
            return self
                .procs
                .iter()
                .any(|p| p.as_bytes() == own || p.as_bytes() == process);
        }
        true
    }

    /// Whether a thread filter is set.
    pub fn has_thread_filter(&self) -> bool {
        !self.tids.is_empty() || !self.procs.is_empty()
    }
}
