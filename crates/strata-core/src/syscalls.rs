//! System call numbers and names for the architectures Strata records.

use crate::syscalls_x86_64::X86_64;

/// The name of x86-64 system call `nr`, if the number is assigned.
pub fn x86_64_name(nr: i64) -> Option<&'static str> {
    usize::try_from(nr)
        .ok()
        .and_then(|i| X86_64.get(i).copied().flatten())
}

/// All assigned x86-64 system calls as `(number, name)`.
pub fn x86_64_all() -> impl Iterator<Item = (u32, &'static str)> {
    X86_64
        .iter()
        .enumerate()
        .filter_map(|(i, n)| n.map(|n| (i as u32, n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        assert_eq!(x86_64_name(0), Some("read"));
        assert_eq!(x86_64_name(110), Some("getppid"));
        assert_eq!(x86_64_name(231), Some("exit_group"));
        assert_eq!(x86_64_name(-1), None);
        assert_eq!(x86_64_name(100_000), None);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = x86_64_all().map(|(_, n)| n).collect();
        let len = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), len);
    }
}
