//! Flight-recorder mode: the agent keeps the most recent raw pages of each
//! CPU in memory, bounded by age and by bytes, and ships nothing until the
//! relay asks for a snapshot. A snapshot's pages then go to the relay on a
//! connection of their own, as a session named after the snapshot, so the
//! relay stores them like any trace.
//!
//! The ring is pure data (no I/O); [`send_snapshot`] does the sending.

use crate::error::AgentError;
use crate::metadata::MetadataState;
use crate::outbox::Outbox;
use crate::sender::{SenderConfig, SenderStats};
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;
use strata_ftrace::{Page, PageLayout};
use strata_wire::{
    Compression, ControlResult, Message, PageBatch, Statedump, ThreadRow, PROTOCOL_VERSION,
};

/// How the flight recorder bounds its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlightOptions {
    /// Pages older than this (by their newest event) are dropped.
    pub keep: Duration,
    /// The most page bytes held, all CPUs together; past it the oldest
    /// pages go first.
    pub max_bytes: usize,
}

impl Default for FlightOptions {
    fn default() -> Self {
        FlightOptions {
            keep: Duration::from_secs(30),
            max_bytes: 64 << 20,
        }
    }
}

/// One held page and the time span of its events (trace clock).
#[derive(Debug)]
struct Held {
    first: u64,
    last: u64,
    data: Vec<u8>,
}

/// The recent pages of every CPU; see the module docs.
#[derive(Debug)]
pub struct FlightRing {
    opts: FlightOptions,
    cpus: Vec<VecDeque<Held>>,
    bytes: usize,
    /// Buffers of dropped pages, reused for new ones: no allocation per
    /// page once the ring is full.
    spare: Vec<Vec<u8>>,
    dropped_pages: u64,
}

/// The time span of a page's events, `(first, last)`; `None` for a page
/// whose header does not parse or that holds no event.
pub fn page_span(layout: &PageLayout, bytes: &[u8]) -> Option<(u64, u64)> {
    let page = Page::parse(layout, bytes).ok()?;
    let mut first = None;
    let mut last = page.timestamp();
    for r in page.records() {
        let Ok(r) = r else { break };
        first.get_or_insert(r.ts);
        last = last.max(r.ts);
    }
    Some((first.unwrap_or(page.timestamp()), last))
}

impl FlightRing {
    /// An empty ring for CPUs `0..=max_cpu`.
    pub fn new(max_cpu: u32, opts: FlightOptions) -> FlightRing {
        FlightRing {
            opts,
            cpus: (0..=max_cpu).map(|_| VecDeque::new()).collect(),
            bytes: 0,
            spare: Vec::new(),
            dropped_pages: 0,
        }
    }

    /// Page bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Pages held now.
    pub fn pages(&self) -> usize {
        self.cpus.iter().map(VecDeque::len).sum()
    }

    /// Pages dropped so far (too old, or over the size cap).
    pub fn dropped_pages(&self) -> u64 {
        self.dropped_pages
    }

    /// Adds a page of `cpu` whose events span `first..=last`, then drops
    /// what exceeds the size cap. Pages of an unknown CPU are ignored.
    pub fn push(&mut self, cpu: u32, first: u64, last: u64, page: &[u8]) {
        if cpu as usize >= self.cpus.len() || page.len() > self.opts.max_bytes {
            return;
        }
        let mut data = self.spare.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(page);
        self.bytes += data.len();
        if let Some(q) = self.cpus.get_mut(cpu as usize) {
            q.push_back(Held { first, last, data });
        }
        while self.bytes > self.opts.max_bytes {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    fn drop_oldest(&mut self) -> bool {
        let oldest = self
            .cpus
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|h| (h.first, i)))
            .min();
        let Some((_, i)) = oldest else {
            return false;
        };
        if let Some(h) = self.cpus.get_mut(i).and_then(VecDeque::pop_front) {
            self.bytes -= h.data.len();
            self.recycle(h.data);
        }
        true
    }

    fn recycle(&mut self, data: Vec<u8>) {
        self.dropped_pages += 1;
        // A few spare buffers are enough: pages come and go one by one.
        if self.spare.len() < 64 {
            self.spare.push(data);
        }
    }

    /// Drops the pages whose newest event is older than `keep` before `now`.
    pub fn prune(&mut self, now: u64) {
        let horizon = now.saturating_sub(self.opts.keep.as_nanos() as u64);
        for i in 0..self.cpus.len() {
            while let Some(h) = self
                .cpus
                .get_mut(i)
                .and_then(|q| q.pop_front_if(|h| h.last < horizon))
            {
                self.bytes -= h.data.len();
                self.recycle(h.data);
            }
        }
    }

    /// The pages, per CPU in time order, that hold any event in
    /// `from..=to`.
    pub fn window(&self, from: u64, to: u64) -> Vec<(u32, Vec<&[u8]>)> {
        self.cpus
            .iter()
            .enumerate()
            .map(|(cpu, q)| {
                let pages = q
                    .iter()
                    .filter(|h| h.last >= from && h.first <= to)
                    .map(|h| h.data.as_slice())
                    .collect();
                (cpu as u32, pages)
            })
            .filter(|(_, p): &(u32, Vec<&[u8]>)| !p.is_empty())
            .collect()
    }
}

