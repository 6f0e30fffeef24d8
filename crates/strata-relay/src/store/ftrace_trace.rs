//! A trace converted from raw ftrace records: the same conversion as
//! `strata record` (strata-store's [`Converter`]), with the relay owning the
//! stream files so that it can flush packets on a timer and reopen the
//! trace after a restart.

use std::path::Path;

use strata_core::{ClockDesc, HostInfo};
use strata_ctf::write::{
    metadata_text, ClockParams, EnvValue, HeaderKind, PacketBuilder, PacketConfig, PacketError,
    PacketStart, TraceDesc, TracerIdentity, Uuid, DEFAULT_CAPACITY,
};
use strata_ftrace::format::EventFormat;
use strata_store::{statedump, ConvertOptions, Converter, Outcome, ThreadState, STATEDUMP_STREAM};

use super::checkpoint::CpuMark;
use super::stream_file::{StreamFile, StreamMark};
use super::StoreError;

/// The most CPUs a host may declare.
pub const MAX_CPUS: u32 = 4096;

/// What the agent said about its trace before sending data.
#[derive(Debug, Clone)]
pub struct FtraceSetup {
    /// The host.
    pub host: HostInfo,
    /// The trace clock and its offset to Unix time.
    pub clock: ClockDesc,
    /// The formats of the enabled events.
    pub formats: Vec<EventFormat>,
    /// The `syscalls:sys_enter_*` formats naming syscall arguments.
    pub syscall_formats: Vec<EventFormat>,
}

/// The metadata text of a converted trace; the same inputs give the same
/// bytes, which is how a restarted relay checks it may append.
pub fn metadata_for(setup: &FtraceSetup, conv: &Converter, uuid: Uuid) -> String {
    // Same tracer identity as `strata record` writes by default, so Trace
    // Compass and lttng-analyses read relay traces the same way.
    let desc = TraceDesc {
        uuid,
        clock: ClockParams::for_host(&setup.clock, &setup.host),
        host: setup.host.clone(),
        tracer: TracerIdentity {
            name: "lttng-modules".into(),
            major: 2,
            minor: 13,
            patchlevel: 0,
        },
        extra_env: vec![
            (
                "strata_version".into(),
                EnvValue::Str(env!("CARGO_PKG_VERSION").into()),
            ),
            ("strata_relay".into(), EnvValue::Int(1)),
            ("tracer_buffering_id".into(), EnvValue::Int(0)),
            ("architecture_bit_width".into(), EnvValue::Int(64)),
        ],
        header: HeaderKind::for_max_id(conv.classes().len().saturating_sub(1) as u32),
        event_context: conv.event_context(),
        events: conv.classes().to_vec(),
    };
    metadata_text(&desc)
}

/// One CPU's stream: its file, open packet and counters.
#[derive(Debug)]
struct CpuStream {
    file: StreamFile,
    builder: PacketBuilder,
    cpu: u32,
    instance: u64,
    mark: CpuMark,
}

/// What a checkpoint gives back to reopen a converted trace.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    /// Per stream instance (CPUs, then the state dump), the counters.
    pub cpus: &'a [CpuMark],
    /// Per stream file, its lengths.
    pub streams: &'a std::collections::BTreeMap<String, StreamMark>,
    /// Whether the state dump's last part was stored.
    pub statedump_written: bool,
}

impl CpuStream {
    fn begin(&mut self, ts: u64) {
        self.builder.begin(PacketStart {
            stream_instance_id: self.instance,
            cpu_id: self.cpu,
            seq: self.mark.packet_seq,
            ts_begin: ts.max(self.mark.last_end),
        });
    }

    /// Writes the open packet, if it holds anything. Returns bytes written.
    fn flush(&mut self) -> Result<u64, StoreError> {
        if !self.builder.is_open() || self.builder.is_empty() {
            return Ok(0);
        }
        let end = self.builder.last_timestamp();
        let offset = self.file.offset();
        let Some(done) = self.builder.finish(end, self.mark.discarded, offset) else {
            return Ok(0);
        };
        let n = done.bytes.len() as u64;
        self.file.append(done.bytes, &done.index)?;
        self.mark.packet_seq += 1;
        self.mark.last_end = done.index.timestamp_end;
        Ok(n)
    }
}

