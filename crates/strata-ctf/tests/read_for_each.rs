//! `Events::try_for_each` hands out the same events and errors, in the same
//! order, as `Events::next`, on the real traces (each alone and all merged)
//! and on real stream files with corrupt packets. (The crafted and
//! mutated traces of the other tests are checked the same way there.)

#[path = "support/same_items.rs"]
mod same_items;
#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;

use std::path::{Path, PathBuf};

use same_items::assert_same_items;
use shared_traces::shared_traces;

/// Removes a test's directory, even when the test fails.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn real_traces_give_the_same_items() {
    let Some(root) = shared_traces("real_traces_give_the_same_items") else {
        return;
    };
    for name in [
        "tc-many-threads",
        "bt-lttng-tracefile-rotation/kernel",
        "tc-synctraces",
    ] {
        let (n, _) = assert_same_items(&root.join(name)).expect("the real trace opens");
        assert!(n > 1000, "{name}: only {n} events");
    }
    // Everything at once, the rotation trace five times over (each copy a
    // trace of its own): more streams than the sorted list takes, so the
    // tournament tree merges them.
    let dir = TempDir(std::env::temp_dir().join(format!(
        "strata-ctfread-foreach-many-{}",
        std::process::id()
    )));
    std::fs::create_dir_all(&dir.0).unwrap();
    for copy in 0..5 {
        copy_trace(
            &root.join("bt-lttng-tracefile-rotation/kernel"),
            &dir.0.join(format!("rotation{copy}")),
            |_| {},
        );
    }
    copy_trace(
        &root.join("tc-synctraces/scp_src"),
        &dir.0.join("scp_src"),
        |_| {},
    );
    copy_trace(
        &root.join("tc-synctraces/scp_dest"),
        &dir.0.join("scp_dest"),
        |_| {},
    );
    let (n, _) = assert_same_items(&dir.0).expect("the copies open together");
    assert!(n > 1000, "all traces: only {n} events");
}

/// Copies the trace at `src` (metadata and stream files) to `dst`, passing
/// each stream file's bytes through `change`.
fn copy_trace(src: &Path, dst: &Path, mut change: impl FnMut(&mut Vec<u8>)) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if !p.is_file() {
            continue;
        }
        let mut b = std::fs::read(&p).unwrap();
        let name = p.file_name().unwrap();
        if name != "metadata" {
            change(&mut b);
        }
        std::fs::write(dst.join(name), b).unwrap();
    }
}

#[test]
fn corrupt_packets_give_the_same_items() {
    let Some(root) = shared_traces("corrupt_packets_give_the_same_items") else {
        return;
    };
    let src = root.join("bt-lttng-tracefile-rotation/kernel");
    let dir = TempDir(std::env::temp_dir().join(format!(
        "strata-ctfread-foreach-corrupt-{}",
        std::process::id()
    )));
    // Each case corrupts every stream file the same way: bytes flipped at
    // a stride (packet headers, event headers, payloads), or the file cut
    // mid-packet.
    let mut errors = 0;
    for case in 0..6u64 {
        let _ = std::fs::remove_dir_all(&dir.0);
        copy_trace(&src, &dir.0, |b| {
            if b.is_empty() {
                return;
            }
            if case < 5 {
                let stride = 997 + 4099 * case as usize;
                let mut at = 13 * case as usize;
                while at < b.len() {
                    b[at] ^= 0x5a;
                    at += stride;
                }
            } else {
                let cut = b.len() * 2 / 3 + 3;
                b.truncate(cut);
            }
        });
        errors += assert_same_items(&dir.0).map_or(0, |(_, e)| e);
    }
    // The comparison covered errors, not only events.
    assert!(errors > 0, "no corrupt case produced an error");
}
