//! What `strata top` shows and how keys change it; no terminal I/O here.

use super::api::{Host, HostView, Syscall, Thread, VmTimes, Vms};

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// CPUs, top threads and processes.
    Cpu,
    /// Syscall rates and latency.
    Syscalls,
    /// Lost events, lag and live latency of every host.
    Health,
    /// Per VM and vCPU: running, hypervisor, preempted (by whom), idle.
    Vms,
}

impl View {
    /// All views, in key order (1, 2, 3, 4).
    pub const ALL: [View; 4] = [View::Cpu, View::Syscalls, View::Health, View::Vms];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Cpu => "1 CPU",
            View::Syscalls => "2 Syscalls",
            View::Health => "3 Health",
            View::Vms => "4 VMs",
        }
    }
}

/// How the thread table is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadSort {
    /// Most CPU first.
    Cpu,
    /// By thread id.
    Tid,
    /// By name.
    Name,
}

/// How the syscall table is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallSort {
    /// Most calls per second first.
    Rate,
    /// Slowest (p99) first.
    Latency,
    /// Most errors first.
    Errors,
}

/// A key press, as far as `top` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character key.
    Char(char),
    /// Tab.
    Tab,
    /// Left arrow.
    Left,
    /// Right arrow.
    Right,
    /// Escape.
    Esc,
}

/// The viewer's state.
#[derive(Debug)]
pub struct App {
    /// Where the data comes from, for the title.
    pub source: String,
    /// The hosts, as the relay listed them last.
    pub hosts: Vec<Host>,
    /// Index of the selected host.
    pub selected: usize,
    /// The screen shown.
    pub view: View,
    /// Thread order.
    pub thread_sort: ThreadSort,
    /// Syscall order.
    pub syscall_sort: SyscallSort,
    /// The selected host's data.
    pub data: Option<HostView>,
    /// The VMs of the refresh before, for shares over the last interval.
    pub prev_vms: Option<Vms>,
    /// The last error talking to the relay.
    pub error: Option<String>,
    /// Set when the user asked to leave.
    pub quit: bool,
    /// Set when the user asked for a refresh now.
    pub refresh_now: bool,
}

impl App {
    /// A viewer of `source` with nothing loaded yet.
    pub fn new(source: String) -> App {
        App {
            source,
            hosts: Vec::new(),
            selected: 0,
            view: View::Cpu,
            thread_sort: ThreadSort::Cpu,
            syscall_sort: SyscallSort::Rate,
            data: None,
            prev_vms: None,
            error: None,
            quit: false,
            refresh_now: false,
        }
    }

    /// The selected host, if any.
    pub fn host(&self) -> Option<&Host> {
        self.hosts.get(self.selected)
    }

    /// Takes a new host list, keeping the selection on the same host.
    pub fn set_hosts(&mut self, hosts: Vec<Host>) {
        let current = self.host().map(|h| (h.session.clone(), h.host.clone()));
        self.hosts = hosts;
        self.selected = current
            .and_then(|(s, h)| {
                self.hosts
                    .iter()
                    .position(|x| x.session == s && x.host == h)
            })
            .unwrap_or(0)
            .min(self.hosts.len().saturating_sub(1));
    }

    /// Applies a key press.
    pub fn key(&mut self, key: Key) {
        let n = self.hosts.len().max(1);
        match key {
            Key::Char('q') | Key::Esc => self.quit = true,
            Key::Tab | Key::Char('v') => {
                let i = View::ALL.iter().position(|v| *v == self.view).unwrap_or(0);
                self.view = View::ALL[(i + 1) % View::ALL.len()];
            }
            Key::Char(c @ '1'..='4') => self.view = View::ALL[(c as u8 - b'1') as usize],
            Key::Right | Key::Char('l') | Key::Char('n') => {
                self.selected = (self.selected + 1) % n;
                self.data = None;
                self.refresh_now = true;
            }
            Key::Left | Key::Char('h') | Key::Char('p') => {
                self.selected = (self.selected + n - 1) % n;
                self.data = None;
                self.refresh_now = true;
            }
            Key::Char('s') => match self.view {
                View::Cpu => {
                    self.thread_sort = match self.thread_sort {
                        ThreadSort::Cpu => ThreadSort::Tid,
                        ThreadSort::Tid => ThreadSort::Name,
                        ThreadSort::Name => ThreadSort::Cpu,
                    }
                }
                View::Syscalls | View::Health | View::Vms => {
                    self.syscall_sort = match self.syscall_sort {
                        SyscallSort::Rate => SyscallSort::Latency,
                        SyscallSort::Latency => SyscallSort::Errors,
                        SyscallSort::Errors => SyscallSort::Rate,
                    }
                }
            },
            Key::Char('r') => self.refresh_now = true,
            _ => {}
        }
    }

