//! Time arguments (`--begin`, `--end`): `HH:MM:SS[.frac]` on the trace's
//! date, `YYYY-MM-DD HH:MM:SS[.frac]`, or nanoseconds since the epoch. All
//! times are UTC.

use thiserror::Error;

const NS: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * NS;

/// A parsed time argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// Nanoseconds since the epoch.
    Absolute(i64),
    /// Nanoseconds since midnight UTC, on the trace's date.
    TimeOfDay(i64),
}

/// Why a time argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimeError {
    /// The text matches no accepted form.
    #[error("`{0}` is not a time: use HH:MM:SS[.fraction] (UTC, on the trace's date), YYYY-MM-DD HH:MM:SS[.fraction] (UTC), or nanoseconds since the epoch")]
    Format(String),
    /// A field is out of range.
    #[error("`{text}`: {what} is out of range")]
    Range {
        /// The argument.
        text: String,
        /// Which field.
        what: &'static str,
    },
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Formats ns since the epoch as `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` (UTC).
pub fn format_datetime(ns: i64) -> String {
    let (y, m, d) = civil_from_days(ns.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02} {}", format_time_of_day(ns))
}

/// Formats ns since the epoch as `HH:MM:SS.nnnnnnnnn` (UTC).
pub fn format_time_of_day(ns: i64) -> String {
    let t = ns.rem_euclid(DAY);
    let s = t / NS;
    format!(
        "{:02}:{:02}:{:02}.{:09}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t % NS
    )
}

fn num(s: &str, text: &str) -> Result<u32, TimeError> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::Format(text.into()));
    }
    s.parse().map_err(|_| TimeError::Format(text.into()))
}

fn time_of_day(s: &str, text: &str) -> Result<i64, TimeError> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, m, sec] = parts[..] else {
        return Err(TimeError::Format(text.into()));
    };
    let (h, m, sec) = (num(h, text)?, num(m, text)?, num(sec, text)?);
    let range = |what| TimeError::Range {
        text: text.into(),
        what,
    };
    if h > 23 {
        return Err(range("the hour"));
    }
    if m > 59 {
        return Err(range("the minute"));
    }
    if sec > 60 {
        return Err(range("the second"));
    }
    let mut ns = 0i64;
    if let Some(f) = frac {
        if f.is_empty() || f.len() > 9 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimeError::Format(text.into()));
        }
        ns = f
            .parse::<i64>()
            .map_err(|_| TimeError::Format(text.into()))?
            * 10i64.pow(9 - f.len() as u32);
    }
    Ok((h as i64 * 3600 + m as i64 * 60 + sec as i64) * NS + ns)
}

/// Parses a time argument.
pub fn parse(text: &str) -> Result<TimeSpec, TimeError> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<i64>()
            .map(TimeSpec::Absolute)
            .map_err(|_| TimeError::Range {
                text: text.into(),
                what: "the nanosecond count",
            });
    }
    if let Some((date, time)) = t.split_once([' ', 'T']) {
        let parts: Vec<&str> = date.split('-').collect();
        let [y, m, d] = parts[..] else {
            return Err(TimeError::Format(text.into()));
        };
        if y.len() != 4 {
            return Err(TimeError::Format(text.into()));
        }
        let (y, m, d) = (num(y, text)?, num(m, text)?, num(d, text)?);
        if !(1..=12).contains(&m) {
            return Err(TimeError::Range {
                text: text.into(),
                what: "the month",
            });
        }
        if !(1..=31).contains(&d) {
            return Err(TimeError::Range {
                text: text.into(),
                what: "the day",
            });
        }
        let tod = time_of_day(time.trim(), text)?;
        return Ok(TimeSpec::Absolute(
            days_from_civil(y as i64, m, d) * DAY + tod,
        ));
    }
    time_of_day(t, text).map(TimeSpec::TimeOfDay)
}

impl TimeSpec {
    /// The time in ns since the epoch; a time of day takes the date (UTC) of
    /// `trace_start`.
    pub fn resolve(self, trace_start: i64) -> i64 {
        match self {
            TimeSpec::Absolute(ns) => ns,
            TimeSpec::TimeOfDay(tod) => trace_start.div_euclid(DAY) * DAY + tod,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_457_113_582_794_565_804; // 2016-03-04 17:46:22.794565804 UTC

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse("17:46:22.9").unwrap().resolve(START),
            1_457_113_582_900_000_000
        );
        assert_eq!(
            parse("17:46:22.900000000").unwrap().resolve(START),
            1_457_113_582_900_000_000
        );
        assert_eq!(
            parse("2016-03-04 17:46:23.1").unwrap(),
            TimeSpec::Absolute(1_457_113_583_100_000_000)
        );
        assert_eq!(
            parse("2016-03-04T17:46:23").unwrap(),
            TimeSpec::Absolute(1_457_113_583_000_000_000)
        );
        assert_eq!(
            parse("1457113582900000000").unwrap(),
            TimeSpec::Absolute(1_457_113_582_900_000_000)
        );
        assert_eq!(parse("00:00:00").unwrap().resolve(START) % DAY, 0);
    }

    #[test]
    fn refused_forms() {
        for bad in [
            "",
            "17:46",
            "17:46:22.",
            "17:46:22.1234567890",
            "24:00:00",
            "12:60:00",
            "2016-13-01 00:00:00",
            "16-03-04 00:00:00",
            "noon",
            "17:46:22.9x",
            "-5",
            "99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
        let e = parse("noon").unwrap_err().to_string();
        assert!(e.contains("HH:MM:SS"), "{e}");
    }

    #[test]
    fn formatting_round_trips() {
        assert_eq!(format_datetime(START), "2016-03-04 17:46:22.794565804");
        for days in [-1000, 0, 1, 16864, 20000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
