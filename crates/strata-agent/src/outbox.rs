//! The frames the agent produced and the relay has not acknowledged yet:
//! sequence numbers, the bounded memory buffer, the spill to the on-disk
//! spool, and exact accounting of whatever has to be dropped.
//!
//! One producer (the source thread) pushes; one consumer (the sender
//! thread) reads frames to send and applies acks. Frames are kept in
//! sequence order: the oldest in the spool, the newest in memory. When
//! memory passes its limit the oldest frames move to the spool; when the
//! spool passes its limit its oldest segment is deleted, and the events in
//! it become a `Lost` report (cause: spool full) that is sent like any other
//! frame, so the relay learns the exact count.

use crate::spool::{Segment, Spool};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;
use strata_ftrace::{Page, PageLayout};
use strata_wire::{split_frame, Compression, LossCause, Lost, Message, Split, WireError, MAX_BODY};

/// Counters of what went through the outbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Sequenced frames pushed.
    pub frames: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Frames moved to the spool.
    pub spooled_frames: u64,
    /// Frames dropped (spool full, or memory full without a spool).
    pub dropped_frames: u64,
    /// Events in the dropped frames.
    pub dropped_events: u64,
    /// Highest sequence number acknowledged.
    pub acked: u64,
    /// Frames held now (memory and spool).
    pub held_frames: u64,
    /// Bytes held in memory now.
    pub memory_bytes: u64,
    /// Bytes held in the spool now.
    pub spool_bytes: u64,
}

/// What is still held unacknowledged: the data a stopping agent would lose
/// if it gave up now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unacked {
    /// Sequenced frames not acknowledged.
    pub frames: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// Trace events in them (records in ring-buffer pages, events in CTF
    /// packets).
    pub events: u64,
    /// Ring-buffer pages or CTF packets in them.
    pub pages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CauseKey {
    Kernel,
    Spool,
    Corrupt,
}

#[derive(Debug, Clone, Copy, Default)]
struct PendingLoss {
    events: u64,
    pages: u64,
    first_seq: u64,
    last_seq: u64,
}

struct Inner {
    next_seq: u64,
    acked: u64,
    /// Highest sequence number handed to the current connection.
    sent_upto: u64,
    mem: VecDeque<(u64, Arc<Vec<u8>>)>,
    mem_bytes: usize,
    mem_max: usize,
    spool: Option<Spool>,
    /// Unsequenced frames (new formats, control results) to send once
    /// every sequenced frame below the tag has been sent.
    unsequenced: VecDeque<(u64, Arc<Vec<u8>>)>,
    /// Losses to report in the next frames pushed.
    pending: BTreeMap<(u32, CauseKey), PendingLoss>,
    layout: Option<PageLayout>,
    stats: OutboxStats,
    /// Set when the producer has pushed its last frame.
    closed: bool,
    spool_error: Option<String>,
    /// Flags that end any wait for acks (the agent is stopping).
    cancel: Vec<Arc<std::sync::atomic::AtomicBool>>,
}

