//! The Prometheus text exposition (format 0.0.4) of the relay and its hosts.
//!
//! Relay-wide: `strata_relay_*` (events, bytes, frames, connections and why
//! they ended, live latency). Per host, labelled `session` and `host`:
//! connection state, lag, events, losses, CPU usage per CPU, the top
//! processes by CPU, syscall counts, rates and duration histograms, and
//! the live latency.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

use crate::analysis::hist::DECADES_NS;
use crate::analysis::unix_now_ns;
use crate::registry::{lock, Registry};

/// Escapes a label value.
fn esc(v: &str) -> String {
    let mut o = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => o.push_str("\\\\"),
            '"' => o.push_str("\\\""),
            '\n' => o.push_str("\\n"),
            c => o.push(c),
        }
    }
    o
}

struct Out {
    text: String,
    declared: Vec<&'static str>,
}

impl Out {
    fn head(&mut self, name: &'static str, kind: &str, help: &str) {
        if !self.declared.contains(&name) {
            self.declared.push(name);
            let _ = writeln!(self.text, "# HELP {name} {help}");
            let _ = writeln!(self.text, "# TYPE {name} {kind}");
        }
    }
    fn line(&mut self, name: &str, labels: &str, v: impl std::fmt::Display) {
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {v}");
        } else {
            let _ = writeln!(self.text, "{name}{{{labels}}} {v}");
        }
    }
}

fn summary(out: &mut Out, name: &'static str, help: &str, labels: &str, h: &Histogram<u64>) {
    out.head(name, "summary", help);
    let sep = if labels.is_empty() { "" } else { "," };
    for q in [0.5, 0.99, 0.999] {
        let v = h.value_at_quantile(q) as f64 / 1e9;
        out.line(name, &format!("{labels}{sep}quantile=\"{q}\""), v);
    }
    out.line(
        &format!("{name}_sum"),
        labels,
        h.mean() * h.len() as f64 / 1e9,
    );
    out.line(&format!("{name}_count"), labels, h.len());
}

