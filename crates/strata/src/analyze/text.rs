//! The human-readable reports: one section per host and analysis, aligned
//! tables, times in UTC.

use std::fmt::Write;

use strata_analysis::analysis::common::ThreadName;
use strata_analysis::analysis::syscalls::ReturnValues;
use strata_analysis::analysis::{
    CputopReport, HostReport, IoReport, IrqReport, MemReport, Period, SchedReport, SummaryReport,
    SyscallsReport,
};
use strata_analysis::stats::{Percentiles, StatsSummary};
use strata_analysis::timespec::{format_datetime, format_time_of_day};

use super::table::{bar, bytes, duration, us, us_i, Align::Left as L, Align::Right as R, Table};

/// What the text report needs besides the numbers.
pub struct Context<'a> {
    /// The trace path as given.
    pub trace: &'a str,
    /// The analysed period.
    pub period: &'a Period,
    /// `--top` (0 = all).
    pub top: usize,
}

fn pct(v: f64) -> String {
    format!("{v:.2}")
}

fn who(t: &ThreadName) -> [String; 4] {
    [
        t.tid.to_string(),
        t.pid.to_string(),
        t.name.clone(),
        t.process.clone(),
    ]
}

fn top_label(top: usize, shown: usize) -> String {
    if top == 0 {
        String::new()
    } else {
        format!(" (top {shown})")
    }
}

fn p99(p: &Option<Percentiles>) -> [String; 2] {
    match p {
        Some(p) => [us(Some(p.p50_ns as f64)), us(Some(p.p99_ns as f64))],
        None => ["-".into(), "-".into()],
    }
}

fn stats_cells(s: &StatsSummary) -> [String; 5] {
    [
        s.count.to_string(),
        us_i(s.min_ns),
        us(s.avg_ns),
        us_i(s.max_ns),
        us(s.stdev_ns),
    ]
}

/// The header of a host's section.
pub fn header(out: &mut String, ctx: &Context<'_>, h: &HostReport) {
    let p = ctx.period;
    let _ = writeln!(
        out,
        "Trace {} — host {}, {} CPU{}\nPeriod {} to {} UTC ({})\n",
        ctx.trace,
        h.hostname,
        h.cpus,
        if h.cpus == 1 { "" } else { "s" },
        format_datetime(p.begin_ns),
        format_time_of_day(p.end_ns),
        duration(p.duration_ns)
    );
}

