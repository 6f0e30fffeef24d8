//! Recursive-descent parser for TSDL. It resolves type names as it goes
//! (aliases, typedefs, named structs, variants and enums are lexically
//! scoped), so its output is [`Metadata`] with every type spelled out.

use std::collections::HashMap;

use strata_core::ClockDesc;

use super::lexer::{Tok, Token};
use super::model::*;
use super::MetadataError;

/// Deepest nesting of types accepted; deeper text is rejected rather than
/// risking the stack.
const MAX_DEPTH: usize = 64;
/// Largest static array accepted, in elements.
const MAX_ARRAY_LEN: u64 = 1 << 32;

#[derive(Default)]
struct Scope {
    aliases: HashMap<String, Type>,
    structs: HashMap<String, StructType>,
    variants: HashMap<String, VariantType>,
    enums: HashMap<String, EnumType>,
}

/// A right-hand side value of an assignment.
#[derive(Debug, Clone)]
enum Val {
    Int(i128),
    Str(String),
    /// An identifier or dotted path (`le`, `true`, `clock.monotonic.value`).
    Path(String),
}

/// What a block assignment sets: a plain value or a type (`:=`).
enum Rhs {
    Val(Val),
    Type(Type),
}

/// Parses tokens into metadata.
pub(crate) struct Parser {
    toks: Vec<Token>,
    i: usize,
    scopes: Vec<Scope>,
    depth: usize,
    md: Metadata,
}

const TYPE_KEYWORDS: &[&str] = &[
    "integer",
    "floating_point",
    "string",
    "struct",
    "variant",
    "enum",
];
const BLOCKS: &[&str] = &["trace", "env", "clock", "stream", "event", "callsite"];

impl Parser {
    /// A parser over `toks`.
    pub(crate) fn new(toks: Vec<Token>) -> Self {
        Parser {
            toks,
            i: 0,
            scopes: vec![Scope::default()],
            depth: 0,
            md: Metadata::default(),
        }
    }

    /// Parses the whole text.
    pub(crate) fn parse(mut self) -> Result<Metadata, MetadataError> {
        while self.i < self.toks.len() {
            self.top_level()?;
        }
        Ok(self.md)
    }