    /// Takes a refresh of the selected host, keeping the VMs of the one
    /// before so that VM shares cover the last interval.
    pub fn set_data(&mut self, v: HostView) {
        self.prev_vms = self.data.take().map(|d| d.vms);
        self.data = Some(v);
    }

    /// The VM view's rows: each VM, then its vCPUs; shares over the last
    /// refresh interval when there was one, else since the relay saw the host.
    pub fn vm_rows(&self) -> Vec<VmRow> {
        let Some(d) = &self.data else {
            return Vec::new();
        };
        let mut rows = Vec::new();
        for vm in &d.vms.vms {
            let before = self.prev_vms.as_ref().and_then(|p| {
                p.vms
                    .iter()
                    .find(|x| x.name == vm.name && x.uuid == vm.uuid)
            });
            let exits: Vec<String> = vm
                .exits
                .iter()
                .chain(&vm.userspace_exits)
                .take(3)
                .map(|e| format!("{} {}", e.reason, e.count))
                .collect();
            rows.push(VmRow {
                vm: true,
                label: format!("{} ({}, {} vCPU)", vm.name, vm.accel, vm.vcpus.len()),
                tid: None,
                shares: Shares::of(&vm.times, before.map(|b| &b.times)),
                preempted_by: preempter_text(&vm.preempted_by),
                exits: exits.join(", "),
            });
            for v in &vm.vcpus {
                let b =
                    before.and_then(|b| b.vcpus.iter().find(|x| x.id == v.id && x.tid == v.tid));
                rows.push(VmRow {
                    vm: false,
                    label: format!("  vCPU {}", v.id),
                    tid: Some(v.tid),
                    shares: Shares::of(&v.times, b.map(|b| &b.times)),
                    preempted_by: preempter_text(&v.preempted_by),
                    exits: String::new(),
                });
            }
        }
        rows
    }

    /// The threads in the chosen order.
    pub fn sorted_threads(&self) -> Vec<&Thread> {
        let mut v: Vec<&Thread> = self
            .data
            .iter()
            .flat_map(|d| d.threads.threads.iter())
            .collect();
        match self.thread_sort {
            ThreadSort::Cpu => v.sort_by(|a, b| b.cpu_pct.total_cmp(&a.cpu_pct)),
            ThreadSort::Tid => v.sort_by_key(|t| t.tid),
            ThreadSort::Name => v.sort_by(|a, b| a.comm.cmp(&b.comm).then(a.tid.cmp(&b.tid))),
        }
        v
    }

    /// The syscalls in the chosen order.
    pub fn sorted_syscalls(&self) -> Vec<&Syscall> {
        let mut v: Vec<&Syscall> = self
            .data
            .iter()
            .flat_map(|d| d.syscalls.syscalls.iter())
            .collect();
        match self.syscall_sort {
            SyscallSort::Rate => v.sort_by(|a, b| b.rate_per_s.total_cmp(&a.rate_per_s)),
            SyscallSort::Latency => v.sort_by(|a, b| b.recent.p99_us.total_cmp(&a.recent.p99_us)),
            SyscallSort::Errors => v.sort_by_key(|s| std::cmp::Reverse(s.total_errors)),
        }
        v
    }
}

/// One line of the VM view.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    /// A VM (else one of its vCPUs).
    pub vm: bool,
    /// VM name or `vCPU n`.
    pub label: String,
    /// The vCPU's host thread.
    pub tid: Option<i32>,
    /// Where the time went.
    pub shares: Shares,
    /// Who ran while it waited, most first.
    pub preempted_by: String,
    /// Top exit reasons (VM rows).
    pub exits: String,
}

/// Shares of time, %; `vmm` is `None` when not observable (TCG).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Shares {
    /// Running guest code.
    pub running: f64,
    /// In the hypervisor.
    pub vmm: Option<f64>,
    /// Waiting for a host CPU.
    pub preempted: f64,
    /// Halted or blocked.
    pub idle: f64,
    /// Preempted / (running + hypervisor + preempted).
    pub steal: Option<f64>,
}

