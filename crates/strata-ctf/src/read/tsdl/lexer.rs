//! Splits TSDL text into tokens, on demand, each tagged with its line number.
//!
//! Tokens borrow from the text: identifiers and string literals without
//! escapes are slices of it, so lexing allocates nothing in the common case.
//! LTTng kernel metadata is hundreds of kilobytes, and this runs every time a
//! trace is opened.

use std::borrow::Cow;

use memchr::{memchr, memchr_iter, memmem};

use super::MetadataError;

/// Punctuation of TSDL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum P {
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Lt,
    Gt,
    Semi,
    Comma,
    Eq,
    Dot,
    Colon,
    Star,
    Plus,
    Minus,
    /// `:=`
    Assign,
    /// `...`
    Ellipsis,
}

impl P {
    /// The punctuation as written.
    pub(crate) fn text(self) -> &'static str {
        match self {
            P::LBrace => "{",
            P::RBrace => "}",
            P::LParen => "(",
            P::RParen => ")",
            P::LBracket => "[",
            P::RBracket => "]",
            P::Lt => "<",
            P::Gt => ">",
            P::Semi => ";",
            P::Comma => ",",
            P::Eq => "=",
            P::Dot => ".",
            P::Colon => ":",
            P::Star => "*",
            P::Plus => "+",
            P::Minus => "-",
            P::Assign => ":=",
            P::Ellipsis => "...",
        }
    }
}

/// One token of TSDL text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    /// An identifier or keyword (`struct`, `uint32_t`, `_prev_tid`).
    Ident(&'a str),
    /// An unsigned integer literal; a minus sign is a separate token.
    Int(u64),
    /// A string literal with its escapes decoded.
    Str(Cow<'a, str>),
    /// Punctuation.
    Punct(P),
    /// The end of the text.
    End,
    /// A lexing error, kept by the lexer ([`Lexer::error`]).
    Error,
}

impl Tok<'_> {
    /// How the token reads in an error message.
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v) => format!("`{v}`"),
            Tok::Str(s) => format!("string \"{}\"", s.escape_debug()),
            Tok::Punct(p) => format!("`{}`", p.text()),
            Tok::End | Tok::Error => "the end of the metadata".to_string(),
        }
    }
}

/// A token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    pub line: u32,
}

/// Produces the tokens of a text one at a time.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    i: usize,
    line: u32,
    error: Option<MetadataError>,
}

/// Character classes, looked up by byte: one load per character instead of
/// a chain of comparisons.
pub(super) const WORD: u8 = 1;
pub(super) const BLANK: u8 = 2;
pub(super) static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'_' {
            t[c] = WORD;
        }
        // NUL is padding some producers leave after the text.
        if matches!(b, b' ' | b'\t' | b'\r' | 0x0b | 0x0c | 0) {
            t[c] = BLANK;
        }
        c += 1;
    }
    t
};

#[inline(always)]
fn is_word(b: u8) -> bool {
    CLASS[b as usize] == WORD
}