    // ---- token helpers

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }
    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.i + n).map(|t| &t.tok)
    }
    fn line(&self) -> u32 {
        self.toks
            .get(self.i)
            .or_else(|| self.toks.last())
            .map_or(1, |t| t.line)
    }
    fn found(&self) -> String {
        self.peek()
            .map_or_else(|| "the end of the metadata".to_string(), Tok::describe)
    }
    fn err<T>(&self, expected: impl std::fmt::Display) -> Result<T, MetadataError> {
        Err(MetadataError::syntax(
            self.line(),
            format!("expected {expected}, found {}", self.found()),
        ))
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }
    fn is_ident(&self, s: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(q)) if q == s)
    }
    fn eat_punct(&mut self, p: &str) -> bool {
        if self.is_punct(p) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_punct(&mut self, p: &str, what: &str) -> Result<(), MetadataError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.err(format!("`{p}` {what}"))
        }
    }
    fn ident(&mut self, what: &str) -> Result<String, MetadataError> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                let s = s.clone();
                self.i += 1;
                Ok(s)
            }
            _ => self.err(what),
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
    fn scope(&mut self) -> &mut Scope {
        if self.scopes.is_empty() {
            self.scopes.push(Scope::default());
        }
        let last = self.scopes.len() - 1;
        &mut self.scopes[last]
    }
    fn lookup<T: Clone>(&self, f: impl Fn(&Scope) -> Option<&T>) -> Option<T> {
        self.scopes.iter().rev().find_map(&f).cloned()
    }

    // ---- declarations

    fn top_level(&mut self) -> Result<(), MetadataError> {
        if let Some(Tok::Ident(kw)) = self.peek() {
            if BLOCKS.contains(&kw.as_str()) && matches!(self.peek_at(1), Some(Tok::Punct("{"))) {
                let kw = kw.clone();
                return self.block(&kw);
            }
        }
        self.declaration(None)
    }

    /// A declaration that is not a block: `typealias`, `typedef`, a named
    /// struct/variant/enum, or (inside a struct body, `fields` is Some) a field.
    fn declaration(
        &mut self,
        fields: Option<&mut Vec<(String, Type)>>,
    ) -> Result<(), MetadataError> {
        if self.is_ident("typealias") {
            self.i += 1;
            return self.typealias();
        }
        if self.is_ident("typedef") {
            self.i += 1;
            let ty = self.type_spec(true)?;
            loop {
                let (name, t) = self.declarator(ty.clone())?;
                self.scope().aliases.insert(name, t);
                if !self.eat_punct(",") {
                    break;
                }
            }
            return self.expect_punct(";", "after a typedef");
        }
        match self.peek() {
            Some(Tok::Ident(_)) => {}
            _ => return self.err("a declaration"),
        }
        let ty = self.type_spec(fields.is_some())?;
        if self.eat_punct(";") {
            return Ok(()); // a named type declaration alone
        }
        let Some(fields) = fields else {
            return self.err("`;` after a type declaration");
        };
        loop {
            let (name, t) = self.declarator(ty.clone())?;
            fields.push((name, t));
            if !self.eat_punct(",") {
                break;
            }
        }
        self.expect_punct(";", "after a field declaration")
    }

    fn typealias(&mut self) -> Result<(), MetadataError> {
        let ty = self.type_spec(false)?;
        let ty = self.array_suffixes(ty)?;
        self.expect_punct(":=", "in a typealias")?;
        let mut words = Vec::new();
        while let Some(Tok::Ident(w)) = self.peek() {
            words.push(w.clone());
            self.i += 1;
        }
        if words.is_empty() {
            return self.err("a type name after `:=`");
        }
        let ty = self.array_suffixes(ty)?;
        self.scope().aliases.insert(words.join(" "), ty);
        self.expect_punct(";", "after a typealias")
    }

    /// `name` followed by array dimensions.
    fn declarator(&mut self, ty: Type) -> Result<(String, Type), MetadataError> {
        while self.eat_punct("*") {}
        let name = self.ident("a field name")?;
        let ty = self.array_suffixes(ty)?;
        Ok((name, ty))
    }

    /// `[N]` and `[path]` suffixes; the first one is the outermost dimension.
    fn array_suffixes(&mut self, ty: Type) -> Result<Type, MetadataError> {
        enum Dim {
            Fixed(u64),
            Seq(String),
        }
        let mut dims = Vec::new();
        while self.eat_punct("[") {
            let d = match self.peek() {
                Some(Tok::Int(n)) => {
                    let n = *n;
                    self.i += 1;
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
            self.expect_punct("]", "to close an array length")?;
            dims.push(d);
        }
        let mut ty = ty;
        for d in dims.into_iter().rev() {
            ty = match d {
                Dim::Fixed(len) => Type::Array {
                    elem: Box::new(ty),
                    len,
                },
                Dim::Seq(length) => Type::Sequence {
                    elem: Box::new(ty),
                    length,
                },
            };
        }
        Ok(ty)
    }

    /// A dotted path of identifiers.
    fn path(&mut self) -> Result<String, MetadataError> {
        let mut p = self.ident("a name")?;
        while self.is_punct(".") && matches!(self.peek_at(1), Some(Tok::Ident(_))) {
            self.i += 1;
            p.push('.');
            p.push_str(&self.ident("a name")?);
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
        let Some(Tok::Ident(kw)) = self.peek() else {
            return self.err("a type");
        };
        let kw = kw.clone();
        match kw.as_str() {
            "integer" => {
                self.i += 1;
                Ok(Type::Int(self.integer_body()?))
            }
            "floating_point" => {
                self.i += 1;
                self.float_body()
            }
            "string" => {
                self.i += 1;
                let mut enc = Encoding::Utf8;
                if self.eat_punct("{") {
                    while !self.eat_punct("}") {
                        let (key, v, l) = self.attr()?;
                        if key == "encoding" {
                            enc = encoding(&v, l)?;
                        }
                    }
                }
                Ok(Type::String(enc))
            }
            "struct" => {
                self.i += 1;
                self.struct_spec()
            }
            "variant" => {
                self.i += 1;
                self.variant_spec()
            }
            "enum" => {
                self.i += 1;
                self.enum_spec()
            }
            _ => {
                let mut words = Vec::new();
                while let Some(Tok::Ident(w)) = self.peek() {
                    if TYPE_KEYWORDS.contains(&w.as_str()) {
                        break;
                    }
                    words.push(w.clone());
                    self.i += 1;
                }
                if declarator_follows && words.len() > 1 {
                    words.pop();
                    self.i -= 1;
                }
                let name = words.join(" ");
                self.lookup(|s| s.aliases.get(&name)).ok_or_else(|| {
                    MetadataError::syntax(
                        line,
                        format!(
                            "unknown type `{name}`: declare it with typealias or typedef first"
                        ),
                    )
                })
            }
        }
    }

    /// `key = value;` inside a type body. Returns the key, value and line.
    fn attr(&mut self) -> Result<(String, Val, u32), MetadataError> {
        let line = self.line();
        let key = self.ident("an attribute name")?;
        self.expect_punct("=", &format!("after `{key}`"))?;
        let v = self.value()?;
        self.expect_punct(";", &format!("after the value of `{key}`"))?;
        Ok((key, v, line))
    }

    fn integer_body(&mut self) -> Result<IntType, MetadataError> {
        let start = self.line();
        self.expect_punct("{", "after `integer`")?;
        let mut t = IntType {
            size: 0,
            align: 0,
            signed: false,
            byte_order: ByteOrder::Native,
            base: 10,
            encoding: Encoding::None,
            map: None,
        };
        while !self.eat_punct("}") {
            let (key, v, line) = self.attr()?;
            match key.as_str() {
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
        self.expect_punct("{", "after `floating_point`")?;
        let mut t = FloatType {
            exp_dig: 0,
            mant_dig: 0,
            byte_order: ByteOrder::Native,
            align: 0,
        };
        while !self.eat_punct("}") {
            let (key, v, line) = self.attr()?;
            match key.as_str() {
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

    fn struct_spec(&mut self) -> Result<Type, MetadataError> {
        let line = self.line();
        let name = match self.peek() {
            Some(Tok::Ident(n)) => {
                let n = n.clone();
                self.i += 1;
                Some(n)
            }
            _ => None,
        };
        let mut st = if self.eat_punct("{") {
            self.push_scope();
            let mut fields = Vec::new();
            let r = (|| {
                while !self.eat_punct("}") {
                    self.declaration(Some(&mut fields))?;
                }
                Ok(())
            })();
            self.pop_scope();
            r?;
            StructType {
                fields,
                min_align: 1,
            }
        } else {
            let Some(n) = &name else {
                return self.err("`{` or a struct name after `struct`");
            };
            self.lookup(|s| s.structs.get(n)).ok_or_else(|| {
                MetadataError::syntax(line, format!("unknown struct `{n}`: declare it first"))
            })?
        };
        if self.is_ident("align") {
            self.i += 1;
            self.expect_punct("(", "after `align`")?;
            let l = self.line();
            let v = self.value()?;
            st.min_align = st.min_align.max(align_value(&v, l)?);
            self.expect_punct(")", "to close `align(`")?;
        }
        if let Some(n) = name {
            if !self.scopes.iter().any(|s| s.structs.contains_key(&n)) || !st.fields.is_empty() {
                self.scope().structs.insert(n, st.clone());
            }
        }
        Ok(Type::Struct(st))
    }

    fn variant_spec(&mut self) -> Result<Type, MetadataError> {
        let line = self.line();
        let name = match self.peek() {
            Some(Tok::Ident(n)) => {
                let n = n.clone();
                self.i += 1;
                Some(n)
            }
            _ => None,
        };
        let mut tag = None;
        if self.eat_punct("<") {
            tag = Some(self.path()?);
            self.expect_punct(">", "to close a variant tag")?;
        }
        let mut v = if self.eat_punct("{") {
            self.push_scope();
            let mut options = Vec::new();
            let r = (|| {
                while !self.eat_punct("}") {
                    self.declaration(Some(&mut options))?;
                }
                Ok(())
            })();
            self.pop_scope();
            r?;
            let v = VariantType { tag: None, options };
            if let Some(n) = &name {
                self.scope().variants.insert(n.clone(), v.clone());
            }
            v
        } else {
            let Some(n) = &name else {
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
        let name = match self.peek() {
            Some(Tok::Ident(n)) => {
                let n = n.clone();
                self.i += 1;
                Some(n)
            }
            _ => None,
        };
        let mut int = None;
        if self.eat_punct(":") {
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
        if !self.eat_punct("{") {
            let Some(n) = &name else {
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
        while !self.eat_punct("}") {
            let l = self.line();
            let label = match self.peek() {
                Some(Tok::Ident(s)) | Some(Tok::Str(s)) => s.clone(),
                _ => return self.err("an enum label"),
            };
            self.i += 1;
            let (lo, hi) = if self.eat_punct("=") {
                let lo = int_val(&self.value()?, l)?;
                let hi = if self.eat_punct("...") {
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
            if !self.eat_punct(",") {
                self.expect_punct("}", "or `,` after an enum entry")?;
                break;
            }
        }
        let e = EnumType { int, mappings };
        if let Some(n) = name {
            self.scope().enums.insert(n, e.clone());
        }
        Ok(Type::Enum(e))
    }

    fn value(&mut self) -> Result<Val, MetadataError> {
        let neg = if self.eat_punct("-") {
            true
        } else {
            self.eat_punct("+");
            false
        };
        match self.peek().cloned() {
            Some(Tok::Int(v)) => {
                self.i += 1;
                let v = v as i128;
                Ok(Val::Int(if neg { -v } else { v }))
            }
            Some(Tok::Str(s)) if !neg => {
                self.i += 1;
                Ok(Val::Str(s))
            }
            Some(Tok::Ident(_)) if !neg => Ok(Val::Path(self.path()?)),
            _ => self.err("a value"),
        }
    }

    // ---- blocks

    fn block(&mut self, kw: &str) -> Result<(), MetadataError> {
        let start = self.line();
        self.i += 1; // keyword
        self.expect_punct("{", &format!("after `{kw}`"))?;
        self.push_scope();
        let mut entries: Vec<(String, Rhs, u32)> = Vec::new();
        let r = (|| {
            while !self.eat_punct("}") {
                let is_decl = match self.peek() {
                    Some(Tok::Ident(w)) => {
                        matches!(w.as_str(), "typealias" | "typedef")
                            || (matches!(w.as_str(), "struct" | "variant" | "enum")
                                && !matches!(self.peek_at(1), Some(Tok::Punct("=" | ":=" | "."))))
                    }
                    _ => return self.err(format!("an entry of the `{kw}` block or `}}`")),
                };
                if is_decl {
                    self.declaration(None)?;
                    continue;
                }
                let line = self.line();
                let key = self.path()?;
                let rhs = if self.eat_punct(":=") {
                    Rhs::Type(self.type_spec(false)?)
                } else if self.eat_punct("=") {
                    Rhs::Val(self.value()?)
                } else {
                    return self.err(format!("`=` or `:=` after `{key}`"));
                };
                self.expect_punct(";", &format!("after the value of `{key}`"))?;
                entries.push((key, rhs, line));
            }
            Ok(())
        })();
        self.pop_scope();
        r?;
        self.expect_punct(";", &format!("after the `{kw}` block"))?;
        match kw {
            "trace" => self.trace_block(entries),
            "env" => self.env_block(entries),
            "clock" => self.clock_block(entries, start),
            "stream" => self.stream_block(entries),
            "event" => self.event_block(entries, start),
            _ => Ok(()), // callsite: nothing a reader needs
        }
    }

    fn trace_block(&mut self, entries: Vec<(String, Rhs, u32)>) -> Result<(), MetadataError> {
        for (key, rhs, line) in entries {
            match (key.as_str(), rhs) {
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

    fn env_block(&mut self, entries: Vec<(String, Rhs, u32)>) -> Result<(), MetadataError> {
        for (key, rhs, _) in entries {
            let v = match rhs {
                Rhs::Val(Val::Int(i)) => {
                    EnvValue::Int(i.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
                }
                Rhs::Val(Val::Str(s)) | Rhs::Val(Val::Path(s)) => EnvValue::Str(s),
                Rhs::Type(_) => continue,
            };
            self.md.env.retain(|(k, _)| *k != key);
            self.md.env.push((key, v));
        }
        Ok(())
    }

    fn clock_block(
        &mut self,
        entries: Vec<(String, Rhs, u32)>,
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
        for (key, rhs, line) in entries {
            let Rhs::Val(v) = rhs else { continue };
            match key.as_str() {
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

    fn stream_block(&mut self, entries: Vec<(String, Rhs, u32)>) -> Result<(), MetadataError> {
        let mut s = StreamDecl::default();
        for (key, rhs, line) in entries {
            match (key.as_str(), rhs) {
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
        entries: Vec<(String, Rhs, u32)>,
        start: u32,
    ) -> Result<(), MetadataError> {
        let mut e = EventDecl::default();
        let mut named = false;
        for (key, rhs, line) in entries {
            match (key.as_str(), rhs) {
                ("name", Rhs::Val(v)) => {
                    e.name = text(&v);
                    named = true;
                }
                ("id", Rhs::Val(v)) => e.id = Some(uint_in(&v, line, "id", 0, u64::MAX)?),
                ("stream_id", Rhs::Val(v)) => {
                    e.stream_id = Some(uint_in(&v, line, "stream_id", 0, u64::MAX)?)
                }
                ("loglevel", Rhs::Val(v)) => e.loglevel = Some(sint(&v, line, "loglevel")?),
                ("context", Rhs::Type(t)) => e.context = Some(t),
                ("fields", Rhs::Type(t)) => e.fields = Some(t),
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

// ---- value conversions

fn text(v: &Val) -> String {
    match v {
        Val::Str(s) | Val::Path(s) => s.clone(),
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
        Val::Path(p) => match p.as_str() {
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
        Val::Path(p) => match p.as_str() {
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
        Val::Path(p) | Val::Str(p) => match p.to_ascii_lowercase().as_str() {
            "none" => Ok(Encoding::None),
            "utf8" => Ok(Encoding::Utf8),
            "ascii" => Ok(Encoding::Ascii),
            _ => Err(MetadataError::syntax(
                line,
                format!("unknown encoding `{p}`"),
            )),
        },
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
