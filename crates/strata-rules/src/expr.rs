//! Conditions: CEL expressions whose metric calls are taken out before CEL
//! parses them.
//!
//! CEL has no named arguments, so `syscall.latency.p99(proc='pg', window='1s')`
//! is not CEL. Each such call (an identifier path starting with a metric
//! root, then an argument list of `name = literal` pairs) is replaced by a
//! variable `__m<N>`; the rest is compiled by the `cel` crate. At
//! evaluation the engine computes each call and binds its variable. This
//! pass only recognises calls and literals: operators, precedence, types
//! and every other function are CEL's.

use std::sync::Arc;

use cel::{Context, Env, Program, Value};

use crate::catalog::{resolve, MetricCall, Stat, ROOTS};

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    /// The CEL program over the `__m<N>` variables.
    pub program: Program,
    /// The metric calls, in variable order (`__m0` first).
    pub calls: Vec<MetricCall>,
    /// The expression as written.
    pub source: String,
}

/// A condition that does not compile: the message, and the byte offset in
/// the source where the problem is, when known.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    /// What is wrong.
    pub msg: String,
    /// Byte offset in the condition.
    pub at: Option<usize>,
}

fn err(msg: impl Into<String>, at: usize) -> ExprError {
    ExprError {
        msg: msg.into(),
        at: Some(at),
    }
}

/// The name of the variable bound to call `i`.
pub fn var_name(i: usize) -> String {
    format!("__m{i}")
}

