//! Random and mutated input never panics the reader: TSDL text, metadata
//! files and the stream files of the real traces with bytes flipped or cut.
//! In `skip_corrupt` mode reading never fails either: bad packets are
//! skipped and counted. `Events::try_for_each` gives the same events and
//! errors as `Events::next` on every mutated trace.

#[path = "support/same_items.rs"]
mod same_items;
#[path = "../../../tests-support/shared_traces.rs"]
mod shared_traces;
use shared_traces::shared_traces;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use strata_ctf::read::{tsdl, OpenOptions, TraceSet};

fn traces() -> Option<PathBuf> {
    shared_traces("read_proptest")
}

/// A trace loaded in memory: metadata and stream files (name, bytes).
struct Loaded {
    metadata: Vec<u8>,
    streams: Vec<(String, Vec<u8>)>,
}

/// Loads up to `max_files` stream files of a trace, each cut to `max_len`.
fn load(dir: &Path, max_files: usize, max_len: usize) -> Loaded {
    let metadata = std::fs::read(dir.join("metadata")).unwrap();
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "metadata"))
        .collect();
    names.sort();
    let streams = names
        .into_iter()
        .take(max_files)
        .map(|p| {
            let mut b = std::fs::read(&p).unwrap();
            // Cut at a packet boundary so the unmutated trace is valid.
            if b.len() > max_len {
                b.truncate(max_len);
            }
            (p.file_name().unwrap().to_string_lossy().into_owned(), b)
        })
        .collect();
    Loaded { metadata, streams }
}

static CASE: AtomicU64 = AtomicU64::new(0);

fn write(l: &Loaded, metadata: &[u8], streams: &[Vec<u8>]) -> PathBuf {
    let n = CASE.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("strata-ctfread-prop-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("metadata"), metadata).unwrap();
    for ((name, _), data) in l.streams.iter().zip(streams) {
        std::fs::write(d.join(name), data).unwrap();
    }
    d
}

/// Reads everything, touching every payload field generically. Returns the
/// number of events and errors.
fn read_everything(dir: &Path, skip: bool) -> Option<(u64, u64)> {
    let set = TraceSet::open(dir, &OpenOptions { skip_corrupt: skip }).ok()?;
    let mut events = set.events();
    let (mut n, mut errors) = (0u64, 0u64);
    while let Some(e) = events.next() {
        match e {
            Ok(e) => {
                n += 1;
                for (_, f, _) in e.class().fields() {
                    let _ = (
                        e.u64(f),
                        e.i64(f),
                        e.str(f),
                        e.len(f),
                        e.element(f, 1),
                        e.value(f),
                    );
                }
                let _ = e.fields().count();
            }
            Err(_) => errors += 1,
        }
    }
    let _ = (events.bytes_done(), events.skipped());
    Some((n, errors))
}

fn mutate(data: &mut Vec<u8>, flips: &[(usize, u8)], cut: Option<usize>) {
    if data.is_empty() {
        return;
    }
    for &(at, x) in flips {
        let i = at % data.len();
        data[i] ^= x.max(1);
    }
    if let Some(c) = cut {
        let c = c % data.len();
        data.truncate(c);
    }
}

fn check_mutated(l: &Loaded, flips: Vec<(usize, u8)>, cut: Option<usize>, stream_ix: usize) {
    let mut streams: Vec<Vec<u8>> = l.streams.iter().map(|(_, b)| b.clone()).collect();
    let ix = stream_ix % streams.len();
    mutate(&mut streams[ix], &flips, cut);
    let d = write(l, &l.metadata, &streams);
    // Internal iteration hands out the same events and errors as `next`.
    let _ = same_items::assert_same_items(&d);
    let _ = read_everything(&d, false);
    if let Some((_, errors)) = read_everything(&d, true) {
        assert_eq!(
            errors,
            0,
            "skip_corrupt mode returned errors on {}",
            d.display()
        );
    }
    let _ = std::fs::remove_dir_all(&d);
}

fn rotation() -> Option<&'static Loaded> {
    static L: std::sync::OnceLock<Option<Loaded>> = std::sync::OnceLock::new();
    L.get_or_init(|| {
        traces().map(|t| load(&t.join("bt-lttng-tracefile-rotation/kernel"), 4, 1 << 20))
    })
    .as_ref()
}

fn synctrace() -> Option<&'static Loaded> {
    static L: std::sync::OnceLock<Option<Loaded>> = std::sync::OnceLock::new();
    L.get_or_init(|| traces().map(|t| load(&t.join("tc-synctraces/scp_dest"), 1, 256 << 10)))
        .as_ref()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn flipped_or_cut_rotation_trace_never_panics(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..24),
        cut in proptest::option::of(any::<usize>()),
        stream in any::<usize>(),
    ) {
        let Some(l) = rotation() else { println!("shared traces absent: skipping"); return Ok(()); };
        check_mutated(l, flips, cut, stream);
    }

    #[test]
    fn flipped_or_cut_synctrace_never_panics(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..24),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let Some(l) = synctrace() else { println!("shared traces absent: skipping"); return Ok(()); };
        check_mutated(l, flips, cut, 0);
    }

    #[test]
    fn mutated_real_metadata_never_panics(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let Some(l) = rotation() else { println!("shared traces absent: skipping"); return Ok(()); };
        let mut md = l.metadata.clone();
        mutate(&mut md, &flips, cut);
        let _ = tsdl::parse(&md);
        let streams: Vec<Vec<u8>> = l.streams.iter().map(|(_, b)| b.clone()).collect();
        let d = write(l, &md, &streams);
        let _ = read_everything(&d, false);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn random_tsdl_never_panics(s in "[a-z_{}();:=<>\\[\\]., 0-9\"\\-\n*/]{0,200}") {
        let _ = tsdl::parse_text(&s);
    }

    #[test]
    fn mutated_tsdl_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), "[a-z_{};:=<>\\[\\]., 0-9]{0,6}"), 1..6),
    ) {
        let mut text = String::from(SAMPLE);
        for (at, len, ins) in edits {
            let at = at % (text.len() + 1);
            let end = (at + len % 8).min(text.len());
            if text.is_char_boundary(at) && text.is_char_boundary(end) {
                text.replace_range(at..end, &ins);
            }
        }
        if let Ok(md) = tsdl::parse_text(&text) {
            let _ = md.env("hostname");
        }
    }
}

const SAMPLE: &str = r#"/* CTF 1.8 */
typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 5; align = 1; signed = false; } := uint5_t;
trace { major = 1; minor = 8; byte_order = le; packet.header := struct { uint32_t magic; uint32_t stream_id; }; };
stream { id = 0; event.header := struct { enum : uint5_t { a = 0 ... 30, b = 31 } id; variant <id> { struct { uint8_t x; } a; struct { uint32_t id; } b; } v; } align(8); };
event { name = e; id = 0; stream_id = 0; fields := struct { uint8_t _n; uint32_t _s[_n]; string _t; struct { uint8_t a; } _u; }; };
"#;
