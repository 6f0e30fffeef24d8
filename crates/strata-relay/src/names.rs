//! Host and session names received from the network become directory names
//! under the data directory, so they are checked before any path is built:
//! a name is one path component made of a small safe alphabet.

use thiserror::Error;

/// The longest name accepted, in bytes. Host names are at most 64 bytes on
/// Linux; LTTng-live carries host names in 64 bytes and session names in 255.
pub const MAX_NAME_LEN: usize = 64;

/// Why a received name cannot name a directory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the {what} name is empty")]
    Empty {
        /// `host` or `session`.
        what: &'static str,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("the {what} name is {len} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong {
        /// `host` or `session`.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// `.` or `..`, or a name starting with a dot (hidden, and relative
    /// components start that way).
    #[error("the {what} name {shown:?} starts with a dot; names must not be `.`, `..` or hidden")]
    Dot {
        /// `host` or `session`.
        what: &'static str,
        /// The name, escaped.
        shown: String,
    },
    /// A byte outside `[A-Za-z0-9._-]` (a `/`, a NUL, a space, ...).
    #[error("the {what} name {shown:?} holds {byte:?} at byte {at}; only letters, digits, '.', '_' and '-' are allowed (no '/', no NUL)")]
    BadByte {
        /// `host` or `session`.
        what: &'static str,
        /// The name, escaped.
        shown: String,
        /// The offending byte, as a char when printable.
        byte: char,
        /// Its offset.
        at: usize,
    },
}

/// Checks that `name`, received as the name of a `what` (`"host"` or
/// `"session"`), is a safe single path component, and returns it.
pub fn check_name<'a>(what: &'static str, name: &'a str) -> Result<&'a str, NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
        });
    }
    let shown = || name.escape_debug().to_string();
    if name.starts_with('.') {
        return Err(NameError::Dot {
            what,
            shown: shown(),
        });
    }
    if let Some((at, &b)) = name
        .as_bytes()
        .iter()
        .enumerate()
        .find(|(_, &b)| !(b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
    {
        return Err(NameError::BadByte {
            what,
            shown: shown(),
            byte: char::from(b),
            at,
        });
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for n in ["web1", "db-2.example.org", "strata", "a_b", "X9"] {
            assert_eq!(check_name("host", n), Ok(n));
        }
    }

    #[test]
    fn traversal_and_absolute_names_are_refused() {
        for n in [
            "../../etc",
            "..",
            ".",
            "/abs",
            "/",
            "a/b",
            "a/../b",
            ".hidden",
        ] {
            let e = check_name("host", n).unwrap_err();
            assert!(
                matches!(e, NameError::Dot { .. } | NameError::BadByte { .. }),
                "{n}: {e}"
            );
        }
        let e = check_name("session", "/abs").unwrap_err().to_string();
        assert!(e.contains("session") && e.contains("'/'"), "{e}");
    }

    #[test]
    fn empty_nul_and_overlong_names_are_refused() {
        assert_eq!(
            check_name("host", ""),
            Err(NameError::Empty { what: "host" })
        );
        assert!(matches!(
            check_name("host", "a\0b"),
            Err(NameError::BadByte { at: 1, .. })
        ));
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(matches!(
            check_name("host", &long),
            Err(NameError::TooLong { len, .. }) if len == MAX_NAME_LEN + 1
        ));
        assert!(check_name("host", &"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(check_name("host", "héllo").is_err());
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any string either fails or is one plain path component.
        #[test]
        fn accepted_names_are_single_components(s in "\\PC{0,80}") {
            if let Ok(n) = check_name("host", &s) {
                let p = std::path::Path::new(n);
                let comps: Vec<_> = p.components().collect();
                prop_assert_eq!(comps.len(), 1);
                prop_assert!(matches!(comps[0], std::path::Component::Normal(_)));
                prop_assert!(!n.starts_with('.'));
            }
        }
    }
}