/// The end of the run of word characters that starts at `i`.
#[inline(always)]
fn word_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && is_word(bytes[i]) {
        i += 1;
    }
    i
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `text`.
    #[cfg(test)]
    pub(crate) fn new(text: &'a str) -> Self {
        Lexer {
            text,
            i: 0,
            line: 1,
            error: None,
        }
    }

    /// A lexer at byte `pos` of `text` (on a character boundary), which is
    /// on line `line`: for parsing a part of the text found by a scan.
    pub(crate) fn at(text: &'a str, pos: usize, line: u32) -> Self {
        Lexer {
            text,
            i: pos.min(text.len()),
            line,
            error: None,
        }
    }

    /// Byte offset of the text not lexed yet.
    pub(crate) fn pos(&self) -> usize {
        self.i
    }

    /// The current line.
    pub(crate) fn line(&self) -> u32 {
        self.line
    }

    /// The text not lexed yet.
    pub(crate) fn rest(&self) -> &'a str {
        self.text.get(self.i..).unwrap_or("")
    }

    /// Skips `n` bytes of the text not lexed yet that hold `lines` newlines,
    /// counted by the caller before.
    pub(crate) fn skip_counted(&mut self, n: usize, lines: u32) {
        self.i = (self.i + n).min(self.text.len());
        self.line += lines;
    }

    /// The error behind a [`Tok::Error`] token.
    pub(crate) fn error(&self) -> Option<&MetadataError> {
        self.error.as_ref()
    }

    /// The next token: [`Tok::End`] at the end of the text, [`Tok::Error`]
    /// (for good: the lexer stops there) on characters TSDL does not use,
    /// unterminated comments or strings, and integer literals that do not
    /// fit 64 bits.
    // One out-of-line copy: inlined at each of the parser's call sites it
    // pushed the blank skipping out of line and cost more than the call.
    #[inline(never)]
    pub(crate) fn next(&mut self) -> Token<'a> {
        if self.error.is_some() {
            return Token {
                tok: Tok::Error,
                line: self.line,
            };
        }
        self.next_token()
    }

    /// Keeps `e` as the lexer's error and gives the [`Tok::Error`] token:
    /// errors stay out of the token's path, which is then a plain value.
    #[cold]
    fn fail(&mut self, e: MetadataError) -> Token<'a> {
        self.error = Some(e);
        Token {
            tok: Tok::Error,
            line: self.line,
        }
    }

    /// Skips blanks and comments. Fails on a comment that is never closed.
    #[inline]
    fn skip_blanks(&mut self) -> Result<(), MetadataError> {
        let bytes = self.text.as_bytes();
        while let Some(&c) = bytes.get(self.i) {
            match c {
                _ if CLASS[c as usize] == BLANK => self.i += 1,
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b'/' if bytes.get(self.i + 1) == Some(&b'*') => {
                    let body = bytes.get(self.i + 2..).unwrap_or(&[]);
                    let Some(end) = memmem::find(body, b"*/") else {
                        return Err(MetadataError::syntax(
                            self.line,
                            "a comment that starts here is never closed with `*/`",
                        ));
                    };
                    self.line += memchr_iter(b'\n', &body[..end]).count() as u32;
                    self.i += 2 + end + 2;
                }
                b'/' if bytes.get(self.i + 1) == Some(&b'/') => {
                    let rest = bytes.get(self.i..).unwrap_or(&[]);
                    self.i += memchr(b'\n', rest).unwrap_or(rest.len());
                }
                _ => break,
            }
        }
        Ok(())
    }

    /// The next token: [`Tok::End`] at the end of the text, [`Tok::Error`]
    /// with the error kept on a lexing error.
    #[inline(always)]
    fn next_token(&mut self) -> Token<'a> {
        if let Err(e) = self.skip_blanks() {
            return self.fail(e);
        }
        let bytes = self.text.as_bytes();
        let Some(&c) = bytes.get(self.i) else {
            return Token {
                tok: Tok::End,
                line: self.line,
            };
        };
        let line = self.line;
        let start = self.i;
        let tok = match c {
            // On error the position stays where it was, so asking again
            // gives the same error.
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                let j = word_end(bytes, start + 1);
                self.i = j;
                Tok::Ident(self.text.get(start..j).unwrap_or(""))
            }
            b'0'..=b'9' => {
                let j = word_end(bytes, start + 1);
                let v = match parse_int(self.text.get(start..j).unwrap_or(""), line) {
                    Ok(v) => v,
                    Err(e) => return self.fail(e),
                };
                self.i = j;
                Tok::Int(v)
            }
            b'"' => {
                let (s, next, lines) = match lex_quoted(self.text, start + 1, line, b'"') {
                    Ok(r) => r,
                    Err(e) => return self.fail(e),
                };
                self.i = next;
                self.line += lines;
                Tok::Str(s)
            }
            b'\'' => {
                // A character literal: TSDL allows them as integer values.
                let (s, next, lines) = match lex_quoted(self.text, start + 1, line, b'\'') {
                    Ok(r) => r,
                    Err(e) => return self.fail(e),
                };
                self.i = next;
                self.line += lines;
                Tok::Int(s.chars().next().map(u64::from).unwrap_or(0))
            }
            _ => {
                let next = bytes.get(self.i + 1).copied();
                let (p, len) = match c {
                    b':' if next == Some(b'=') => (P::Assign, 2),
                    b'.' if next == Some(b'.') && bytes.get(self.i + 2) == Some(&b'.') => {
                        (P::Ellipsis, 3)
                    }
                    b'{' => (P::LBrace, 1),
                    b'}' => (P::RBrace, 1),
                    b'(' => (P::LParen, 1),
                    b')' => (P::RParen, 1),
                    b'[' => (P::LBracket, 1),
                    b']' => (P::RBracket, 1),
                    b'<' => (P::Lt, 1),
                    b'>' => (P::Gt, 1),
                    b';' => (P::Semi, 1),
                    b',' => (P::Comma, 1),
                    b'=' => (P::Eq, 1),
                    b'.' => (P::Dot, 1),
                    b':' => (P::Colon, 1),
                    b'*' => (P::Star, 1),
                    b'+' => (P::Plus, 1),
                    b'-' => (P::Minus, 1),
                    _ => {
                        let ch = self.text[start..].chars().next().unwrap_or('?');
                        return self.fail(MetadataError::syntax(
                            line,
                            format!("unexpected character {ch:?}"),
                        ));
                    }
                };
                self.i += len;
                Tok::Punct(p)
            }
        };
        Token { tok, line }
    }
}

