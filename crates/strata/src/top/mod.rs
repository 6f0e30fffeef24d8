//! `strata top`: a live terminal view of a relay's hosts, in the spirit of
//! lttngtop: per-host and per-CPU usage, top threads and processes, syscall
//! rates and latency, lost events and live latency.
//!
//! Data comes from the relay's HTTP API on a background thread, so a slow
//! relay never freezes the keys; the screen refreshes every `--interval`.

mod api;
mod app;
mod embedded;
mod ui;

use crate::units::parse_duration;
use anyhow::{bail, Context};
use api::Client;
use app::{App, Key, View};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::Terminal;
use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Thread and syscall rows fetched per refresh.
const ROWS: usize = 50;

/// Arguments of `strata top`.
#[derive(clap::Args)]
pub struct TopArgs {
    /// The relay's HTTP API, `host:port` or a URL (`relay:8080`). Without
    /// it, top traces this host through an agent and a relay of its own.
    #[arg(long, value_name = "ADDR")]
    relay: Option<String>,

    /// Refresh interval (at most 1s is a good idea).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    interval: Duration,

    /// Start on this host.
    #[arg(long)]
    host: Option<String>,

    /// Start on this view: cpu, syscalls, health or vms.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "syscalls", "health", "vms"])]
    view: String,

    /// Print one screen as text and exit, for scripts and tests.
    #[arg(long)]
    once: bool,

    /// The size of the `--once` screen, COLUMNSxROWS.
    #[arg(long, default_value = "120x40", value_parser = parse_size)]
    size: (u16, u16),
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("'{s}': expected COLUMNSxROWS, like 120x40"))?;
    let num = |v: &str| {
        v.parse::<u16>()
            .ok()
            .filter(|n| (10..=1000).contains(n))
            .ok_or_else(|| format!("'{s}': sizes go from 10 to 1000"))
    };
    Ok((num(w)?, num(h)?))
}

/// Runs `strata top`.
pub fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    // Kept alive for the whole run: dropping it stops the agent and relay.
    let mut embedded = None;
    let (relay, label) = match args.relay.clone() {
        Some(r) => (r.clone(), r),
        None => {
            let e = embedded::start()?;
            let http = e.http.to_string();
            embedded = Some(e);
            (http, "this host (embedded agent and relay)".to_string())
        }
    };
    let client = Client::new(&relay);
    let mut app = App::new(label);
    app.view = match args.view.as_str() {
        "syscalls" => View::Syscalls,
        "health" => View::Health,
        "vms" => View::Vms,
        _ => View::Cpu,
    };
    if args.once {
        if embedded.is_some() {
            // Let the embedded agent's first pages reach the analyses.
            std::thread::sleep(Duration::from_secs(2));
        }
        let update = fetch(&client, None, args.host.as_deref());
        apply(&mut app, update, args.host.as_deref());
        if let Some(e) = &app.error {
            bail!("{e}");
        }
        print!("{}", render_text(&app, args.size)?);
        return Ok(ExitCode::SUCCESS);
    }
    let result = interactive(app, client, args.interval, args.host);
    drop(embedded);
    result
}

/// What one refresh brought.
struct Update {
    hosts: Result<Vec<api::Host>, String>,
    view: Option<Result<api::HostView, String>>,
}

/// Fetches the host list and the view of `wanted` (session, host), or of
/// `by_name`, or of the first host.
fn fetch(client: &Client, wanted: Option<(String, String)>, by_name: Option<&str>) -> Update {
    let hosts = client.hosts().map(|h| h.hosts);
    let view = hosts.as_ref().ok().and_then(|hosts| {
        let pick = match (&wanted, by_name) {
            (Some((s, h)), _) => hosts.iter().find(|x| &x.session == s && &x.host == h),
            (None, Some(name)) => hosts.iter().find(|x| x.host == name),
            (None, None) => hosts.first(),
        };
        pick.map(|h| client.host(h, ROWS))
    });
    Update { hosts, view }
}

fn apply(app: &mut App, update: Update, start_host: Option<&str>) {
    match update.hosts {
        Ok(hosts) => {
            let first = app.hosts.is_empty();
            app.set_hosts(hosts);
            if first {
                if let Some(i) = start_host.and_then(|n| app.hosts.iter().position(|h| h.host == n))
                {
                    app.selected = i;
                }
            }
            app.error = None;
        }
        Err(e) => app.error = Some(e),
    }
    match update.view {
        Some(Ok(v)) => app.set_data(v),
        Some(Err(e)) => app.error = Some(e),
        None => {}
    }
}

/// Renders one screen into text lines.
fn render_text(app: &App, (w, h): (u16, u16)) -> anyhow::Result<String> {
    let mut term = Terminal::new(TestBackend::new(w, h)).context("cannot make a text screen")?;
    term.draw(|f| ui::draw(f, app))
        .context("cannot draw the screen")?;
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out)
}

fn to_key(code: KeyCode, mods: KeyModifiers) -> Option<Key> {
    Some(match code {
        KeyCode::Char('c') if mods.contains(KeyModifiers::CONTROL) => Key::Char('q'),
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Tab => Key::Tab,
        KeyCode::Left => Key::Left,
        KeyCode::Right => Key::Right,
        KeyCode::Esc => Key::Esc,
        _ => return None,
    })
}

fn interactive(
    mut app: App,
    client: Client,
    interval: Duration,
    start_host: Option<String>,
) -> anyhow::Result<ExitCode> {
    // The fetcher refreshes every interval, or at once when poked.
    let wanted: Arc<Mutex<Option<(String, String)>>> = Arc::new(Mutex::new(None));
    let (poke_tx, poke_rx) = mpsc::channel::<()>();
    let (data_tx, data_rx) = mpsc::channel::<Update>();
    {
        let wanted = Arc::clone(&wanted);
        let start_host = start_host.clone();
        std::thread::spawn(move || loop {
            let w = wanted.lock().map(|w| w.clone()).unwrap_or(None);
            let by_name = if w.is_none() {
                start_host.as_deref()
            } else {
                None
            };
            if data_tx.send(fetch(&client, w, by_name)).is_err() {
                return;
            }
            match poke_rx.recv_timeout(interval) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        });
    }
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let result = (|| -> anyhow::Result<()> {
        let mut next_draw = Instant::now();
        loop {
            while let Ok(update) = data_rx.try_recv() {
                apply(&mut app, update, start_host.as_deref());
                next_draw = Instant::now();
            }
            if Instant::now() >= next_draw {
                terminal.draw(|f| ui::draw(f, &app))?;
                next_draw = Instant::now() + interval;
            }
            if event::poll(Duration::from_millis(100))? {
                if let Event::Key(k) = event::read()? {
                    if k.kind == KeyEventKind::Press {
                        if let Some(key) = to_key(k.code, k.modifiers) {
                            app.key(key);
                            next_draw = Instant::now();
                        }
                    }
                }
            }
            if app.quit {
                return Ok(());
            }
            if app.refresh_now {
                app.refresh_now = false;
                if let Ok(mut w) = wanted.lock() {
                    *w = app.host().map(|h| (h.session.clone(), h.host.clone()));
                }
                let _ = poke_tx.send(());
            }
        }
    })();
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}