/// `cputop`.
pub fn cputop(out: &mut String, ctx: &Context<'_>, c: &CputopReport) {
    let _ = writeln!(
        out,
        "CPU usage per thread{}",
        top_label(ctx.top, c.threads.len())
    );
    let mut t = Table::new(&[
        ("TID", R),
        ("PID", R),
        ("Thread", L),
        ("Process", L),
        ("CPU %", R),
        ("CPU time", R),
        ("Migrations", R),
        ("Priorities", L),
    ]);
    for x in &c.threads {
        let [tid, pid, name, process] = who(&x.thread);
        let prios: Vec<String> = x.prios.iter().map(|p| p.to_string()).collect();
        t.row(vec![
            tid,
            pid,
            name,
            process,
            pct(x.usage_pct),
            duration(x.cpu_ns),
            x.migrations.to_string(),
            prios.join(", "),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nCPU usage per process{}",
        top_label(ctx.top, c.processes.len())
    );
    let mut t = Table::new(&[
        ("PID", R),
        ("Process", L),
        ("Threads", R),
        ("CPU %", R),
        ("CPU time", R),
    ]);
    for x in &c.processes {
        t.row(vec![
            x.pid.to_string(),
            x.name.clone(),
            x.threads.to_string(),
            pct(x.usage_pct),
            duration(x.cpu_ns),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nCPU usage per CPU");
    let mut t = Table::new(&[("CPU", R), ("Usage %", R), ("Busy", R), ("", L)]);
    for x in &c.cpus {
        t.row(vec![
            x.cpu.to_string(),
            pct(x.usage_pct),
            duration(x.busy_ns),
            bar(x.usage_pct, 100.0, 40),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nTotal: {} % (mean of {} CPUs)\n",
        pct(c.total_pct),
        c.cpus.len()
    );
}

fn returns(r: &ReturnValues) -> String {
    let mut parts = Vec::new();
    if r.success > 0 {
        parts.push(format!("ok {}", r.success));
    }
    for e in &r.errors {
        parts.push(format!("{} {}", e.name, e.count));
    }
    parts.join(", ")
}

/// `syscalls`.
pub fn syscalls(out: &mut String, ctx: &Context<'_>, s: &SyscallsReport) {
    let _ = writeln!(
        out,
        "Syscalls: {} by {} threads (durations in µs)\n",
        s.total, s.thread_count
    );
    let mut t = Table::new(&[
        ("Syscall", L),
        ("Count", R),
        ("Min", R),
        ("Avg", R),
        ("Max", R),
        ("Stdev", R),
        ("p50", R),
        ("p99", R),
        ("Returns", L),
    ]);
    for x in &s.syscalls {
        let [c, mi, a, ma, sd] = stats_cells(&x.stats);
        let [p50, p99] = p99(&x.percentiles);
        t.row(vec![
            x.name.clone(),
            c,
            mi,
            a,
            ma,
            sd,
            p50,
            p99,
            returns(&x.returns),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nSyscalls per process{}",
        top_label(ctx.top, s.processes.len())
    );
    let mut t = Table::new(&[
        ("PID", R),
        ("Process", L),
        ("Threads", R),
        ("Count", R),
        ("Errors", R),
    ]);
    for x in &s.processes {
        t.row(vec![
            x.pid.to_string(),
            x.name.clone(),
            x.threads.to_string(),
            x.count.to_string(),
            x.errors.to_string(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nSyscalls per thread{}",
        top_label(ctx.top, s.threads.len())
    );
    for th in &s.threads {
        let _ = writeln!(
            out,
            "\n  {} (tid {}, pid {}, process {}): {} syscalls",
            th.thread.name, th.thread.tid, th.thread.pid, th.thread.process, th.count
        );
        let mut t = Table::new(&[
            ("Syscall", L),
            ("Count", R),
            ("Min", R),
            ("Avg", R),
            ("Max", R),
            ("Stdev", R),
            ("Returns", L),
        ]);
        for x in &th.syscalls {
            let [c, mi, a, ma, sd] = stats_cells(&x.stats);
            t.row(vec![x.name.clone(), c, mi, a, ma, sd, returns(&x.returns)]);
        }
        for l in t.render().lines() {
            let _ = writeln!(out, "  {l}");
        }
    }
    out.push('\n');
}

/// `sched`.
pub fn sched(out: &mut String, ctx: &Context<'_>, s: &SchedReport) {
    let [p50, p99v] = p99(&s.percentiles);
    let _ = writeln!(
        out,
        "Wakeup-to-run latency: {} wakeups, min {} µs, avg {} µs, max {} µs, stdev {} µs, p50 {} µs, p99 {} µs\n",
        s.total.count,
        us_i(s.total.min_ns),
        us(s.total.avg_ns),
        us_i(s.total.max_ns),
        us(s.total.stdev_ns),
        p50,
        p99v
    );
    if !s.histogram.is_empty() {
        let _ = writeln!(out, "Distribution");
        let max = s.histogram.iter().map(|b| b.count).max().unwrap_or(0) as f64;
        let mut t = Table::new(&[("Up to (µs)", R), ("Count", R), ("", L)]);
        for b in &s.histogram {
            t.row(vec![
                us(Some(b.le_ns as f64)),
                b.count.to_string(),
                bar(b.count as f64, max, 40),
            ]);
        }
        out.push_str(&t.render());
        out.push('\n');
    }
    let _ = writeln!(out, "Per priority (µs)");
    let mut t = Table::new(&[
        ("Prio", R),
        ("Count", R),
        ("Min", R),
        ("Avg", R),
        ("Max", R),
        ("Stdev", R),
        ("p50", R),
        ("p99", R),
    ]);
    for x in &s.prios {
        let [c, mi, a, ma, sd] = stats_cells(&x.stats);
        let [p50, p99] = p99(&x.percentiles);
        t.row(vec![x.prio.to_string(), c, mi, a, ma, sd, p50, p99]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nPer process, largest maximum first{} (µs)",
        top_label(ctx.top, s.processes.len())
    );
    let mut t = Table::new(&[
        ("PID", R),
        ("Process", L),
        ("Threads", R),
        ("Count", R),
        ("Min", R),
        ("Avg", R),
        ("Max", R),
        ("Stdev", R),
    ]);
    for x in &s.processes {
        let [c, mi, a, ma, sd] = stats_cells(&x.stats);
        t.row(vec![
            x.pid.to_string(),
            x.name.clone(),
            x.threads.to_string(),
            c,
            mi,
            a,
            ma,
            sd,
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nPer thread, largest maximum first{} (µs)",
        top_label(ctx.top, s.threads.len())
    );
    let mut t = Table::new(&[
        ("TID", R),
        ("PID", R),
        ("Thread", L),
        ("Process", L),
        ("Count", R),
        ("Min", R),
        ("Avg", R),
        ("Max", R),
        ("Stdev", R),
    ]);
    for x in &s.threads {
        let [tid, pid, name, process] = who(&x.thread);
        let [c, mi, a, ma, sd] = stats_cells(&x.stats);
        t.row(vec![tid, pid, name, process, c, mi, a, ma, sd]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nLargest latencies");
    let mut t = Table::new(&[
        ("Wakeup", L),
        ("Switch in", L),
        ("Latency (µs)", R),
        ("CPU", R),
        ("Prio", R),
        ("Woken", L),
        ("Waker", L),
    ]);
    for w in &s.worst {
        t.row(vec![
            format_time_of_day(w.wakeup_ns),
            format_time_of_day(w.switch_ns),
            us_i(Some(w.latency_ns)),
            w.cpu.to_string(),
            w.prio.map_or("-".into(), |p| p.to_string()),
            format!("{} ({})", w.wakee.name, w.wakee.tid),
            w.waker
                .as_ref()
                .map_or("-".into(), |x| format!("{} ({})", x.name, x.tid)),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}

/// `irq`.
pub fn irq(out: &mut String, r: &IrqReport) {
    for (title, rows, soft) in [
        ("Hard IRQs (durations in µs)", &r.hard, false),
        ("Softirqs (durations in µs)", &r.soft, true),
    ] {
        let _ = writeln!(out, "{title}");
        let mut cols = vec![
            ("#", R),
            ("Name", L),
            ("Count", R),
            ("Rate /s", R),
            ("Min", R),
            ("Avg", R),
            ("Max", R),
            ("Stdev", R),
            ("p99", R),
        ];
        if soft {
            cols.extend([("Raise→entry avg", R), ("max", R)]);
        }
        let mut t = Table::new(&cols);
        for x in rows {
            let [c, mi, a, ma, sd] = stats_cells(&x.stats);
            let [_, p99] = p99(&x.percentiles);
            let mut row = vec![
                x.number.to_string(),
                x.name.clone(),
                c,
                format!("{:.1}", x.rate_per_s),
                mi,
                a,
                ma,
                sd,
                p99,
            ];
            if let Some(l) = &x.raise_latency {
                row.extend([us(l.avg_ns), us_i(l.max_ns)]);
            }
            t.row(row);
        }
        out.push_str(&t.render());
        out.push('\n');
    }
    let _ = writeln!(out, "Per CPU");
    let mut t = Table::new(&[("CPU", R), ("Hard IRQs", R), ("Softirqs", R)]);
    for c in &r.cpus {
        t.row(vec![
            c.cpu.to_string(),
            c.hard.to_string(),
            c.soft.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}

/// `io`.
pub fn io(out: &mut String, ctx: &Context<'_>, r: &IoReport) {
    let _ = writeln!(out, "I/O syscall latency (µs)");
    let mut t = Table::new(&[
        ("Kind", L),
        ("Count", R),
        ("Min", R),
        ("Avg", R),
        ("Max", R),
        ("Stdev", R),
        ("p50", R),
        ("p99", R),
    ]);
    for x in &r.latency {
        let [c, mi, a, ma, sd] = stats_cells(&x.stats);
        let [p50, p99] = p99(&x.percentiles);
        t.row(vec![x.op.to_string(), c, mi, a, ma, sd, p50, p99]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nI/O per process{}",
        top_label(ctx.top, r.processes.len())
    );
    let mut t = Table::new(&[
        ("PID", R),
        ("Process", L),
        ("Threads", R),
        ("Read", R),
        ("Written", R),
        ("Reads", R),
        ("Writes", R),
    ]);
    for x in &r.processes {
        t.row(vec![
            x.pid.to_string(),
            x.name.clone(),
            x.threads.to_string(),
            bytes(x.syscalls.read_bytes),
            bytes(x.syscalls.write_bytes),
            x.syscalls.reads.to_string(),
            x.syscalls.writes.to_string(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nI/O per thread{}",
        top_label(ctx.top, r.threads.len())
    );
    let mut t = Table::new(&[
        ("TID", R),
        ("PID", R),
        ("Thread", L),
        ("Process", L),
        ("Read", R),
        ("Written", R),
        ("Block read", R),
        ("Block written", R),
    ]);
    for x in &r.threads {
        let [tid, pid, name, process] = who(&x.thread);
        t.row(vec![
            tid,
            pid,
            name,
            process,
            bytes(x.syscalls.read_bytes),
            bytes(x.syscalls.write_bytes),
            bytes(x.block.read_bytes),
            bytes(x.block.write_bytes),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nI/O per file{}", top_label(ctx.top, r.files.len()));
    let mut t = Table::new(&[
        ("File", L),
        ("Read", R),
        ("Written", R),
        ("Reads", R),
        ("Writes", R),
    ]);
    for x in &r.files {
        t.row(vec![
            x.name.clone(),
            bytes(x.bytes.read_bytes),
            bytes(x.bytes.write_bytes),
            x.bytes.reads.to_string(),
            x.bytes.writes.to_string(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nBlock requests per disk (latency in µs)");
    let mut t = Table::new(&[
        ("Disk", L),
        ("Requests", R),
        ("Read", R),
        ("Written", R),
        ("Bandwidth", R),
        ("Avg", R),
        ("Max", R),
        ("p99", R),
    ]);
    for d in &r.disks {
        let [_, p99] = p99(&d.percentiles);
        t.row(vec![
            d.name.clone(),
            d.requests.to_string(),
            bytes(d.read_bytes),
            bytes(d.write_bytes),
            format!("{}/s", bytes(d.bandwidth_bps as u64)),
            us(d.latency.avg_ns),
            us_i(d.latency.max_ns),
            p99,
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}

/// `mem`.
pub fn mem(out: &mut String, ctx: &Context<'_>, r: &MemReport) {
    let t0 = &r.total;
    let _ = writeln!(
        out,
        "Pages allocated {}, freed {}; page faults: {} user, {} kernel\n",
        t0.pages_allocated, t0.pages_freed, t0.user_faults, t0.kernel_faults
    );
    let _ = writeln!(out, "Per process{}", top_label(ctx.top, r.processes.len()));
    let mut t = Table::new(&[
        ("PID", R),
        ("Process", L),
        ("Threads", R),
        ("Allocated", R),
        ("Freed", R),
        ("User faults", R),
        ("Kernel faults", R),
    ]);
    for x in &r.processes {
        let c = &x.counts;
        t.row(vec![
            x.pid.to_string(),
            x.name.clone(),
            x.threads.to_string(),
            c.pages_allocated.to_string(),
            c.pages_freed.to_string(),
            c.user_faults.to_string(),
            c.kernel_faults.to_string(),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nPer thread{}", top_label(ctx.top, r.threads.len()));
    let mut t = Table::new(&[
        ("TID", R),
        ("PID", R),
        ("Thread", L),
        ("Process", L),
        ("Allocated", R),
        ("Freed", R),
        ("User faults", R),
        ("Kernel faults", R),
    ]);
    for x in &r.threads {
        let [tid, pid, name, process] = who(&x.thread);
        let c = &x.counts;
        t.row(vec![
            tid,
            pid,
            name,
            process,
            c.pages_allocated.to_string(),
            c.pages_freed.to_string(),
            c.user_faults.to_string(),
            c.kernel_faults.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}

/// `summary`.
pub fn summary(out: &mut String, ctx: &Context<'_>, s: &SummaryReport) {
    let _ = writeln!(
        out,
        "{} events, {} threads seen, {} syscalls",
        s.events, s.threads_seen, s.syscalls
    );
    let lost: u64 = s.lost.iter().map(|l| l.lost).sum();
    if lost == 0 {
        let _ = writeln!(out, "No events lost");
    } else {
        let per: Vec<String> = s
            .lost
            .iter()
            .map(|l| format!("CPU {}: {}", l.cpu, l.lost))
            .collect();
        let _ = writeln!(out, "Lost events: {lost} ({})", per.join(", "));
    }
    let a = &s.anomalies;
    let _ = writeln!(
        out,
        "Not attributed: {} syscall entries before their CPU's first switch, {} exits without entry, {} IRQ exits without entry; {} switches contradicting the state, {} untraced switches found from tid contexts\n",
        a.syscalls_unattributed,
        a.syscall_exits_unpaired,
        a.irq_exits_unpaired,
        a.switch_mismatches,
        a.context_corrections
    );
    let _ = writeln!(out, "Events per type");
    let mut t = Table::new(&[("Event", L), ("Count", R), ("%", R)]);
    for c in &s.event_counts {
        t.row(vec![
            c.name.clone(),
            c.count.to_string(),
            format!("{:.2}", c.count as f64 * 100.0 / s.events.max(1) as f64),
        ]);
    }
    out.push_str(&t.render());
    let _ = writeln!(
        out,
        "\nBusiest threads{}",
        top_label(ctx.top, s.top_threads.len())
    );
    let mut t = Table::new(&[
        ("TID", R),
        ("PID", R),
        ("Thread", L),
        ("Process", L),
        ("CPU %", R),
        ("CPU time", R),
        ("Syscalls", R),
    ]);
    for x in &s.top_threads {
        let [tid, pid, name, process] = who(&x.thread);
        t.row(vec![
            tid,
            pid,
            name,
            process,
            pct(x.usage_pct),
            duration(x.cpu_ns),
            x.syscalls.to_string(),
        ]);
    }
    out.push_str(&t.render());
    out.push('\n');
}
