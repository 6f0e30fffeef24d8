//! Finds the team's shared real LTTng traces (`../shared/traces` beside the
//! repository, or the workspace copy) for tests and benchmarks. Included by
//! path, so every crate's tests look in the same places and skip the same
//! way when the traces are absent.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The directory holding the shared traces, or `None` after printing one
/// line saying that `who` is skipped because they are absent.
pub fn shared_traces(who: &str) -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let found = [
        manifest.join("../../../shared/traces"),
        PathBuf::from("/work/shared/traces"),
    ]
    .into_iter()
    .find(|p| p.join("tc-many-threads/metadata").is_file());
    if found.is_none() {
        println!("{who}: skipped: the shared traces (../shared/traces) are not here");
    }
    found
}

/// One shared trace directory (`name` under the shared traces, e.g.
/// `tc-many-threads`), or `None` after printing why `who` is skipped.
pub fn shared_trace(who: &str, name: &str) -> Option<PathBuf> {
    let p = shared_traces(who)?.join(name);
    if p.join("metadata").is_file() {
        Some(p)
    } else {
        println!("{who}: skipped: {} has no metadata", p.display());
        None
    }
}
