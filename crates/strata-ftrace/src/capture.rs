//! Reading an instance's per-CPU `trace_pipe_raw` files with little CPU.
//!
//! A blocking `read` loop on `trace_pipe_raw` wakes as soon as one event
//! arrives and gets back a page holding that one event, so under a steady
//! trickle it spins. Here every file is opened non-blocking and the reader
//! sleeps in `poll(2)`; the kernel wakes a poller on a per-CPU raw file only
//! once the buffer is `buffer_percent` full (see `ring_buffer_poll_wait`). Then
//! whole sub-buffers are read until the file says EAGAIN. Each `read` moves one
//! sub-buffer: the kernel swaps a full page out of the ring and copies it once.
//!
//! Once a read returns a sub-buffer less than half full, the reader has caught
//! up with the page the kernel is still writing, and [`CpuReaders::pump`] moves
//! on to the next CPU: reading on would return that page again and again, a
//! few new events each time, each read copying a whole sub-buffer (measured:
//! 43% of the reads of a busy recording were such pages).
//!
//! [`CpuReaders::flush`] and [`CpuReaders::drain`] also take the partly filled
//! page a writer is still on, for periodic flushes of a live stream and for the
//! end of a recording.
//!
//! Memory is one sub-buffer per CPU, whatever the event rate.

use crate::header::PageLayout;
use crate::page::{Missed, Page};
use crate::tracefs::{io_err, parse_cpu_stats, read_text, CpuStats, Instance, TracefsError};
use std::fs;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;
use thiserror::Error;

/// Why capture failed: an I/O error on one CPU's file, or the sink's own error.
#[derive(Debug, Error)]
pub enum CaptureError<E: std::error::Error + 'static> {
    /// Opening, polling or reading `trace_pipe_raw` failed.
    #[error("reading trace_pipe_raw of cpu {cpu} ({path}) failed: {source}")]
    Io {
        /// The CPU.
        cpu: u32,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Instance control failed (reading the layout or the stats).
    #[error(transparent)]
    Tracefs(#[from] TracefsError),
    /// The sink refused a page.
    #[error("the page sink failed: {0}")]
    Sink(#[source] E),
}

/// Where pages go: `sink(cpu, page)` gets each sub-buffer read, header
/// included; the slice is only valid during the call.
pub type PageSink<'s, E> = dyn FnMut(u32, &[u8]) -> Result<(), E> + 's;

/// What a reader saw on one CPU so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuCounters {
    /// Sub-buffers handed to the sink.
    pub pages: u64,
    /// Committed event bytes in them.
    pub data_bytes: u64,
    /// Events lost, as counted in page headers.
    pub missed_events: u64,
    /// Pages flagged as following lost events without a count.
    pub missed_unknown: u64,
}

struct CpuReader {
    cpu: u32,
    path: PathBuf,
    file: fs::File,
    counters: CpuCounters,
}

/// Non-blocking readers of the per-CPU raw buffers of one instance.
pub struct CpuReaders {
    readers: Vec<CpuReader>,
    layout: PageLayout,
    buf: Vec<u8>,
    instance_dir: PathBuf,
    /// Reads of one CPU per pump are capped so a CPU producing as fast as we
    /// read cannot keep `pump` from returning.
    max_reads_per_pump: usize,
}

impl std::fmt::Debug for CpuReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuReaders")
            .field("cpus", &self.cpus())
            .field("layout", &self.layout)
            .finish()
    }
}

