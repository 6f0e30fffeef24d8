//! Recursive-descent parser for TSDL. It resolves type names as it goes
//! (aliases, typedefs, named structs, variants and enums are lexically
//! scoped), so its output is [`Metadata`] with every type spelled out.

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use strata_core::ClockDesc;

use super::lexer::{Lexer, Tok, Token, CLASS, P, WORD};
use super::model::*;
use super::MetadataError;

/// Deepest nesting of types accepted; deeper text is rejected rather than
/// risking the stack.
const MAX_DEPTH: usize = 64;
/// Largest static array accepted, in elements.
const MAX_ARRAY_LEN: u64 = 1 << 32;
/// Bytes of metadata per event block, at the least, for reserving the list
/// of events before parsing (LTTng kernel blocks take about 260).
const EVENT_BLOCK_BYTES: usize = 256;

/// FNV-1a: type names are short, and SipHash's setup costs more than the
/// lookup itself. The input is the trace's own metadata, so flooding is not
/// a concern.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// A hash taking eight bytes a step, for the integer-body cache whose keys
/// are whole `{ ... }` bodies (about 60 bytes): FNV's byte-at-a-time loop
/// cost more than the parse it saves. Same trust argument as [`Fnv`].
#[derive(Default)]
pub(crate) struct WordHash(u64);

impl Hasher for WordHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            h = (h.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            h = (h.rotate_left(5) ^ u64::from(b)).wrapping_mul(K);
        }
        self.0 = h;
    }
}

type Map<T> = HashMap<String, T, BuildHasherDefault<Fnv>>;

/// The type names one scope declares.
#[derive(Default, Clone)]
pub(crate) struct Scope {
    aliases: Map<Type>,
    structs: Map<StructType>,
    variants: Map<VariantType>,
    enums: Map<EnumType>,
}

/// A right-hand side value of an assignment.
#[derive(Debug, Clone)]
enum Val<'a> {
    Int(i128),
    Str(Cow<'a, str>),
    /// An identifier or dotted path (`le`, `true`, `clock.monotonic.value`).
    Path(Cow<'a, str>),
}

/// What a block assignment sets: a plain value or a type (`:=`).
enum Rhs<'a> {
    Val(Val<'a>),
    Type(Type),
    /// An event's type, not parsed yet: it starts at byte `pos`, on `line`,
    /// and its `;` is at byte `end`.
    Deferred {
        pos: u32,
        line: u32,
        end: u32,
    },
}

/// Which entry of an event block a deferred type is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeKey {
    /// `context := ...`
    Context,
    /// `fields := ...`
    Fields,
    /// Any other `key := ...`: parsed for its errors, then ignored. Its
    /// name is this entry of the other keys list kept with the deferred
    /// types (rare, so kept apart: a thousand entries stay small).
    Other(u32),
}

impl TypeKey {
    /// The key of `key := ...`, adding it to `others` when it is neither
    /// `context` nor `fields`.
    #[inline]
    fn new(key: &str, others: &mut Vec<Box<str>>) -> Self {
        match key {
            "context" => TypeKey::Context,
            "fields" => TypeKey::Fields,
            k => {
                let i = u32::try_from(others.len()).unwrap_or(u32::MAX);
                others.push(k.into());
                TypeKey::Other(i)
            }
        }
    }
    /// Its name, for error messages; `others` is the list [`TypeKey::new`]
    /// filled.
    pub(crate) fn text<'k>(&self, others: &'k [Box<str>]) -> &'k str {
        match self {
            TypeKey::Context => "context",
            TypeKey::Fields => "fields",
            TypeKey::Other(i) => others.get(*i as usize).map_or("?", |k| k),
        }
    }
}

/// A type of an event block left unparsed by [`Parser::parse_lazy`]: 24
/// bytes, one per event of the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deferred {
    /// Index of the event in [`Metadata::events`].
    pub event: u32,
    pub key: TypeKey,
    /// Byte offset of the text right after `:=`, and its line.
    pub pos: u32,
    pub line: u32,
    /// Byte offset of the `;` after it.
    pub end: u32,
}

/// One `key = value;` or `key := type;` entry of a block, with its line.
type Entry<'a> = (Cow<'a, str>, Rhs<'a>, u32);

/// Parses TSDL text into metadata, reading tokens as it goes.
pub(crate) struct Parser<'a> {
    text: &'a str,
    lex: Lexer<'a>,
    /// The current token.
    cur: Token<'a>,
    /// The token after it, once looked at.
    next: Option<Token<'a>>,
    /// Line of the last token consumed, for errors at the end of the text.
    last_line: u32,
    scopes: Vec<Scope>,
    /// A scope below all of [`Parser::scopes`]: the top level of the text,
    /// when parsing deferred event types after the rest.
    base: Option<&'a Scope>,
    /// Leave the types of event blocks for later ([`Parser::parse_lazy`]).
    lazy: bool,
    /// The event types left for later, in text order.
    deferred: Vec<Deferred>,
    /// Names of their keys other than `context` and `fields`.
    other_keys: Vec<Box<str>>,
    /// The words of the names of top-level types with a sequence or a
    /// variant, and their searchers: an event type that mentions one is
    /// parsed at once.
    top_refers: Vec<(Box<str>, memchr::memmem::Finder<'static>)>,
    depth: usize,
    md: Metadata,
    /// Reused buffer for multi-word type names.
    name_buf: String,
    /// Fields of the struct and variant bodies being parsed, innermost
    /// last: one growing list instead of one per body.
    fields: Vec<(String, Type)>,
    /// Entries of the block being parsed, reused from block to block.
    entries: Vec<Entry<'a>>,
    /// Integer types by the text of their body: LTTng metadata spells out
    /// thousands of identical `integer { ... }` fields.
    int_cache: HashMap<&'a str, (IntType, u32), BuildHasherDefault<WordHash>>,
    /// Used instead of `int_cache` when given: parsing deferred types, one
    /// class at a time, shares one cache.
    shared_ints: Option<&'a mut SharedInts>,
    /// The cache of the event blocks parsed alone ([`Parser::add_event_block`]).
    block_ints: SharedInts,
    /// Whether event blocks are first tried with the byte scans (false
    /// for one the scans already failed on).
    scan_events: bool,
    /// Read LTTng's common field declarations by bytes ([`Parser::lttng_field`]);
    /// off only to test that the lexer reads them the same.
    byte_fields: bool,
}

const TYPE_KEYWORDS: &[&str] = &[
    "integer",
    "floating_point",
    "string",
    "struct",
    "variant",
    "enum",
];
/// What separates LTTng's event blocks, up to the next one's `{`.
pub(crate) const NEXT_EVENT: &[u8] = b"\n\nevent {";
const BLOCKS: &[&str] = &["trace", "env", "clock", "stream", "event", "callsite"];

