//! Replaying damaged traces fails with an error, never a panic: flipped
//! bytes and truncated stream files of a real LTTng trace, and random text
//! through the TSDL clock rewriter.

#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use proptest::prelude::*;
use shared_traces::shared_trace;
use std::path::{Path, PathBuf};
use strata_agent::replay::{check_trace, shift_clock_offsets};

fn rotation_trace() -> Option<PathBuf> {
    shared_trace("replay bad input", "bt-lttng-tracefile-rotation/kernel")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_file() {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
            let mut perm = std::fs::metadata(to.join(e.file_name()))
                .unwrap()
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perm.set_readonly(false);
            std::fs::set_permissions(to.join(e.file_name()), perm).unwrap();
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[test]
fn damaged_traces_fail_cleanly() {
    let Some(src) = rotation_trace() else { return };
    let good = tempfile::tempdir().unwrap();
    copy_dir(&src, good.path());
    check_trace(good.path()).expect("the intact copy replays");
    let files: Vec<PathBuf> = std::fs::read_dir(good.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let (mut refused, mut accepted) = (0, 0);
    for round in 0..60 {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(good.path(), dir.path());
        let victim = dir.path().join(
            files[rng.below(files.len() as u64) as usize]
                .file_name()
                .unwrap(),
        );
        let mut bytes = std::fs::read(&victim).unwrap();
        if bytes.is_empty() {
            continue;
        }
        if round % 4 == 0 {
            bytes.truncate(rng.below(bytes.len() as u64) as usize);
        } else {
            for _ in 0..1 + rng.below(8) {
                // Packet headers and contexts sit in the first bytes of
                // each packet: aim there half the time.
                let at = if rng.below(2) == 0 {
                    rng.below(bytes.len().min(128) as u64)
                } else {
                    rng.below(bytes.len() as u64)
                };
                bytes[at as usize] = rng.next() as u8;
            }
        }
        std::fs::write(&victim, &bytes).unwrap();
        match check_trace(dir.path()) {
            Ok(()) => accepted += 1,
            Err(e) => {
                assert!(!e.to_string().is_empty());
                refused += 1;
            }
        }
    }
    println!("damaged traces: {refused} refused, {accepted} still replayable");
    assert!(refused > 0, "no damage was ever detected");
}

proptest! {
    #[test]
    fn the_clock_rewriter_never_panics(text in ".{0,300}", delta in any::<i64>()) {
        let _ = shift_clock_offsets(&text, delta as i128);
        let with_clock = format!("clock {{ {text} }};");
        let _ = shift_clock_offsets(&with_clock, delta as i128);
    }

    #[test]
    fn clock_offsets_round_trip(offset_s in 0i64..4_000_000_000, offset in 0i64..1_000_000_000, delta in -1_000_000_000_000i64..1_000_000_000_000) {
        let text = format!("clock {{\n\tname = \"monotonic\";\n\tfreq = 1000000000;\n\toffset_s = {offset_s};\n\toffset = {offset};\n}};\n");
        let there = shift_clock_offsets(&text, delta as i128);
        let back = shift_clock_offsets(&there, -(delta as i128));
        prop_assert!(back.contains(&format!("offset_s = {offset_s};")), "{}", back);
        prop_assert!(back.contains(&format!("offset = {offset};")), "{}", back);
    }
}
