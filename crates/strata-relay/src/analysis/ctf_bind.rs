//! Decodes whole CTF packets received from replay agents into the state
//! system's events, through strata-ctf's in-memory reader and
//! strata-analysis' class bindings.

use std::path::{Path, PathBuf};

use strata_analysis::bind::Binder;
use strata_ctf::read::{OpenOptions, TraceClass, TraceSet};

use super::event::{LiveEvent, LiveKind};

/// The compiled metadata and bindings of one replayed trace.
pub struct CtfDecoder {
    class: TraceClass,
    binder: Binder,
    name: PathBuf,
}

impl std::fmt::Debug for CtfDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtfDecoder")
            .field("name", &self.name)
            .finish()
    }
}

impl CtfDecoder {
    /// Compiles `metadata`. `name` labels decode errors.
    pub fn new(metadata: &[u8], name: &str) -> Result<CtfDecoder, String> {
        let class = TraceClass::from_metadata(metadata).map_err(|e| e.to_string())?;
        let binder = binder_for(metadata)?;
        Ok(CtfDecoder {
            class,
            binder,
            name: PathBuf::from(name),
        })
    }

    /// The frequency of the trace's first clock, if it declares one.
    pub fn clock_freq(&self) -> Option<u64> {
        self.class.metadata().clocks.first().map(|c| c.desc.freq)
    }

    /// The syscall names, indexed by the ids the events carry.
    pub fn syscall_names(&self) -> Vec<Box<str>> {
        self.binder.syscall_names().to_vec()
    }

    /// Decodes every event of one whole packet, calling `out` for each;
    /// `arrived` is the receive time. Returns the events decoded, or the
    /// first decode error (the events before it were delivered).
    pub fn packet(
        &self,
        bytes: &[u8],
        arrived: i64,
        mut out: impl FnMut(LiveEvent),
    ) -> Result<u64, String> {
        let mut r = self.class.stream(&self.name, bytes, false);
        let mut n = 0;
        while let Some(ev) = r.next() {
            let ev = ev.map_err(|e| e.to_string())?;
            let kind = LiveKind::from_kernel(&self.binder.decode(&ev));
            out(LiveEvent {
                ts: ev.ts(),
                arrived,
                cpu: ev.cpu(),
                tid: self.binder.context_tid(&ev).unwrap_or(-1),
                kind,
            });
            n += 1;
        }
        Ok(n)
    }
}

/// strata-analysis binds classes of a [`TraceSet`], which is opened from a
/// directory: a private directory holding only the metadata gives one
/// whose class indices match the in-memory [`TraceClass`]'s (both start at
/// 0 for a single trace).
fn binder_for(metadata: &[u8]) -> Result<Binder, String> {
    let dir = tempfile::Builder::new()
        .prefix("strata-relay-bind")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory to bind event classes: {e}"))?;
    let p: &Path = dir.path();
    std::fs::write(p.join("metadata"), metadata)
        .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
    let set = TraceSet::open(p, &OpenOptions::default()).map_err(|e| e.to_string())?;
    Ok(Binder::new(&set))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_real_lttng_packet_like_the_file_reader() {
        let dir = Path::new("/work/shared/traces/tc-many-threads");
        let Ok(meta) = std::fs::read(dir.join("metadata")) else {
            eprintln!(
                "skipped: the shared LTTng trace {} is absent",
                dir.display()
            );
            return;
        };
        let d = CtfDecoder::new(&meta, "channel0_0").unwrap();
        let data = std::fs::read(dir.join("channel0_0")).unwrap();
        let idx =
            strata_ctf::index::parse(&std::fs::read(dir.join("index/channel0_0.idx")).unwrap())
                .unwrap();
        let first = &data[..(idx[0].packet_size / 8) as usize];
        let mut evs = Vec::new();
        let n = d.packet(first, 0, |e| evs.push(e)).unwrap();
        assert_eq!(n as usize, evs.len());
        assert!(n > 100, "{n}");
        assert!(evs.windows(2).all(|w| w[0].ts <= w[1].ts));
        assert!(evs.iter().all(|e| e.cpu == 0));
        assert!(evs
            .iter()
            .any(|e| matches!(e.kind, LiveKind::Switch { .. })));
        assert!(evs
            .iter()
            .any(|e| matches!(e.kind, LiveKind::SyscallEntry { .. })));
        assert!(d.syscall_names().len() > 10);
        // A cut packet is an error, not a panic.
        assert!(d.packet(&first[..first.len() / 2], 0, |_| {}).is_err());
    }
}
