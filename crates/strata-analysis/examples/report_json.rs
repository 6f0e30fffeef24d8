//! Prints every report of a trace as JSON, with `--begin`/`--end` in ns.
//!
//! `cargo run --release -p strata-analysis --example report_json -- TRACE [BEGIN_NS END_NS]`

use strata_analysis::analysis::{analyze, Options, Selection};
use strata_ctf::read::{OpenOptions, TraceSet};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: report_json TRACE [BEGIN_NS END_NS]");
        std::process::exit(2);
    };
    let set = match TraceSet::open(path.as_ref(), &OpenOptions::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let opts = Options {
        selection: Selection::all(),
        begin: args.get(1).and_then(|s| s.parse().ok()),
        end: args.get(2).and_then(|s| s.parse().ok()),
        ..Options::default()
    };
    match analyze(&set, opts, |_| {}) {
        Ok(r) => println!("{}", serde_json::to_string_pretty(&r).unwrap_or_default()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
