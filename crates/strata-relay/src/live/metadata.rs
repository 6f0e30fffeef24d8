//! Which part of a growing metadata file may be sent to a viewer.
//!
//! babeltrace2 parses every GET_METADATA reply on its own as a piece of
//! TSDL, so a reply must end on a whole top-level statement (text metadata)
//! or a whole metadata packet (packetized metadata). A writer may be caught
//! half-way through a `write`, so the server only sends what a complete
//! prefix covers and keeps the rest for later. Pure functions on bytes.

/// Magic number that opens each packet of packetized metadata.
pub const PACKET_MAGIC: u32 = 0x75D1_1D57;
/// Size of a metadata packet header.
const PACKET_HEADER_LEN: usize = 37;

/// Whether metadata starting with `head` is packetized (either byte order).
pub fn is_packetized(head: &[u8]) -> bool {
    head.get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .is_some_and(|m| {
            u32::from_le_bytes(m) == PACKET_MAGIC || u32::from_be_bytes(m) == PACKET_MAGIC
        })
}

/// Length of the longest prefix of `unsent` made of whole units: top-level
/// TSDL statements for text, whole packets when `packetized`. `unsent` must
/// start on a unit boundary (what was sent before ended on one).
pub fn complete_prefix(unsent: &[u8], packetized: bool) -> usize {
    if packetized {
        whole_packets(unsent)
    } else {
        whole_statements(unsent)
    }
}

/// Length of the whole metadata packets at the start of `b`. A packet whose
/// header is invalid ends the scan: nothing after it can be trusted.
fn whole_packets(b: &[u8]) -> usize {
    let mut at = 0usize;
    while let Some(h) = b.get(at..at + PACKET_HEADER_LEN) {
        let magic: [u8; 4] = [h[0], h[1], h[2], h[3]];
        let word = |i: usize| -> [u8; 4] { [h[i], h[i + 1], h[i + 2], h[i + 3]] };
        let packet_bits = if u32::from_le_bytes(magic) == PACKET_MAGIC {
            u32::from_le_bytes(word(28))
        } else if u32::from_be_bytes(magic) == PACKET_MAGIC {
            u32::from_be_bytes(word(28))
        } else {
            break;
        };
        let len = (packet_bits / 8) as usize;
        if !packet_bits.is_multiple_of(8) || len < PACKET_HEADER_LEN {
            break;
        }
        match at.checked_add(len) {
            Some(end) if end <= b.len() => at = end,
            _ => break,
        }
    }
    at
}