impl Shares {
    /// The shares between `before` and `now`, or of `now` alone (since the
    /// relay saw the host) when there is no `before` or no time passed.
    fn of(now: &VmTimes, before: Option<&VmTimes>) -> Shares {
        if let Some(b) = before {
            let run = now.running_ns - b.running_ns;
            let vmm = now.vmm_ns.zip(b.vmm_ns).map(|(x, y)| x - y);
            let pre = now.preempted_ns - b.preempted_ns;
            let idle = now.idle_ns - b.idle_ns;
            let unk = now.unknown_ns - b.unknown_ns;
            let total = run + vmm.unwrap_or(0) + pre + idle + unk;
            if total > 0 && run >= 0 && pre >= 0 && idle >= 0 {
                let pct = |x: i64| 100.0 * x as f64 / total as f64;
                let demand = run + vmm.unwrap_or(0) + pre;
                return Shares {
                    running: pct(run),
                    vmm: vmm.map(pct),
                    preempted: pct(pre),
                    idle: pct(idle),
                    steal: (demand > 0).then(|| 100.0 * pre as f64 / demand as f64),
                };
            }
        }
        Shares {
            running: now.pct.running,
            vmm: now.pct.vmm,
            preempted: now.pct.preempted,
            idle: now.pct.idle,
            steal: now.steal_pct,
        }
    }
}

/// `who %` for the first preempters.
fn preempter_text(p: &[super::api::Preempter]) -> String {
    p.iter()
        .take(2)
        .map(|x| {
            let who = match (x.kind.as_str(), &x.vm, x.vcpu) {
                ("vcpu", Some(vm), Some(n)) => format!("{vm}/{n}"),
                ("idle", _, _) => "idle".to_string(),
                _ => x.comm.clone(),
            };
            format!("{who} {:.0}%", x.pct)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str) -> Host {
        Host {
            host: name.into(),
            session: "s".into(),
            ..Host::default()
        }
    }

    #[test]
    fn keys_switch_view_host_and_sort() {
        let mut app = App::new("test".into());
        app.set_hosts(vec![host("a"), host("b"), host("c")]);
        app.key(Key::Tab);
        assert_eq!(app.view, View::Syscalls);
        app.key(Key::Char('3'));
        assert_eq!(app.view, View::Health);
        app.key(Key::Left);
        assert_eq!(app.host().unwrap().host, "c");
        assert!(app.refresh_now);
        app.key(Key::Right);
        assert_eq!(app.host().unwrap().host, "a");
        app.key(Key::Char('1'));
        app.key(Key::Char('s'));
        assert_eq!(app.thread_sort, ThreadSort::Tid);
        app.key(Key::Char('q'));
        assert!(app.quit);
    }

    #[test]
    fn the_selection_follows_its_host_when_the_list_changes() {
        let mut app = App::new("test".into());
        app.set_hosts(vec![host("a"), host("b")]);
        app.key(Key::Right);
        app.set_hosts(vec![host("new"), host("a"), host("b")]);
        assert_eq!(app.host().unwrap().host, "b");
        app.set_hosts(vec![]);
        assert!(app.host().is_none());
    }

    fn vms(running: i64, preempted: i64, idle: i64) -> Vms {
        let times = VmTimes {
            running_ns: running,
            preempted_ns: preempted,
            idle_ns: idle,
            ..VmTimes::default()
        };
        Vms {
            vms: vec![super::super::api::Vm {
                name: "web1".into(),
                accel: "tcg".into(),
                times: times.clone(),
                vcpus: vec![super::super::api::Vcpu {
                    id: 0,
                    tid: 42,
                    times,
                    preempted_by: Vec::new(),
                }],
                ..Default::default()
            }],
            ..Vms::default()
        }
    }

    #[test]
    fn vm_shares_cover_the_last_interval() {
        let mut app = App::new("test".into());
        app.set_hosts(vec![host("hv")]);
        let view = |v: Vms| HostView {
            vms: v,
            ..HostView::default()
        };
        // First reading: the relay's own percentages (none here: 0).
        app.set_data(view(vms(100, 0, 900)));
        assert_eq!(app.vm_rows()[0].shares.running, 0.0);
        // Then 300 ns running and 100 ns preempted out of 500 ns.
        app.set_data(view(vms(400, 100, 1000)));
        let rows = app.vm_rows();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].vm && !rows[1].vm);
        assert_eq!(rows[1].tid, Some(42));
        let s = rows[1].shares;
        assert_eq!(s.running, 60.0);
        assert_eq!(s.preempted, 20.0);
        assert_eq!(s.idle, 20.0);
        assert_eq!(s.steal, Some(25.0));
        assert_eq!(s.vmm, None);
        app.key(Key::Char('4'));
        assert_eq!(app.view, View::Vms);
    }
}
