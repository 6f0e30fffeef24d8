//! The rule file (TOML): `[limits]` and `[[rule]]` tables, checked into a
//! [`RuleSet`]. Every error names the file and line.

use std::sync::Arc;

use cel::Env;
use serde::Deserialize;
use toml::Spanned;

use crate::catalog::{Family, SeriesKey};
use crate::duration::parse_ns;
use crate::expr::{compile, environment, Condition};

/// A rule file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The file could not be read.
    #[error("cannot read the rule file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Something in the file is wrong.
    #[error("{path}:{line}: {msg}")]
    At {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong and what to do.
        msg: String,
    },
}

impl RuleError {
    /// The line of the problem, when there is one.
    pub fn line(&self) -> Option<usize> {
        match self {
            RuleError::At { line, .. } => Some(*line),
            RuleError::Read { .. } => None,
        }
    }
}

/// Global limits on what rules may do, whatever each rule says.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Actions of all rules per minute.
    pub actions_per_minute: u32,
    /// Snapshots requested per minute.
    pub snapshots_per_minute: u32,
    /// Snapshots in progress at once.
    pub max_concurrent_snapshots: u32,
    /// How often every rule is evaluated, ns.
    pub eval_interval_ns: u64,
    /// A rule's cooldown when it names none, ns.
    pub default_cooldown_ns: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            actions_per_minute: 30,
            snapshots_per_minute: 2,
            max_concurrent_snapshots: 1,
            eval_interval_ns: 100_000_000,
            default_cooldown_ns: 60_000_000_000,
        }
    }
}

/// Which hosts an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSel {
    /// The host where the condition held.
    SelfHost,
    /// Every connected host.
    All,
    /// These hosts.
    Named(Vec<String>),
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq)]
pub enum ActionSpec {
    /// Keep a snapshot of the flight recorder on these hosts.
    Snapshot {
        /// Hosts.
        hosts: HostSel,
        /// History before the request, ns.
        before_ns: u64,
        /// Time after the request, ns.
        after_ns: u64,
    },
    /// Enable (or disable) event groups for a while.
    Events {
        /// Hosts.
        hosts: HostSel,
        /// Event specs as `--events` takes them.
        events: Vec<String>,
        /// Enable, or disable.
        enable: bool,
        /// For how long, ns.
        for_ns: u64,
    },
    /// Log, count, and POST to a webhook when given.
    Alert {
        /// `http://host:port/path`.
        webhook: Option<String>,
    },
}

impl ActionSpec {
    /// The action's name in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionSpec::Snapshot { .. } => "snapshot",
            ActionSpec::Events { enable: true, .. } => "enable",
            ActionSpec::Events { enable: false, .. } => "disable",
            ActionSpec::Alert { .. } => "alert",
        }
    }
}

/// One checked rule.
#[derive(Debug)]
pub struct Rule {
    /// Its name (unique in the file).
    pub name: String,
    /// The line of its `[[rule]]`.
    pub line: usize,
    /// The condition.
    pub when: Condition,
    /// Per metric call of `when`, its index in [`RuleSet::keys`] (state
    /// queries have none).
    pub series: Vec<Option<usize>>,
    /// How long the condition must hold before the rule fires, ns.
    pub for_ns: u64,
    /// The least time between two firings, ns.
    pub cooldown_ns: u64,
    /// Hosts the rule watches (`None`: all).
    pub hosts: Option<Vec<String>>,
    /// What it does.
    pub then: Vec<ActionSpec>,
    /// Whether it watches a pattern: then it is evaluated as soon as the
    /// pattern matches, not only on the timer.
    pub event_driven: bool,
}

/// A checked rule file.
pub struct RuleSet {
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// Global limits.
    pub limits: Limits,
    /// The distinct series the rules need, per host.
    pub keys: Vec<SeriesKey>,
    /// The CEL environment.
    pub env: Arc<Env>,
}

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .field("limits", &self.limits)
            .field("keys", &self.keys)
            .finish()
    }
}

