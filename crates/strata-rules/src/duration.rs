//! Durations in rule files: `"250us"`, `"10ms"`, `"1.5s"`, `"5m"`, `"1h"`.

/// The longest duration a rule file may name (one day), so that sums of
/// durations never overflow nanoseconds.
pub const MAX_NS: u64 = 86_400_000_000_000;

/// Parses a duration with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`) into
/// nanoseconds. The number may have a fraction. Returns a message saying
/// what is wrong otherwise.
pub fn parse_ns(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("duration {s:?} has no unit; write e.g. \"10ms\", \"3s\", \"5m\"")
        })?;
    let (num, unit) = t.split_at(split);
    let scale: f64 = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        u => {
            return Err(format!(
                "duration {s:?} has unknown unit {u:?}; use ns, us, ms, s, m or h"
            ))
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let ns = v * scale;
    if !ns.is_finite() || ns < 0.0 || ns > MAX_NS as f64 {
        return Err(format!("duration {s:?} is out of range (0 to 24h)"));
    }
    Ok(ns.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_errors() {
        assert_eq!(parse_ns("10ms"), Ok(10_000_000));
        assert_eq!(parse_ns("1.5s"), Ok(1_500_000_000));
        assert_eq!(parse_ns("5m"), Ok(300_000_000_000));
        assert_eq!(parse_ns("250us"), Ok(250_000));
        assert!(parse_ns("10").unwrap_err().contains("no unit"));
        assert!(parse_ns("10parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_ns("ms").is_err());
        assert!(parse_ns("48h").is_err());
    }
}