/// Skips a string literal starting at `i` (a quote); returns its end and
/// its content (escapes `\\`, `\'`, `\"` resolved).
fn string_lit(b: &[u8], i: usize) -> Result<(usize, String), ExprError> {
    let q = b[i];
    let mut j = i + 1;
    let mut out = Vec::new();
    while j < b.len() {
        match b[j] {
            b'\\' if j + 1 < b.len() => {
                out.push(b[j + 1]);
                j += 2;
            }
            c if c == q => {
                return Ok((j + 1, String::from_utf8_lossy(&out).into_owned()));
            }
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    Err(err("a string is not closed", i))
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// Parses `name = literal, ...)` from `i` (just after the `(`); returns the
/// pairs and the index after the `)`.
fn named_args(b: &[u8], mut i: usize) -> Result<(Vec<(String, String)>, usize), ExprError> {
    let mut args = Vec::new();
    loop {
        i = skip_ws(b, i);
        if i >= b.len() {
            return Err(err("a metric call is not closed with ')'", i));
        }
        if b[i] == b')' {
            return Ok((args, i + 1));
        }
        if !args.is_empty() {
            if b[i] != b',' {
                return Err(err("expected ',' or ')' between metric arguments", i));
            }
            i = skip_ws(b, i + 1);
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        if start == i {
            return Err(err(
                "metric arguments are named: write name='value', e.g. proc='postgres'",
                start,
            ));
        }
        let name = String::from_utf8_lossy(&b[start..i]).into_owned();
        i = skip_ws(b, i);
        if i >= b.len() || b[i] != b'=' || b.get(i + 1) == Some(&b'=') {
            return Err(err(format!("expected '=' after argument {name}"), i));
        }
        i = skip_ws(b, i + 1);
        let (end, value) = match b.get(i) {
            Some(b'\'') | Some(b'"') => string_lit(b, i)?,
            Some(c) if c.is_ascii_digit() => {
                let s = i;
                let mut j = i;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'.') {
                    j += 1;
                }
                (j, String::from_utf8_lossy(&b[s..j]).into_owned())
            }
            _ => return Err(err(format!("argument {name} needs a quoted value"), i)),
        };
        if args.iter().any(|(k, _)| *k == name) {
            return Err(err(format!("argument {name} is given twice"), start));
        }
        args.push((name, value));
        i = end;
        if args.len() > 8 {
            return Err(err("too many metric arguments", start));
        }
    }
}

/// The most metric calls in one condition.
pub const MAX_CALLS: usize = 32;
/// The longest condition accepted, bytes.
pub const MAX_SOURCE: usize = 4096;

/// Replaces each metric call in `src` by its variable; returns the CEL
/// text, the calls, and each call's offset in `src`.
pub fn extract(src: &str) -> Result<(String, Vec<MetricCall>, Vec<usize>), ExprError> {
    if src.len() > MAX_SOURCE {
        return Err(err(
            format!("the condition is longer than {MAX_SOURCE} bytes"),
            0,
        ));
    }
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut calls = Vec::new();
    let mut offsets = Vec::new();
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'\'' || c == b'"' {
            i = string_lit(b, i)?.0;
            continue;
        }
        // An identifier that is not a member of something before it.
        let after_dot = i > 0 && b[i - 1] == b'.';
        if is_ident_start(c) && !(i > 0 && is_ident(b[i - 1])) && !after_dot {
            let start = i;
            while i < b.len()
                && (is_ident(b[i])
                    || (b[i] == b'.' && b.get(i + 1).is_some_and(|&n| is_ident_start(n))))
            {
                i += 1;
            }
            let path = &src[start..i];
            let root = path.split('.').next().unwrap_or("");
            if !ROOTS.contains(&root) || !path.contains('.') {
                continue;
            }
            let p = skip_ws(b, i);
            if b.get(p) != Some(&b'(') {
                return Err(err(
                    format!("{path} is a metric: call it, e.g. {path}(window='1s')"),
                    start,
                ));
            }
            let (args, end) = named_args(b, p + 1)?;
            let call = resolve(path, &args, &src[start..end]).map_err(|m| err(m, start))?;
            if calls.len() >= MAX_CALLS {
                return Err(err(format!("more than {MAX_CALLS} metric calls"), start));
            }
            out.push_str(&src[copied..start]);
            out.push_str(&var_name(calls.len()));
            copied = end;
            calls.push(call);
            offsets.push(start);
            i = end;
            continue;
        }
        i += 1;
    }
    out.push_str(&src[copied..]);
    Ok((out, calls, offsets))
}

/// The value a metric has when nothing was measured: zero of its type.
pub fn zero_of(stat: Stat) -> Value {
    match stat {
        Stat::P50 | Stat::P90 | Stat::P99 | Stat::P999 | Stat::Max | Stat::Mean => {
            Value::Duration(chrono::Duration::zero())
        }
        Stat::Count | Stat::Length => Value::Int(0),
        Stat::Rate | Stat::Ratio => Value::Float(0.0),
    }
}

/// Evaluates a compiled condition with `values` bound to its calls.
pub fn eval(env: &Arc<Env>, c: &Condition, values: &[Value]) -> Result<bool, String> {
    let mut ctx = Context::with_env(Arc::clone(env));
    for (i, v) in values.iter().enumerate() {
        ctx.add_variable_from_value(var_name(i), v.clone());
    }
    match c.program.execute(&ctx) {
        Ok(Value::Bool(b)) => Ok(b),
        Ok(v) => Err(format!("the condition gave {v:?}, not true or false")),
        Err(e) => Err(e.to_string()),
    }
}

/// Compiles a condition: takes its metric calls out, compiles the rest with
/// CEL, checks it names no other variable, and evaluates it once with
/// every metric at zero to catch type errors (a duration compared with a
/// number, ...) at load rather than at run time.
pub fn compile(env: &Arc<Env>, src: &str) -> Result<Condition, ExprError> {
    let (cel_src, calls, _) = extract(src)?;
    let program = env.compile(&cel_src).map_err(|e| ExprError {
        msg: format!(
            "not a valid CEL expression: {}",
            e.to_string().replace("<input>", "when").trim()
        ),
        at: None,
    })?;
    for v in program.references().variables() {
        if !v.starts_with("__m") {
            return Err(ExprError {
                msg: format!(
                    "unknown name {v:?}: a condition may use metrics ({}) and CEL functions",
                    ROOTS.join(".*, ") + ".*"
                ),
                at: src.find(v),
            });
        }
    }
    let c = Condition {
        program,
        calls,
        source: src.to_string(),
    };
    let zeros: Vec<Value> = c.calls.iter().map(|m| zero_of(m.stat)).collect();
    eval(env, &c, &zeros).map_err(|m| ExprError {
        msg: format!("the condition cannot be evaluated: {m}"),
        at: None,
    })?;
    Ok(c)
}

/// The CEL environment conditions are compiled and run in.
pub fn environment() -> Arc<Env> {
    Arc::new(Env::stdlib())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_calls_and_keeps_strings() {
        let (s, calls, off) = extract(
            "syscall.latency.p99(proc='postgres', window='1s') > duration('10ms') && 'a.b(x)' != ''",
        )
        .unwrap();
        assert_eq!(s, "__m0 > duration('10ms') && 'a.b(x)' != ''");
        assert_eq!(calls.len(), 1);
        assert_eq!(off, vec![0]);
        assert_eq!(
            calls[0].text,
            "syscall.latency.p99(proc='postgres', window='1s')"
        );
    }

    #[test]
    fn compiles_evaluates_and_rejects() {
        let env = environment();
        let c = compile(&env, "syscall.latency.p99(proc='pg') > duration('10ms')").unwrap();
        let v = |ms: i64| vec![Value::Duration(chrono::Duration::milliseconds(ms))];
        assert_eq!(eval(&env, &c, &v(11)), Ok(true));
        assert_eq!(eval(&env, &c, &v(9)), Ok(false));
        let r = compile(
            &env,
            "syscall.errors.ratio(window='5s') > 0.1 || syscall.latency.count() > 100",
        )
        .unwrap();
        assert_eq!(r.calls.len(), 2);
        // Type error caught at load.
        let e = compile(&env, "syscall.latency.p99() > 10").unwrap_err();
        assert!(e.msg.contains("cannot be evaluated"), "{}", e.msg);
        // Unknown variable.
        let e = compile(&env, "load > 3").unwrap_err();
        assert!(e.msg.contains("unknown name"), "{}", e.msg);
        // Syntax.
        assert!(compile(&env, "syscall.latency.p99() >").is_err());
        assert!(compile(&env, "syscall.latency.p99(proc=pg)").is_err());
        assert!(compile(&env, "syscall.latency > 3").is_err());
    }
}