/// A converted trace being written; see the module docs.
#[derive(Debug)]
pub struct FtraceTrace {
    conv: Converter,
    cpus: Vec<CpuStream>,
    cfg: PacketConfig,
    statedump: Option<CpuStream>,
    statedump_written: bool,
    /// Records dropped: an ftrace id no format named, or too short.
    pub dropped: u64,
}

impl FtraceTrace {
    /// The converter for `setup` (deterministic).
    pub fn converter(setup: &FtraceSetup) -> Converter {
        Converter::new(
            &setup.formats,
            &setup.syscall_formats,
            ConvertOptions::default(),
        )
    }

    /// Opens the stream files of `dir` (which holds the metadata already):
    /// new ones, or with `resume` (per-CPU counters, stream lengths, and
    /// whether the state dump is complete) the checkpointed ones cut back.
    pub fn open(
        dir: &Path,
        setup: &FtraceSetup,
        conv: Converter,
        uuid: Uuid,
        resume: Option<Resume<'_>>,
    ) -> Result<FtraceTrace, StoreError> {
        let n = setup.host.cpu_count;
        if n == 0 || n > MAX_CPUS {
            return Err(StoreError::Metadata(format!(
                "the host declares {n} CPUs; 1 to {MAX_CPUS} are accepted"
            )));
        }
        let cfg = PacketConfig {
            trace_uuid: uuid,
            header: HeaderKind::for_max_id(conv.classes().len().saturating_sub(1) as u32),
            capacity: DEFAULT_CAPACITY,
        };
        let stream = |name: &str, cpu: u32, instance: u64| -> Result<CpuStream, StoreError> {
            let (mark, smark) = match &resume {
                Some(r) => (
                    r.cpus.get(instance as usize).cloned().unwrap_or_default(),
                    Some(r.streams.get(name).cloned().unwrap_or_default()),
                ),
                None => (CpuMark::default(), None),
            };
            Ok(CpuStream {
                file: StreamFile::open(dir, name, smark.as_ref())?,
                builder: PacketBuilder::new(cfg).map_err(|e| StoreError::Data(e.to_string()))?,
                cpu,
                instance,
                mark,
            })
        };
        let mut cpus = Vec::with_capacity(n as usize);
        for cpu in 0..n {
            cpus.push(stream(&format!("channel0_{cpu}"), cpu, cpu as u64)?);
        }
        // The state dump stream's counters come after the CPUs'.
        let statedump = match &resume {
            Some(r) if r.streams.contains_key(STATEDUMP_STREAM) => {
                Some(stream(STATEDUMP_STREAM, 0, n as u64)?)
            }
            _ => None,
        };
        Ok(FtraceTrace {
            conv,
            cpus,
            cfg,
            statedump,
            statedump_written: resume.is_some_and(|r| r.statedump_written),
            dropped: 0,
        })
    }

    /// The converter (event class names).
    pub fn conv(&self) -> &Converter {
        &self.conv
    }

    /// Whether the state dump stream exists.
    pub fn statedump_written(&self) -> bool {
        self.statedump_written
    }

    /// Appends one record of `cpu` at trace-clock time `ts`. Returns the
    /// bytes of packets written to disk (when one filled up) and whether
    /// the record was stored.
    #[inline]
    pub fn push_record(
        &mut self,
        cpu: u32,
        ts: u64,
        data: &[u8],
    ) -> Result<(u64, bool), StoreError> {
        let ncpus = self.cpus.len();
        let Some(s) = self.cpus.get_mut(cpu as usize) else {
            return Err(StoreError::Data(format!(
                "a page for CPU {cpu}, but the host declared {ncpus} CPUs"
            )));
        };
        if !s.builder.is_open() {
            s.begin(ts);
        }
        let mut written = 0;
        let mut outcome = self.conv.write(&mut s.builder, ts, data);
        if outcome == Err(PacketError::Full) {
            written = s.flush()?;
            s.begin(ts);
            outcome = self.conv.write(&mut s.builder, ts, data);
        }
        match outcome {
            Ok(Outcome::Written(_)) => Ok((written, true)),
            _ => {
                self.dropped += 1;
                Ok((written, false))
            }
        }
    }

