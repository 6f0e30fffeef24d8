//! Drawing `strata top` with ratatui: a host bar, the chosen view, a key
//! line. Plain colours and box characters only, so it reads over SSH.

use super::app::{App, SyscallSort, ThreadSort, View};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Table, Tabs};
use ratatui::Frame;

const HEADER: Style = Style::new().add_modifier(Modifier::BOLD);

/// Draws the whole screen.
pub fn draw(f: &mut Frame, app: &App) {
    let [hosts, tabs, body, keys] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(f.area());
    draw_hosts(f, app, hosts);
    let titles: Vec<&str> = View::ALL.iter().map(|v| v.title()).collect();
    let selected = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        tabs,
    );
    match app.view {
        View::Cpu => draw_cpu(f, app, body),
        View::Syscalls => draw_syscalls(f, app, body),
        View::Health => draw_health(f, app, body),
        View::Vms => draw_vms(f, app, body),
    }
    let help = match &app.error {
        Some(e) => Line::from(Span::styled(e.clone(), Style::new().fg(Color::Red))),
        None => Line::from("q quit  ←/→ host  tab/1-4 view  s sort  r refresh"),
    };
    f.render_widget(Paragraph::new(help), keys);
}

fn draw_hosts(f: &mut Frame, app: &App, area: Rect) {
    let mut spans = Vec::new();
    if app.hosts.is_empty() {
        spans.push(Span::raw("no hosts yet"));
    }
    for (i, h) in app.hosts.iter().enumerate() {
        let mark = if h.state == "connected" { "●" } else { "○" };
        let label = format!(
            " {mark} {} ({} CPUs, lag {}) ",
            h.host,
            h.cpus,
            h.lag_ms.map_or("-".into(), |l| format!("{l:.0} ms"))
        );
        let style = if i == app.selected {
            Style::new().add_modifier(Modifier::REVERSED)
        } else {
            Style::new()
        };
        spans.push(Span::styled(label, style));
    }
    let title = format!(" strata top — {} ", app.source);
    f.render_widget(
        Paragraph::new(Line::from(spans)).block(Block::new().borders(Borders::ALL).title(title)),
        area,
    );
}