/// Length of the whole top-level statements at the start of `b`: up to and
/// including the last `;` outside braces, strings and comments, plus the
/// line end right after it.
fn whole_statements(b: &[u8]) -> usize {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        Code,
        Str,
        StrEsc,
        Chr,
        ChrEsc,
        Slash,
        Line,
        Block,
        BlockStar,
    }
    let mut st = St::Code;
    let mut depth: u64 = 0;
    let mut end = 0usize;
    for (i, &c) in b.iter().enumerate() {
        st = match st {
            St::Code => match c {
                b'"' => St::Str,
                b'\'' => St::Chr,
                b'/' => St::Slash,
                b'{' => {
                    depth += 1;
                    St::Code
                }
                b'}' => {
                    depth = depth.saturating_sub(1);
                    St::Code
                }
                b';' => {
                    if depth == 0 {
                        end = i + 1;
                    }
                    St::Code
                }
                _ => St::Code,
            },
            St::Str => match c {
                b'\\' => St::StrEsc,
                b'"' => St::Code,
                _ => St::Str,
            },
            St::StrEsc => St::Str,
            St::Chr => match c {
                b'\\' => St::ChrEsc,
                b'\'' => St::Code,
                _ => St::Chr,
            },
            St::ChrEsc => St::Chr,
            St::Slash => match c {
                b'/' => St::Line,
                b'*' => St::Block,
                b'{' => {
                    depth += 1;
                    St::Code
                }
                b';' => {
                    if depth == 0 {
                        end = i + 1;
                    }
                    St::Code
                }
                b'"' => St::Str,
                _ => St::Code,
            },
            St::Line => {
                if c == b'\n' {
                    St::Code
                } else {
                    St::Line
                }
            }
            St::Block => {
                if c == b'*' {
                    St::BlockStar
                } else {
                    St::Block
                }
            }
            St::BlockStar => match c {
                b'/' => St::Code,
                b'*' => St::BlockStar,
                _ => St::Block,
            },
        };
    }
    if b.get(end) == Some(&b'\n') {
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TSDL: &str = "/* CTF 1.8 */\n\
        typealias integer { size = 8; align = 8; signed = false; } := uint8_t;\n\
        trace {\n\tmajor = 1;\n\tminor = 8;\n\tbyte_order = le;\n};\n\
        env {\n\thostname = \"a;b{\";\n};\n\
        // a comment with ; and {\n\
        event {\n\tname = \"x\";\n\tid = 0;\n};\n";

    #[test]
    fn text_is_cut_after_the_last_whole_statement() {
        let b = TSDL.as_bytes();
        assert_eq!(complete_prefix(b, false), b.len());
        // Cut inside the event block: only up to the env statement.
        let env_end = TSDL.find("};\n// a comment").unwrap() + 3;
        let cut = TSDL.find("id = 0").unwrap();
        assert_eq!(complete_prefix(&b[..cut], false), env_end);
        // Cut inside the string holding ";" and "{": up to the trace block.
        let trace_end = TSDL.find("};\nenv").unwrap() + 3;
        let cut = TSDL.find("b{").unwrap();
        assert_eq!(complete_prefix(&b[..cut], false), trace_end);
        // Resuming from a boundary gives the rest.
        let rest = &b[env_end..];
        assert_eq!(complete_prefix(rest, false), rest.len());
        assert_eq!(complete_prefix(b"", false), 0);
        assert_eq!(complete_prefix(b"/* CTF 1.8 */\ntrace {", false), 0);
    }

    fn packet(len: usize, le: bool) -> Vec<u8> {
        let mut p = vec![b' '; len];
        let (m, s) = if le {
            (PACKET_MAGIC.to_le_bytes(), ((len * 8) as u32).to_le_bytes())
        } else {
            (PACKET_MAGIC.to_be_bytes(), ((len * 8) as u32).to_be_bytes())
        };
        p[0..4].copy_from_slice(&m);
        p[28..32].copy_from_slice(&s);
        p
    }

    #[test]
    fn packets_are_sent_whole() {
        for le in [true, false] {
            let mut b = packet(100, le);
            b.extend(packet(64, le));
            assert!(is_packetized(&b));
            assert_eq!(complete_prefix(&b, true), 164);
            assert_eq!(complete_prefix(&b[..163], true), 100);
            assert_eq!(complete_prefix(&b[..99], true), 0);
        }
        // A packet claiming less than its own header stops the scan.
        let mut bad = packet(100, true);
        bad[28..32].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(complete_prefix(&bad, true), 0);
        assert!(!is_packetized(b"/* CTF"));
    }

    proptest! {
        #[test]
        fn any_bytes_give_a_prefix_within_bounds(b in proptest::collection::vec(any::<u8>(), 0..512), p in any::<bool>()) {
            let n = complete_prefix(&b, p);
            prop_assert!(n <= b.len());
        }

        #[test]
        fn text_prefixes_only_grow(cut in 0usize..200) {
            let b = TSDL.as_bytes();
            let cut = cut.min(b.len());
            let n = complete_prefix(&b[..cut], false);
            prop_assert!(n <= complete_prefix(b, false));
            prop_assert!(n == 0 || b[n - 1] == b';' || b[n - 1] == b'\n');
        }
    }
}