impl<'a> Parser<'a> {
    /// A parser over `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Self::at(text, 0, 1, None)
    }

    /// A parser from byte `pos` of `text`, on `line`, that also sees the
    /// type names of `base`.
    fn at(text: &'a str, pos: usize, line: u32, base: Option<&'a Scope>) -> Self {
        let mut lex = Lexer::at(text, pos, line);
        let cur = lex.next();
        // Room for a few struct bodies at once: each class's types are
        // parsed by a parser of their own, whose first body would grow a
        // one-scope list.
        let mut scopes = Vec::with_capacity(4);
        scopes.push(Scope::default());
        Parser {
            text,
            lex,
            cur,
            next: None,
            last_line: line,
            scopes,
            base,
            lazy: false,
            deferred: Vec::new(),
            other_keys: Vec::new(),
            top_refers: Vec::new(),
            depth: 0,
            md: Metadata::default(),
            name_buf: String::new(),
            fields: Vec::new(),
            entries: Vec::new(),
            int_cache: HashMap::default(),
            shared_ints: None,
            block_ints: SharedInts::default(),
            scan_events: true,
            byte_fields: true,
        }
    }

    /// Parses the whole text.
    pub(crate) fn parse(mut self) -> Result<Metadata, MetadataError> {
        self.parse_all()?;
        Ok(self.md)
    }

    /// Parses the text except the types of event blocks (`context := ...`,
    /// `fields := ...`), which are only scanned for their end: the metadata
    /// (those types left `None`), the top-level type names they will need,
    /// and where they are. Types the scan cannot delimit for sure, and those
    /// of blocks that declare type names of their own, are parsed at once.
    /// Top-level declarations after deferred types first parse those (the
    /// names they see must stay those declared before them), so that the
    /// top level at the end is what every deferred type sees.
    /// Also returns the integer-body cache, for parsing the rest.
    pub(crate) fn parse_lazy(mut self) -> Result<Lazy, MetadataError> {
        self.start_lazy(self.text.len());
        self.parse_all()?;
        let text = self.text;
        self.finish_lazy(
            |f, hit| {
                for p in f.find_iter(text.as_bytes()) {
                    hit(p);
                }
            },
            |_, _| Some((Cow::Borrowed(text), 0)),
        )
    }

    /// Readies a lazy parse ([`Parser::parse_lazy`]) of a text of `total`
    /// bytes, of which this parser may only see the start: the rest is
    /// then read with [`Parser::add_fast_event`].
    pub(crate) fn start_lazy(&mut self, total: usize) {
        self.lazy = total < u32::MAX as usize;
        // Guessing the number of events from the text's size saves growing
        // the (large) list step by step without a pass over the text to
        // count them: LTTng writes each event block in about 260 bytes. The
        // spare room is given back in `finish_lazy`.
        let events = total / EVENT_BLOCK_BYTES;
        self.md.events.reserve_exact(events);
        // LTTng's names are about 20 bytes.
        self.md.event_names.reserve_exact(events * 32);
        // Most blocks defer one type (`fields`), some two: room to spare
        // costs nothing until written, unlike growing by copies.
        self.deferred.reserve_exact(events + events / 4);
    }

    /// Ends a lazy parse: parses at once the deferred types that mention a
    /// top-level type with a sequence or variant ([`Parser::undefer_named`]),
    /// and hands the rest over. `find` calls its second argument with the
    /// offset of each match of a searcher in the whole text; `window` gives
    /// a text that holds the whole text's range `pos..=end`, and the offset
    /// in the whole text where it starts.
    pub(crate) fn finish_lazy<'t>(
        mut self,
        find: impl FnMut(&memchr::memmem::Finder<'static>, &mut dyn FnMut(usize)),
        window: impl Fn(u32, u32) -> Option<(Cow<'t, str>, u32)>,
    ) -> Result<Lazy, MetadataError> {
        self.md.events.shrink_to_fit();
        self.undefer_named(find, window)?;
        let mut ints = std::mem::take(&mut self.block_ints);
        ints.extend(
            self.int_cache
                .iter()
                .map(|(b, v)| (Box::from(*b), v.clone())),
        );
        let top = self.scopes.drain(..).next().unwrap_or_default();
        Ok(Lazy {
            md: self.md,
            top,
            deferred: self.deferred,
            other_keys: self.other_keys,
            ints,
        })
    }

    pub(crate) fn parse_all(&mut self) -> Result<(), MetadataError> {
        loop {
            match self.cur.tok {
                Tok::End => return Ok(()),
                Tok::Error => return self.err("a declaration"),
                _ => self.top_level()?,
            }
        }
    }

    /// Moves to byte `pos` of the text, on `line`.
    fn seek(&mut self, pos: usize, line: u32) {
        self.lex = Lexer::at(self.text, pos, line);
        self.next = None;
        self.last_line = line;
        self.cur = self.lex.next();
    }

    /// Parses every type deferred so far into its event (or those of the
    /// events in `only`, sorted): the top-level scope is about to change,
    /// or they name a type that refers to other fields.
    fn flush_deferred(&mut self, only: Option<&[u32]>) -> Result<(), MetadataError> {
        let text = self.text;
        self.flush_deferred_in(only, |_, _| Some((Cow::Borrowed(text), 0)))
    }

    /// [`Parser::flush_deferred`], reading each event's types from the
    /// text `window` gives for their range (see [`Parser::finish_lazy`]).
    fn flush_deferred_in<'t>(
        &mut self,
        only: Option<&[u32]>,
        window: impl Fn(u32, u32) -> Option<(Cow<'t, str>, u32)>,
    ) -> Result<(), MetadataError> {
        let mut deferred = std::mem::take(&mut self.deferred);
        if let Some(only) = only {
            let (now, later) = deferred
                .into_iter()
                .partition(|d| only.binary_search(&d.event).is_ok());
            self.deferred = later;
            deferred = now;
        }
        let Some(top) = self.scopes.first() else {
            return Ok(());
        };
        let mut i = 0;
        while i < deferred.len() {
            let ev = deferred[i].event;
            let n = deferred[i..].iter().take_while(|d| d.event == ev).count();
            let group = &deferred[i..i + n];
            let (first, last) = (&group[0], &group[n - 1]);
            let (text, base) = window(first.pos, last.end).ok_or_else(|| {
                MetadataError::Invalid(format!(
                    "the text of event {ev}'s types (bytes {}..={}) is not readable",
                    first.pos, last.end
                ))
            })?;
            let (types, _) = parse_deferred(
                &text,
                top,
                group.iter().map(|d| {
                    (
                        d.key.text(&self.other_keys),
                        d.pos.saturating_sub(base),
                        d.line,
                    )
                }),
                None,
            )?;
            if let Some(e) = self.md.events.get_mut(ev as usize) {
                for (d, t) in group.iter().zip(types) {
                    match d.key {
                        TypeKey::Context => e.context = Some(Box::new(t)),
                        TypeKey::Fields => e.fields = Some(Box::new(t)),
                        TypeKey::Other(_) => {}
                    }
                }
            }
            i += n;
        }
        Ok(())
    }

    /// Parses now the deferred types that mention a top-level type with a
    /// sequence or variant ([`Parser::note_decl`]): one search of the text
    /// per such name rather than one per type. Every type still deferred
    /// comes after the last top-level declaration, so these are all the
    /// names it can see.
    fn undefer_named<'t>(
        &mut self,
        mut find: impl FnMut(&memchr::memmem::Finder<'static>, &mut dyn FnMut(usize)),
        window: impl Fn(u32, u32) -> Option<(Cow<'t, str>, u32)>,
    ) -> Result<(), MetadataError> {
        if self.top_refers.is_empty() || self.deferred.is_empty() {
            return Ok(());
        }
        let mut hit = Vec::new();
        let deferred = &self.deferred;
        let mut mention = |p: usize| {
            let k = deferred.partition_point(|d| d.pos as usize <= p);
            if let Some(d) = k.checked_sub(1).and_then(|k| deferred.get(k)) {
                if p < d.end as usize {
                    hit.push(d.event);
                }
            }
        };
        // Names with a long common start (LTTng's two event header structs)
        // are searched by it, in one pass over the text rather than one per
        // name; each place found is then checked for a whole name.
        let names = &self.top_refers;
        let common = names.iter().skip(1).fold(names[0].0.len(), |n, (w, _)| {
            n.min(
                w.bytes()
                    .zip(names[0].0.bytes())
                    .take_while(|(a, b)| a == b)
                    .count(),
            )
        });
        if names.len() > 1 && common >= 8 {
            let start = memchr::memmem::Finder::new(&names[0].0.as_bytes()[..common]).into_owned();
            let whole_name_at = |p: usize| {
                names.iter().any(|(w, _)| {
                    let at = |p: usize| u32::try_from(p).ok();
                    let Some((text, base)) = at(p)
                        .zip(at(p + w.len() - 1))
                        .and_then(|(a, b)| window(a, b))
                    else {
                        return false;
                    };
                    let from = p - base as usize;
                    text.as_bytes().get(from..from + w.len()) == Some(w.as_bytes())
                })
            };
            find(&start, &mut |p| {
                if whole_name_at(p) {
                    mention(p);
                }
            });
        } else {
            for (_, f) in names {
                find(f, &mut mention);
            }
        }
        if hit.is_empty() {
            return Ok(());
        }
        hit.sort_unstable();
        hit.dedup();
        self.flush_deferred_in(Some(&hit), window)
    }

    /// Parses the deferred entries of the block being read, in place: the
    /// block is about to declare a type name, or has a type the scan could
    /// not delimit. Named structs they declare go into the block's scope.
    fn flush_block(&mut self, entries: &mut [Entry<'a>]) -> Result<(), MetadataError> {
        let Some(top) = self.scopes.first() else {
            return Ok(());
        };
        let items: Vec<(&str, u32, u32)> = entries
            .iter()
            .filter_map(|(k, r, _)| match r {
                Rhs::Deferred { pos, line, .. } => Some((&**k, *pos, *line)),
                _ => None,
            })
            .collect();
        if items.is_empty() {
            return Ok(());
        }
        let (types, scope) = parse_deferred(self.text, top, items, None)?;
        let mut types = types.into_iter();
        for (_, r, _) in entries.iter_mut() {
            if matches!(r, Rhs::Deferred { .. }) {
                if let Some(t) = types.next() {
                    *r = Rhs::Type(t);
                }
            }
        }
        *self.scope() = scope;
        Ok(())
    }

    // ---- token helpers

    /// The current token; `None` at the end of the text or at a lexing
    /// error (which [`Parser::err`] reports).
    #[inline(always)]
    fn peek(&self) -> Option<&Tok<'a>> {
        match self.cur.tok {
            Tok::End | Tok::Error => None,
            ref t => Some(t),
        }
    }
    /// The token after the current one.
    #[inline]
    fn peek_next(&mut self) -> Option<&Tok<'a>> {
        if self.next.is_none() {
            if matches!(self.cur.tok, Tok::End | Tok::Error) {
                return None;
            }
            self.next = Some(self.lex.next());
        }
        match self.next.as_ref().map(|t| &t.tok) {
            None | Some(Tok::End | Tok::Error) => None,
            t => t,
        }
    }
    /// Consumes the current token and returns it.
    #[inline(always)]
    fn bump(&mut self) -> Token<'a> {
        let next = match self.next.take() {
            Some(t) => t,
            None if matches!(self.cur.tok, Tok::End | Tok::Error) => self.cur.clone(),
            None => self.lex.next(),
        };
        let t = std::mem::replace(&mut self.cur, next);
        self.last_line = t.line;
        t
    }
    /// The current token's identifier, if it is one (copied: it borrows the
    /// text, not the parser).
    #[inline(always)]
    fn peek_ident(&self) -> Option<&'a str> {
        match self.cur.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }
    #[inline(always)]
    fn line(&self) -> u32 {
        match self.cur.tok {
            Tok::End => self.last_line,
            _ => self.cur.line,
        }
    }
    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end of the metadata".to_string(), Tok::describe)
    }
    /// A syntax error: expected this, found the current token. A lexing
    /// error at the current token wins: it says what is really wrong.
    fn err<T>(&self, expected: impl std::fmt::Display) -> Result<T, MetadataError> {
        if let Some(e) = self.lex.error() {
            if matches!(self.cur.tok, Tok::Error)
                || matches!(self.next.as_ref().map(|t| &t.tok), Some(Tok::Error))
            {
                return Err(e.clone());
            }
        }
        Err(MetadataError::syntax(
            self.line(),
            format!("expected {expected}, found {}", self.found()),
        ))
    }
    #[inline(always)]
    fn is_punct(&self, p: P) -> bool {
        matches!(self.cur.tok, Tok::Punct(q) if q == p)
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.cur.tok, Tok::Ident(q) if q == s)
    }
    #[inline(always)]
    fn eat_punct(&mut self, p: P) -> bool {
        if self.is_punct(p) {
            self.bump();
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, p: P, what: &str) -> Result<(), MetadataError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.err(format!("`{}` {what}", p.text()))
        }
    }
    #[inline]
    fn ident(&mut self, what: &str) -> Result<&'a str, MetadataError> {
        match self.peek_ident() {
            Some(s) => {
                self.bump();
                Ok(s)
            }
            None => self.err(what),
        }
    }
    fn enter(&mut self) -> Result<(), MetadataError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(MetadataError::syntax(
                self.line(),
                format!("types nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.depth -= 1;
    }

    // ---- scopes

    fn push_scope(&mut self) {
        self.scopes.push(Scope::default());
    }
    fn pop_scope(&mut self) {
        self.scopes.pop();
    }
    /// Notes a type name about to be declared in the current scope: at
    /// the top level, one whose type has a sequence or variant makes the
    /// event types that mention it parse at once (see
    /// [`Parser::undefer_named`]): references (sequence lengths, variant
    /// tags) may reach into the stream's scopes, whose registers are set
    /// when the trace is opened, so classes with them are compiled then.
    fn note_decl(&mut self, name: &str, t: Option<&Type>) {
        if self.scopes.len() == 1 && self.base.is_none() && t.is_none_or(refers) {
            for w in name.split(' ') {
                if !self.top_refers.iter().any(|(r, _)| **r == *w) {
                    let f = memchr::memmem::Finder::new(w.as_bytes()).into_owned();
                    self.top_refers.push((w.into(), f));
                }
            }
        }
    }
    fn scope(&mut self) -> &mut Scope {
        if self.scopes.is_empty() {
            self.scopes.push(Scope::default());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }
    fn lookup<T: Clone>(&self, f: impl Fn(&Scope) -> Option<&T>) -> Option<T> {
        self.scopes
            .iter()
            .rev()
            .chain(self.base)
            .find_map(&f)
            .cloned()
    }

    // ---- declarations

    fn top_level(&mut self) -> Result<(), MetadataError> {
        if let Some(kw) = self.peek_ident() {
            if BLOCKS.contains(&kw) && matches!(self.peek_next(), Some(Tok::Punct(P::LBrace))) {
                return self.block(kw);
            }
        }
        if !self.deferred.is_empty() {
            self.flush_deferred(None)?;
        }
        self.declaration(false)
    }

    /// A declaration that is not a block: `typealias`, `typedef`, a named
    /// struct/variant/enum, or (inside a struct or variant body, `in_body`)
    /// a field, which goes on [`Parser::fields`].
    fn declaration(&mut self, in_body: bool) -> Result<(), MetadataError> {
        match self.peek_ident() {
            Some("typealias") => {
                self.bump();
                return self.typealias();
            }
            Some("typedef") => {
                self.bump();
                let ty = self.type_spec(true)?;
                self.declarators(ty, true)?;
                return self.expect_punct(P::Semi, "after a typedef");
            }
            Some(_) => {}
            None => return self.err("a declaration"),
        }
        let ty = self.type_spec(in_body)?;
        if self.eat_punct(P::Semi) {
            return Ok(()); // a named type declaration alone
        }
        if !in_body {
            return self.err("`;` after a type declaration");
        }
        self.declarators(ty, false)?;
        self.expect_punct(P::Semi, "after a field declaration")
    }

    /// One or more comma-separated declarators of type `ty`: type names of
    /// the current scope when `typedef`, else fields pushed on
    /// [`Parser::fields`]. The type is cloned only for declarators that a
    /// comma follows, so the usual single one costs no copy and no list.
    fn declarators(&mut self, ty: Type, typedef: bool) -> Result<(), MetadataError> {
        let mut ty = Some(ty);
        loop {
            while self.eat_punct(P::Star) {}
            let name = self.ident("a field name")?;
            let dims = self.dims()?;
            let more = self.eat_punct(P::Comma);
            let t = if more { ty.clone() } else { ty.take() };
            if let Some(t) = t {
                let t = apply_dims(t, dims);
                if typedef {
                    self.note_decl(name, Some(&t));
                    self.scope().aliases.insert(name.to_string(), t);
                } else {
                    self.fields.push((name.to_string(), t));
                }
            }
            if !more {
                return Ok(());
            }
        }
    }

    fn typealias(&mut self) -> Result<(), MetadataError> {
        let ty = self.type_spec(false)?;
        let dims = self.dims()?;
        let ty = apply_dims(ty, dims);
        self.expect_punct(P::Assign, "in a typealias")?;
        let mut name = String::new();
        while let Some(w) = self.peek_ident() {
            if !name.is_empty() {
                name.push(' ');
            }
            name.push_str(w);
            self.bump();
        }
        if name.is_empty() {
            return self.err("a type name after `:=`");
        }
        let dims = self.dims()?;
        let ty = apply_dims(ty, dims);
        self.note_decl(&name, Some(&ty));
        self.scope().aliases.insert(name, ty);
        self.expect_punct(P::Semi, "after a typealias")
    }

    /// `[N]` and `[path]` suffixes, in the order written.
    fn dims(&mut self) -> Result<Vec<Dim<'a>>, MetadataError> {
        let mut dims = Vec::new();
        while self.eat_punct(P::LBracket) {
            let d = match self.peek() {
                Some(Tok::Int(n)) => {
                    let n = *n;
                    self.bump();
                    if n > MAX_ARRAY_LEN {
                        return Err(MetadataError::syntax(
                            self.line(),
                            format!("array length {n} is larger than {MAX_ARRAY_LEN}"),
                        ));
                    }
                    Dim::Fixed(n)
                }
                Some(Tok::Ident(_)) => Dim::Seq(self.path()?),
                _ => return self.err("an array length or a length field name"),
            };
            self.expect_punct(P::RBracket, "to close an array length")?;
            dims.push(d);
        }
        Ok(dims)
    }

    /// A dotted path of identifiers; borrowed when it is a single one.
    fn path(&mut self) -> Result<Cow<'a, str>, MetadataError> {
        let first = self.ident("a name")?;
        let mut p = Cow::Borrowed(first);
        while self.is_punct(P::Dot) && matches!(self.peek_next(), Some(Tok::Ident(_))) {
            self.bump();
            let next = self.ident("a name")?;
            let s = p.to_mut();
            s.push('.');
            s.push_str(next);
        }
        Ok(p)
    }

    // ---- type specifiers

    /// A type specifier. With `declarator_follows`, a bare type name leaves
    /// its last word for the declarator (`unsigned long x;`).
    fn type_spec(&mut self, declarator_follows: bool) -> Result<Type, MetadataError> {
        self.enter()?;
        let r = self.type_spec_inner(declarator_follows);
        self.leave();
        r
    }

    fn type_spec_inner(&mut self, declarator_follows: bool) -> Result<Type, MetadataError> {
        let line = self.line();
        let Some(kw) = self.peek_ident() else {
            return self.err("a type");
        };
        match kw {
            "integer" => {
                self.bump();
                Ok(Type::Int(self.integer_body()?))
            }
            "floating_point" => {
                self.bump();
                self.float_body()
            }
            "string" => {
                self.bump();
                let mut enc = Encoding::Utf8;
                if self.eat_punct(P::LBrace) {
                    while !self.eat_punct(P::RBrace) {
                        let (key, v, l) = self.attr()?;
                        if key == "encoding" {
                            enc = encoding(&v, l)?;
                        }
                    }
                }
                Ok(Type::String(enc))
            }
            "struct" => {
                self.bump();
                self.struct_spec()
            }
            "variant" => {
                self.bump();
                self.variant_spec()
            }
            "enum" => {
                self.bump();
                self.enum_spec()
            }
            _ => {
                // A type name of one or more words. With a declarator
                // following, a word followed by something other than a word
                // is the declarator, unless it is the first.
                let mut name = std::mem::take(&mut self.name_buf);
                name.clear();
                let mut words = 0;
                while let Some(w) = self.peek_ident() {
                    if TYPE_KEYWORDS.contains(&w) {
                        break;
                    }
                    if declarator_follows
                        && words > 0
                        && !matches!(self.peek_next(), Some(Tok::Ident(_)))
                    {
                        break;
                    }
                    if words > 0 {
                        name.push(' ');
                    }
                    name.push_str(w);
                    words += 1;
                    self.bump();
                }
                let found = self.lookup(|s| s.aliases.get(name.as_str()));
                let r = found.ok_or_else(|| {
                    MetadataError::syntax(
                        line,
                        format!(
                            "unknown type `{name}`: declare it with typealias or typedef first"
                        ),
                    )
                });
                self.name_buf = name;
                r
            }
        }
    }

    /// `key = value;` inside a type body. Returns the key, value and line.
    fn attr(&mut self) -> Result<(&'a str, Val<'a>, u32), MetadataError> {
        let line = self.line();
        let key = self.ident("an attribute name")?;
        if !self.eat_punct(P::Eq) {
            return self.err(format!("`=` after `{key}`"));
        }
        let v = self.value()?;
        if !self.eat_punct(P::Semi) {
            return self.err(format!("`;` after the value of `{key}`"));
        }
        Ok((key, v, line))
    }

    fn integer_body(&mut self) -> Result<IntType, MetadataError> {
        // A body seen before is not parsed again. Only bodies without
        // strings or comments qualify, so the first `}` ends them; an
        // integer body depends on nothing declared before it.
        let body = match (&self.cur.tok, &self.next) {
            (Tok::Punct(P::LBrace), None) => {
                let rest = self.lex.rest();
                memchr::memchr(b'}', rest.as_bytes()).and_then(|end| rest.get(..end))
            }
            _ => None,
        };
        let Some(b) = body else {
            return self.integer_body_parsed();
        };
        // A cached body passed the test below when it was stored, and its
        // line count was taken then.
        let cached = match &self.shared_ints {
            Some(m) => m.get(b),
            None => self.int_cache.get(b),
        };
        if let Some((t, lines)) = cached {
            let t = t.clone();
            self.lex.skip_counted(b.len() + 1, *lines);
            self.last_line = self.lex.line();
            self.cur = self.lex.next();
            return Ok(t);
        }
        let t = self.integer_body_parsed()?;
        if memchr::memchr3(b'"', b'\'', b'/', b.as_bytes()).is_none() {
            let lines = memchr::memchr_iter(b'\n', b.as_bytes()).count() as u32;
            match &mut self.shared_ints {
                Some(m) => {
                    m.insert(b.into(), (t.clone(), lines));
                }
                None => {
                    self.int_cache.insert(b, (t.clone(), lines));
                }
            }
        }
        Ok(t)
    }

    fn integer_body_parsed(&mut self) -> Result<IntType, MetadataError> {
        let start = self.line();
        self.expect_punct(P::LBrace, "after `integer`")?;
        let mut t = IntType {
            size: 0,
            align: 0,
            signed: false,
            byte_order: ByteOrder::Native,
            base: 10,
            encoding: Encoding::None,
            map: None,
        };
        while !self.eat_punct(P::RBrace) {
            let (key, v, line) = self.attr()?;
            match key {
                "size" => t.size = uint_in(&v, line, "size", 1, 64)? as u32,
                "align" => t.align = align_value(&v, line)?,
                "signed" => t.signed = boolean(&v, line)?,
                "byte_order" => t.byte_order = byte_order(&v, line)?,
                "base" => t.base = base(&v, line)?,
                "encoding" => t.encoding = encoding(&v, line)?,
                "map" => {
                    let Val::Path(p) = &v else {
                        return Err(MetadataError::syntax(
                            line,
                            "`map` must be clock.NAME.value",
                        ));
                    };
                    let parts: Vec<&str> = p.split('.').collect();
                    match parts.as_slice() {
                        ["clock", name, "value"] => t.map = Some(name.to_string()),
                        _ => {
                            return Err(MetadataError::syntax(
                                line,
                                format!("`map = {p}` is not of the form clock.NAME.value"),
                            ))
                        }
                    }
                }
                _ => {} // unknown attributes are ignored, as babeltrace does
            }
        }
        if t.size == 0 {
            return Err(MetadataError::syntax(
                start,
                "an integer type without `size`",
            ));
        }
        if t.align == 0 {
            t.align = if t.size.is_multiple_of(8) { 8 } else { 1 };
        }
        Ok(t)
    }

    fn float_body(&mut self) -> Result<Type, MetadataError> {
        let start = self.line();
        self.expect_punct(P::LBrace, "after `floating_point`")?;
        let mut t = FloatType {
            exp_dig: 0,
            mant_dig: 0,
            byte_order: ByteOrder::Native,
            align: 0,
        };
        while !self.eat_punct(P::RBrace) {
            let (key, v, line) = self.attr()?;
            match key {
                "exp_dig" => t.exp_dig = uint_in(&v, line, "exp_dig", 1, 64)? as u32,
                "mant_dig" => t.mant_dig = uint_in(&v, line, "mant_dig", 1, 64)? as u32,
                "align" => t.align = align_value(&v, line)?,
                "byte_order" => t.byte_order = byte_order(&v, line)?,
                _ => {}
            }
        }
        match (t.exp_dig, t.mant_dig) {
            (8, 24) | (11, 53) => {}
            (e, m) => {
                return Err(MetadataError::syntax(
                    start,
                    format!(
                        "floating point with exp_dig = {e}, mant_dig = {m} is unsupported: only 32-bit (8, 24) and 64-bit (11, 53) are"
                    ),
                ))
            }
        }
        if t.align == 0 {
            t.align = 8;
        }
        Ok(Type::Float(t))
    }

    /// The optional name after `struct`, `variant` or `enum`.
    fn type_name(&mut self) -> Option<&'a str> {
        let n = self.peek_ident()?;
        self.bump();
        Some(n)
    }

    /// The fields of a struct or variant body, after its `{` up to and
    /// including its `}`, in their own scope. They are gathered on the
    /// shared [`Parser::fields`] stack (nested bodies stack above) and moved
    /// into one list of exactly their number.
    fn body_fields(&mut self) -> Result<Vec<(String, Type)>, MetadataError> {
        self.push_scope();
        let start = self.fields.len();
        let r = (|| {
            while !self.eat_punct(P::RBrace) {
                if !self.lttng_field() {
                    self.declaration(true)?;
                }
            }
            Ok(())
        })();
        self.pop_scope();
        let out = match r {
            Ok(()) => Ok(self.fields.drain(start..).collect()),
            Err(e) => Err(e),
        };
        self.fields.truncate(start);
        out
    }

    /// Reads the field declaration at the current token by bytes when it
    /// is one the way LTTng writes most: `integer { ... } _name;` with an
    /// integer body already cached, or `string _name;`, either maybe with a
    /// fixed length `[N]`, and only spaces between the parts. Pushes the
    /// field and moves past it; false, having changed nothing, for anything
    /// else, which [`Parser::declaration`] then reads (with the same
    /// result). A class's first use parses a dozen fields: this takes
    /// about half the instructions of the lexer's tokens for each.
    fn lttng_field(&mut self) -> bool {
        if self.next.is_some() || !self.byte_fields {
            return false;
        }
        let Tok::Ident(kw) = self.cur.tok else {
            return false;
        };
        let line = self.lex.line();
        match self.byte_field(kw, self.lex.pos()) {
            Some((end, lines)) => {
                self.seek(end, line + lines);
                true
            }
            None => false,
        }
    }

    /// The field of [`Parser::lttng_field`], pushed, whose type keyword
    /// `kw` ends at byte `i`: where its `;` ends and the newlines in it.
    fn byte_field(&mut self, kw: &str, i: usize) -> Option<(usize, u32)> {
        let m = lttng_member(self.text, kw, i)?;
        let (mut t, lines) = match m.int_body {
            Some(body) => {
                let (t, n) = match &self.shared_ints {
                    Some(c) => c.get(body),
                    None => self.int_cache.get(body),
                }?;
                (Type::Int(t.clone()), *n)
            }
            None => (Type::String(Encoding::Utf8), 0),
        };
        if let Some(len) = m.len {
            t = Type::Array {
                elem: Box::new(t),
                len,
            };
        }
        self.fields.push((m.name.to_string(), t));
        Some((m.end, lines))
    }

    fn struct_spec(&mut self) -> Result<Type, MetadataError> {
        let line = self.line();
        let name = self.type_name();
        let mut st = if self.eat_punct(P::LBrace) {
            let fields = self.body_fields()?;
            StructType {
                fields,
                min_align: 1,
            }
        } else {
            let Some(n) = name else {
                return self.err("`{` or a struct name after `struct`");
            };
            self.lookup(|s| s.structs.get(n)).ok_or_else(|| {
                MetadataError::syntax(line, format!("unknown struct `{n}`: declare it first"))
            })?
        };
        if self.is_ident("align") {
            self.bump();
            self.expect_punct(P::LParen, "after `align`")?;
            let l = self.line();
            let v = self.value()?;
            st.min_align = st.min_align.max(align_value(&v, l)?);
            self.expect_punct(P::RParen, "to close `align(`")?;
        }
        if let Some(n) = name {
            if !self
                .scopes
                .iter()
                .chain(self.base)
                .any(|s| s.structs.contains_key(n))
                || !st.fields.is_empty()
            {
                if st.fields.iter().any(|(_, t)| refers(t)) {
                    self.note_decl(n, None);
                }
                self.scope().structs.insert(n.to_string(), st.clone());
            }
        }
        Ok(Type::Struct(st))
    }

    fn variant_spec(&mut self) -> Result<Type, MetadataError> {
        let line = self.line();
        let name = self.type_name();
        let mut tag = None;
        if self.eat_punct(P::Lt) {
            tag = Some(self.path()?.into_owned());
            self.expect_punct(P::Gt, "to close a variant tag")?;
        }
        let mut v = if self.eat_punct(P::LBrace) {
            let options = self.body_fields()?;
            let v = VariantType { tag: None, options };
            if let Some(n) = name {
                self.note_decl(n, None);
                self.scope().variants.insert(n.to_string(), v.clone());
            }
            v
        } else {
            let Some(n) = name else {
                return self.err("`{` or a variant name after `variant`");
            };
            self.lookup(|s| s.variants.get(n)).ok_or_else(|| {
                MetadataError::syntax(line, format!("unknown variant `{n}`: declare it first"))
            })?
        };
        if tag.is_some() {
            v.tag = tag;
        }
        Ok(Type::Variant(v))
    }

    fn enum_spec(&mut self) -> Result<Type, MetadataError> {
        let line = self.line();
        let name = self.type_name();
        let mut int = None;
        if self.eat_punct(P::Colon) {
            let l = self.line();
            match self.type_spec(false)? {
                Type::Int(i) => int = Some(i),
                _ => {
                    return Err(MetadataError::syntax(
                        l,
                        "an enum's container must be an integer type",
                    ))
                }
            }
        }
        if !self.eat_punct(P::LBrace) {
            let Some(n) = name else {
                return self.err("`{` or an enum name after `enum`");
            };
            return self
                .lookup(|s| s.enums.get(n))
                .map(Type::Enum)
                .ok_or_else(|| MetadataError::syntax(line, format!("unknown enum `{n}`")));
        }
        let int = match int {
            Some(i) => i,
            None => match self.lookup(|s| s.aliases.get("int")) {
                Some(Type::Int(i)) => i,
                _ => {
                    return Err(MetadataError::syntax(
                        line,
                        "an enum without a container type, and no `int` alias to default to",
                    ))
                }
            },
        };
        let mut mappings = Vec::new();
        let mut next: i128 = 0;
        while !self.eat_punct(P::RBrace) {
            let l = self.line();
            let label = match self.peek() {
                Some(Tok::Ident(s)) => s.to_string(),
                Some(Tok::Str(s)) => s.to_string(),
                _ => return self.err("an enum label"),
            };
            self.bump();
            let (lo, hi) = if self.eat_punct(P::Eq) {
                let lo = int_val(&self.value()?, l)?;
                let hi = if self.eat_punct(P::Ellipsis) {
                    int_val(&self.value()?, l)?
                } else {
                    lo
                };
                (lo, hi)
            } else {
                (next, next)
            };
            if hi < lo {
                return Err(MetadataError::syntax(
                    l,
                    format!("enum range {lo} ... {hi} of `{label}` is backwards"),
                ));
            }
            next = hi + 1;
            mappings.push(EnumMapping { label, lo, hi });
            if !self.eat_punct(P::Comma) {
                self.expect_punct(P::RBrace, "or `,` after an enum entry")?;
                break;
            }
        }
        let e = EnumType { int, mappings };
        if let Some(n) = name {
            self.scope().enums.insert(n.to_string(), e.clone());
        }
        Ok(Type::Enum(e))
    }

    fn value(&mut self) -> Result<Val<'a>, MetadataError> {
        let neg = if self.eat_punct(P::Minus) {
            true
        } else {
            self.eat_punct(P::Plus);
            false
        };
        match self.peek() {
            Some(Tok::Int(v)) => {
                let v = *v as i128;
                self.bump();
                Ok(Val::Int(if neg { -v } else { v }))
            }
            Some(Tok::Str(_)) if !neg => match self.bump().tok {
                Tok::Str(s) => Ok(Val::Str(s)),
                _ => self.err("a value"),
            },
            Some(Tok::Ident(_)) if !neg => Ok(Val::Path(self.path()?)),
            _ => self.err("a value"),
        }
    }

    // ---- blocks

    fn block(&mut self, kw: &'a str) -> Result<(), MetadataError> {
        if self.lazy && kw == "event" && self.scan_events && self.fast_event()? {
            return Ok(());
        }
        let start = self.line();
        self.bump(); // keyword
        self.expect_punct(P::LBrace, "after the block keyword")?;
        self.push_scope();
        // Blocks do not nest, so one list serves them all.
        let mut entries = std::mem::take(&mut self.entries);
        entries.clear();
        // Whether this block's types are still being deferred.
        let mut defer = self.lazy && kw == "event";
        let r = (|| {
            while !self.eat_punct(P::RBrace) {
                let is_decl = match self.peek_ident() {
                    Some(w) => {
                        matches!(w, "typealias" | "typedef")
                            || (matches!(w, "struct" | "variant" | "enum")
                                && !matches!(
                                    self.peek_next(),
                                    Some(Tok::Punct(P::Eq | P::Assign | P::Dot))
                                ))
                    }
                    None => return self.err(format!("an entry of the `{kw}` block or `}}`")),
                };
                if is_decl {
                    if defer {
                        self.flush_block(&mut entries)?;
                        defer = false;
                    }
                    self.declaration(false)?;
                    continue;
                }
                let line = self.line();
                let key = self.path()?;
                let rhs = if self.is_punct(P::Assign) {
                    // The lexer stands right after `:=` when nothing was
                    // looked at beyond it.
                    let (pos, at) = (self.lex.pos(), self.lex.line());
                    let span = (defer && self.next.is_none())
                        .then(|| super::skip::type_span(self.text.as_bytes(), pos))
                        .flatten()
                        .filter(|t| !t.refers);
                    match span {
                        Some(super::skip::TypeSpan { end, lines, .. }) => {
                            self.lex.skip_counted(end - pos, lines);
                            self.bump();
                            Rhs::Deferred {
                                pos: pos as u32,
                                line: at,
                                end: end as u32,
                            }
                        }
                        None => {
                            if defer {
                                self.flush_block(&mut entries)?;
                                defer = false;
                            }
                            self.bump();
                            Rhs::Type(self.type_spec(false)?)
                        }
                    }
                } else if self.eat_punct(P::Eq) {
                    Rhs::Val(self.value()?)
                } else {
                    return self.err(format!("`=` or `:=` after `{key}`"));
                };
                if !self.eat_punct(P::Semi) {
                    return self.err(format!("`;` after the value of `{key}`"));
                }
                entries.push((key, rhs, line));
            }
            Ok(())
        })();
        self.pop_scope();
        r?;
        if !self.eat_punct(P::Semi) {
            return self.err(format!("`;` after the `{kw}` block"));
        }
        let r = match kw {
            "trace" => self.trace_block(&mut entries),
            "env" => self.env_block(&mut entries),
            "clock" => self.clock_block(&mut entries, start),
            "stream" => self.stream_block(&mut entries),
            "event" => self.event_block(&mut entries, start),
            _ => Ok(()), // callsite: nothing a reader needs
        };
        entries.clear();
        self.entries = entries;
        r
    }

    /// Reads an event block LTTng-style without the lexer when it can
    /// ([`super::skip::event_block`]), deferring its types. The current
    /// token is `event` and the next `{`, just lexed.
    fn fast_event(&mut self) -> Result<bool, MetadataError> {
        if !matches!(
            self.next.as_ref().map(|t| &t.tok),
            Some(Tok::Punct(P::LBrace))
        ) {
            return Ok(false);
        }
        let (mut pos, mut line) = (self.lex.pos(), self.lex.line());
        let mut first = true;
        loop {
            let fast = super::skip::lttng_event_block(self.text, pos, line)
                .or_else(|| super::skip::event_block(self.text, pos, line));
            let Some(ev) = fast else {
                if first {
                    return Ok(false);
                }
                // The lexer takes over at this block's `event`.
                self.seek(pos - NEXT_EVENT.len() + 2, line);
                return Ok(true);
            };
            first = false;
            self.add_fast_event(&ev, line, 0)?;
            // LTTng puts one blank line between blocks: the next one is
            // read here too, without a round through the lexer.
            if self.text.as_bytes()[ev.end..].starts_with(NEXT_EVENT) {
                pos = ev.end + NEXT_EVENT.len();
                line = ev.end_line + 2;
                continue;
            }
            self.seek(ev.end, ev.end_line);
            return Ok(true);
        }
    }

    /// Adds an event block a byte scan read (from `line`), its types
    /// deferred; its offsets are `shift` bytes before those in the text.
    #[inline]
    pub(crate) fn add_fast_event(
        &mut self,
        ev: &super::skip::FastEvent<'_>,
        line: u32,
        shift: u32,
    ) -> Result<(), MetadataError> {
        let event = u32::try_from(self.md.events.len())
            .map_err(|_| MetadataError::syntax(line, "more than 2^32 event blocks"))?;
        let past = || MetadataError::syntax(line, "metadata past 4 GiB");
        for &(key, pos, line, end) in &ev.types[..ev.ntypes] {
            let key = TypeKey::new(key, &mut self.other_keys);
            self.deferred.push(Deferred {
                event,
                key,
                pos: pos.checked_add(shift).ok_or_else(past)?,
                line,
                end: end.checked_add(shift).ok_or_else(past)?,
            });
        }
        let name = self
            .md
            .add_event_name(ev.name)
            .ok_or_else(|| MetadataError::syntax(line, "event names past 4 GiB"))?;
        self.md.events.push(EventDecl {
            name,
            id: ev.id,
            stream_id: ev.stream_id,
            loglevel: ev.loglevel,
            context: None,
            fields: None,
        });
        Ok(())
    }

    /// Parses the event block at the start of `text` (its `event`), which
    /// is a window of the whole text starting `shift` bytes into it, on
    /// `line`, the way the parse of the whole text would: for the blocks
    /// the byte scans do not take. Returns the line at the window's end;
    /// `None` when the window holds more than the block and blanks, or
    /// when the block does not parse (the whole parse then tells why).
    pub(crate) fn add_event_block(&mut self, text: &str, line: u32, shift: u32) -> Option<u32> {
        let mut ints = std::mem::take(&mut self.block_ints);
        let block = lone_event_block(text, line, self.lazy, &mut self.scopes, &mut ints);
        self.block_ints = ints;
        let LoneBlock {
            mut decl,
            name,
            deferred,
            other_keys,
            end_line,
        } = block?;
        let event = u32::try_from(self.md.events.len()).ok()?;
        for d in deferred {
            let key = match d.key {
                TypeKey::Other(i) => {
                    TypeKey::new(other_keys.get(i as usize)?, &mut self.other_keys)
                }
                k => k,
            };
            self.deferred.push(Deferred {
                event,
                key,
                pos: d.pos.checked_add(shift)?,
                line: d.line,
                end: d.end.checked_add(shift)?,
            });
        }
        decl.name = self.md.add_event_name(&name)?;
        self.md.events.push(decl);
        Some(end_line)
    }

    fn trace_block(&mut self, entries: &mut Vec<Entry<'a>>) -> Result<(), MetadataError> {
        for (key, rhs, line) in entries.drain(..) {
            match (&*key, rhs) {
                ("major", Rhs::Val(v)) => {
                    self.md.major = Some(uint_in(&v, line, "major", 0, u32::MAX as u64)?)
                }
                ("minor", Rhs::Val(v)) => {
                    self.md.minor = Some(uint_in(&v, line, "minor", 0, u32::MAX as u64)?)
                }
                ("uuid", Rhs::Val(v)) => self.md.uuid = Some(uuid(&v, line)?),
                ("byte_order", Rhs::Val(v)) => {
                    let bo = byte_order(&v, line)?;
                    if bo == ByteOrder::Native {
                        return Err(MetadataError::syntax(
                            line,
                            "the trace byte order must be `le` or `be`, not `native`",
                        ));
                    }
                    self.md.byte_order = Some(bo);
                }
                ("packet.header", Rhs::Type(t)) => self.md.packet_header = Some(t),
                _ => {}
            }
        }
        if let Some(m) = self.md.major {
            if m != 1 {
                return Err(MetadataError::Unsupported(format!(
                    "CTF major version {m}: only CTF 1.8 is supported"
                )));
            }
        }
        Ok(())
    }

    fn env_block(&mut self, entries: &mut Vec<Entry<'a>>) -> Result<(), MetadataError> {
        for (key, rhs, _) in entries.drain(..) {
            let v = match rhs {
                Rhs::Val(Val::Int(i)) => {
                    EnvValue::Int(i.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                }
                Rhs::Val(Val::Str(s)) | Rhs::Val(Val::Path(s)) => EnvValue::Str(s.into_owned()),
                Rhs::Type(_) | Rhs::Deferred { .. } => continue,
            };
            self.md.env.retain(|(k, _)| *k != *key);
            self.md.env.push((key.into_owned(), v));
        }
        Ok(())
    }

    fn clock_block(
        &mut self,
        entries: &mut Vec<Entry<'a>>,
        start: u32,
    ) -> Result<(), MetadataError> {
        let mut c = ClockDecl {
            desc: ClockDesc {
                name: String::new(),
                description: String::new(),
                freq: 1_000_000_000,
                offset_s: 0,
                offset: 0,
            },
            uuid: None,
            absolute: false,
        };
        for (key, rhs, line) in entries.drain(..) {
            let Rhs::Val(v) = rhs else { continue };
            match &*key {
                "name" => c.desc.name = text(&v),
                "description" => c.desc.description = text(&v),
                "freq" => c.desc.freq = uint_in(&v, line, "freq", 1, u64::MAX)?,
                "offset_s" => c.desc.offset_s = sint(&v, line, "offset_s")?,
                "offset" => c.desc.offset = sint(&v, line, "offset")?,
                "uuid" => c.uuid = Some(uuid(&v, line)?),
                "absolute" => c.absolute = boolean(&v, line)?,
                _ => {}
            }
        }
        if c.desc.name.is_empty() {
            return Err(MetadataError::syntax(start, "a clock block without `name`"));
        }
        self.md.clocks.push(c);
        Ok(())
    }

    fn stream_block(&mut self, entries: &mut Vec<Entry<'a>>) -> Result<(), MetadataError> {
        let mut s = StreamDecl::default();
        for (key, rhs, line) in entries.drain(..) {
            match (&*key, rhs) {
                ("id", Rhs::Val(v)) => s.id = Some(uint_in(&v, line, "id", 0, u64::MAX)?),
                ("packet.context", Rhs::Type(t)) => s.packet_context = Some(t),
                ("event.header", Rhs::Type(t)) => s.event_header = Some(t),
                ("event.context", Rhs::Type(t)) => s.event_context = Some(t),
                _ => {}
            }
        }
        self.md.streams.push(s);
        Ok(())
    }

    fn event_block(
        &mut self,
        entries: &mut Vec<Entry<'a>>,
        start: u32,
    ) -> Result<(), MetadataError> {
        let mut e = EventDecl::default();
        let mut named = false;
        for (key, rhs, line) in entries.drain(..) {
            match (&*key, rhs) {
                ("name", Rhs::Val(v)) => {
                    e.name = self
                        .md
                        .add_event_name(&text(&v))
                        .ok_or_else(|| MetadataError::syntax(line, "event names past 4 GiB"))?;
                    named = true;
                }
                ("id", Rhs::Val(v)) => e.id = Some(uint_in(&v, line, "id", 0, u64::MAX)?),
                ("stream_id", Rhs::Val(v)) => {
                    e.stream_id = Some(uint_in(&v, line, "stream_id", 0, u64::MAX)?)
                }
                ("loglevel", Rhs::Val(v)) => e.loglevel = Some(sint(&v, line, "loglevel")?),
                ("context", Rhs::Type(t)) => e.context = Some(Box::new(t)),
                ("fields", Rhs::Type(t)) => e.fields = Some(Box::new(t)),
                (k, Rhs::Deferred { pos, line, end }) => {
                    let event = u32::try_from(self.md.events.len())
                        .map_err(|_| MetadataError::syntax(line, "more than 2^32 event blocks"))?;
                    let key = TypeKey::new(k, &mut self.other_keys);
                    self.deferred.push(Deferred {
                        event,
                        key,
                        pos,
                        line,
                        end,
                    })
                }
                _ => {}
            }
        }
        if !named {
            return Err(MetadataError::syntax(
                start,
                "an event block without `name`",
            ));
        }
        self.md.events.push(e);
        Ok(())
    }
}

