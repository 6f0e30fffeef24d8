//! The reorder buffer: events arrive in order per CPU but in batches, so
//! CPUs are merged by time before the state system sees them. An event is
//! released when every CPU that has events waiting has one at least as
//! late (nothing earlier can still come from them), or when it has waited
//! `hold` (a quiet CPU must not stall the others), or when the buffer is
//! full. An event older than one already released is still applied, and
//! counted as late.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::event::LiveEvent;

/// Queue capacity (events) kept however idle a CPU is: small enough not to
/// matter per host, large enough that a steady trickle never reallocates.
const KEEP_CAPACITY: usize = 256;

/// How often, in wall time, queue memory left by bursts is given back.
const TRIM_INTERVAL_NS: i64 = 1_000_000_000;

/// The reorder buffer of one host.
#[derive(Debug)]
pub struct Merger {
    queues: Vec<VecDeque<LiveEvent>>,
    /// Non-empty queues by head time.
    heap: BinaryHeap<Reverse<(i64, u32)>>,
    /// CPUs that ever sent events.
    seen: Vec<bool>,
    seen_count: usize,
    nonempty: usize,
    len: usize,
    cap: usize,
    hold_ns: i64,
    last_released: i64,
    late: u64,
    /// When queue memory was last given back (wall ns).
    last_trim: i64,
}

