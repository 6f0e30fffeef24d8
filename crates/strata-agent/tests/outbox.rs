//! The outbox and spool without a kernel: synthetic pages with known event
//! counts go through memory, spool and overflow, and what a relay would
//! receive plus what is reported lost always equals what was pushed.

use proptest::prelude::*;
use strata_agent::{Outbox, Spool};
use strata_ftrace::PageLayout;
use strata_wire::{Compression, FrameDecoder, LossCause, Message, PageBatch, MAX_BODY};

/// A 4 KiB ring-buffer page holding `n` 8-byte records.
fn page(n: usize) -> Vec<u8> {
    let mut p = vec![0u8; 4096];
    p[0..8].copy_from_slice(&1000u64.to_le_bytes());
    p[8..16].copy_from_slice(&((n * 12) as u64).to_le_bytes());
    for i in 0..n {
        let at = 16 + i * 12;
        // type_len 2 (8 payload bytes), time delta 1.
        p[at..at + 4].copy_from_slice(&(2u32 | (1 << 5)).to_le_bytes());
        p[at + 4..at + 6].copy_from_slice(&7u16.to_le_bytes());
    }
    p
}

/// Pushes `frames` frames of `pages` pages of `events` events each on CPU
/// `cpu % 2`; returns the events pushed.
fn push(
    outbox: &Outbox,
    frames: usize,
    pages: usize,
    events: usize,
    compression: Compression,
) -> u64 {
    let mut total = 0;
    for f in 0..frames {
        let mut b = PageBatch::new((f % 2) as u32);
        for _ in 0..pages {
            b.push(&page(events)).unwrap();
            total += events as u64;
        }
        outbox.push_message(&b.message(), compression).unwrap();
    }
    total
}

/// Reads every held frame as a sender would, from the oldest; returns the
/// events in pages, the events reported lost by spool overflow, and the
/// sequence numbers.
fn drain(outbox: &Outbox) -> (u64, u64, Vec<u64>) {
    let layout = PageLayout::default_x86_64();
    let mut cursor = 1;
    let (mut events, mut lost, mut seqs) = (0, 0, Vec::new());
    while let Some((seq, frame)) = outbox.frame_at_or_after(cursor).unwrap() {
        let mut d = FrameDecoder::new(MAX_BODY);
        d.feed(&frame);
        let f = d.next_frame().unwrap().unwrap();
        match f.message().unwrap() {
            Message::Pages(p) => {
                for pg in p.pages.iter() {
                    events += strata_ftrace::Page::parse(&layout, pg)
                        .unwrap()
                        .records()
                        .count() as u64;
                }
            }
            Message::Lost(l) if l.cause == LossCause::SpoolFull => lost += l.events,
            _ => {}
        }
        seqs.push(seq);
        cursor = seq + 1;
    }
    (events, lost, seqs)
}

#[test]
fn memory_spills_to_the_spool_and_everything_comes_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1, 64 << 20).unwrap();
    let outbox = Outbox::new(64 << 10, Some(spool)).unwrap();
    outbox.set_layout(PageLayout::default_x86_64());
    let pushed = push(&outbox, 200, 4, 100, Compression::None);
    let s = outbox.stats();
    assert!(s.spooled_frames > 100, "{s:?}");
    assert_eq!(s.dropped_frames, 0);
    let (events, lost, seqs) = drain(&outbox);
    assert_eq!(events, pushed);
    assert_eq!(lost, 0);
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    // Acks free memory and delete spool segments.
    outbox.ack(150);
    assert!(outbox.oldest() > 100);
    outbox.ack(200);
    assert_eq!(outbox.stats().held_frames, 0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

fn check_overflow(
    frames: usize,
    pages: usize,
    mem: usize,
    spool_max: u64,
    compression: Compression,
) {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1, spool_max).unwrap();
    let outbox = Outbox::new(mem, Some(spool)).unwrap();
    outbox.set_layout(PageLayout::default_x86_64());
    let pushed = push(&outbox, frames, pages, 300, compression);
    outbox.close();
    let (events, lost, seqs) = drain(&outbox);
    assert_eq!(
        events + lost,
        pushed,
        "received {events} + reported lost {lost} != pushed {pushed}"
    );
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    assert!(outbox.stats().spool_bytes <= spool_max);
}

