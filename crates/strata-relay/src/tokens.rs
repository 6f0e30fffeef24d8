//! The token file: which agent may send as which host.
//!
//! Format, one entry a line: `HOST TOKEN`, separated by spaces or tabs.
//! Blank lines and lines starting with `#` are ignored. `HOST` may be `*`:
//! that token then admits any host name (handy for fleets of replay agents).
//! Tokens are compared in constant time.

use std::path::Path;
use thiserror::Error;

use crate::names::check_name;

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 512;
/// The most entries a token file may hold.
pub const MAX_ENTRIES: usize = 100_000;

/// Why a token file cannot be used.
#[derive(Debug, Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("cannot read token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error(
        "token file {path}, line {line}: {reason}; each line must be `HOST TOKEN` (or `* TOKEN`)"
    )]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No entry at all: nobody could connect.
    #[error("token file {0} has no entries; add a `HOST TOKEN` line")]
    Empty(String),
}

/// The accepted host/token pairs.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Tokens")
            .field(
                "hosts",
                &self.entries.iter().map(|(h, _)| h).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Tokens {
    /// Reads and parses a token file.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: shown.clone(),
            source,
        })?;
        Tokens::parse(&text, &shown)
    }

    /// Parses token file text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Tokens, TokenFileError> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| TokenFileError::Line {
                path: path.to_string(),
                line: i + 1,
                reason,
            };
            let mut parts = line.split_whitespace();
            let (Some(host), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("expected two words".into()));
            };
            if host != "*" {
                check_name("host", host).map_err(|e| err(e.to_string()))?;
            }
            if token.len() > MAX_TOKEN_LEN {
                return Err(err(format!(
                    "the token is longer than {MAX_TOKEN_LEN} bytes"
                )));
            }
            if entries.len() >= MAX_ENTRIES {
                return Err(err(format!("more than {MAX_ENTRIES} entries")));
            }
            entries.push((host.to_string(), token.as_bytes().to_vec()));
        }
        if entries.is_empty() {
            return Err(TokenFileError::Empty(path.to_string()));
        }
        Ok(Tokens { entries })
    }

    /// The host names the file admits (`*` when it admits any).
    pub fn hosts(&self) -> Vec<String> {
        self.entries.iter().map(|(h, _)| h.clone()).collect()
    }

    /// Whether `token` admits `host`.
    pub fn admits(&self, host: &str, token: &[u8]) -> bool {
        // Every entry is compared, so timing says nothing about which matched.
        let mut ok = false;
        for (h, t) in &self.entries {
            let host_ok = h == "*" || h == host;
            ok |= host_ok & constant_time_eq(t, token);
        }
        ok
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries_comments_and_wildcards() {
        let t = Tokens::parse(
            "# fleet\nweb1 s3cret\n\n  db1\tother \n* fleet-token\n",
            "t",
        )
        .unwrap();
        assert!(t.admits("web1", b"s3cret"));
        assert!(!t.admits("web1", b"other"));
        assert!(t.admits("db1", b"other"));
        assert!(t.admits("anything", b"fleet-token"));
        assert!(!t.admits("web1", b"s3cre"));
        assert!(!t.admits("web1", b""));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let e = Tokens::parse("web1 a\nweb2\n", "tokfile")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tokfile, line 2"), "{e}");
        let e = Tokens::parse("../etc tok\n", "f").unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        assert!(matches!(
            Tokens::parse("# nothing\n", "f"),
            Err(TokenFileError::Empty(_))
        ));
        assert!(Tokens::parse("a b c\n", "f").is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Random token files never panic the parser.
        #[test]
        fn random_files_never_panic(s in "\\PC{0,400}") {
            let _ = Tokens::parse(&s, "random");
        }
    }
}