impl CpuReaders {
    /// Opens `trace_pipe_raw` of each CPU in `cpus`. Read the layout from the
    /// instance after setting its sub-buffer size: it is taken here once.
    pub fn open(instance: &Instance, cpus: &[u32]) -> Result<CpuReaders, TracefsError> {
        let layout = instance.header_page()?;
        let mut readers = Vec::with_capacity(cpus.len());
        for &cpu in cpus {
            let path = instance.trace_pipe_raw(cpu);
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&path)
                .map_err(|e| io_err("open", &path, e))?;
            readers.push(CpuReader {
                cpu,
                path,
                file,
                counters: CpuCounters::default(),
            });
        }
        let pages_per_cpu = instance
            .buffer_size_kb()
            .map(|kb| (kb as usize * 1024) / layout.subbuf_size().max(1))
            .unwrap_or(1024);
        Ok(CpuReaders {
            readers,
            layout,
            buf: vec![0; layout.subbuf_size()],
            instance_dir: instance.path().to_path_buf(),
            max_reads_per_pump: pages_per_cpu.clamp(16, 1 << 16) + 2,
        })
    }

    /// The page layout the readers use.
    pub fn layout(&self) -> &PageLayout {
        &self.layout
    }

    /// The CPUs being read.
    pub fn cpus(&self) -> Vec<u32> {
        self.readers.iter().map(|r| r.cpu).collect()
    }

    /// What was read so far from `cpu`.
    pub fn counters(&self, cpu: u32) -> Option<CpuCounters> {
        self.readers
            .iter()
            .find(|r| r.cpu == cpu)
            .map(|r| r.counters)
    }

    /// The kernel's counters for `cpu` (entries, overruns, drops, reads).
    pub fn cpu_stats(&self, cpu: u32) -> Result<CpuStats, TracefsError> {
        let path = self.instance_dir.join(format!("per_cpu/cpu{cpu}/stats"));
        let text = read_text(&path)?;
        parse_cpu_stats(&text).map_err(|reason| TracefsError::Parse { path, reason })
    }

    /// Waits up to `timeout` until some CPU buffer reaches the instance's
    /// `buffer_percent`, then hands every sub-buffer that can be read to
    /// `sink(cpu, page)`, page header included. Returns the number of pages.
    /// A timeout with nothing ready returns `Ok(0)`.
    pub fn pump<E: std::error::Error + 'static>(
        &mut self,
        timeout: Duration,
        sink: &mut PageSink<'_, E>,
    ) -> Result<usize, CaptureError<E>> {
        let mut fds: Vec<libc::pollfd> = self
            .readers
            .iter()
            .map(|r| libc::pollfd {
                fd: r.file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        loop {
            // SAFETY: fds is a valid array of fds.len() pollfd structs.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if rc >= 0 {
                break;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                let r = self.readers.first();
                return Err(CaptureError::Io {
                    cpu: r.map_or(0, |r| r.cpu),
                    path: r.map(|r| r.path.clone()).unwrap_or_default(),
                    source: err,
                });
            }
        }
        let mut pages = 0;
        for (i, fd) in fds.iter().enumerate() {
            if fd.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0 {
                pages += self.read_cpu(i, self.max_reads_per_pump, true, sink)?;
            }
        }
        Ok(pages)
    }

    /// Reads, without waiting, everything now in every CPU buffer, including
    /// the page a writer is still filling. For periodic flushes while tracing.
    pub fn flush<E: std::error::Error + 'static>(
        &mut self,
        sink: &mut PageSink<'_, E>,
    ) -> Result<usize, CaptureError<E>> {
        let mut pages = 0;
        for i in 0..self.readers.len() {
            pages += self.read_cpu(i, self.max_reads_per_pump, true, sink)?;
        }
        Ok(pages)
    }

    /// After tracing is turned off, reads everything left in every CPU buffer,
    /// partial pages included, so no event stays in the kernel.
    pub fn drain<E: std::error::Error + 'static>(
        &mut self,
        sink: &mut PageSink<'_, E>,
    ) -> Result<usize, CaptureError<E>> {
        let mut pages = 0;
        for i in 0..self.readers.len() {
            // With tracing off the buffer only shrinks, so this ends; the cap
            // guards against a caller that left tracing on.
            pages += self.read_cpu(i, usize::MAX / 2, false, sink)?;
        }
        Ok(pages)
    }

    /// Reads up to `max_reads` sub-buffers of one CPU. With `caught_up_stop`,
    /// stops after a sub-buffer less than half full: the writer's own page.
    fn read_cpu<E: std::error::Error + 'static>(
        &mut self,
        index: usize,
        max_reads: usize,
        caught_up_stop: bool,
        sink: &mut PageSink<'_, E>,
    ) -> Result<usize, CaptureError<E>> {
        let Some(reader) = self.readers.get_mut(index) else {
            return Ok(0);
        };
        let mut pages = 0;
        for _ in 0..max_reads {
            let n = match reader.file.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // A CPU going offline makes its buffer unreadable; stop there.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => break,
                Err(source) => {
                    return Err(CaptureError::Io {
                        cpu: reader.cpu,
                        path: reader.path.clone(),
                        source,
                    })
                }
            };
            let Some(bytes) = self.buf.get(..n) else {
                break;
            };
            // Counting reads only the header; the sink gets the page even when
            // its header is bad, so the consumer can report it in context.
            let mut caught_up = false;
            if let Ok(page) = Page::parse(&self.layout, bytes) {
                caught_up = caught_up_stop && page.data_len() < self.layout.data_size / 2;
                if page.data_len() == 0 && page.missed() == Missed::None {
                    if caught_up {
                        break;
                    }
                    continue;
                }
                let c = &mut reader.counters;
                c.data_bytes += page.data_len() as u64;
                match page.missed() {
                    Missed::None => {}
                    Missed::Unknown => c.missed_unknown += 1,
                    Missed::Count(k) => c.missed_events += k,
                }
            }
            reader.counters.pages += 1;
            pages += 1;
            sink(reader.cpu, bytes).map_err(CaptureError::Sink)?;
            if caught_up {
                break;
            }
        }
        Ok(pages)
    }
}
