//! The live status line and the end-of-recording summary.

use super::losses::LossTracker;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use strata_store::{LiveStats, TraceStats};

/// Event types listed by name in the summary; the rest are totalled.
const SUMMARY_TYPES: usize = 30;

/// How often the status line is redrawn.
const REFRESH: Duration = Duration::from_secs(1);

/// One line on stderr, redrawn in place: elapsed time, events/s, bytes
/// written and lost events. Silent when stderr is not a terminal.
pub struct StatusLine {
    live: Arc<LiveStats>,
    enabled: bool,
    last: Option<Instant>,
    last_events: u64,
}

impl StatusLine {
    /// A status line over `live`, shown when `enabled` and stderr is a terminal.
    pub fn new(enabled: bool, live: Arc<LiveStats>) -> Self {
        StatusLine {
            live,
            enabled: enabled && std::io::stderr().is_terminal(),
            last: None,
            last_events: 0,
        }
    }

    /// Redraws the line if a refresh period has passed.
    pub fn tick(&mut self) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let since = self.last.map(|t| now - t);
        if since.is_some_and(|d| d < REFRESH) {
            return;
        }
        let s = self.live.snapshot();
        let rate = match since {
            Some(d) => (s.events - self.last_events) as f64 / d.as_secs_f64(),
            None => s.events_per_sec(),
        };
        self.last = Some(now);
        self.last_events = s.events;
        eprint!(
            "\r\x1b[K{:>7.1}s  {:>10} events/s  {:>10} written  {} lost",
            s.elapsed.as_secs_f64(),
            human_count(rate),
            human_bytes(s.bytes),
            s.lost
        );
        let _ = std::io::stderr().flush();
    }

    /// Erases the line before other output.
    pub fn clear(&mut self) {
        if self.enabled && self.last.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}

/// Prints events per type and lost events per CPU.
pub fn print_summary(dir: &Path, elapsed: Duration, stats: &TraceStats, losses: &LossTracker) {
    let total = stats.events();
    println!(
        "Recorded {} events in {:.1} s ({}/s) into {} ({})",
        total,
        elapsed.as_secs_f64(),
        human_count(total as f64 / elapsed.as_secs_f64().max(1e-9)),
        dir.display(),
        human_bytes(stats.bytes)
    );
    let mut by_count = stats.events_by_name.clone();
    by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let shown = &by_count[..by_count.len().min(SUMMARY_TYPES)];
    let width = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(5).max(5);
    println!("\n  {:<width$}  {:>12}", "event", "count");
    for (name, n) in shown {
        println!("  {name:<width$}  {n:>12}");
    }
    let rest = &by_count[shown.len()..];
    if !rest.is_empty() {
        let n: u64 = rest.iter().map(|(_, n)| n).sum();
        println!("  ... {} more event types: {n} events", rest.len());
    }
    println!(
        "\n  {:<5}  {:>12}  {:>14}",
        "cpu", "lost events", "corrupt pages"
    );
    for (cpu, lost) in stats.lost_per_cpu.iter().enumerate() {
        let corrupt = losses.corrupt_pages().get(cpu).copied().unwrap_or(0);
        println!("  {cpu:<5}  {lost:>12}  {corrupt:>14}");
    }
    if stats.unknown_type + stats.truncated > 0 {
        println!(
            "\n  {} records had no known format and {} were truncated; they are not in the trace",
            stats.unknown_type, stats.truncated
        );
    }
}

/// `1234567` as `1.23M`.
fn human_count(n: f64) -> String {
    match n {
        n if n >= 1e9 => format!("{:.2}G", n / 1e9),
        n if n >= 1e6 => format!("{:.2}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}k", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// `1234567` as `1.2 MiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