/// The whole exposition; `top` processes per host.
pub fn render(reg: &Registry, top: usize) -> String {
    let mut out = Out {
        text: String::with_capacity(16 << 10),
        declared: Vec::new(),
    };
    let t = &reg.totals;
    out.head(
        "strata_relay_events_total",
        "counter",
        "Events decoded and stored, all hosts.",
    );
    out.line(
        "strata_relay_events_total",
        "",
        t.events.load(Ordering::Relaxed),
    );
    out.head(
        "strata_relay_received_bytes_total",
        "counter",
        "Bytes of frames received from agents.",
    );
    out.line(
        "strata_relay_received_bytes_total",
        "",
        t.wire_bytes.load(Ordering::Relaxed),
    );
    out.head(
        "strata_relay_stored_bytes_total",
        "counter",
        "Bytes written to trace files.",
    );
    out.line(
        "strata_relay_stored_bytes_total",
        "",
        t.stored_bytes.load(Ordering::Relaxed),
    );
    out.head(
        "strata_relay_frames_total",
        "counter",
        "Data frames stored.",
    );
    out.line(
        "strata_relay_frames_total",
        "",
        t.frames.load(Ordering::Relaxed),
    );
    out.head(
        "strata_relay_connections_total",
        "counter",
        "Agent connections accepted.",
    );
    out.line(
        "strata_relay_connections_total",
        "",
        t.accepted.load(Ordering::Relaxed),
    );
    out.head(
        "strata_relay_connections_ended_total",
        "counter",
        "Agent connections ended, by reason.",
    );
    for (reason, n) in lock(&t.dropped).iter() {
        out.line(
            "strata_relay_connections_ended_total",
            &format!("reason=\"{reason}\""),
            n,
        );
    }
    summary(
        &mut out,
        "strata_relay_live_latency_seconds",
        "From an event's timestamp to the moment the live analysis applied it, all hosts.",
        "",
        &lock(&reg.latency),
    );

    let now = unix_now_ns();
    for e in reg.hosts() {
        let st = lock(&e.status).clone();
        let l = format!(
            "session=\"{}\",host=\"{}\"",
            esc(&st.session),
            esc(&st.host)
        );
        out.head(
            "strata_host_connected",
            "gauge",
            "1 while the host's agent is connected.",
        );
        out.line("strata_host_connected", &l, (st.state == "connected") as u8);
        out.head(
            "strata_host_received_bytes_total",
            "counter",
            "Bytes of frames received from the host.",
        );
        out.line("strata_host_received_bytes_total", &l, st.wire_bytes);
        out.head(
            "strata_host_last_seen_seconds",
            "gauge",
            "When the relay last heard from the host (Unix time).",
        );
        out.line(
            "strata_host_last_seen_seconds",
            &l,
            st.last_seen_ms as f64 / 1e3,
        );
        let live = lock(&e.live);
        let Some(h) = live.as_ref() else { continue };
        out.head(
            "strata_host_events_total",
            "counter",
            "Events the live analysis applied.",
        );
        out.line("strata_host_events_total", &l, h.applied());
        if let Some(newest) = h.newest() {
            out.head(
                "strata_host_lag_seconds",
                "gauge",
                "Now minus the time of the host's newest event applied (agent lag).",
            );
            out.line(
                "strata_host_lag_seconds",
                &l,
                now.saturating_sub(newest) as f64 / 1e9,
            );
        }
        out.head(
            "strata_host_lost_events_total",
            "counter",
            "Events lost on the host (ring buffer, spool, corrupt pages), per CPU.",
        );
        for (cpu, &n) in h.lost().iter().enumerate() {
            out.line(
                "strata_host_lost_events_total",
                &format!("{l},cpu=\"{cpu}\""),
                n,
            );
        }
        summary(
            &mut out,
            "strata_host_live_latency_seconds",
            "From an event's timestamp to the moment the live analysis applied it.",
            &l,
            h.latency(),
        );
        let cpus = h.cpus_report();
        out.head(
            "strata_host_cpu_usage_ratio",
            "gauge",
            "Busy share of each CPU over the sliding window.",
        );
        for c in &cpus.cpus {
            out.line(
                "strata_host_cpu_usage_ratio",
                &format!("{l},cpu=\"{}\"", c.cpu),
                c.usage_pct / 100.0,
            );
        }
        let threads = h.threads_report(top);
        out.head(
            "strata_host_process_cpu_ratio",
            "gauge",
            "CPU used by the top processes over the sliding window, in CPUs.",
        );
        for p in &threads.processes {
            out.line(
                "strata_host_process_cpu_ratio",
                &format!("{l},pid=\"{}\",comm=\"{}\"", p.pid, esc(&p.comm)),
                p.cpu_pct / 100.0,
            );
        }
        let sys = h.syscalls_report(usize::MAX);
        out.head(
            "strata_host_syscall_rate_per_second",
            "gauge",
            "Syscalls per second over the sliding window.",
        );
        for s in &sys.syscalls {
            out.line(
                "strata_host_syscall_rate_per_second",
                &format!("{l},syscall=\"{}\"", esc(&s.name)),
                s.rate_per_s,
            );
        }
        out.head(
            "strata_host_syscalls_total",
            "counter",
            "Syscalls completed.",
        );
        out.head(
            "strata_host_syscall_errors_total",
            "counter",
            "Syscalls that returned an error.",
        );
        out.head(
            "strata_host_syscall_duration_seconds",
            "histogram",
            "Syscall durations, entry to exit.",
        );
        for (id, s) in h.window().syscall_stats() {
            let sl = format!("{l},syscall=\"{}\"", esc(h.syscall_name(id)));
            out.line("strata_host_syscalls_total", &sl, s.count);
            out.line("strata_host_syscall_errors_total", &sl, s.errors);
            let cum = s.total.cumulative_decades();
            for (b, n) in DECADES_NS.iter().zip(cum) {
                out.line(
                    "strata_host_syscall_duration_seconds_bucket",
                    &format!("{sl},le=\"{}\"", *b as f64 / 1e9),
                    n,
                );
            }
            out.line(
                "strata_host_syscall_duration_seconds_bucket",
                &format!("{sl},le=\"+Inf\""),
                s.total.count(),
            );
            out.line(
                "strata_host_syscall_duration_seconds_sum",
                &sl,
                s.total.sum() as f64 / 1e9,
            );
            out.line(
                "strata_host_syscall_duration_seconds_count",
                &sl,
                s.total.count(),
            );
        }
        if h.has_vms() {
            vm_metrics(&mut out, &l, &h.vms_report(&st.host, top));
        }
    }
    if let Some(r) = reg.rules.get() {
        out.text.push_str(&r.render_metrics());
    }
    out.text
}