/// A struct member as LTTng writes most: `integer { BODY } _name;` or
/// `string _name;`, either maybe with a fixed length `[N]`, and only spaces
/// between the parts (see [`lttng_member`]).
pub(super) struct LttngMember<'t> {
    /// The integer's body between its braces; `None` for a string.
    pub int_body: Option<&'t str>,
    /// The name, its `_` included.
    pub name: &'t str,
    pub len: Option<u64>,
    /// Where the member ends, after its `;`.
    pub end: usize,
}

/// The member of `text` whose type keyword `kw` ends at byte `i`, if it is
/// written LTTng's way ([`LttngMember`]); `None` for anything else, which
/// the lexer and parser read.
pub(super) fn lttng_member<'t>(text: &'t str, kw: &str, mut i: usize) -> Option<LttngMember<'t>> {
    let b = text.as_bytes();
    let spaces = |i: usize| i + b[i..].iter().take_while(|&&c| c == b' ').count();
    let int_body = match kw {
        "integer" => {
            i = spaces(i);
            if b.get(i) != Some(&b'{') {
                return None;
            }
            let rest = &text[i + 1..];
            let body = rest.get(..memchr::memchr(b'}', rest.as_bytes())?)?;
            i += body.len() + 2;
            Some(body)
        }
        "string" => None,
        _ => return None,
    };
    // `_name`: LTTng's field names start with `_`, so none is a keyword.
    let start = spaces(i);
    if b.get(start) != Some(&b'_') {
        return None;
    }
    // As far as the lexer reads a word.
    let end = start
        + b[start..]
            .iter()
            .take_while(|&&c| CLASS[c as usize] == WORD)
            .count();
    let name = &text[start..end];
    i = end;
    let mut len = None;
    if b.get(i) == Some(&b'[') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        let plain = matches!(digits, 1..=10) && (digits == 1 || b[i + 1] != b'0');
        if !plain || b.get(i + 1 + digits) != Some(&b']') {
            return None;
        }
        let n: u64 = text[i + 1..i + 1 + digits].parse().ok()?;
        if n > MAX_ARRAY_LEN {
            return None;
        }
        len = Some(n);
        i += digits + 2;
    }
    i = spaces(i);
    if b.get(i) != Some(&b';') {
        return None;
    }
    Some(LttngMember {
        int_body,
        name,
        len,
        end: i + 1,
    })
}

