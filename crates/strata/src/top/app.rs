//! What `strata top` shows and how keys change it; no terminal I/O here.

use super::api::{Host, HostView, Syscall, Thread};

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// CPUs, top threads and processes.
    Cpu,
    /// Syscall rates and latency.
    Syscalls,
    /// Lost events, lag and live latency of every host.
    Health,
}

impl View {
    /// All views, in key order (1, 2, 3).
    pub const ALL: [View; 3] = [View::Cpu, View::Syscalls, View::Health];

    /// The tab title.
    pub fn title(self) -> &'static str {
        match self {
            View::Cpu => "1 CPU",
            View::Syscalls => "2 Syscalls",
            View::Health => "3 Health",
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
            Key::Char(c @ '1'..='3') => self.view = View::ALL[(c as u8 - b'1') as usize],
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
                View::Syscalls | View::Health => {
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
}