fn pct_bar(pct: f64, width: usize) -> String {
    let n = ((pct.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(n), "·".repeat(width.saturating_sub(n)))
}

fn draw_cpu(f: &mut Frame, app: &App, area: Rect) {
    let cpus = app.data.as_ref().map_or(&[][..], |d| &d.cpus.cpus[..]);
    let [top, rest] = Layout::vertical([
        Constraint::Length(cpus.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(area);
    let [threads_area, procs_area] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(rest);
    let total = app.data.as_ref().map_or(0.0, |d| d.threads.total_pct);
    let rows = cpus.iter().map(|c| {
        Row::new(vec![
            c.cpu.to_string(),
            format!("{:5.1}", c.usage_pct),
            pct_bar(c.usage_pct, 20),
            c.mode.clone(),
            c.tid.map_or("-".into(), |t| t.to_string()),
            c.comm.clone().unwrap_or_default(),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(4),
                Constraint::Length(6),
                Constraint::Length(21),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
        )
        .header(Row::new(["CPU", "Use %", "", "Mode", "TID", "Running"]).style(HEADER))
        .block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" CPUs — total {total:.1} % ",)),
        ),
        top,
    );
    let sort = match app.thread_sort {
        ThreadSort::Cpu => "CPU",
        ThreadSort::Tid => "TID",
        ThreadSort::Name => "name",
    };
    let rows = app.sorted_threads().into_iter().map(|t| {
        Row::new(vec![
            t.tid.to_string(),
            t.pid.map_or("-".into(), |p| p.to_string()),
            t.comm.clone(),
            t.process.clone(),
            format!("{:6.2}", t.cpu_pct),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(16),
                Constraint::Length(16),
                Constraint::Length(7),
            ],
        )
        .header(Row::new(["TID", "PID", "Thread", "Process", "CPU %"]).style(HEADER))
        .block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" Threads (by {sort}) ")),
        ),
        threads_area,
    );
    let procs = app
        .data
        .as_ref()
        .map_or(&[][..], |d| &d.threads.processes[..]);
    let rows = procs.iter().map(|p| {
        Row::new(vec![
            p.pid.to_string(),
            p.comm.clone(),
            p.threads.to_string(),
            format!("{:6.2}", p.cpu_pct),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(8),
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Length(7),
            ],
        )
        .header(Row::new(["PID", "Process", "Threads", "CPU %"]).style(HEADER))
        .block(Block::new().borders(Borders::ALL).title(" Processes ")),
        procs_area,
    );
}

fn draw_syscalls(f: &mut Frame, app: &App, area: Rect) {
    let sort = match app.syscall_sort {
        SyscallSort::Rate => "rate",
        SyscallSort::Latency => "p99 latency",
        SyscallSort::Errors => "errors",
    };
    let rate = app.data.as_ref().map_or(0.0, |d| d.syscalls.rate_per_s);
    let rows = app.sorted_syscalls().into_iter().map(|s| {
        Row::new(vec![
            s.name.clone(),
            format!("{:.0}", s.rate_per_s),
            s.total_count.to_string(),
            s.total_errors.to_string(),
            format!("{:.1}", s.recent.p50_us),
            format!("{:.1}", s.recent.p99_us),
            format!("{:.1}", s.recent.max_us),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(22),
                Constraint::Length(10),
                Constraint::Length(12),
                Constraint::Length(8),
                Constraint::Length(10),
                Constraint::Length(10),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new([
                "Syscall", "Calls/s", "Total", "Errors", "p50 µs", "p99 µs", "Max µs",
            ])
            .style(HEADER),
        )
        .block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" Syscalls — {rate:.0}/s (by {sort}) ")),
        ),
        area,
    );
}

fn draw_health(f: &mut Frame, app: &App, area: Rect) {
    let [hosts_area, lost_area] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(8)]).areas(area);
    let rows = app.hosts.iter().map(|h| {
        Row::new(vec![
            h.host.clone(),
            h.session.clone(),
            h.state.clone(),
            h.events.to_string(),
            h.lost_events.to_string(),
            h.lag_ms.map_or("-".into(), |l| format!("{l:.0}")),
            format!("{:.1}", h.live_latency.p50_ms),
            format!("{:.1}", h.live_latency.p99_ms),
            format!("{:.1}", h.live_latency.p999_ms),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(12),
                Constraint::Length(13),
                Constraint::Length(12),
                Constraint::Length(10),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new([
                "Host", "Session", "State", "Events", "Lost", "Lag ms", "p50 ms", "p99 ms",
                "p999 ms",
            ])
            .style(HEADER),
        )
        .block(
            Block::new()
                .borders(Borders::ALL)
                .title(" Hosts — live latency is event time to analysis "),
        ),
        hosts_area,
    );
    let lost = app.data.as_ref().map(|d| &d.lost);
    let text = match lost {
        Some(l) => {
            let per_cpu: Vec<String> = l
                .per_cpu
                .iter()
                .map(|c| format!("cpu{} {}", c.cpu, c.lost))
                .collect();
            vec![
                Line::from(format!("Lost events: {}", l.total)),
                Line::from(format!(
                    "Per CPU: {}",
                    if per_cpu.is_empty() {
                        "none".into()
                    } else {
                        per_cpu.join(", ")
                    }
                )),
                Line::from(format!("Events that arrived late: {}", l.late_events)),
            ]
        }
        None => vec![Line::from("no data for this host yet")],
    };
    let title = app
        .host()
        .map_or(" Losses ".into(), |h| format!(" Losses on {} ", h.host));
    f.render_widget(
        Paragraph::new(text).block(Block::new().borders(Borders::ALL).title(title)),
        lost_area,
    );
}

fn draw_vms(f: &mut Frame, app: &App, area: Rect) {
    let rows: Vec<Row> = app
        .vm_rows()
        .into_iter()
        .map(|r| {
            let s = r.shares;
            let row = Row::new(vec![
                r.label,
                r.tid.map_or(String::new(), |t| t.to_string()),
                format!("{:5.1}", s.running),
                s.vmm.map_or("    ?".into(), |v| format!("{v:5.1}")),
                format!("{:5.1}", s.preempted),
                format!("{:5.1}", s.idle),
                s.steal.map_or("    -".into(), |v| format!("{v:5.1}")),
                r.preempted_by,
                r.exits,
            ]);
            if r.vm {
                row.style(HEADER)
            } else {
                row
            }
        })
        .collect();
    let title = match app.data.as_ref().map(|d| &d.vms) {
        Some(v) if !v.vms.is_empty() => format!(
            " VMs — % {}; {} host CPUs, at most {} vCPUs runnable ",
            if app.prev_vms.is_some() {
                "of the last interval"
            } else {
                "since the relay saw the host"
            },
            v.overcommit.physical_cpus,
            v.overcommit.max_runnable
        ),
        _ => " VMs — none seen on this host (trace it with --events sched,kvm) ".into(),
    };
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(28),
                Constraint::Length(8),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(36),
                Constraint::Min(10),
            ],
        )
        .header(
            Row::new([
                "VM / vCPU",
                "TID",
                "Run %",
                "VMM %",
                "Prmt %",
                "Idle %",
                "Steal",
                "Preempted by",
                "Top exits",
            ])
            .style(HEADER),
        )
        .block(Block::new().borders(Borders::ALL).title(title)),
        area,
    );
}