/// Tokenizes all of `text`.
#[cfg(test)]
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, MetadataError> {
    let mut lx = Lexer::new(text);
    let mut out = Vec::new();
    loop {
        let t = lx.next();
        match t.tok {
            Tok::End => return Ok(out),
            Tok::Error => {
                return Err(lx
                    .error()
                    .cloned()
                    .unwrap_or_else(|| MetadataError::syntax(t.line, "lexing failed")))
            }
            _ => out.push(t),
        }
    }
}

/// Reads a quoted literal body starting at byte `i` (just after the opening
/// quote). Returns the decoded text, the index after the closing quote and
/// the number of newlines crossed. Borrows the text when it has no escapes.
fn lex_quoted(
    text: &str,
    i: usize,
    line: u32,
    quote: u8,
) -> Result<(Cow<'_, str>, usize, u32), MetadataError> {
    let bytes = text.as_bytes();
    let unclosed = || MetadataError::syntax(line, "a string that starts here is never closed");
    let body = bytes.get(i..).unwrap_or(&[]);
    // Fast path: up to the closing quote, with no backslash before it.
    let close = memchr(quote, body).ok_or_else(unclosed)?;
    if memchr(b'\\', &body[..close]).is_none() {
        let s = &text[i..i + close];
        let lines = memchr_iter(b'\n', s.as_bytes()).count() as u32;
        return Ok((Cow::Borrowed(s), i + close + 1, lines));
    }
    let mut out = Vec::new();
    let mut lines = 0;
    let mut i = i;
    loop {
        let Some(&c) = bytes.get(i) else {
            return Err(unclosed());
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
    Ok((
        Cow::Owned(String::from_utf8_lossy(&out).into_owned()),
        i,
        lines,
    ))
}

/// Parses a C integer literal: decimal, `0x` hex, leading-`0` octal, with
/// optional `u`/`l` suffixes.
fn parse_int(lit: &str, line: u32) -> Result<u64, MetadataError> {
    // Most literals are short plain decimals (sizes, alignments, ids).
    if lit.len() <= 18 && lit.bytes().all(|b| b.is_ascii_digit()) && !lit.starts_with('0')
        || lit == "0"
    {
        return Ok(lit.bytes().fold(0u64, |v, b| v * 10 + u64::from(b - b'0')));
    }
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

    fn toks(s: &str) -> Vec<Tok<'_>> {
        tokenize(s).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn splits_declarations() {
        assert_eq!(
            toks("typealias integer { size = 0x20; } := uint32_t; /* c */ a ... b"),
            vec![
                Tok::Ident("typealias"),
                Tok::Ident("integer"),
                Tok::Punct(P::LBrace),
                Tok::Ident("size"),
                Tok::Punct(P::Eq),
                Tok::Int(32),
                Tok::Punct(P::Semi),
                Tok::Punct(P::RBrace),
                Tok::Punct(P::Assign),
                Tok::Ident("uint32_t"),
                Tok::Punct(P::Semi),
                Tok::Ident("a"),
                Tok::Punct(P::Ellipsis),
                Tok::Ident("b"),
            ]
        );
    }

    #[test]
    fn literals_and_lines() {
        let t = tokenize("x = \"a\\\"b\\n\";\n// c\ny = 017UL;").unwrap();
        assert_eq!(t[2].tok, Tok::Str("a\"b\n".into()));
        assert_eq!(t[4].line, 3);
        assert_eq!(t[6].tok, Tok::Int(15));
        // Lines are counted inside comments and plain strings too.
        let t = tokenize("/* a\nb */ \"c\nd\" x 'y'").unwrap();
        assert_eq!(t[0].tok, Tok::Str(Cow::Borrowed("c\nd")));
        assert_eq!((t[0].line, t[1].line), (2, 3));
        assert_eq!(t[2].tok, Tok::Int(u64::from(b'y')));
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
        let e = tokenize("a\n\"open").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
    }
}