impl Merger {
    /// A buffer holding events at most `hold_ns` (wall time) and at most
    /// `cap` events.
    pub fn new(hold_ns: i64, cap: usize) -> Merger {
        Merger {
            queues: Vec::new(),
            heap: BinaryHeap::new(),
            seen: Vec::new(),
            seen_count: 0,
            nonempty: 0,
            len: 0,
            cap: cap.max(1),
            hold_ns,
            last_released: i64::MIN,
            late: 0,
            last_trim: i64::MIN,
        }
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether more events wait than the cap: time to drain.
    pub fn is_full(&self) -> bool {
        self.len > self.cap
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Events applied after a later one (their CPU's batch came late).
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Adds one event; `ev.cpu` must be below the state system's CPU limit.
    #[inline]
    pub fn push(&mut self, ev: LiveEvent) {
        let c = ev.cpu as usize;
        if self.queues.len() <= c {
            self.queues.resize_with(c + 1, VecDeque::new);
            self.seen.resize(c + 1, false);
        }
        if !self.seen[c] {
            self.seen[c] = true;
            self.seen_count += 1;
        }
        let q = &mut self.queues[c];
        if q.is_empty() {
            self.heap.push(Reverse((ev.ts, ev.cpu)));
            self.nonempty += 1;
        }
        q.push_back(ev);
        self.len += 1;
    }

    /// Releases, in time order, every event that may go at wall time
    /// `now`; with `all`, every event (end of stream).
    #[inline]
    pub fn drain(&mut self, now: i64, all: bool, apply: impl FnMut(&LiveEvent)) {
        self.release(now, all, apply);
        // Trimming on every drain shrank and regrew the queues at each
        // packet (a third of the relay's ingest cost): once a second is
        // enough to give a burst's memory back.
        if all || now.saturating_sub(self.last_trim) >= TRIM_INTERVAL_NS {
            self.trim();
            self.last_trim = now;
        }
    }

    #[inline]
    fn release(&mut self, now: i64, all: bool, mut apply: impl FnMut(&LiveEvent)) {
        // Once over the cap, events go until half of it is left, so that a
        // full buffer is drained in batches rather than one event per push.
        let floor = if self.len > self.cap {
            self.cap / 2
        } else {
            usize::MAX
        };
        // The earliest queue is drained while its head is no later than
        // the next queue's: one heap operation per run of events from one
        // CPU, not per event (replayed packets bring long runs).
        while let Some(Reverse((_, cpu))) = self.heap.pop() {
            let Some(q) = self.queues.get_mut(cpu as usize) else {
                continue;
            };
            let bound = self.heap.peek().map(|r| r.0 .0);
            loop {
                let Some(head) = q.front() else {
                    self.nonempty -= 1;
                    break;
                };
                if bound.is_some_and(|b| head.ts > b) {
                    self.heap.push(Reverse((head.ts, cpu)));
                    break;
                }
                let ready = all
                    || self.nonempty == self.seen_count
                    || self.len > floor
                    || now.saturating_sub(head.arrived) >= self.hold_ns;
                if !ready {
                    self.heap.push(Reverse((head.ts, cpu)));
                    return;
                }
                let Some(ev) = q.pop_front() else { break };
                self.len -= 1;
                if ev.ts < self.last_released {
                    self.late += 1;
                } else {
                    self.last_released = ev.ts;
                }
                apply(&ev);
            }
        }
    }

    /// Gives back queue memory a burst left behind: a queue keeps at most
    /// twice what it holds (and [`KEEP_CAPACITY`]), so a host's buffer is
    /// bounded by the events waiting now, not by each CPU's largest burst
    /// ever (which, summed over CPUs, was several times the cap).
    fn trim(&mut self) {
        for q in &mut self.queues {
            let keep = (q.len() * 2).max(KEEP_CAPACITY);
            if q.capacity() > keep * 2 {
                q.shrink_to(keep);
            }
        }
    }

    /// Bytes of event storage held (for tests and accounting).
    pub fn capacity_bytes(&self) -> usize {
        self.queues
            .iter()
            .map(|q| q.capacity() * std::mem::size_of::<LiveEvent>())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::event::LiveKind;
    use proptest::prelude::*;

    fn ev(cpu: u32, ts: i64, arrived: i64) -> LiveEvent {
        LiveEvent {
            ts,
            arrived,
            cpu,
            tid: 1,
            kind: LiveKind::Other,
        }
    }

    #[test]
    fn waits_for_a_lagging_cpu_until_hold() {
        let mut m = Merger::new(100, 1000);
        m.push(ev(0, 10, 0));
        m.push(ev(1, 5, 0));
        m.push(ev(0, 20, 0));
        let mut out = Vec::new();
        m.drain(0, false, |e| out.push(e.ts));
        // CPU 1 is empty after 5: 10 and 20 wait for it.
        assert_eq!(out, vec![5]);
        m.push(ev(1, 15, 1));
        m.drain(1, false, |e| out.push(e.ts));
        // Both CPUs have events again: up to CPU 1's last, which empties it.
        assert_eq!(out, vec![5, 10, 15]);
        m.drain(100, false, |e| out.push(e.ts));
        assert_eq!(out, vec![5, 10, 15, 20]);
        assert!(m.is_empty());
        assert_eq!(m.late(), 0);
    }

    #[test]
    fn a_burst_does_not_keep_its_memory() {
        let mut m = Merger::new(i64::MAX, 1000);
        for cpu in 0..8 {
            for t in 0..5000 {
                m.push(ev(cpu, t, 0));
            }
            // Over the cap: this CPU's burst goes out without waiting.
            m.drain(0, false, |_| {});
        }
        m.drain(0, true, |_| {});
        assert!(m.is_empty());
        let held = m.capacity_bytes();
        let per_cpu = 2 * KEEP_CAPACITY * std::mem::size_of::<LiveEvent>();
        assert!(held <= 8 * per_cpu, "{held} bytes held after draining");
    }

    proptest! {
        /// With the whole input buffered, the output is the time-sorted
        /// input, nothing lost or repeated.
        #[test]
        fn full_drain_sorts_per_cpu_sorted_input(mut per_cpu in proptest::collection::vec(proptest::collection::vec(0i64..1000, 0..50), 1..6)) {
            let mut m = Merger::new(i64::MAX, usize::MAX);
            let mut all = Vec::new();
            for (c, v) in per_cpu.iter_mut().enumerate() {
                v.sort();
                for &t in v.iter() {
                    m.push(ev(c as u32, t, 0));
                    all.push(t);
                }
            }
            all.sort();
            let mut out = Vec::new();
            m.drain(0, true, |e| out.push(e.ts));
            prop_assert_eq!(out, all);
            prop_assert_eq!(m.late(), 0);
        }
    }
}
