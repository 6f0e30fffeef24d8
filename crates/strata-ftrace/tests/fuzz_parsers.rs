//! Random and mutated input never panics the page decoder or the text parsers.

use proptest::prelude::*;
use strata_ftrace::{format, parse_header_page, Page, PageLayout};

const SCHED_SWITCH: &str = include_str!("fixtures/formats/sched/sched_switch");
const BLOCK_RQ_ISSUE: &str = include_str!("fixtures/formats/block/block_rq_issue");
const HEADER_PAGE: &str = include_str!("fixtures/header_page");

fn decode_all(layout: &PageLayout, bytes: &[u8]) -> usize {
    let Ok(page) = Page::parse(layout, bytes) else {
        return 0;
    };
    let _ = page.missed();
    let mut n = 0;
    for r in page.records() {
        match r {
            Ok(rec) => {
                // Every payload lies inside the committed data.
                assert!(rec.data.len() <= page.data_len());
                n += 1;
            }
            Err(_) => break,
        }
    }
    n
}

/// A plausible page: a header and a run of well-formed small events.
fn valid_page(events: &[(u8, u32)]) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    let mut at = 16;
    for &(words, delta) in events {
        let words = (words % 28 + 1) as usize;
        if at + 4 + words * 4 > 4096 {
            break;
        }
        let h = words as u32 | ((delta & 0x7ff_ffff) << 5);
        page[at..at + 4].copy_from_slice(&h.to_le_bytes());
        at += 4 + words * 4;
    }
    page[8..16].copy_from_slice(&((at - 16) as u64).to_le_bytes());
    page
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_pages(bytes in proptest::collection::vec(any::<u8>(), 0..4200)) {
        decode_all(&PageLayout::default_x86_64(), &bytes);
    }

    #[test]
    fn random_pages_with_small_commits(mut bytes in proptest::collection::vec(any::<u8>(), 16..4096), commit in 0u64..4096, flags in 0u64..4) {
        // Random bytes almost never pass the commit check; force plausible commits.
        let c = commit | (flags << 30);
        bytes[8..16].copy_from_slice(&c.to_le_bytes());
        decode_all(&PageLayout::default_x86_64(), &bytes);
    }

    #[test]
    fn mutated_valid_pages(events in proptest::collection::vec((any::<u8>(), any::<u32>()), 1..200),
                           flips in proptest::collection::vec((16usize..4096, any::<u8>()), 0..16)) {
        let mut page = valid_page(&events);
        let clean = decode_all(&PageLayout::default_x86_64(), &page);
        prop_assert!(clean > 0);
        for (at, v) in flips {
            page[at] = v;
        }
        decode_all(&PageLayout::default_x86_64(), &page);
    }

    #[test]
    fn random_layouts(data_offset in 0usize..64, data_size in 1usize..9000, commit_size in prop::sample::select(vec![4usize, 8]),
                      bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let layout = PageLayout { timestamp_offset: 0, commit_offset: 8, commit_size, data_offset, data_size };
        decode_all(&layout, &bytes);
    }

    #[test]
    fn random_format_text(text in "\\PC{0,400}") {
        let _ = format::parse("g", &text);
        let _ = parse_header_page(&text);
    }

    #[test]
    fn mutated_format_files(cut in 0usize..2000, at in 0usize..2000, insert in "[ -~\\t\\n]{0,12}") {
        for base in [SCHED_SWITCH, BLOCK_RQ_ISSUE, HEADER_PAGE] {
            let mut s: String = base.chars().take(cut.max(1) + 200).collect();
            let mut at = at.min(s.len());
            while !s.is_char_boundary(at) { at -= 1; }
            s.insert_str(at, &insert);
            if let Ok(f) = format::parse("g", &s) {
                // Accessors on short records never panic either.
                let rec = [0xffu8; 24];
                for fl in f.fields.iter().chain(f.common.iter()) {
                    let a = fl.accessor();
                    let _ = (a.u64(&rec), a.i64(&rec), a.bytes(&rec), a.str(&rec), a.element(&rec, 3));
                }
            }
            let _ = parse_header_page(&s);
        }
    }
}
