//! Evaluation: metric values bound to each rule's condition, then
//! debounce (`for`), `cooldown` and the global [`Governor`], which together
//! make a snapshot storm impossible whatever the rules say.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use cel::Value;
use serde::Serialize;
use strata_analysis::state::Machine;

use crate::actions::Fire;
use crate::catalog::{Family, Stat};
use crate::config::{ActionSpec, Limits, RuleSet};
use crate::expr::eval;
use crate::host::{state_count, HostMetrics, PatternMatch};

const MINUTE_NS: i64 = 60_000_000_000;
/// A snapshot counts as in progress until `after` plus this, unless the
/// relay says it ended.
const SNAPSHOT_GRACE_NS: i64 = 5_000_000_000;

/// The global limits, applied to every action of every rule.
#[derive(Debug, Clone)]
pub struct Governor {
    limits: Limits,
    actions: VecDeque<i64>,
    snapshots: VecDeque<i64>,
    in_flight: Vec<i64>,
    /// Actions refused by the limits so far.
    pub refused: u64,
}

impl Governor {
    /// A governor for `limits`.
    pub fn new(limits: Limits) -> Governor {
        Governor {
            limits,
            actions: VecDeque::new(),
            snapshots: VecDeque::new(),
            in_flight: Vec::new(),
            refused: 0,
        }
    }

    fn expire(&mut self, now: i64) {
        while self.actions.front().is_some_and(|&t| t <= now - MINUTE_NS) {
            self.actions.pop_front();
        }
        while self
            .snapshots
            .front()
            .is_some_and(|&t| t <= now - MINUTE_NS)
        {
            self.snapshots.pop_front();
        }
        self.in_flight.retain(|&end| end > now);
    }

    /// Keeps the actions of `wanted` that the limits allow at wall time
    /// `now`, and counts them as done.
    pub fn admit(&mut self, now: i64, wanted: &[ActionSpec]) -> Vec<ActionSpec> {
        self.expire(now);
        let mut out = Vec::new();
        for a in wanted {
            if self.actions.len() >= self.limits.actions_per_minute as usize {
                self.refused += 1;
                continue;
            }
            if let ActionSpec::Snapshot { after_ns, .. } = a {
                if self.snapshots.len() >= self.limits.snapshots_per_minute as usize
                    || self.in_flight.len() >= self.limits.max_concurrent_snapshots as usize
                {
                    self.refused += 1;
                    continue;
                }
                self.snapshots.push_back(now);
                let end = now
                    .saturating_add((*after_ns).min(i64::MAX as u64 / 2) as i64)
                    .saturating_add(SNAPSHOT_GRACE_NS);
                self.in_flight.push(end);
            }
            self.actions.push_back(now);
            out.push(a.clone());
        }
        out
    }

    /// Says that a snapshot ended (the oldest in progress).
    pub fn snapshot_done(&mut self) {
        if !self.in_flight.is_empty() {
            let i = self
                .in_flight
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| **e)
                .map_or(0, |(i, _)| i);
            self.in_flight.remove(i);
        }
    }

    /// Snapshots in progress now.
    pub fn snapshots_in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

/// The state of one rule on one host, as `GET /api/rules` shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct RuleStatus {
    /// The rule.
    pub rule: String,
    /// The host.
    pub host: String,
    /// Each metric call with its value at the last evaluation.
    pub last_values: Vec<String>,
    /// Whether the condition held at the last evaluation.
    pub holding: bool,
    /// Whether it held long enough (`for`) and the rule fired or is
    /// waiting for its cooldown.
    pub firing: bool,
    /// When it last fired, ms since the epoch.
    pub last_fired_ms: Option<i64>,
    /// Firings so far.
    pub fires: u64,
    /// Times it should have fired but the global limits refused all of
    /// its actions.
    pub refused: u64,
    /// The last evaluation error, if the last evaluation failed.
    pub last_error: Option<String>,
    /// Evaluations so far.
    pub evaluations: u64,
    #[serde(skip)]
    since: Option<i64>,
    #[serde(skip)]
    trigger_ts: i64,
    #[serde(skip)]
    last_fired: Option<i64>,
}