impl Default for RuleSet {
    fn default() -> Self {
        RuleSet {
            rules: Vec::new(),
            limits: Limits::default(),
            keys: Vec::new(),
            env: environment(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    limits: Option<Spanned<RawLimits>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    actions_per_minute: Option<u32>,
    snapshots_per_minute: Option<u32>,
    max_concurrent_snapshots: Option<u32>,
    eval_interval: Option<Spanned<String>>,
    default_cooldown: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    when: Spanned<String>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    cooldown: Option<Spanned<String>>,
    hosts: Option<Spanned<Vec<String>>>,
    then: Spanned<Vec<Spanned<RawAction>>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawHosts {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum RawAction {
    Snapshot {
        hosts: Option<RawHosts>,
        before: String,
        after: String,
    },
    Enable {
        hosts: Option<RawHosts>,
        events: String,
        #[serde(rename = "for")]
        for_: String,
    },
    Disable {
        hosts: Option<RawHosts>,
        events: String,
        #[serde(rename = "for")]
        for_: String,
    },
    Alert {
        webhook: Option<String>,
    },
}

/// The most rules in a file.
pub const MAX_RULES: usize = 1000;
/// The largest rule file, bytes.
pub const MAX_FILE: usize = 1 << 20;

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// What a rule file is checked against.
#[derive(Debug, Clone, Default)]
pub struct LoadContext {
    /// The hosts that may exist (from the token file); `None`: any.
    pub known_hosts: Option<Vec<String>>,
}

impl RuleSet {
    /// The event groups the agents must stream for these rules' metrics,
    /// sorted and without repeats (what the relay asks agents for).
    pub fn event_needs(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        for r in &self.rules {
            for c in &r.when.calls {
                let family = c
                    .series
                    .as_ref()
                    .map(|k| k.family)
                    .or(c.state.as_ref().map(|q| q.family))
                    .or(c.vm.as_ref().map(|q| q.family));
                if let Some(f) = family {
                    out.extend(f.event_groups().iter().map(|g| g.to_string()));
                }
            }
        }
        out.into_iter().collect()
    }

    /// The distinct VM windows (vCPU choice, window) the rules use.
    pub fn vm_keys(&self) -> Vec<crate::catalog::VmTrackKey> {
        let mut out = Vec::new();
        for c in self.rules.iter().flat_map(|r| &r.when.calls) {
            if let Some(q) = &c.vm {
                if !out.contains(&q.track) {
                    out.push(q.track);
                }
            }
        }
        out
    }

    /// Reads and checks a rule file.
    pub fn load(path: &std::path::Path, cx: &LoadContext) -> Result<RuleSet, RuleError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| RuleError::Read {
            path: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_FILE as u64 {
            return Err(RuleError::At {
                path: shown,
                line: 1,
                msg: format!("the file is larger than {MAX_FILE} bytes"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Read {
            path: shown.clone(),
            source,
        })?;
        RuleSet::parse(&text, &shown, cx)
    }

    /// Checks rule file text; `path` names it in errors.
    pub fn parse(text: &str, path: &str, cx: &LoadContext) -> Result<RuleSet, RuleError> {
        let at = |offset: usize, msg: String| RuleError::At {
            path: path.to_string(),
            line: line_of(text, offset),
            msg,
        };
        if text.len() > MAX_FILE {
            return Err(at(0, format!("the file is larger than {MAX_FILE} bytes")));
        }
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let off = e.span().map_or(0, |s| s.start);
            at(off, e.message().trim().to_string())
        })?;
        let mut limits = Limits::default();
        if let Some(l) = raw.limits {
            let off = l.span().start;
            let l = l.into_inner();
            if let Some(v) = l.actions_per_minute {
                limits.actions_per_minute = v;
            }
            if let Some(v) = l.snapshots_per_minute {
                limits.snapshots_per_minute = v;
            }
            if let Some(v) = l.max_concurrent_snapshots {
                limits.max_concurrent_snapshots = v;
            }
            if let Some(v) = l.eval_interval {
                let ns = parse_ns(v.get_ref()).map_err(|m| at(v.span().start, m))?;
                if !(10_000_000..=10_000_000_000).contains(&ns) {
                    return Err(at(
                        v.span().start,
                        "eval_interval must be 10ms to 10s".into(),
                    ));
                }
                limits.eval_interval_ns = ns;
            }
            if let Some(v) = l.default_cooldown {
                limits.default_cooldown_ns =
                    parse_ns(v.get_ref()).map_err(|m| at(v.span().start, m))?;
            }
            if limits.actions_per_minute == 0 {
                return Err(at(off, "actions_per_minute must be at least 1".into()));
            }
        }
        if raw.rule.len() > MAX_RULES {
            return Err(at(0, format!("more than {MAX_RULES} rules")));
        }
        let env = environment();
        let mut keys: Vec<SeriesKey> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let check_host = |h: &str, off: usize| -> Result<(), RuleError> {
            if let Some(known) = &cx.known_hosts {
                if !known.iter().any(|k| k == h || k == "*") {
                    return Err(at(
                        off,
                        format!(
                            "unknown host {h:?}: the token file admits only {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        for r in raw.rule {
            let rule_off = r.span().start;
            let r = r.into_inner();
            let name = r.name.get_ref().trim().to_string();
            if name.is_empty() || name.len() > 200 {
                return Err(at(
                    r.name.span().start,
                    "a rule name is 1 to 200 bytes".into(),
                ));
            }
            if rules.iter().any(|x| x.name == name) {
                return Err(at(
                    r.name.span().start,
                    format!("a second rule is named {name:?}"),
                ));
            }
            let when_off = r.when.span().start;
            let cond = compile(&env, r.when.get_ref()).map_err(|e| {
                // +1: the opening quote of the TOML string.
                at(
                    when_off + e.at.map_or(0, |a| a + 1),
                    format!("rule {name:?}: {}", e.msg),
                )
            })?;
            let dur = |v: &Option<Spanned<String>>, default: u64| -> Result<u64, RuleError> {
                match v {
                    Some(s) => parse_ns(s.get_ref()).map_err(|m| at(s.span().start, m)),
                    None => Ok(default),
                }
            };
            let for_ns = dur(&r.for_, 0)?;
            let cooldown_ns = dur(&r.cooldown, limits.default_cooldown_ns)?;
            let hosts = match r.hosts {
                Some(h) => {
                    let off = h.span().start;
                    for x in h.get_ref() {
                        check_host(x, off)?;
                    }
                    Some(h.into_inner())
                }
                None => None,
            };
            let then_off = r.then.span().start;
            if r.then.get_ref().is_empty() {
                return Err(at(
                    then_off,
                    format!("rule {name:?} has no action in `then`"),
                ));
            }
            let mut then = Vec::new();
            for a in r.then.into_inner() {
                let off = a.span().start;
                let sel = |h: Option<RawHosts>| -> Result<HostSel, RuleError> {
                    Ok(match h {
                        None => HostSel::SelfHost,
                        Some(RawHosts::One(s)) if s == "self" => HostSel::SelfHost,
                        Some(RawHosts::One(s)) if s == "all" => HostSel::All,
                        Some(RawHosts::One(s)) => {
                            check_host(&s, off)?;
                            HostSel::Named(vec![s])
                        }
                        Some(RawHosts::Many(v)) => {
                            for h in &v {
                                check_host(h, off)?;
                            }
                            HostSel::Named(v)
                        }
                    })
                };
                let d = |s: &str| parse_ns(s).map_err(|m| at(off, m));
                let events = |s: &str| -> Result<Vec<String>, RuleError> {
                    let v: Vec<String> = s
                        .split(',')
                        .map(|x| x.trim().to_string())
                        .filter(|x| !x.is_empty())
                        .collect();
                    if v.is_empty() {
                        return Err(at(
                            off,
                            "events is empty; write e.g. \"block,sched\"".into(),
                        ));
                    }
                    Ok(v)
                };
                then.push(match a.into_inner() {
                    RawAction::Snapshot {
                        hosts,
                        before,
                        after,
                    } => ActionSpec::Snapshot {
                        hosts: sel(hosts)?,
                        before_ns: d(&before)?,
                        after_ns: d(&after)?,
                    },
                    RawAction::Enable {
                        hosts,
                        events: e,
                        for_,
                    } => ActionSpec::Events {
                        hosts: sel(hosts)?,
                        events: events(&e)?,
                        enable: true,
                        for_ns: d(&for_)?,
                    },
                    RawAction::Disable {
                        hosts,
                        events: e,
                        for_,
                    } => ActionSpec::Events {
                        hosts: sel(hosts)?,
                        events: events(&e)?,
                        enable: false,
                        for_ns: d(&for_)?,
                    },
                    RawAction::Alert { webhook } => {
                        if let Some(w) = &webhook {
                            if !w.starts_with("http://") || w.len() > 2048 {
                                return Err(at(
                                    off,
                                    format!("webhook {w:?} must be an http:// URL"),
                                ));
                            }
                        }
                        ActionSpec::Alert { webhook }
                    }
                });
            }
            let mut series = Vec::new();
            let mut event_driven = false;
            for c in &cond.calls {
                series.push(c.series.as_ref().map(|k| {
                    if matches!(k.family, Family::PatternSyscall | Family::PatternWakeup) {
                        event_driven = true;
                    }
                    match keys.iter().position(|x| x == k) {
                        Some(i) => i,
                        None => {
                            keys.push(k.clone());
                            keys.len() - 1
                        }
                    }
                }));
            }
            rules.push(Rule {
                name,
                line: line_of(text, rule_off),
                when: cond,
                series,
                for_ns,
                cooldown_ns,
                hosts,
                then,
                event_driven,
            });
        }
        Ok(RuleSet {
            rules,
            limits,
            keys,
            env,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[limits]
actions_per_minute = 10

[[rule]]
name = "slow syscalls in postgres"
when = "syscall.latency.p99(proc='postgres', window='1s') > duration('10ms')"
for = "3s"
then = [ { snapshot = { hosts = "self", before = "10s", after = "2s" } },
         { enable = { events = "block,sched", for = "60s" } },
         { alert = { webhook = "http://127.0.0.1:9000/hook" } } ]
cooldown = "5m"

[[rule]]
name = "stall"
when = "pattern.syscall.count(proc='postgres', longer='40ms', window='10s') > 0"
then = [ { alert = {} } ]
"#;

    fn cx() -> LoadContext {
        LoadContext {
            known_hosts: Some(vec!["web1".into(), "db3".into()]),
        }
    }

    #[test]
    fn parses_the_issue_example() {
        let s = RuleSet::parse(GOOD, "r.toml", &cx()).unwrap();
        assert_eq!(s.rules.len(), 2);
        let r = &s.rules[0];
        assert_eq!(r.for_ns, 3_000_000_000);
        assert_eq!(r.cooldown_ns, 300_000_000_000);
        assert_eq!(r.then.len(), 3);
        assert_eq!(r.line, 5);
        assert!(!r.event_driven);
        assert!(s.rules[1].event_driven);
        assert_eq!(s.keys.len(), 2);
        assert_eq!(s.limits.actions_per_minute, 10);
    }

    #[test]
    fn event_needs_follow_the_metrics() {
        let s = RuleSet::parse(GOOD, "r.toml", &cx()).unwrap();
        assert_eq!(s.event_needs(), ["sched", "syscalls"]);
        let t = "[[rule]]\nname = \"a\"\nwhen = \"cpu.usage.ratio(proc='x') > 0.5 || state.runqueue.length() > 3\"\nthen = [ { alert = {} } ]\n";
        let s = RuleSet::parse(t, "r.toml", &cx()).unwrap();
        assert_eq!(s.event_needs(), ["sched"]);
    }

    fn line(text: &str) -> usize {
        RuleSet::parse(text, "r.toml", &cx())
            .unwrap_err()
            .line()
            .unwrap()
    }

    #[test]
    fn errors_carry_the_line() {
        // TOML syntax error on line 4.
        assert_eq!(
            line("[[rule]]\nname = \"a\"\nthen = [ { alert = {} } ]\nwhen = 'x' 'y'\n"),
            4
        );
        // Unknown metric on line 3.
        let t = "[[rule]]\nname = \"a\"\nwhen = \"syscall.latency.p98() > duration('1ms')\"\nthen = [ { alert = {} } ]\n";
        assert_eq!(line(t), 3);
        let e = RuleSet::parse(t, "r.toml", &cx()).unwrap_err().to_string();
        assert!(e.starts_with("r.toml:3: "), "{e}");
        // Unknown host on line 5.
        let t = "[[rule]]\nname = \"a\"\nwhen = \"syscall.latency.count() > 1\"\nthen = [ { alert = {} } ]\nhosts = [\"nosuch\"]\n";
        assert_eq!(line(t), 5);
        // Unknown host in an action, line 4.
        let t = "[[rule]]\nname = \"a\"\nwhen = \"syscall.latency.count() > 1\"\nthen = [ { snapshot = { hosts = \"nosuch\", before = \"1s\", after = \"1s\" } } ]\n";
        assert_eq!(line(t), 4);
        // Unknown key.
        assert_eq!(line("[[rule]]\nname = \"a\"\ncolour = 3\n"), 3);
        // Bad duration.
        let t = "[[rule]]\nname = \"a\"\nwhen = \"syscall.latency.count() > 1\"\nfor = \"3 fortnights\"\nthen = [ { alert = {} } ]\n";
        assert_eq!(line(t), 4);
    }
}