/// A snapshot ready to send: its pages, copied out of the ring.
#[derive(Debug)]
pub struct SnapshotData {
    /// The relay's request id, answered when the snapshot is stored.
    pub request: u64,
    /// The snapshot id, used as the session name.
    pub name: String,
    /// The time (trace clock) the process table, read when sending, is
    /// filed at: the start of the window, so every event finds its names.
    pub statedump_ts: u64,
    /// Per CPU, its pages in time order.
    pub pages: Vec<(u32, Vec<Vec<u8>>)>,
}

/// Sends `snap` to the relay on a connection of its own, as session
/// `snap.name` of the same host, waits until the relay acknowledged it, and
/// then answers the request on the main connection's `main` outbox. Runs
/// in a thread so that recording goes on meanwhile.
pub fn send_snapshot(
    link: SenderConfig,
    metadata: MetadataState,
    layout: strata_ftrace::PageLayout,
    snap: SnapshotData,
    main: Outbox,
) {
    let request = snap.request;
    let result = send_snapshot_inner(link, metadata, layout, snap);
    let (ok, message) = match result {
        Ok(m) => (true, m),
        Err(e) => (false, format!("the snapshot could not be sent: {e}")),
    };
    let frame = Message::ControlResult(ControlResult {
        request,
        ok,
        message,
    })
    .encode(0, Compression::None);
    if let Ok(f) = frame {
        main.push_unsequenced(f);
    }
}

fn send_snapshot_inner(
    mut link: SenderConfig,
    metadata: MetadataState,
    layout: strata_ftrace::PageLayout,
    snap: SnapshotData,
) -> Result<String, AgentError> {
    let bytes: usize = snap
        .pages
        .iter()
        .flat_map(|(_, p)| p.iter().map(Vec::len))
        .sum();
    let npages: usize = snap.pages.iter().map(|(_, p)| p.len()).sum();
    let outbox = Outbox::new(bytes + (8 << 20), None).map_err(|source| AgentError::Io {
        what: "cannot create an eventfd for",
        path: "the snapshot sender".into(),
        source,
    })?;
    outbox.set_layout(layout);
    link.session = snap.name.clone();
    link.instance = crate::random_u64();
    link.final_ack_wait = Duration::from_secs(30);
    link.quiet = true;
    let compression = link.compression;
    let ts = snap.statedump_ts;
    let rows: Vec<ThreadRow> = strata_store::statedump::collect(std::path::Path::new("/proc"))
        .iter()
        .map(crate::thread_row)
        .collect();
    outbox.push_message(
        &Message::Statedump(Statedump {
            ts,
            part: 0,
            last: true,
            threads: rows,
        }),
        compression,
    )?;
    for (cpu, pages) in &snap.pages {
        let mut batch = PageBatch::new(*cpu);
        for p in pages {
            batch.push(p)?;
            if batch.body_len() >= 1 << 20 {
                outbox.push_with(|seq| batch.seal(seq, compression))?;
            }
        }
        if !batch.is_empty() {
            outbox.push_with(|seq| batch.seal(seq, compression))?;
        }
    }
    outbox.close();
    let last = outbox.last_seq();
    let (ctl_tx, _ctl_rx) = mpsc::channel();
    let stats = Arc::new(Mutex::new(SenderStats::default()));
    let abort = Arc::new(AtomicBool::new(false));
    crate::sender::run(
        link,
        outbox.clone(),
        Arc::new(Mutex::new(metadata)),
        ctl_tx,
        stats,
        abort,
    )?;
    if outbox.acked() < last {
        return Err(AgentError::Config(format!(
            "the relay acknowledged {} of {last} frames (protocol {PROTOCOL_VERSION})",
            outbox.acked()
        )));
    }
    Ok(format!(
        "snapshot {} stored: {npages} pages, {bytes} bytes",
        snap.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(max_bytes: usize) -> FlightRing {
        FlightRing::new(
            1,
            FlightOptions {
                keep: Duration::from_nanos(1000),
                max_bytes,
            },
        )
    }

    #[test]
    fn prunes_by_age() {
        let mut r = ring(1 << 20);
        r.push(0, 100, 200, &[1; 10]);
        r.push(1, 150, 900, &[2; 10]);
        r.push(0, 300, 1500, &[3; 10]);
        r.prune(2000);
        // Horizon 1000: only the page ending at 1500 stays.
        assert_eq!(r.pages(), 1);
        assert_eq!(r.bytes(), 10);
        assert_eq!(r.dropped_pages(), 2);
    }

    #[test]
    fn caps_bytes_dropping_oldest_first() {
        let mut r = ring(25);
        r.push(1, 10, 20, &[1; 10]);
        r.push(0, 30, 40, &[2; 10]);
        r.push(0, 50, 60, &[3; 10]);
        assert_eq!(r.bytes(), 20);
        let w = r.window(0, u64::MAX);
        assert_eq!(w.len(), 1, "CPU 1's older page went first");
        assert_eq!(w[0].0, 0);
        assert_eq!(w[0].1, vec![&[2u8; 10][..], &[3u8; 10][..]]);
    }

    #[test]
    fn window_selects_overlapping_pages() {
        let mut r = ring(1 << 20);
        r.push(0, 10, 20, &[1]);
        r.push(0, 21, 40, &[2]);
        r.push(0, 41, 60, &[3]);
        let w = r.window(25, 45);
        assert_eq!(w[0].1, vec![&[2u8][..], &[3u8][..]]);
        assert!(r.window(61, 100).is_empty());
        // Unknown CPUs and oversized pages are ignored, not a panic.
        r.push(9, 1, 2, &[1]);
        assert_eq!(r.pages(), 3);
    }
}
