//! Plain aligned text tables and the number formats the reports use.

/// Column alignment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: left.
    Left,
    /// Numbers: right.
    Right,
}

/// A table: a header row and rows of cells, printed with columns sized to
/// their widest cell.
pub struct Table {
    cols: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub fn new(cols: &[(&str, Align)]) -> Table {
        Table {
            cols: cols.iter().map(|(n, a)| (n.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank, extra ones ignored).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, indented by two spaces, columns two spaces apart,
    /// one line per row.
    pub fn render(&self) -> String {
        let n = self.cols.len();
        let mut w: Vec<usize> = self.cols.iter().map(|c| c.0.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().take(n).enumerate() {
                w[i] = w[i].max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (i, (c, (_, a))) in cells.iter().zip(&self.cols).enumerate() {
                let pad = w[i].saturating_sub(c.chars().count());
                s.push_str("  ");
                if *a == Align::Right {
                    s.extend(std::iter::repeat_n(' ', pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    if i + 1 < n {
                        s.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let mut out = line(self.cols.iter().map(|c| c.0.as_str()).collect());
        for r in &self.rows {
            let cells: Vec<&str> = (0..n)
                .map(|i| r.get(i).map_or("", |s| s.as_str()))
                .collect();
            out.push_str(&line(cells));
        }
        out
    }
}

/// Nanoseconds as microseconds with 3 decimals (`12.345`).
pub fn us(ns: Option<f64>) -> String {
    match ns {
        Some(v) => format!("{:.3}", v / 1e3),
        None => "-".into(),
    }
}

/// Integer nanoseconds as microseconds.
pub fn us_i(ns: Option<i64>) -> String {
    us(ns.map(|v| v as f64))
}

/// Nanoseconds with a unit picked for the size (`432.662 ms`).
pub fn duration(ns: i64) -> String {
    let v = ns as f64;
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.3} s", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.3} ms", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.3} µs", v / 1e3)
    } else {
        format!("{ns} ns")
    }
}

/// Bytes with a binary unit (`1.5 MiB`).
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A bar of `width` cells for `part / whole`.
pub fn bar(part: f64, whole: f64, width: usize) -> String {
    let n = if whole > 0.0 {
        ((part / whole) * width as f64).round() as usize
    } else {
        0
    };
    "█".repeat(n.min(width))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let mut t = Table::new(&[("Name", Align::Left), ("Count", Align::Right)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["longer".into(), "12345".into()]);
        let s = t.render();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "  Name    Count");
        assert_eq!(lines[1], "  a           1");
        assert_eq!(lines[2], "  longer  12345");
    }

    #[test]
    fn units() {
        assert_eq!(duration(432_662_358), "432.662 ms");
        assert_eq!(duration(999), "999 ns");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(us(Some(2192.8)), "2.193");
        assert_eq!(bar(1.0, 2.0, 10).chars().count(), 5);
    }
}