/// Parses deferred types in order, as the entries of one event block,
/// with `base` as the top level. Returns them and the block's scope
/// (named structs they declared).
///
/// `ints` is the integer-body cache, used and grown when given.
pub(crate) fn parse_deferred<'b, 'k>(
    text: &'b str,
    base: &'b Scope,
    items: impl IntoIterator<Item = (&'k str, u32, u32)>,
    ints: Option<&'b mut SharedInts>,
) -> Result<(Vec<Type>, Scope), MetadataError> {
    let mut p = Parser::at(text, 0, 1, Some(base));
    p.shared_ints = ints;
    let items = items.into_iter();
    // Usually one or two types: sized at once.
    let mut out = Vec::with_capacity(items.size_hint().0.min(16));
    for (key, pos, line) in items {
        p.seek(pos as usize, line);
        let t = p.type_spec(false)?;
        if !p.eat_punct(P::Semi) {
            return p.err(format!("`;` after the value of `{key}`"));
        }
        out.push(t);
    }
    Ok((out, p.scopes.pop().unwrap_or_default()))
}

/// An event block parsed alone by [`lone_event_block`].
struct LoneBlock {
    /// Its declaration (its name is in `name`).
    decl: EventDecl,
    name: String,
    /// Its deferred types, as event 0, offsets in the block's text.
    deferred: Vec<Deferred>,
    /// Names of their keys other than `context` and `fields`.
    other_keys: Vec<Box<str>>,
    /// The line at the end of the text.
    end_line: u32,
}

/// Parses `text`, one event block (from `event`, on `line`) the byte
/// scans did not take, and blanks, seeing the type names of `scopes` (lent for the parse) and caching
/// integer bodies in `ints`; `None` when that is not what `text` holds.
fn lone_event_block(
    text: &str,
    line: u32,
    lazy: bool,
    scopes: &mut Vec<Scope>,
    ints: &mut SharedInts,
) -> Option<LoneBlock> {
    let mut sub = Parser::at(text, 0, line, None);
    sub.lazy = lazy;
    sub.scan_events = false;
    sub.shared_ints = Some(ints);
    sub.scopes = std::mem::take(scopes);
    let ok = sub.is_ident("event")
        && matches!(sub.peek_next(), Some(Tok::Punct(P::LBrace)))
        && sub.block("event").is_ok()
        && matches!(sub.cur.tok, Tok::End);
    *scopes = std::mem::take(&mut sub.scopes);
    if !ok {
        return None;
    }
    let decl = sub.md.events.pop()?;
    Some(LoneBlock {
        name: sub.md.name_of(&decl).to_string(),
        decl,
        deferred: sub.deferred,
        other_keys: sub.other_keys,
        end_line: sub.lex.line(),
    })
}

/// [`super::parse_text`] with every field declaration read by the lexer:
/// what [`Parser::lttng_field`] must agree with.
#[cfg(test)]
pub(crate) fn parse_text_by_tokens(text: &str) -> Result<Metadata, MetadataError> {
    let mut p = Parser::new(text);
    p.byte_fields = false;
    p.parse()
}

/// What [`Parser::parse_lazy`] gives.
pub(crate) struct Lazy {
    /// The metadata, without the deferred types.
    pub md: Metadata,
    /// The top-level type names the deferred types see.
    pub top: Scope,
    /// The deferred types, in text order.
    pub deferred: Vec<Deferred>,
    /// Names of their keys other than `context` and `fields`.
    pub other_keys: Vec<Box<str>>,
    /// The integer-body cache.
    pub ints: SharedInts,
}

/// Integer types by the text of their body, owned: the cache kept with
/// deferred event types for parsing them later.
pub(crate) type SharedInts = HashMap<Box<str>, (IntType, u32), BuildHasherDefault<WordHash>>;

/// Whether a type holds a sequence or a variant.
fn refers(t: &Type) -> bool {
    match t {
        Type::Sequence { .. } | Type::Variant(_) => true,
        Type::Array { elem, .. } => refers(elem),
        Type::Struct(s) => s.fields.iter().any(|(_, t)| refers(t)),
        _ => false,
    }
}

/// An array dimension as written: `[N]` or `[path]`.
enum Dim<'a> {
    Fixed(u64),
    Seq(Cow<'a, str>),
}

/// Wraps `ty` in its dimensions; the first written is the outermost.
fn apply_dims(mut ty: Type, dims: Vec<Dim<'_>>) -> Type {
    for d in dims.into_iter().rev() {
        ty = match d {
            Dim::Fixed(len) => Type::Array {
                elem: Box::new(ty),
                len,
            },
            Dim::Seq(length) => Type::Sequence {
                elem: Box::new(ty),
                length: length.into_owned(),
            },
        };
    }
    ty
}

// ---- value conversions

fn text(v: &Val) -> String {
    match v {
        Val::Str(s) | Val::Path(s) => s.to_string(),
        Val::Int(i) => i.to_string(),
    }
}

fn int_val(v: &Val, line: u32) -> Result<i128, MetadataError> {
    match v {
        Val::Int(i) => Ok(*i),
        _ => Err(MetadataError::syntax(line, "expected an integer value")),
    }
}

fn uint_in(v: &Val, line: u32, what: &str, min: u64, max: u64) -> Result<u64, MetadataError> {
    let i = int_val(v, line)?;
    if i < min as i128 || i > max as i128 {
        return Err(MetadataError::syntax(
            line,
            format!("`{what}` is {i}, expected {min} to {max}"),
        ));
    }
    Ok(i as u64)
}

fn sint(v: &Val, line: u32, what: &str) -> Result<i64, MetadataError> {
    let i = int_val(v, line)?;
    i64::try_from(i)
        .map_err(|_| MetadataError::syntax(line, format!("`{what}` = {i} does not fit in 64 bits")))
}

fn align_value(v: &Val, line: u32) -> Result<u32, MetadataError> {
    let a = uint_in(v, line, "align", 1, 1 << 16)?;
    if !a.is_power_of_two() {
        return Err(MetadataError::syntax(
            line,
            format!("alignment {a} is not a power of two"),
        ));
    }
    Ok(a as u32)
}

fn boolean(v: &Val, line: u32) -> Result<bool, MetadataError> {
    match v {
        Val::Int(0) => Ok(false),
        Val::Int(1) => Ok(true),
        Val::Path(p) if p.eq_ignore_ascii_case("true") => Ok(true),
        Val::Path(p) if p.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(MetadataError::syntax(line, "expected `true` or `false`")),
    }
}

fn byte_order(v: &Val, line: u32) -> Result<ByteOrder, MetadataError> {
    match v {
        Val::Path(p) => match &**p {
            "le" | "little" => Ok(ByteOrder::Le),
            "be" | "big" | "network" => Ok(ByteOrder::Be),
            "native" => Ok(ByteOrder::Native),
            _ => Err(MetadataError::syntax(
                line,
                format!("byte order `{p}`: expected le, be, network or native"),
            )),
        },
        _ => Err(MetadataError::syntax(
            line,
            "expected a byte order (le, be, network, native)",
        )),
    }
}

fn base(v: &Val, line: u32) -> Result<u32, MetadataError> {
    match v {
        Val::Int(b @ (2 | 8 | 10 | 16)) => Ok(*b as u32),
        Val::Path(p) => match &**p {
            "decimal" | "dec" | "d" | "i" | "u" => Ok(10),
            "hexadecimal" | "hex" | "x" | "X" | "p" => Ok(16),
            "octal" | "oct" | "o" => Ok(8),
            "binary" | "b" => Ok(2),
            _ => Err(MetadataError::syntax(
                line,
                format!("unknown integer base `{p}`"),
            )),
        },
        _ => Err(MetadataError::syntax(
            line,
            "expected an integer base (2, 8, 10 or 16)",
        )),
    }
}

fn encoding(v: &Val, line: u32) -> Result<Encoding, MetadataError> {
    match v {
        Val::Path(p) | Val::Str(p) => {
            let is = |name: &str| p.eq_ignore_ascii_case(name);
            if is("none") {
                Ok(Encoding::None)
            } else if is("utf8") {
                Ok(Encoding::Utf8)
            } else if is("ascii") {
                Ok(Encoding::Ascii)
            } else {
                Err(MetadataError::syntax(
                    line,
                    format!("unknown encoding `{p}`"),
                ))
            }
        }
        _ => Err(MetadataError::syntax(
            line,
            "expected an encoding (none, UTF8, ASCII)",
        )),
    }
}

fn uuid(v: &Val, line: u32) -> Result<[u8; 16], MetadataError> {
    let Val::Str(s) = v else {
        return Err(MetadataError::syntax(line, "expected a UUID string"));
    };
    parse_uuid(s).ok_or_else(|| MetadataError::syntax(line, format!("`{s}` is not a UUID")))
}

/// Parses `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub(crate) fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 || s.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let h = (hex[2 * i] as char).to_digit(16)?;
        let l = (hex[2 * i + 1] as char).to_digit(16)?;
        *o = (h * 16 + l) as u8;
    }
    Some(out)
}
