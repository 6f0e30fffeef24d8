//! Exact lost-event accounting per CPU.
//!
//! A page header either says how many events were lost before it, or only
//! that some were (when the count did not fit in the page). The kernel's
//! per-CPU counters (`overrun + commit overrun + dropped`) always know the
//! total, so an uncounted loss is charged with the difference between that
//! total and what was already charged. Totals then equal the kernel's; a loss
//! read early may be charged to a slightly earlier packet than the one it
//! preceded.

use strata_ftrace::PageError;

/// Lost and unreadable data per CPU for one recording.
#[derive(Debug, Default)]
pub struct LossTracker {
    charged: Vec<u64>,
    corrupt_pages: Vec<u64>,
}

impl LossTracker {
    /// A tracker for CPUs `0..cpus`.
    pub fn new(cpus: u32) -> Self {
        LossTracker {
            charged: vec![0; cpus as usize],
            corrupt_pages: vec![0; cpus as usize],
        }
    }

    fn slot(v: &mut [u64], cpu: u32) -> Option<&mut u64> {
        v.get_mut(cpu as usize)
    }

    /// A page reported `n` lost events: charge them.
    pub fn counted(&mut self, cpu: u32, n: u64) -> u64 {
        if let Some(c) = Self::slot(&mut self.charged, cpu) {
            *c += n;
        }
        n
    }

    /// A page reported a loss without a count; `kernel_total` is the kernel's
    /// count now. Returns what to charge: the part not charged yet.
    pub fn uncounted(&mut self, cpu: u32, kernel_total: Option<u64>) -> Option<u64> {
        self.settle(cpu, kernel_total?)
    }

    /// Charges whatever of `kernel_total` was not charged yet (at the end of
    /// a recording, and for uncounted losses).
    pub fn settle(&mut self, cpu: u32, kernel_total: u64) -> Option<u64> {
        let c = Self::slot(&mut self.charged, cpu)?;
        let new = kernel_total.checked_sub(*c).filter(|&n| n > 0)?;
        *c = kernel_total;
        Some(new)
    }

    /// A page that did not decode; its remaining records are skipped.
    pub fn corrupt_page(&mut self, cpu: u32, err: &PageError) {
        if let Some(c) = Self::slot(&mut self.corrupt_pages, cpu) {
            if *c == 0 {
                eprintln!("strata: warning: cpu {cpu}: undecodable ring-buffer page ({err}); skipping the rest of it");
            }
            *c += 1;
        }
    }

    /// Pages per CPU that did not fully decode.
    pub fn corrupt_pages(&self) -> &[u64] {
        &self.corrupt_pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncounted_losses_take_the_kernel_difference() {
        let mut t = LossTracker::new(2);
        assert_eq!(t.counted(0, 5), 5);
        assert_eq!(t.uncounted(0, Some(12)), Some(7));
        // Nothing new since: the flag's loss was already charged.
        assert_eq!(t.uncounted(0, Some(12)), None);
        assert_eq!(t.uncounted(0, None), None);
        assert_eq!(t.settle(0, 20), Some(8));
        assert_eq!(t.settle(1, 0), None);
        assert_eq!(t.settle(9, 3), None);
    }
}
