//! Decodes a real captured buffer (`tests/fixtures/pages/sched_syscalls.pages`:
//! 2 MiB of 4 KiB sub-buffers from Linux 6.18, sched_switch/sched_waking and
//! raw_syscalls under a getppid loop, captured with
//! `cargo run --release --example reader_cost -- poll50 2 FILE`) and prints
//! events per second on one core.
//!
//! Two figures: iterating records only (timestamps and payload slices), and
//! iterating plus reading `common_type` and `common_pid` of every record.
//!
//! `cargo bench -p strata-ftrace --bench page_decode`

use std::hint::black_box;
use std::time::Instant;
use strata_ftrace::{parse_header_page, Page};

const PAGES: &[u8] = include_bytes!("../tests/fixtures/pages/sched_syscalls.pages");
const HEADER: &str = include_str!("../tests/fixtures/header_page");

fn main() {
    let layout = parse_header_page(HEADER).expect("header_page fixture");
    let size = layout.subbuf_size();
    let pages: Vec<&[u8]> = PAGES.chunks_exact(size).collect();
    let common_type = strata_ftrace::format::parse(
        "raw_syscalls",
        include_str!("../tests/fixtures/formats/raw_syscalls/sys_enter"),
    )
    .expect("format fixture");
    let ty = common_type.field("common_type").unwrap().accessor();
    let pid = common_type.field("common_pid").unwrap().accessor();

    let per_pass: u64 = pages
        .iter()
        .map(|p| Page::parse(&layout, p).unwrap().records().count() as u64)
        .sum();
    let errors: usize = pages
        .iter()
        .map(|p| {
            Page::parse(&layout, p)
                .unwrap()
                .records()
                .filter(|r| r.is_err())
                .count()
        })
        .sum();
    assert_eq!(errors, 0, "the fixture has corrupt events");
    println!(
        "fixture: {} pages, {} events, {:.1} bytes/event",
        pages.len(),
        per_pass,
        PAGES.len() as f64 / per_pass as f64
    );

    let passes = 200;
    for round in 0..3 {
        let start = Instant::now();
        let mut n = 0u64;
        let mut sum = 0u64;
        for _ in 0..passes {
            for p in &pages {
                let page = Page::parse(&layout, black_box(p)).unwrap();
                for r in page.records() {
                    let r = r.unwrap();
                    sum = sum.wrapping_add(r.ts ^ r.data.len() as u64);
                    n += 1;
                }
            }
        }
        let dt = start.elapsed().as_secs_f64();
        black_box(sum);

        let start = Instant::now();
        let mut m = 0u64;
        let mut acc = 0u64;
        for _ in 0..passes {
            for p in &pages {
                let page = Page::parse(&layout, black_box(p)).unwrap();
                for r in page.records().flatten() {
                    acc = acc
                        .wrapping_add(ty.u64(r.data).unwrap_or(0))
                        .wrapping_add(pid.u64(r.data).unwrap_or(0));
                    m += 1;
                }
            }
        }
        let dt2 = start.elapsed().as_secs_f64();
        black_box(acc);
        println!(
            "round {round}: records only {:.1} M events/s ({:.2} GB/s); with 2 fields {:.1} M events/s",
            n as f64 / dt / 1e6,
            (PAGES.len() * passes) as f64 / dt / 1e9,
            m as f64 / dt2 / 1e6
        );
    }
}
