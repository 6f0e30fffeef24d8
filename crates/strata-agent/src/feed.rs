//! The light live feed of a flight-mode agent: a second tracefs instance,
//! in the ordinary (non-overwrite) mode, that traces only a few event
//! groups (by default what the relay's analyses and rules use) and streams
//! them as a live agent does, while the flight instance keeps every event
//! for snapshots.
//!
//! Two instances rather than one filtered stream: the kernel does the
//! selection (no event of the flight set is decoded or copied twice by the
//! agent), each buffer has the mode its reader wants (overwrite for the
//! ring, no overwrite for the feed, whose losses are counted), and the
//! relay's event changes touch the feed without disturbing the history.

use crate::error::AgentError;
use strata_ftrace::{CpuReaders, Instance, PageLayout, Tracefs};

/// What `--live-events` takes when not given: what the relay's analyses
/// and the rule metrics use (threads and their states, system calls).
pub const DEFAULT_FEED: &[&str] = &["sched", "syscalls"];

/// The feed's instance, its readers and its events.
pub struct Feed {
    // The readers must close before the instance is removed: fields drop
    // in declaration order.
    /// Readers of every CPU's buffer.
    pub readers: CpuReaders,
    /// The tracefs instance.
    pub instance: Instance,
    /// The events traced now.
    pub selected: Vec<(String, String)>,
    /// Whether `ftrace:print` (the instance's `trace_marker` writes) was
    /// asked for: it has no enable file, but its format must be sent.
    pub markers: bool,
}

/// How to size the feed's kernel buffers.
#[derive(Debug, Clone, Copy)]
pub struct FeedBuffers {
    /// Sub-buffer size, KiB: the flight instance's, so both share one page
    /// layout (the relay decodes both with the metadata sent first).
    pub subbuf_kb: u64,
    /// Buffer per CPU, KiB.
    pub buffer_kb: u64,
}

impl Feed {
    /// Creates the feed's instance with `clock`, selects `specs` (as
    /// `--events` takes them) among `available`, and opens its readers on
    /// `cpus`. Tracing is not on yet. Its page layout must be `layout`.
    pub fn setup(
        tracefs: &Tracefs,
        specs: &[String],
        available: &[(String, String)],
        clock: &str,
        sizes: FeedBuffers,
        cpus: &[u32],
        layout: &PageLayout,
    ) -> Result<Feed, AgentError> {
        let (markers, specs): (Vec<&String>, Vec<&String>) = specs
            .iter()
            .partition(|e| e.trim() == crate::live::MARKER_EVENT);
        let selected = strata_ftrace::resolve_events(&specs, available)?;
        if selected.is_empty() && markers.is_empty() {
            return Err(AgentError::Config(format!(
                "--live-events {} selects no event on this kernel; give none to stream nothing",
                specs
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        let instance = Instance::create(tracefs, "feed")?;
        instance.set_clock(clock)?;
        // Kernels before 6.8 cannot set it: both instances then keep 4 KiB.
        let _ = instance.set_subbuf_size_kb(sizes.subbuf_kb);
        instance.set_buffer_size_kb(sizes.buffer_kb)?;
        instance.set_buffer_percent(50)?;
        for (s, n) in &selected {
            instance.enable_event(s, n)?;
        }
        let readers = CpuReaders::open(&instance, cpus)?;
        if readers.layout() != layout {
            return Err(AgentError::Config(format!(
                "the live feed's tracefs instance {} has another page layout than the flight instance \
                 ({:?} against {:?}); give both the same --subbuf-size",
                instance.name(),
                readers.layout(),
                layout
            )));
        }
        Ok(Feed {
            readers,
            instance,
            selected,
            markers: !markers.is_empty(),
        })
    }
}
