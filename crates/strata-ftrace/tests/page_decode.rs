//! The page decoder on crafted pages: every `type_len`, time extends and
//! absolute stamps, padding of both kinds, missed-event flags, and corruption.

use strata_ftrace::{Missed, Page, PageError, PageLayout, Record};

/// Builds a sub-buffer the way the kernel writes one.
struct PageBuilder {
    ts: u64,
    flags: u64,
    data: Vec<u8>,
    tail: Vec<u8>,
}

fn header(type_len: u32, delta: u32) -> [u8; 4] {
    assert!(type_len < 32 && delta < (1 << 27));
    (type_len | (delta << 5)).to_le_bytes()
}

impl PageBuilder {
    fn new(ts: u64) -> Self {
        PageBuilder {
            ts,
            flags: 0,
            data: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// A data event with the length in `type_len` (payload a multiple of 4, 4..=112).
    fn small(mut self, delta: u32, payload: &[u8]) -> Self {
        assert!(payload.len() & 3 == 0 && (4..=112).contains(&payload.len()));
        self.data
            .extend_from_slice(&header(payload.len() as u32 / 4, delta));
        self.data.extend_from_slice(payload);
        self
    }

    /// A data event with `type_len` 0: the next word is the length including itself.
    fn long(mut self, delta: u32, payload: &[u8]) -> Self {
        self.data.extend_from_slice(&header(0, delta));
        self.data
            .extend_from_slice(&(payload.len() as u32 + 4).to_le_bytes());
        self.data.extend_from_slice(payload);
        self
    }

    fn extend(mut self, value: u64) -> Self {
        self.data
            .extend_from_slice(&header(30, (value & ((1 << 27) - 1)) as u32));
        self.data
            .extend_from_slice(&((value >> 27) as u32).to_le_bytes());
        self
    }

    fn absolute(mut self, value: u64) -> Self {
        let low = value & ((1 << 59) - 1);
        self.data
            .extend_from_slice(&header(31, (low & ((1 << 27) - 1)) as u32));
        self.data
            .extend_from_slice(&((low >> 27) as u32).to_le_bytes());
        self
    }

    /// A discarded event: padding with a non-zero delta and its length after the header.
    fn discarded(mut self, delta: u32, len_after_header: u32) -> Self {
        self.data.extend_from_slice(&header(29, delta));
        self.data.extend_from_slice(&len_after_header.to_le_bytes());
        self.data
            .extend(std::iter::repeat_n(0xAA, len_after_header as usize - 4));
        self
    }

    /// The end-of-page marker: padding with delta 0.
    fn null_padding(mut self) -> Self {
        self.data.extend_from_slice(&header(29, 0));
        self
    }

    fn missed(mut self, count: Option<u64>) -> Self {
        self.flags |= 1 << 31;
        if let Some(n) = count {
            self.flags |= 1 << 30;
            self.tail = n.to_le_bytes().to_vec();
        }
        self
    }

    /// Bytes after the committed data (not counted in commit).
    fn garbage_after(mut self, bytes: &[u8]) -> Self {
        self.tail = bytes.to_vec();
        self
    }

    fn build(&self) -> Vec<u8> {
        let mut page = vec![0u8; 4096];
        page[..8].copy_from_slice(&self.ts.to_le_bytes());
        let commit = self.data.len() as u64 | self.flags;
        page[8..16].copy_from_slice(&commit.to_le_bytes());
        page[16..16 + self.data.len()].copy_from_slice(&self.data);
        let t = 16 + self.data.len();
        page[t..t + self.tail.len()].copy_from_slice(&self.tail);
        page
    }
}

fn layout() -> PageLayout {
    PageLayout::default_x86_64()
}

fn decode(bytes: &[u8]) -> Vec<Result<Record<'_>, PageError>> {
    Page::parse(&layout(), bytes).unwrap().records().collect()
}

fn payload(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
}

#[test]
fn every_inline_length() {
    let mut b = PageBuilder::new(1000);
    for n in 1..=28usize {
        b = b.small(n as u32, &payload(n as u8, n * 4));
    }
    let page = b.build();
    let recs = decode(&page);
    assert_eq!(recs.len(), 28);
    let mut ts = 1000;
    for (i, r) in recs.iter().enumerate() {
        let r = r.as_ref().unwrap();
        let n = i + 1;
        ts += n as u64;
        assert_eq!(r.ts, ts);
        assert_eq!(r.data, &payload(n as u8, n * 4)[..]);
    }
}

#[test]
fn long_events_count_their_length_word() {
    let big = payload(7, 200);
    let page = PageBuilder::new(50)
        .long(3, &big)
        .long(0, &[])
        .long(2, &payload(1, 6))
        .small(1, &[9, 9, 9, 9])
        .build();
    let recs: Vec<_> = decode(&page).into_iter().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 4);
    assert_eq!((recs[0].ts, recs[0].data), (53, &big[..]));
    assert_eq!((recs[1].ts, recs[1].data.len()), (53, 0));
    // An odd payload size is not rounded by the decoder: the length word says 10.
    assert_eq!((recs[2].ts, recs[2].data), (55, &payload(1, 6)[..]));
    assert_eq!((recs[3].ts, recs[3].data), (56, &[9u8, 9, 9, 9][..]));
}