/// Rules, their per-host state, and the governor.
#[derive(Debug)]
pub struct Engine {
    set: Arc<RuleSet>,
    generation: u64,
    states: HashMap<(usize, String), RuleStatus>,
    governor: Governor,
    values: Vec<Value>,
    /// Per VM call of the rule being evaluated: the VM its value is about.
    vm_names: Vec<(usize, Option<String>)>,
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Duration(d) => {
            let ns = d.num_nanoseconds().unwrap_or(i64::MAX);
            if ns >= 1_000_000_000 {
                format!("{:.3}s", ns as f64 / 1e9)
            } else if ns >= 1_000_000 {
                format!("{:.3}ms", ns as f64 / 1e6)
            } else {
                format!("{:.1}us", ns as f64 / 1e3)
            }
        }
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:.4}"),
        other => format!("{other:?}"),
    }
}

fn duration(ns: u64) -> Value {
    Value::Duration(chrono::Duration::nanoseconds(ns.min(i64::MAX as u64) as i64))
}

impl Engine {
    /// An engine over `set`.
    pub fn new(set: Arc<RuleSet>) -> Engine {
        Engine {
            governor: Governor::new(set.limits.clone()),
            set,
            generation: 1,
            states: HashMap::new(),
            values: Vec::new(),
            vm_names: Vec::new(),
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.set
    }

    /// Changes when the rule set changes: per-host metrics built for an
    /// older generation must be rebuilt.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replaces the rules. Firing history (last fired, count) of rules
    /// that keep their name is kept, so a reload cannot reset a cooldown;
    /// the governor's counts are kept too.
    pub fn replace(&mut self, set: Arc<RuleSet>) {
        let mut old: HashMap<(String, String), RuleStatus> = HashMap::new();
        for ((i, host), st) in self.states.drain() {
            if let Some(r) = self.set.rules.get(i) {
                old.insert((r.name.clone(), host), st);
            }
        }
        for (i, r) in set.rules.iter().enumerate() {
            for ((name, host), st) in old.iter() {
                if *name == r.name {
                    let kept = RuleStatus {
                        rule: name.clone(),
                        host: host.clone(),
                        last_fired: st.last_fired,
                        last_fired_ms: st.last_fired_ms,
                        fires: st.fires,
                        refused: st.refused,
                        ..RuleStatus::default()
                    };
                    self.states.insert((i, host.clone()), kept);
                }
            }
        }
        self.governor.limits = set.limits.clone();
        self.set = set;
        self.generation += 1;
    }

    /// The governor (to report a snapshot's end).
    pub fn governor(&mut self) -> &mut Governor {
        &mut self.governor
    }

    /// Every rule's state on every host it was evaluated on, by rule then host.
    pub fn statuses(&self) -> Vec<RuleStatus> {
        let mut v: Vec<(usize, RuleStatus)> = self
            .states
            .iter()
            .map(|((i, _), s)| (*i, s.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.host.cmp(&b.1.host)));
        v.into_iter().map(|(_, s)| s).collect()
    }

    /// Metrics for a host, for the current rules.
    pub fn host_metrics(&self, syscall_names: &[Box<str>]) -> HostMetrics {
        HostMetrics::new(&self.set.keys, self.generation, syscall_names)
            .with_vm_tracks(&self.set.vm_keys())
    }

    /// Evaluates the rules that watch `host` (only the pattern-driven ones
    /// when `patterns_only`) at wall time `now` (ns since the epoch);
    /// returns the firings. `machine` answers state queries.
    pub fn evaluate(
        &mut self,
        host: &str,
        hm: &mut HostMetrics,
        machine: Option<&Machine>,
        now: i64,
        patterns_only: bool,
    ) -> Vec<Fire> {
        let mut fires = Vec::new();
        if hm.generation() != self.generation {
            return fires;
        }
        hm.advance(hm.newest());
        let set = Arc::clone(&self.set);
        for (ri, rule) in set.rules.iter().enumerate() {
            if patterns_only && !rule.event_driven {
                continue;
            }
            if rule
                .hosts
                .as_ref()
                .is_some_and(|h| !h.iter().any(|x| x == host))
            {
                continue;
            }
            self.values.clear();
            let mut trigger: Option<(i64, PatternMatch)> = None;
            let mut vm_named: Option<String> = None;
            self.vm_names.clear();
            for (ci, call) in rule.when.calls.iter().enumerate() {
                if let Some(q) = &call.vm {
                    let (v, name) = hm.vm_value(q);
                    if vm_named.is_none() {
                        vm_named = name.map(str::to_string);
                    }
                    self.vm_names.push((ci, name.map(str::to_string)));
                    self.values.push(Value::Float(v));
                    continue;
                }
                let v = match (rule.series[ci], &call.state) {
                    (Some(si), _) => {
                        let s = hm.series(si);
                        let t = s.totals();
                        let key = &set.keys[si];
                        if let Some((first, m)) = hm.pending_match(si) {
                            if trigger.is_none_or(|(f, _)| first < f) {
                                trigger = Some((first, m));
                            }
                        }
                        let secs = s.span_ns() as f64 / 1e9;
                        let counted = if key.family == Family::SyscallErrors {
                            t.aux
                        } else {
                            t.n
                        };
                        match call.stat {
                            Stat::P50 => duration(s.quantile(0.5)),
                            Stat::P90 => duration(s.quantile(0.9)),
                            Stat::P99 => duration(s.quantile(0.99)),
                            Stat::P999 => duration(s.quantile(0.999)),
                            Stat::Max => duration(s.max()),
                            Stat::Mean => duration(t.sum.checked_div(t.n).unwrap_or(0)),
                            Stat::Count | Stat::Length => {
                                Value::Int(counted.min(i64::MAX as u64) as i64)
                            }
                            Stat::Rate => Value::Float(counted as f64 / secs),
                            Stat::Ratio => Value::Float(match key.family {
                                Family::CpuUsage => t.sum as f64 / s.span_ns() as f64,
                                _ if t.n == 0 => 0.0,
                                _ => t.aux as f64 / t.n as f64,
                            }),
                        }
                    }
                    (None, Some(q)) => Value::Int(machine.map_or(0, |m| state_count(m, q))),
                    (None, None) => Value::Int(0),
                };
                self.values.push(v);
            }
            let result = eval(&set.env, &rule.when, &self.values);
            let st = self
                .states
                .entry((ri, host.to_string()))
                .or_insert_with(|| RuleStatus {
                    rule: rule.name.clone(),
                    host: host.to_string(),
                    ..RuleStatus::default()
                });
            st.evaluations += 1;
            st.last_values = rule
                .when
                .calls
                .iter()
                .zip(&self.values)
                .enumerate()
                .map(|(ci, (c, v))| {
                    let vm = self
                        .vm_names
                        .iter()
                        .find(|(i, _)| *i == ci)
                        .and_then(|(_, n)| n.as_deref());
                    match vm {
                        Some(n) => format!("{} = {} (VM {n})", c.text, fmt_value(v)),
                        None => format!("{} = {}", c.text, fmt_value(v)),
                    }
                })
                .collect();
            let holds = match result {
                Ok(b) => {
                    st.last_error = None;
                    b
                }
                Err(e) => {
                    st.last_error = Some(e);
                    false
                }
            };
            let trig_ts = trigger.map_or(hm.newest(), |(f, _)| f);
            if let Some(f) = decide(&mut self.governor, rule, st, holds, now, trig_ts) {
                let proc_ = trigger.map(|(_, m)| m.process.to_string()).or_else(|| {
                    rule.when
                        .calls
                        .iter()
                        .find_map(|c| c.proc().map(|p| p.to_string()))
                });
                fires.push(Fire {
                    process: proc_,
                    tid: trigger.map(|(_, m)| m.tid),
                    vm: vm_named,
                    ..f
                });
            }
        }
        hm.clear_pending();
        fires
    }
}

/// The debounce / cooldown / limits decision for one evaluation of `rule`
/// on one host: `holds` is the condition's value at wall time `now`, and
/// `trigger_ts` the event time that made it true. Returns the firing, if any.
pub fn decide(
    gov: &mut Governor,
    rule: &crate::config::Rule,
    st: &mut RuleStatus,
    holds: bool,
    now: i64,
    trigger_ts: i64,
) -> Option<Fire> {
    st.holding = holds;
    if !holds {
        st.since = None;
        st.firing = false;
        return None;
    }
    if st.since.is_none() {
        st.since = Some(now);
        st.trigger_ts = trigger_ts;
    }
    let since = st.since.unwrap_or(now);
    if now.saturating_sub(since) < rule.for_ns as i64 {
        return None;
    }
    st.firing = true;
    if st
        .last_fired
        .is_some_and(|t| now.saturating_sub(t) < rule.cooldown_ns as i64)
    {
        return None;
    }
    let actions = gov.admit(now, &rule.then);
    if actions.is_empty() {
        st.refused += 1;
        return None;
    }
    st.last_fired = Some(now);
    st.last_fired_ms = Some(now / 1_000_000);
    st.fires += 1;
    Some(Fire {
        rule: rule.name.clone(),
        host: st.host.clone(),
        process: None,
        tid: None,
        vm: None,
        condition: rule.when.source.clone(),
        values: st.last_values.clone(),
        actions,
        condition_ts: st.trigger_ts.saturating_add(rule.for_ns as i64),
        requested_ns: now,
        count: st.fires,
    })
}
