//! Splits TSDL text into tokens, each tagged with its line number.

use super::MetadataError;

/// One token of TSDL text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An identifier or keyword (`struct`, `uint32_t`, `_prev_tid`).
    Ident(String),
    /// An unsigned integer literal; a minus sign is a separate token.
    Int(u64),
    /// A string literal with its escapes decoded.
    Str(String),
    /// Punctuation: `{ } ( ) [ ] < > ; , = . : * + -`, plus `:=` and `...`.
    Punct(&'static str),
}

impl Tok {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v) => format!("`{v}`"),
            Tok::Str(s) => format!("string \"{}\"", s.escape_debug()),
            Tok::Punct(p) => format!("`{p}`"),
        }
    }
}

/// A token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: u32,
}

const PUNCTS: &[&str] = &[
    ":=", "...", "{", "}", "(", ")", "[", "]", "<", ">", ";", ",", "=", ".", ":", "*", "+", "-",
];

/// Tokenizes `text`. Fails on characters TSDL does not use, unterminated
/// comments or strings, and integer literals that do not fit 64 bits.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token>, MetadataError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0usize;
    let mut line = 1u32;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            // NUL is padding some producers leave after the text.
            b' ' | b'\t' | b'\r' | 0x0b | 0x0c | 0 => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let start_line = line;
                i += 2;
                loop {
                    match bytes.get(i) {
                        None => {
                            return Err(MetadataError::syntax(
                                start_line,
                                "a comment that starts here is never closed with `*/`",
                            ))
                        }
                        Some(b'*') if bytes.get(i + 1) == Some(&b'/') => {
                            i += 2;
                            break;
                        }
                        Some(b'\n') => {
                            line += 1;
                            i += 1;
                        }
                        Some(_) => i += 1,
                    }
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|&b| b != b'\n') {
                    i += 1;
                }
            }
            b'"' => {
                let (s, next, lines) = lex_string(bytes, i + 1, line)?;
                out.push(Token {
                    tok: Tok::Str(s),
                    line,
                });
                line += lines;
                i = next;
            }
            b'\'' => {
                // A character literal: TSDL allows them as integer values.
                let (s, next, _) = lex_quoted(bytes, i + 1, line, b'\'')?;
                let v = s.chars().next().map(u64::from).unwrap_or(0);
                out.push(Token {
                    tok: Tok::Int(v),
                    line,
                });
                i = next;
            }
            b'0'..=b'9' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    i += 1;
                }
                let lit = &text[start..i];
                out.push(Token {
                    tok: Tok::Int(parse_int(lit, line)?),
                    line,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
                {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(text[start..i].to_string()),
                    line,
                });
            }
            _ => {
                let rest = &text[i..];
                let Some(p) = PUNCTS.iter().find(|p| rest.starts_with(**p)) else {
                    let ch = rest.chars().next().unwrap_or('?');
                    return Err(MetadataError::syntax(
                        line,
                        format!("unexpected character {ch:?}"),
                    ));
                };
                out.push(Token {
                    tok: Tok::Punct(p),
                    line,
                });
                i += p.len();
            }
        }
    }
    Ok(out)
}

fn lex_string(bytes: &[u8], i: usize, line: u32) -> Result<(String, usize, u32), MetadataError> {
    lex_quoted(bytes, i, line, b'"')
}

/// Reads a quoted literal body starting at `i` (just after the opening quote).
/// Returns the decoded text, the index after the closing quote and the number
/// of newlines crossed.
fn lex_quoted(
    bytes: &[u8],
    mut i: usize,
    line: u32,
    quote: u8,
) -> Result<(String, usize, u32), MetadataError> {
    let mut out = Vec::new();
    let mut lines = 0;
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(MetadataError::syntax(
                line,
                "a string that starts here is never closed",
            ));
        };
        i += 1;
        match c {
            c if c == quote => break,
            b'\\' => {
                let Some(&e) = bytes.get(i) else { continue };
                i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'v' => out.push(11),
                    b'x' => {
                        let mut v = 0u8;
                        while let Some(d) = bytes.get(i).and_then(|b| (*b as char).to_digit(16)) {
                            v = v.wrapping_mul(16).wrapping_add(d as u8);
                            i += 1;
                        }
                        out.push(v);
                    }
                    other => out.push(other),
                }
            }
            b'\n' => {
                lines += 1;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    Ok((String::from_utf8_lossy(&out).into_owned(), i, lines))
}

/// Parses a C integer literal: decimal, `0x` hex, leading-`0` octal, with
/// optional `u`/`l` suffixes.
fn parse_int(lit: &str, line: u32) -> Result<u64, MetadataError> {
    let body = lit.trim_end_matches(['u', 'U', 'l', 'L']);
    let parsed = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else if body.len() > 1 && body.starts_with('0') {
        u64::from_str_radix(&body[1..], 8)
    } else {
        body.parse::<u64>()
    };
    parsed.map_err(|_| {
        MetadataError::syntax(
            line,
            format!("`{lit}` is not an integer that fits in 64 bits"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn splits_declarations() {
        assert_eq!(
            toks("typealias integer { size = 0x20; } := uint32_t; /* c */ a ... b"),
            vec![
                Tok::Ident("typealias".into()),
                Tok::Ident("integer".into()),
                Tok::Punct("{"),
                Tok::Ident("size".into()),
                Tok::Punct("="),
                Tok::Int(32),
                Tok::Punct(";"),
                Tok::Punct("}"),
                Tok::Punct(":="),
                Tok::Ident("uint32_t".into()),
                Tok::Punct(";"),
                Tok::Ident("a".into()),
                Tok::Punct("..."),
                Tok::Ident("b".into()),
            ]
        );
    }

    #[test]
    fn literals_and_lines() {
        let t = tokenize("x = \"a\\\"b\\n\";\n// c\ny = 017UL;").unwrap();
        assert_eq!(t[2].tok, Tok::Str("a\"b\n".into()));
        assert_eq!(t[4].line, 3);
        assert_eq!(t[6].tok, Tok::Int(15));
    }

    #[test]
    fn errors_name_the_line() {
        let e = tokenize("a\n/* open").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        let e = tokenize("a\nb = 99999999999999999999999;")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(tokenize("a @").is_err());
    }
}