#[test]
fn time_extend_adds_to_the_running_time() {
    let big_delta = (5u64 << 27) + 12345;
    let page = PageBuilder::new(1_000_000)
        .small(10, &[1; 8])
        .extend(big_delta)
        .small(0, &[2; 8])
        .small(7, &[3; 8])
        .build();
    let ts: Vec<u64> = decode(&page).into_iter().map(|r| r.unwrap().ts).collect();
    assert_eq!(
        ts,
        vec![1_000_010, 1_000_010 + big_delta, 1_000_010 + big_delta + 7]
    );
}

#[test]
fn absolute_stamp_replaces_the_time_and_keeps_top_bits() {
    // Top five bits clear: the 59-bit stamp is the time.
    let page = PageBuilder::new(500)
        .small(1, &[1; 4])
        .absolute(123_456_789_012)
        .small(4, &[2; 4])
        .build();
    let ts: Vec<u64> = decode(&page).into_iter().map(|r| r.unwrap().ts).collect();
    assert_eq!(ts, vec![501, 123_456_789_016]);

    // Top bits set in the page timestamp are put back.
    let top = 0xA8u64 << 56;
    let page_ts = top | 1_000;
    let page = PageBuilder::new(page_ts)
        .absolute(top | 5_000)
        .small(0, &[1; 4])
        .build();
    let r = decode(&page).remove(0).unwrap();
    assert_eq!(r.ts, top | 5_000);

    // The low 59 bits wrapped after the page started: carry into bit 59.
    let page_ts = top | ((1u64 << 59) - 10);
    let page = PageBuilder::new(page_ts)
        .absolute(5)
        .small(0, &[1; 4])
        .build();
    let r = decode(&page).remove(0).unwrap();
    assert_eq!(r.ts, page_ts.wrapping_add(15));
}

#[test]
fn discarded_events_are_skipped_without_moving_time() {
    let page = PageBuilder::new(100)
        .small(5, &[1; 4])
        .discarded(40, 28)
        .small(2, &[2; 4])
        .build();
    let recs: Vec<_> = decode(&page).into_iter().map(Result::unwrap).collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].ts, 105);
    assert_eq!(recs[1].ts, 107);
    assert_eq!(recs[1].data, &[2u8; 4][..]);
}

#[test]
fn null_padding_ends_the_page() {
    let page = PageBuilder::new(0)
        .small(1, &[1; 4])
        .null_padding()
        .small(1, &[2; 4])
        .build();
    let recs = decode(&page);
    assert_eq!(recs.len(), 1);
}

#[test]
fn deltas_continue_across_pages_from_each_page_timestamp() {
    // Each page starts again from its own timestamp, whatever the previous page did.
    let p1 = PageBuilder::new(10_000).small(100, &[1; 4]).build();
    let p2 = PageBuilder::new(20_000)
        .small(0, &[2; 4])
        .small(3, &[3; 4])
        .build();
    let a: Vec<u64> = decode(&p1).into_iter().map(|r| r.unwrap().ts).collect();
    let b: Vec<u64> = decode(&p2).into_iter().map(|r| r.unwrap().ts).collect();
    assert_eq!(a, vec![10_100]);
    assert_eq!(b, vec![20_000, 20_003]);
}

#[test]
fn missed_event_flags() {
    let plain = PageBuilder::new(1).small(1, &[0; 4]).build();
    assert_eq!(
        Page::parse(&layout(), &plain).unwrap().missed(),
        Missed::None
    );

    let unknown = PageBuilder::new(1).small(1, &[0; 4]).missed(None).build();
    let p = Page::parse(&layout(), &unknown).unwrap();
    assert_eq!(p.missed(), Missed::Unknown);
    assert_eq!(p.data_len(), 8);
    assert_eq!(p.records().count(), 1);

    let counted = PageBuilder::new(1)
        .small(1, &[0; 4])
        .missed(Some(4242))
        .build();
    let p = Page::parse(&layout(), &counted).unwrap();
    assert_eq!(p.missed(), Missed::Count(4242));
    assert_eq!(p.data_len(), 8);
    // The count after the data is not decoded as an event.
    assert_eq!(p.records().count(), 1);
}

