//! `irq`: hard IRQ and softirq handler durations and rates, and softirq
//! raise-to-entry latency, per IRQ line, per vector and per CPU.

use serde::Serialize;

use crate::filter::Filter;
use crate::hash::{int_map, IntMap};
use crate::observer::{IrqDone, SoftirqDone};
use crate::state::Machine;
use crate::stats::{Hist, Percentiles, Stats, StatsSummary};

/// Softirq vector names, by number (`include/linux/interrupt.h`).
pub const SOFTIRQ_NAMES: [&str; 10] = [
    "HI", "TIMER", "NET_TX", "NET_RX", "BLOCK", "IRQ_POLL", "TASKLET", "SCHED", "HRTIMER", "RCU",
];

#[derive(Debug, Clone, Default)]
struct Line {
    stats: Stats,
    hist: Hist,
    raise: Stats,
}

/// The irq accumulator.
#[derive(Debug, Clone)]
pub struct Irqs {
    filter: Filter,
    hard: IntMap<i64, Line>,
    soft: Vec<Line>,
    per_cpu: Vec<(u64, u64)>,
}

/// One IRQ line or softirq vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IrqRow {
    /// IRQ number or softirq vector.
    pub number: i64,
    /// Handler names (hard IRQs), or the vector's name.
    pub name: String,
    /// Handler durations, ns.
    #[serde(flatten)]
    pub stats: StatsSummary,
    /// Duration percentiles.
    pub percentiles: Option<Percentiles>,
    /// Handler runs per second of the period.
    pub rate_per_s: f64,
    /// Softirqs only: raise-to-entry latency, ns, over the runs whose raise
    /// was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raise_latency: Option<StatsSummary>,
}

/// Handler runs on one CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuIrqs {
    /// The CPU.
    pub cpu: u32,
    /// Hard IRQ handler runs.
    pub hard: u64,
    /// Softirq handler runs.
    pub soft: u64,
}

/// What `irq` reports.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IrqReport {
    /// Hard IRQs, by number.
    pub hard: Vec<IrqRow>,
    /// Softirqs, by vector.
    pub soft: Vec<IrqRow>,
    /// Per CPU.
    pub cpus: Vec<CpuIrqs>,
}

impl Irqs {
    /// An accumulator counting the CPUs `filter` selects.
    pub fn new(filter: Filter) -> Irqs {
        Irqs {
            filter,
            hard: int_map(),
            soft: Vec::new(),
            per_cpu: Vec::new(),
        }
    }

    fn cpu(&mut self, cpu: u32) -> &mut (u64, u64) {
        let i = cpu as usize;
        if self.per_cpu.len() <= i {
            self.per_cpu.resize(i + 1, (0, 0));
        }
        &mut self.per_cpu[i]
    }

    /// Counts a hard IRQ.
    pub fn irq(&mut self, d: &IrqDone) {
        if !self.filter.cpu_ok(d.cpu) {
            return;
        }
        let l = self.hard.entry(d.irq).or_default();
        l.stats.add(d.exit.saturating_sub(d.entry));
        l.hist.add(d.exit.saturating_sub(d.entry));
        self.cpu(d.cpu).0 += 1;
    }

    /// Counts a softirq.
    pub fn softirq(&mut self, d: &SoftirqDone) {
        if !self.filter.cpu_ok(d.cpu) {
            return;
        }
        let v = d.vec as usize;
        if self.soft.len() <= v {
            self.soft.resize_with(v + 1, Line::default);
        }
        let l = &mut self.soft[v];
        l.stats.add(d.exit.saturating_sub(d.entry));
        l.hist.add(d.exit.saturating_sub(d.entry));
        if let Some(r) = d.raise {
            l.raise.add(d.entry.saturating_sub(r));
        }
        self.cpu(d.cpu).1 += 1;
    }

    /// The report over a period of `duration` ns.
    pub fn report(&self, m: &Machine, duration: i64) -> IrqReport {
        let secs = duration as f64 / 1e9;
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let mut hard: Vec<IrqRow> = self
            .hard
            .iter()
            .map(|(&irq, l)| IrqRow {
                number: irq,
                name: m.irq_names(irq).join(", "),
                stats: l.stats.summary(),
                percentiles: l.hist.percentiles(),
                rate_per_s: rate(l.stats.count),
                raise_latency: None,
            })
            .collect();
        hard.sort_by_key(|r| r.number);
        let soft = self
            .soft
            .iter()
            .enumerate()
            .filter(|(_, l)| l.stats.count > 0)
            .map(|(v, l)| IrqRow {
                number: v as i64,
                name: SOFTIRQ_NAMES
                    .get(v)
                    .map_or(format!("vec {v}"), |s| s.to_string()),
                stats: l.stats.summary(),
                percentiles: l.hist.percentiles(),
                rate_per_s: rate(l.stats.count),
                raise_latency: Some(l.raise.summary()),
            })
            .collect();
        let cpus = self
            .per_cpu
            .iter()
            .enumerate()
            .filter(|(_, c)| c.0 + c.1 > 0)
            .map(|(i, c)| CpuIrqs {
                cpu: i as u32,
                hard: c.0,
                soft: c.1,
            })
            .collect();
        IrqReport { hard, soft, cpus }
    }
}