#[test]
fn a_full_spool_reports_exactly_what_it_dropped() {
    check_overflow(300, 4, 64 << 10, 256 << 10, Compression::None);
    check_overflow(300, 17, 64 << 10, 512 << 10, Compression::Lz4);
    // Frames larger than the whole spool.
    check_overflow(50, 300, 64 << 10, 256 << 10, Compression::None);
}

#[test]
fn without_a_spool_memory_overflow_is_reported_too() {
    let outbox = Outbox::new(64 << 10, None).unwrap();
    outbox.set_layout(PageLayout::default_x86_64());
    let pushed = push(&outbox, 100, 4, 300, Compression::None);
    outbox.close();
    let (events, lost, _) = drain(&outbox);
    assert!(lost > 0);
    assert_eq!(events + lost, pushed);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn overflow_accounting_is_exact(frames in 1usize..120, pages in 1usize..40, mem_kb in 16usize..256, spool_kb in 64u64..1024, lz4 in any::<bool>()) {
        let c = if lz4 { Compression::Lz4 } else { Compression::None };
        check_overflow(frames, pages, mem_kb << 10, spool_kb << 10, c);
    }
}

/// Frames handed to a connection are never dropped while it lasts: the
/// producer waits instead, and what the relay gets plus what is reported
/// lost stays exact even when the connection later fails.
#[test]
fn frames_in_flight_are_not_dropped_while_the_connection_lasts() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 1, 128 << 10).unwrap();
    let outbox = Outbox::new(64 << 10, Some(spool)).unwrap();
    outbox.set_layout(PageLayout::default_x86_64());
    let mut pushed = push(&outbox, 30, 4, 300, Compression::None);
    // The sender takes the first frames; they are in flight.
    let mut cursor = 1;
    let mut delivered = 0u64;
    let layout = PageLayout::default_x86_64();
    let count = |frame: &[u8]| -> u64 {
        let mut d = FrameDecoder::new(MAX_BODY);
        d.feed(frame);
        match d.next_frame().unwrap().unwrap().message().unwrap() {
            Message::Pages(p) => p
                .pages
                .iter()
                .map(|pg| {
                    strata_ftrace::Page::parse(&layout, pg)
                        .unwrap()
                        .records()
                        .count() as u64
                })
                .sum(),
            // Reports of data dropped before: delivered as counts.
            Message::Lost(l) if l.cause == LossCause::SpoolFull => l.events,
            _ => 0,
        }
    };
    for _ in 0..3 {
        let (seq, frame) = outbox.next_to_send(cursor).unwrap().unwrap();
        delivered += count(&frame);
        cursor = seq + 1;
    }
    // More data while those are in flight: the producer blocks until the
    // connection ends, then the oldest unsent data can go.
    let producer = {
        let outbox = outbox.clone();
        std::thread::spawn(move || push(&outbox, 60, 4, 300, Compression::None))
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    // The relay stored the three frames and acks them, then the link fails.
    outbox.ack(cursor - 1);
    outbox.connection_lost();
    pushed += producer.join().unwrap();
    outbox.close();
    let (events, lost, _) = drain_from(&outbox, cursor);
    assert_eq!(delivered + events + lost, pushed);
}

fn drain_from(outbox: &Outbox, mut cursor: u64) -> (u64, u64, Vec<u64>) {
    let layout = PageLayout::default_x86_64();
    let (mut events, mut lost, mut seqs) = (0, 0, Vec::new());
    while let Some((seq, frame)) = outbox.frame_at_or_after(cursor).unwrap() {
        let mut d = FrameDecoder::new(MAX_BODY);
        d.feed(&frame);
        match d.next_frame().unwrap().unwrap().message().unwrap() {
            Message::Pages(p) => {
                for pg in p.pages.iter() {
                    events += strata_ftrace::Page::parse(&layout, pg)
                        .unwrap()
                        .records()
                        .count() as u64;
                }
            }
            Message::Lost(l) if l.cause == LossCause::SpoolFull => lost += l.events,
            _ => {}
        }
        seqs.push(seq);
        cursor = seq + 1;
    }
    (events, lost, seqs)
}