#[test]
fn missed_count_past_the_end_is_an_error() {
    let mut b = PageBuilder::new(1);
    // Fill the data area so there is no room for the count.
    while b.data.len() + 116 <= 4080 {
        b = b.small(1, &[0; 112]);
    }
    let rest = 4080 - b.data.len();
    b = b.long(1, &vec![0; rest - 8]);
    assert_eq!(b.data.len(), 4080);
    b.flags |= (1 << 31) | (1 << 30);
    let page = b.build();
    assert_eq!(
        Page::parse(&layout(), &page).unwrap_err(),
        PageError::MissedCountOutside { offset: 4096 }
    );
}

#[test]
fn bytes_after_commit_are_ignored() {
    let page = PageBuilder::new(1)
        .small(1, &[5; 4])
        .garbage_after(&[0xff; 64])
        .build();
    assert_eq!(decode(&page).len(), 1);
}

#[test]
fn commit_beyond_the_buffer_is_refused() {
    let mut page = PageBuilder::new(1).small(1, &[5; 4]).build();
    page[8..16].copy_from_slice(&5000u64.to_le_bytes());
    assert_eq!(
        Page::parse(&layout(), &page).unwrap_err(),
        PageError::CommitTooLarge {
            data_len: 5000,
            available: 4080
        }
    );
    // A short read: commit fits the layout but not the bytes given.
    let page = PageBuilder::new(1).small(1, &[5; 100]).build();
    assert!(matches!(
        Page::parse(&layout(), &page[..64]),
        Err(PageError::CommitTooLarge { .. })
    ));
    assert_eq!(
        Page::parse(&layout(), &page[..10]).unwrap_err(),
        PageError::TooShort { len: 10, need: 16 }
    );
}

#[test]
fn corrupt_events_name_their_offset_and_stop_the_page() {
    // A small event whose payload runs past the commit.
    let mut b = PageBuilder::new(0).small(1, &[1; 4]);
    b.data.extend_from_slice(&header(28, 0));
    b.data.extend_from_slice(&[0; 8]);
    let page = b.build();
    let recs = decode(&page);
    assert_eq!(recs.len(), 2);
    assert!(recs[0].is_ok());
    assert!(matches!(
        recs[1],
        Err(PageError::Corrupt { offset: 24, .. })
    ));

    // A long event with a length below 4.
    let mut b = PageBuilder::new(0);
    b.data.extend_from_slice(&header(0, 0));
    b.data.extend_from_slice(&2u32.to_le_bytes());
    let page = b.build();
    assert!(matches!(
        decode(&page)[..],
        [Err(PageError::Corrupt { offset: 16, .. })]
    ));

    // A long event with a huge length.
    let mut b = PageBuilder::new(0);
    b.data.extend_from_slice(&header(0, 0));
    b.data.extend_from_slice(&u32::MAX.to_le_bytes());
    let page = b.build();
    assert!(matches!(
        decode(&page)[..],
        [Err(PageError::Corrupt { offset: 16, .. })]
    ));

    // A commit that cuts an event header in two.
    let mut b = PageBuilder::new(0).small(1, &[1; 4]);
    b.data.extend_from_slice(&[1, 0]);
    let page = b.build();
    let recs = decode(&page);
    assert!(matches!(
        recs[1],
        Err(PageError::Corrupt { offset: 24, .. })
    ));

    // A time extend cut off.
    let mut b = PageBuilder::new(0);
    b.data.extend_from_slice(&header(30, 1));
    let page = b.build();
    assert!(matches!(
        decode(&page)[..],
        [Err(PageError::Corrupt { offset: 16, .. })]
    ));

    // A discarded event whose length runs off the page.
    let mut b = PageBuilder::new(0);
    b.data.extend_from_slice(&header(29, 1));
    b.data.extend_from_slice(&9999u32.to_le_bytes());
    let page = b.build();
    assert!(matches!(
        decode(&page)[..],
        [Err(PageError::Corrupt { offset: 16, .. })]
    ));
}

#[test]
fn larger_subbuffers_and_32_bit_commit() {
    let layout = PageLayout {
        timestamp_offset: 0,
        commit_offset: 8,
        commit_size: 4,
        data_offset: 12,
        data_size: 16372,
    };
    let mut page = vec![0u8; 16384];
    page[..8].copy_from_slice(&77u64.to_le_bytes());
    let n_events = 16372 / 8;
    page[8..12].copy_from_slice(&((n_events * 8) as u32).to_le_bytes());
    for i in 0..n_events {
        let at = 12 + i * 8;
        page[at..at + 4].copy_from_slice(&header(1, 1));
        page[at + 4..at + 8].copy_from_slice(&(i as u32).to_le_bytes());
    }
    let p = Page::parse(&layout, &page).unwrap();
    let recs: Vec<_> = p.records().map(Result::unwrap).collect();
    assert_eq!(recs.len(), n_events);
    assert_eq!(recs.last().unwrap().ts, 77 + n_events as u64);
    assert_eq!(
        recs.last().unwrap().data,
        &((n_events - 1) as u32).to_le_bytes()[..]
    );
}
