//! Prints every event of the traces under a path in time order, as text
//! close to `babeltrace2`'s default output (time of day in UTC).
//!
//! `cargo run --release -p strata-ctf --example ctf_dump -- PATH [--skip-corrupt] [--count]`

use std::io::Write;
use std::path::PathBuf;

use strata_ctf::read::{text, OpenOptions, TraceSet};

fn main() {
    let mut path = None;
    let mut opts = OpenOptions::default();
    let mut count_only = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--skip-corrupt" => opts.skip_corrupt = true,
            "--count" => count_only = true,
            _ => path = Some(PathBuf::from(a)),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: ctf_dump PATH [--skip-corrupt] [--count]");
        std::process::exit(2);
    };
    let set = match TraceSet::open(&path, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let hosts: Vec<Option<String>> = set
        .traces()
        .iter()
        .map(|t| t.hostname().map(str::to_string))
        .collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut events = set.events();
    let (mut n, mut errors, mut prev) = (0u64, 0u64, None);
    let mut line = String::new();
    while let Some(ev) = events.next() {
        match ev {
            Ok(ev) => {
                n += 1;
                if !count_only {
                    line.clear();
                    text::format_event(&mut line, &ev, prev, hosts[ev.trace()].as_deref());
                    prev = Some(ev.ts());
                    let _ = writeln!(out, "{line}");
                }
            }
            Err(e) => {
                errors += 1;
                eprintln!("error: {e}");
            }
        }
    }
    let _ = out.flush();
    let s = events.skipped();
    if count_only {
        println!("{n}");
    }
    if !s.is_empty() {
        eprintln!(
            "skipped: {} packets, {} bytes, in {} streams",
            s.packets, s.bytes, s.streams
        );
    }
    if errors > 0 {
        std::process::exit(1);
    }
}