/// The shared outbox. Cheap to clone: it is an `Arc` inside.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<(Mutex<Inner>, Condvar)>,
    wake: Arc<crate::waker::Waker>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Outbox {
    /// An outbox holding at most `mem_max` bytes in memory, spilling to
    /// `spool` (or dropping, without one).
    pub fn new(mem_max: usize, spool: Option<Spool>) -> std::io::Result<Outbox> {
        Ok(Outbox {
            inner: Arc::new((
                Mutex::new(Inner {
                    next_seq: 1,
                    acked: 0,
                    sent_upto: 0,
                    mem: VecDeque::new(),
                    mem_bytes: 0,
                    mem_max: mem_max.max(1),
                    spool,
                    unsequenced: VecDeque::new(),
                    pending: BTreeMap::new(),
                    layout: None,
                    stats: OutboxStats::default(),
                    closed: false,
                    spool_error: None,
                    cancel: Vec::new(),
                }),
                Condvar::new(),
            )),
            wake: Arc::new(crate::waker::Waker::new()?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file descriptor that becomes readable when frames are pushed
    /// (for `poll`), and is drained by [`Outbox::clear_wake`].
    pub fn wake_fd(&self) -> i32 {
        self.wake.fd()
    }

    /// Drains the wake-up descriptor.
    pub fn clear_wake(&self) {
        self.wake.clear();
    }

    /// Adds a flag that, once set, ends any wait of a producer for acks (so
    /// that Ctrl-C is never stuck behind a stalled relay).
    pub fn add_cancel(&self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.lock().cancel.push(flag);
    }

    /// The ring-buffer page layout, so that dropped pages can be counted.
    pub fn set_layout(&self, layout: PageLayout) {
        self.lock().layout = Some(layout);
    }

    /// Notes lost events to report (kernel drops, corrupt pages); they go
    /// out as a `Lost` frame ahead of the next frame pushed, or at
    /// [`Outbox::flush_losses`].
    pub fn note_loss(&self, cpu: u32, cause: LossCause, events: u64, pages: u64) {
        if events == 0 && pages == 0 {
            return;
        }
        let key = match cause {
            LossCause::KernelBuffer => CauseKey::Kernel,
            LossCause::SpoolFull => CauseKey::Spool,
            LossCause::CorruptPage => CauseKey::Corrupt,
        };
        let mut g = self.lock();
        let p = g.pending.entry((cpu, key)).or_default();
        p.events += events;
        p.pages += pages;
    }

    /// Pushes one sequenced message: `encode(seq)` returns its frame bytes.
    /// Pending loss reports are pushed first. Returns the sequence number.
    pub fn push_with(
        &self,
        encode: impl FnOnce(u64) -> Result<Vec<u8>, WireError>,
    ) -> Result<u64, WireError> {
        let mut g = self.lock();
        push_pending_losses(&mut g)?;
        let seq = g.next_seq;
        let frame = encode(seq)?;
        push_frame(&mut g, seq, frame);
        // Over the limit with only frames in flight left to move: wait for
        // acks, or for the connection to end (then they may be dropped).
        while g.mem_bytes > g.mem_max
            && g.sent_upto > g.acked
            && !g
                .cancel
                .iter()
                .any(|c| c.load(std::sync::atomic::Ordering::Relaxed))
        {
            self.wake.wake();
            g = self
                .inner
                .1
                .wait_timeout(g, Duration::from_millis(100))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
            if spill(&mut g) {
                break;
            }
        }
        drop(g);
        self.wake.wake();
        Ok(seq)
    }

    /// Pushes a sequenced message encoded here, with `compression`.
    pub fn push_message(
        &self,
        msg: &Message<'_>,
        compression: Compression,
    ) -> Result<u64, WireError> {
        self.push_with(|seq| msg.encode(seq, compression))
    }

    /// Pushes any pending loss reports now.
    pub fn flush_losses(&self) -> Result<(), WireError> {
        let mut g = self.lock();
        let had = !g.pending.is_empty();
        push_pending_losses(&mut g)?;
        drop(g);
        if had {
            self.wake.wake();
        }
        Ok(())
    }

    /// Queues an unsequenced frame to go out after every sequenced frame
    /// pushed so far (new formats, control results).
    pub fn push_unsequenced(&self, frame: Vec<u8>) {
        let mut g = self.lock();
        let tag = g.next_seq;
        g.unsequenced.push_back((tag, Arc::new(frame)));
        drop(g);
        self.wake.wake();
    }

    /// Marks the producer finished: nothing more will be pushed.
    pub fn close(&self) {
        let mut g = self.lock();
        let _ = push_pending_losses(&mut g);
        g.closed = true;
        drop(g);
        self.wake.wake();
        self.inner.1.notify_all();
    }

    /// Whether the producer is finished.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// The next sequence number to be assigned.
    pub fn next_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// The last sequence number assigned (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.lock().next_seq - 1
    }

    /// The lowest sequence number still held (`next_seq` when none is).
    pub fn oldest(&self) -> u64 {
        let g = self.lock();
        oldest(&g)
    }

    /// Highest sequence number acknowledged.
    pub fn acked(&self) -> u64 {
        self.lock().acked
    }

    /// Applies a cumulative acknowledgement.
    pub fn ack(&self, seq: u64) {
        let mut g = self.lock();
        if seq <= g.acked {
            return;
        }
        g.acked = seq;
        g.stats.acked = seq;
        while g.mem.front().is_some_and(|(s, _)| *s <= seq) {
            if let Some((_, f)) = g.mem.pop_front() {
                g.mem_bytes -= f.len();
            }
        }
        if let Some(sp) = g.spool.as_mut() {
            sp.ack(seq);
        }
        drop(g);
        self.inner.1.notify_all();
    }

    /// For producers that can wait (a replay): blocks while memory is past
    /// its limit and there is no spool to spill to, so that nothing has to
    /// be dropped, until acks make room for `need` more bytes or
    /// `cancelled()` says to give up. With a spool it returns at once:
    /// frames spill as usual.
    pub fn wait_for_room(&self, need: usize, cancelled: impl Fn() -> bool) {
        let mut g = self.lock();
        while g.spool.is_none() && g.mem_bytes > 0 && g.mem_bytes + need > g.mem_max && !cancelled()
        {
            g = self
                .inner
                .1
                .wait_timeout(g, Duration::from_millis(50))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Waits until everything up to `seq` is acknowledged, or `timeout`.
    pub fn wait_acked(&self, seq: u64, timeout: Duration) -> bool {
        let g = self.lock();
        let (g, _) = self
            .inner
            .1
            .wait_timeout_while(g, timeout, |g| g.acked < seq)
            .unwrap_or_else(|p| p.into_inner());
        g.acked >= seq
    }

    /// The first held frame with a sequence number at or above `seq`, from
    /// the spool or memory.
    pub fn frame_at_or_after(&self, seq: u64) -> std::io::Result<Option<(u64, Arc<Vec<u8>>)>> {
        let g = self.lock();
        if let Some(sp) = g.spool.as_ref() {
            if sp.last_seq().is_some_and(|l| l >= seq) {
                return Ok(sp.frame_at_or_after(seq)?.map(|(s, b)| (s, Arc::new(b))));
            }
        }
        let i = g.mem.partition_point(|(s, _)| *s < seq);
        Ok(g.mem.get(i).map(|(s, f)| (*s, Arc::clone(f))))
    }

    /// [`Outbox::frame_at_or_after`] for the sender: the frame returned
    /// counts as in flight from now on, so it is never dropped (and reported
    /// lost) while the relay may store it.
    pub fn next_to_send(&self, seq: u64) -> std::io::Result<Option<(u64, Arc<Vec<u8>>)>> {
        let next = self.frame_at_or_after(seq)?;
        if let Some((s, _)) = &next {
            let mut g = self.lock();
            g.sent_upto = g.sent_upto.max(*s);
        }
        Ok(next)
    }

    /// The connection ended: frames sent on it and not acknowledged are no
    /// longer in flight (they will be resent, or may now be dropped).
    pub fn connection_lost(&self) {
        let mut g = self.lock();
        g.sent_upto = g.acked;
        drop(g);
        self.inner.1.notify_all();
    }

    /// Unsequenced frames whose turn has come once every sequenced frame
    /// below `next_to_send` has been sent.
    pub fn take_unsequenced(&self, next_to_send: u64) -> Vec<Arc<Vec<u8>>> {
        let mut g = self.lock();
        let mut out = Vec::new();
        while g
            .unsequenced
            .front()
            .is_some_and(|(tag, _)| *tag <= next_to_send)
        {
            if let Some((_, f)) = g.unsequenced.pop_front() {
                out.push(f);
            }
        }
        out
    }

    /// Forgets queued unsequenced frames: a new connection sends the full
    /// metadata, which includes them.
    pub fn drop_unsequenced(&self) {
        self.lock().unsequenced.clear();
    }

    /// The counters now.
    pub fn stats(&self) -> OutboxStats {
        let g = self.lock();
        let mut s = g.stats;
        s.held_frames = g.mem.len() as u64 + g.spool.as_ref().map_or(0, |s| s.frames() as u64);
        s.memory_bytes = g.mem_bytes as u64;
        s.spool_bytes = g.spool.as_ref().map_or(0, Spool::bytes);
        s
    }

    /// Counts what is held and not acknowledged (memory and spool), by
    /// decoding each frame: exact, but meant for the end of a run.
    pub fn unacked(&self) -> Unacked {
        let (from, last, layout) = {
            let g = self.lock();
            (g.acked + 1, g.next_seq - 1, g.layout)
        };
        let mut u = Unacked::default();
        let mut seq = from;
        let mut scratch = Vec::new();
        while seq <= last {
            let Ok(Some((s, frame))) = self.frame_at_or_after(seq) else {
                break;
            };
            u.frames += 1;
            u.bytes += frame.len() as u64;
            let (events, pages) = frame_contents(layout.as_ref(), &frame, &mut scratch);
            u.events += events;
            u.pages += pages;
            seq = s + 1;
        }
        u
    }

    /// The first spool write error, if any (the spool is then bypassed and
    /// frames that do not fit in memory are dropped and counted).
    pub fn spool_error(&self) -> Option<String> {
        self.lock().spool_error.clone()
    }
}

fn oldest(g: &Inner) -> u64 {
    let held = g
        .spool
        .as_ref()
        .and_then(Spool::first_seq)
        .or_else(|| g.mem.front().map(|(s, _)| *s))
        .unwrap_or(g.next_seq);
    // A partly acknowledged spool segment stays on disk until all of it is.
    held.max(g.acked + 1).min(g.next_seq)
}

fn push_pending_losses(g: &mut Inner) -> Result<(), WireError> {
    // Pushing a report can spill older frames, and dropping them adds new
    // pending losses (or re-adds a dropped report's): repeat until none is
    // left. Each round pushes at most one report per CPU and cause, and the
    // newest frame always stays in memory, so this ends quickly; the bound
    // only guards against a bug.
    for _ in 0..64 {
        if g.pending.is_empty() {
            break;
        }
        let pending = std::mem::take(&mut g.pending);
        for ((cpu, cause), p) in pending {
            let seq = g.next_seq;
            let msg = Message::Lost(Lost {
                cpu,
                cause: match cause {
                    CauseKey::Kernel => LossCause::KernelBuffer,
                    CauseKey::Spool => LossCause::SpoolFull,
                    CauseKey::Corrupt => LossCause::CorruptPage,
                },
                events: p.events,
                pages: p.pages,
                first_seq: p.first_seq,
                last_seq: p.last_seq,
            });
            let frame = msg.encode(seq, Compression::None)?;
            push_frame(g, seq, frame);
        }
    }
    Ok(())
}

fn push_frame(g: &mut Inner, seq: u64, frame: Vec<u8>) {
    g.next_seq = seq + 1;
    g.stats.frames += 1;
    g.stats.bytes += frame.len() as u64;
    g.mem_bytes += frame.len();
    g.mem.push_back((seq, Arc::new(frame)));
    if g.mem_bytes > g.mem_max {
        spill(g);
    }
}

/// Moves the oldest memory frames to the spool until memory is at half its
/// limit, so spills come in batches. When the spool is full its oldest
/// segment is deleted and its events reported lost; without a spool the
/// frame itself is dropped and reported.
///
/// A frame the sender has already handed to the connection (seq at or
/// below `sent_upto`) is never dropped: the relay may have stored it, and
/// reporting it lost too would count its events twice. Returns `false` when
/// memory is still over its limit because only such frames could go; the
/// producer then waits for acks or for the connection to end.
fn spill(g: &mut Inner) -> bool {
    let target = g.mem_max / 2;
    let mut dropped: Vec<(u64, Arc<Vec<u8>>)> = Vec::new();
    while g.mem_bytes > target && g.mem.len() > 1 {
        let Some((seq, len)) = g.mem.front().map(|(s, f)| (*s, f.len())) else {
            break;
        };
        let mut stored = false;
        if g.spool_error.is_none() {
            if let Some(sp) = g.spool.as_mut() {
                // Make room: the oldest segments go first, unless they hold
                // frames in flight.
                let mut freed = Vec::new();
                while sp.would_overflow(len) && sp.first_seq().is_some_and(|f| f > g.sent_upto) {
                    match sp.pop_oldest() {
                        Some(seg) => freed.push(seg),
                        None => break,
                    }
                }
                for seg in freed {
                    account_dropped_segment(g, seg);
                }
                let Some(sp) = g.spool.as_mut() else { break };
                if !sp.would_overflow(len) {
                    let Some((_, frame)) = g.mem.front() else {
                        break;
                    };
                    match sp.append(seq, frame) {
                        Ok(()) => {
                            stored = true;
                            g.stats.spooled_frames += 1;
                        }
                        Err(e) => {
                            g.spool_error = Some(format!(
                                "writing the spool failed: {e}; frames that do not fit in memory are now dropped"
                            ));
                        }
                    }
                }
            }
        }
        if !stored && seq <= g.sent_upto {
            // Only a frame in flight could go: keep it.
            break;
        }
        let Some((seq, frame)) = g.mem.pop_front() else {
            break;
        };
        g.mem_bytes -= frame.len();
        if !stored {
            dropped.push((seq, frame));
        }
    }
    for (seq, frame) in dropped {
        account_dropped_frames(g, &frame, seq, seq);
    }
    g.mem_bytes <= g.mem_max
}

fn account_dropped_segment(g: &mut Inner, seg: Segment) {
    let (first, last) = (seg.first_seq(), seg.last_seq());
    let bytes = seg.read_all().unwrap_or_default();
    Spool::discard(seg);
    account_dropped_frames(g, &bytes, first, last);
}

/// Counts what dropped frames held, per CPU, into pending `Lost` reports:
/// events in pages (by walking their records), packets' event counts, and
/// the counts of dropped loss reports themselves, so no loss goes unreported.
fn account_dropped_frames(g: &mut Inner, mut bytes: &[u8], first: u64, last: u64) {
    let layout = g.layout;
    let mut scratch = Vec::new();
    while let Ok(Split::Frame {
        header,
        wire_body,
        len,
    }) = split_frame(bytes, MAX_BODY)
    {
        g.stats.dropped_frames += 1;
        if let Ok(body) = strata_wire::decompress(&header, wire_body, &mut scratch) {
            match Message::decode(&header, body) {
                Ok(Message::Pages(p)) => {
                    let mut events = 0u64;
                    for page in p.pages.iter() {
                        if let Some(l) = layout.as_ref() {
                            if let Ok(pg) = Page::parse(l, page) {
                                events += pg.records().filter(Result::is_ok).count() as u64;
                            }
                        }
                    }
                    g.stats.dropped_events += events;
                    add_loss(
                        g,
                        p.cpu,
                        CauseKey::Spool,
                        events,
                        p.pages.count() as u64,
                        first,
                        last,
                    );
                }
                Ok(Message::Packets(p)) => {
                    let mut per_cpu: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
                    for (info, _) in p.packets.iter() {
                        let e = per_cpu.entry(info.stream_instance as u32).or_default();
                        e.0 += info.events as u64;
                        e.1 += 1;
                    }
                    for (cpu, (ev, pk)) in per_cpu {
                        g.stats.dropped_events += ev;
                        add_loss(g, cpu, CauseKey::Spool, ev, pk, first, last);
                    }
                }
                Ok(Message::Lost(l)) => {
                    let key = match l.cause {
                        LossCause::KernelBuffer => CauseKey::Kernel,
                        LossCause::SpoolFull => CauseKey::Spool,
                        LossCause::CorruptPage => CauseKey::Corrupt,
                    };
                    add_loss(
                        g,
                        l.cpu,
                        key,
                        l.events,
                        l.pages,
                        l.first_seq.min(first),
                        l.last_seq.max(last),
                    );
                }
                // A dropped state dump part holds no trace events.
                _ => {}
            }
        }
        bytes = bytes.get(len..).unwrap_or(&[]);
    }
}

/// The trace events and pages (or packets) in one encoded frame; zero for
/// frames that carry none (state dumps, loss reports) or do not decode.
fn frame_contents(layout: Option<&PageLayout>, bytes: &[u8], scratch: &mut Vec<u8>) -> (u64, u64) {
    let Ok(Split::Frame {
        header, wire_body, ..
    }) = split_frame(bytes, MAX_BODY)
    else {
        return (0, 0);
    };
    let Ok(body) = strata_wire::decompress(&header, wire_body, scratch) else {
        return (0, 0);
    };
    match Message::decode(&header, body) {
        Ok(Message::Pages(p)) => {
            let events = layout.map_or(0, |l| {
                p.pages
                    .iter()
                    .filter_map(|page| Page::parse(l, page).ok())
                    .map(|pg| pg.records().filter(Result::is_ok).count() as u64)
                    .sum()
            });
            (events, p.pages.count() as u64)
        }
        Ok(Message::Packets(p)) => p
            .packets
            .iter()
            .fold((0, 0), |(e, n), (info, _)| (e + info.events as u64, n + 1)),
        _ => (0, 0),
    }
}

fn add_loss(
    g: &mut Inner,
    cpu: u32,
    key: CauseKey,
    events: u64,
    pages: u64,
    first: u64,
    last: u64,
) {
    let p = g.pending.entry((cpu, key)).or_default();
    p.events += events;
    p.pages += pages;
    if key == CauseKey::Spool {
        p.first_seq = if p.first_seq == 0 {
            first
        } else {
            p.first_seq.min(first)
        };
        p.last_seq = p.last_seq.max(last);
    }
}