/// Per-VM metrics of one host (the VM model fed live): cumulative vCPU
/// time by state (per VM and per vCPU), exits by reason, steal, who
/// preempted whom, vCPU count and overcommit.
fn vm_metrics(out: &mut Out, l: &str, r: &strata_analysis::vm::VmHostReport) {
    out.head(
        "strata_vm_info",
        "gauge",
        "One per live VM: its UUID, VMM pid and accelerator.",
    );
    out.head(
        "strata_vm_vcpus",
        "gauge",
        "vCPU threads of each VM found on the host.",
    );
    out.head(
        "strata_vm_vcpu_seconds_total",
        "counter",
        "vCPU time of each VM by state (running, vmm, preempted, idle, unknown), all its vCPUs.",
    );
    out.head(
        "strata_vm_vcpu_state_seconds_total",
        "counter",
        "Time of each vCPU by state (running, vmm, preempted, idle, unknown).",
    );
    out.head(
        "strata_vm_steal_ratio",
        "gauge",
        "Preempted share of the CPU time each VM wanted (running + vmm + preempted).",
    );
    out.head(
        "strata_vm_vcpu_steal_ratio",
        "gauge",
        "Preempted share of the CPU time each vCPU wanted.",
    );
    out.head(
        "strata_vm_exits_total",
        "counter",
        "VM exits by reason (in-kernel, and user: for userspace exits).",
    );
    out.head(
        "strata_vm_preempted_by_seconds_total",
        "counter",
        "Time a VM's vCPUs waited for a host CPU, by what ran there (vm/vcpu, a host thread, idle).",
    );
    out.head(
        "strata_vm_overcommit_seconds_total",
        "counter",
        "Time more vCPUs were runnable than the host has CPUs.",
    );
    out.head(
        "strata_vm_runnable_vcpus_max",
        "gauge",
        "Most vCPUs runnable at once.",
    );
    out.head(
        "strata_vm_sync_bound_seconds",
        "gauge",
        "Accuracy bound of the live guest-to-host clock sync from the guest's probes.",
    );
    out.head(
        "strata_vm_sync_pairs",
        "gauge",
        "Guest probes paired with a host event by the live clock sync.",
    );
    let states = |t: &strata_analysis::vm::report::Times| {
        [
            ("running", Some(t.running_ns)),
            ("vmm", t.vmm_ns),
            ("preempted", Some(t.preempted_ns)),
            ("idle", Some(t.idle_ns)),
            ("unknown", Some(t.unknown_ns)),
        ]
    };
    for vm in &r.vms {
        let vl = format!("{l},vm=\"{}\"", esc(&vm.name));
        out.line(
            "strata_vm_info",
            &format!(
                "{vl},uuid=\"{}\",pid=\"{}\",accel=\"{}\"",
                esc(vm.uuid.as_deref().unwrap_or("")),
                vm.pid.map_or(String::new(), |p| p.to_string()),
                match vm.accel {
                    strata_analysis::vm::model::Accel::Kvm => "kvm",
                    strata_analysis::vm::model::Accel::Tcg => "tcg",
                    strata_analysis::vm::model::Accel::Unknown => "unknown",
                }
            ),
            1,
        );
        out.line("strata_vm_vcpus", &vl, vm.vcpus.len());
        if let Some(sy) = vm.guest.as_ref().and_then(|g| g.sync.as_ref()) {
            out.line("strata_vm_sync_bound_seconds", &vl, sy.bound_ns / 1e9);
            out.line("strata_vm_sync_pairs", &vl, sy.paired);
        }
        for (name, ns) in states(&vm.times) {
            if let Some(ns) = ns {
                out.line(
                    "strata_vm_vcpu_seconds_total",
                    &format!("{vl},state=\"{name}\""),
                    ns as f64 / 1e9,
                );
            }
        }
        for v in &vm.vcpus {
            let cl = format!("{vl},vcpu=\"{}\"", v.id);
            for (name, ns) in states(&v.times) {
                if let Some(ns) = ns {
                    out.line(
                        "strata_vm_vcpu_state_seconds_total",
                        &format!("{cl},state=\"{name}\""),
                        ns as f64 / 1e9,
                    );
                }
            }
            if let Some(st) = v.times.steal_pct {
                out.line("strata_vm_vcpu_steal_ratio", &cl, st / 100.0);
            }
        }
        if let Some(st) = vm.times.steal_pct {
            out.line("strata_vm_steal_ratio", &vl, st / 100.0);
        }
        for e in vm.exits.iter().chain(&vm.userspace_exits) {
            out.line(
                "strata_vm_exits_total",
                &format!("{vl},reason=\"{}\"", esc(&e.reason)),
                e.count,
            );
        }
        for p in &vm.preempted_by {
            let by = match (p.kind, &p.vm, p.vcpu) {
                ("vcpu", Some(v), Some(n)) => format!("{v}/{n}"),
                ("idle", _, _) => "idle".to_string(),
                ("unknown", _, _) => "unknown".to_string(),
                _ => format!("{} ({})", p.comm, p.tid.unwrap_or(-1)),
            };
            out.line(
                "strata_vm_preempted_by_seconds_total",
                &format!("{vl},kind=\"{}\",by=\"{}\"", p.kind, esc(&by)),
                p.ns as f64 / 1e9,
            );
        }
    }
    out.line(
        "strata_vm_overcommit_seconds_total",
        l,
        r.overcommit.total_ns as f64 / 1e9,
    );
    out.line("strata_vm_runnable_vcpus_max", l, r.overcommit.max_runnable);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(esc(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(esc("x\ny"), "x\\ny");
    }

    #[test]
    fn an_empty_relay_renders_valid_lines() {
        let r = Registry::new();
        let text = render(&r, 5);
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.split(' ').count() == 2,
                "bad line {line:?}"
            );
        }
        assert!(text.contains("strata_relay_events_total 0"));
        assert!(text.contains("strata_relay_live_latency_seconds_count 0"));
    }
}