    /// Adds `n` lost events to `cpu`'s running count; the open packet is
    /// written first so readers place the loss before the next records.
    pub fn note_lost(&mut self, cpu: u32, n: u64) -> Result<u64, StoreError> {
        let Some(s) = self.cpus.get_mut(cpu as usize) else {
            return Err(StoreError::Data(format!(
                "a loss report for unknown CPU {cpu}"
            )));
        };
        let w = s.flush()?;
        s.mark.discarded = s.mark.discarded.saturating_add(n);
        Ok(w)
    }

    /// Writes every open packet (the timer flush and checkpoints).
    pub fn flush(&mut self) -> Result<u64, StoreError> {
        let mut n = 0;
        for s in self.cpus.iter_mut().chain(self.statedump.iter_mut()) {
            n += s.flush()?;
        }
        Ok(n)
    }

    /// Appends one part of the state dump taken at trace-clock time `ts`:
    /// the first part opens it with `lttng_statedump_start`, the last closes
    /// it with `lttng_statedump_end`. Parts after a complete dump (an agent
    /// resending after a relay restart) are ignored. Returns bytes written.
    pub fn push_statedump(
        &mut self,
        dir: &Path,
        ts: u64,
        threads: &[ThreadState],
        first: bool,
        last: bool,
    ) -> Result<u64, StoreError> {
        if self.statedump_written {
            return Ok(0);
        }
        if self.statedump.is_none() {
            self.statedump = Some(CpuStream {
                file: StreamFile::open(dir, STATEDUMP_STREAM, None)?,
                builder: PacketBuilder::new(self.cfg)
                    .map_err(|e| StoreError::Data(e.to_string()))?,
                cpu: 0,
                instance: self.cpus.len() as u64,
                mark: CpuMark::default(),
            });
        }
        let Some(s) = self.statedump.as_mut() else {
            return Ok(0);
        };
        let conv = &self.conv;
        let mut bytes = 0;
        let mut step = |s: &mut CpuStream,
                        f: &dyn Fn(&mut PacketBuilder) -> Result<(), PacketError>|
         -> Result<(), StoreError> {
            if !s.builder.is_open() {
                s.begin(ts);
            }
            if f(&mut s.builder) == Err(PacketError::Full) {
                bytes += s.flush()?;
                s.begin(ts);
                let _ = f(&mut s.builder);
            }
            Ok(())
        };
        if first {
            step(s, &|b| statedump::write_start(conv, b, ts))?;
        }
        for t in threads {
            step(s, &|b| statedump::write_thread(conv, b, ts, t))?;
            step(s, &|b| statedump::write_pid_ns(conv, b, ts, t))?;
        }
        if last {
            step(s, &|b| statedump::write_end(conv, b, ts))?;
            self.statedump_written = true;
        }
        Ok(bytes)
    }

    /// The per-CPU counters and stream lengths for a checkpoint. Call it
    /// right after [`FtraceTrace::flush`].
    pub fn marks(&self) -> (Vec<CpuMark>, Vec<(String, StreamMark)>) {
        let all = self.cpus.iter().chain(self.statedump.iter());
        let cpus = all.clone().map(|s| s.mark.clone()).collect();
        let streams = all
            .map(|s| {
                let name = if s.instance < self.cpus.len() as u64 {
                    format!("channel0_{}", s.cpu)
                } else {
                    STATEDUMP_STREAM.to_string()
                };
                (name, s.file.mark().clone())
            })
            .collect();
        (cpus, streams)
    }

    /// Flushes every stream file to the disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        self.cpus
            .iter()
            .chain(self.statedump.iter())
            .try_for_each(|s| s.file.sync())
    }

    /// Lost events per CPU so far.
    pub fn lost(&self) -> Vec<u64> {
        self.cpus.iter().map(|s| s.mark.discarded).collect()
    }
}
