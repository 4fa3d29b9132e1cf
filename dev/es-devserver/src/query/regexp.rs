//! Lucene's regular expression language (the `regexp` query and `/.../` in
//! `query_string`): parsing with the optional operators of `flags` and matching whole terms.
//!
//! The syntax: `.` any character, `?` `*` `+` `{n}` `{n,}` `{n,m}` repetition, `|` union,
//! `( )` grouping, `[...]` / `[^...]` classes, `"..."` literal strings, `\` escapes, `\d \s
//! \w \D \S \W`; with flags: `~` complement, `&` intersection, `#` empty language, `@` any
//! string, `<n-m>` numeric interval. There are no anchors: a pattern always matches the
//! whole term. Matching computes, for each sub-expression and start offset, the set of end
//! offsets it can reach (memoized), which handles complement and intersection exactly.

use std::collections::HashMap;

/// Optional operators (`flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags {
    complement: bool,
    intersection: bool,
    empty: bool,
    anystring: bool,
    interval: bool,
}

impl Flags {
    /// `ALL`, the default.
    pub const ALL: Flags = Flags {
        complement: true,
        intersection: true,
        empty: true,
        anystring: true,
        interval: true,
    };

    /// Parses `ALL`, `NONE` or a `|`-separated list of `COMPLEMENT`, `INTERSECTION`,
    /// `EMPTY`, `ANYSTRING`, `INTERVAL`.
    pub fn parse(s: &str) -> Result<Flags, String> {
        let mut f = Flags {
            complement: false,
            intersection: false,
            empty: false,
            anystring: false,
            interval: false,
        };
        if s.trim().is_empty() {
            return Ok(Flags::ALL);
        }
        for part in s.split('|').map(str::trim) {
            match part.to_ascii_uppercase().as_str() {
                "ALL" => f = Flags::ALL,
                "NONE" => {}
                "COMPLEMENT" => f.complement = true,
                "INTERSECTION" => f.intersection = true,
                "EMPTY" => f.empty = true,
                "ANYSTRING" => f.anystring = true,
                "INTERVAL" => f.interval = true,
                other => return Err(format!("Unknown regexp flag [{other}]")),
            }
        }
        Ok(f)
    }

    /// From Lucene's `flags_value` bits.
    pub fn from_bits(v: i64) -> Flags {
        if v == 0xffff || v < 0 {
            return Flags::ALL;
        }
        Flags {
            intersection: v & 0x1 != 0,
            complement: v & 0x2 != 0,
            empty: v & 0x4 != 0,
            anystring: v & 0x8 != 0,
            interval: v & 0x20 != 0,
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    /// One character out of ranges (negated for `[^...]`).
    Class(Vec<(char, char)>, bool),
    Any,
    Empty,
    AnyString,
    Str(Vec<char>),
    Concat(Vec<usize>),
    Union(Vec<usize>),
    Inter(usize, usize),
    Complement(usize),
    Repeat(usize, usize, Option<usize>),
    /// `<lo-hi>`, with a fixed width when both bounds have as many digits.
    Interval(u64, u64, usize),
}

/// A compiled Lucene regular expression.
#[derive(Debug, Clone)]
pub struct Regex {
    nodes: Vec<Node>,
    root: usize,
    case_insensitive: bool,
}

struct Parser<'a> {
    s: Vec<char>,
    pos: usize,
    flags: Flags,
    nodes: &'a mut Vec<Node>,
}

impl Parser<'_> {
    fn more(&self) -> bool {
        self.pos < self.s.len()
    }

    fn peek(&self, set: &str) -> bool {
        self.s.get(self.pos).is_some_and(|c| set.contains(*c))
    }

    fn eat(&mut self, c: char) -> bool {
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn next(&mut self) -> Result<char, String> {
        let c = *self
            .s
            .get(self.pos)
            .ok_or_else(|| "unexpected end-of-string".to_string())?;
        self.pos += 1;
        Ok(c)
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn union(&mut self) -> Result<usize, String> {
        let mut parts = vec![self.inter()?];
        while self.eat('|') {
            parts.push(self.inter()?);
        }
        Ok(if parts.len() == 1 {
            parts.swap_remove(0)
        } else {
            self.push(Node::Union(parts))
        })
    }

    fn inter(&mut self) -> Result<usize, String> {
        let left = self.concat()?;
        if self.flags.intersection && self.eat('&') {
            let right = self.inter()?;
            return Ok(self.push(Node::Inter(left, right)));
        }
        Ok(left)
    }

    fn concat(&mut self) -> Result<usize, String> {
        let mut parts = Vec::new();
        while self.more() && !self.peek(")|") && !(self.flags.intersection && self.peek("&")) {
            parts.push(self.repeat()?);
        }
        Ok(match parts.len() {
            0 => self.push(Node::Str(Vec::new())),
            1 => parts.swap_remove(0),
            _ => self.push(Node::Concat(parts)),
        })
    }

    fn number(&mut self) -> Result<usize, String> {
        let start = self.pos;
        while self.peek("0123456789") {
            self.pos += 1;
        }
        let text: String = self
            .s
            .get(start..self.pos)
            .unwrap_or_default()
            .iter()
            .collect();
        text.parse::<usize>()
            .map_err(|_| format!("integer expected at position {}", self.pos))
    }

    fn repeat(&mut self) -> Result<usize, String> {
        let mut e = self.complement()?;
        loop {
            if self.eat('?') {
                e = self.push(Node::Repeat(e, 0, Some(1)));
            } else if self.eat('*') {
                e = self.push(Node::Repeat(e, 0, None));
            } else if self.eat('+') {
                e = self.push(Node::Repeat(e, 1, None));
            } else if self.peek("{") {
                self.pos += 1;
                let n = self.number()?;
                let m = if self.eat(',') {
                    if self.peek("0123456789") {
                        Some(self.number()?)
                    } else {
                        None
                    }
                } else {
                    Some(n)
                };
                if !self.eat('}') {
                    return Err(format!("expected '}}' at position {}", self.pos));
                }
                if m.is_some_and(|m| m < n) {
                    return Err(format!("invalid repetition {{{n},{}}}", m.unwrap_or(0)));
                }
                e = self.push(Node::Repeat(e, n, m));
            } else {
                return Ok(e);
            }
        }
    }

    fn complement(&mut self) -> Result<usize, String> {
        if self.flags.complement && self.eat('~') {
            let inner = self.complement()?;
            return Ok(self.push(Node::Complement(inner)));
        }
        self.class_exp()
    }

    fn class_exp(&mut self) -> Result<usize, String> {
        if !self.eat('[') {
            return self.simple();
        }
        let negated = self.eat('^');
        let mut ranges = Vec::new();
        loop {
            if !self.more() {
                return Err("expected ']' at end of string".into());
            }
            if self.eat(']') {
                break;
            }
            if self.peek("\\") {
                if let Some(shortcut) = self.shortcut_class()? {
                    let (rs, neg) = shortcut;
                    if neg {
                        return Err("negated shorthand classes are not supported in [...]".into());
                    }
                    ranges.extend(rs);
                    continue;
                }
            }
            let lo = self.char_exp()?;
            if self.peek("-") && self.s.get(self.pos + 1) != Some(&']') {
                self.pos += 1;
                let hi = self.char_exp()?;
                if hi < lo {
                    return Err(format!("invalid range: from ({lo}) cannot be > to ({hi})"));
                }
                ranges.push((lo, hi));
            } else {
                ranges.push((lo, lo));
            }
        }
        Ok(self.push(Node::Class(ranges, negated)))
    }

    /// `\d \s \w \D \S \W`: the ranges and whether negated; `None` for another escape.
    fn shortcut_class(&mut self) -> Result<Option<(Vec<(char, char)>, bool)>, String> {
        let Some(c) = self.s.get(self.pos + 1).copied() else {
            return Ok(None);
        };
        let ranges = match c.to_ascii_lowercase() {
            'd' => vec![('0', '9')],
            's' => vec![(' ', ' '), ('\t', '\r')],
            'w' => vec![('a', 'z'), ('A', 'Z'), ('0', '9'), ('_', '_')],
            _ => return Ok(None),
        };
        self.pos += 2;
        Ok(Some((ranges, c.is_ascii_uppercase())))
    }

    fn char_exp(&mut self) -> Result<char, String> {
        if self.eat('\\') {
            return self.next();
        }
        self.next()
    }

    fn simple(&mut self) -> Result<usize, String> {
        if self.eat('.') {
            return Ok(self.push(Node::Any));
        }
        if self.flags.empty && self.eat('#') {
            return Ok(self.push(Node::Empty));
        }
        if self.flags.anystring && self.eat('@') {
            return Ok(self.push(Node::AnyString));
        }
        if self.eat('"') {
            let mut lit = Vec::new();
            loop {
                match self.s.get(self.pos) {
                    None => return Err("expected '\"' at end of string".into()),
                    Some('"') => {
                        self.pos += 1;
                        break;
                    }
                    Some(c) => {
                        lit.push(*c);
                        self.pos += 1;
                    }
                }
            }
            return Ok(self.push(Node::Str(lit)));
        }
        if self.eat('(') {
            if self.eat(')') {
                return Ok(self.push(Node::Str(Vec::new())));
            }
            let e = self.union()?;
            if !self.eat(')') {
                return Err(format!("expected ')' at position {}", self.pos));
            }
            return Ok(e);
        }
        if self.flags.interval && self.peek("<") {
            let start = self.pos + 1;
            let Some(end) = (start..self.s.len()).find(|i| self.s.get(*i) == Some(&'>')) else {
                return Err(format!("expected '>' at position {}", self.pos));
            };
            let body: String = self.s.get(start..end).unwrap_or_default().iter().collect();
            self.pos = end + 1;
            let (a, b) = body
                .split_once('-')
                .ok_or_else(|| format!("interval syntax error at position {}", end))?;
            let lo: u64 = a
                .parse()
                .map_err(|_| format!("interval syntax error at position {end}"))?;
            let hi: u64 = b
                .parse()
                .map_err(|_| format!("interval syntax error at position {end}"))?;
            let width = if a.len() == b.len() { a.len() } else { 0 };
            let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            return Ok(self.push(Node::Interval(lo, hi, width)));
        }
        if self.peek("\\") {
            if let Some((ranges, neg)) = self.shortcut_class()? {
                return Ok(self.push(Node::Class(ranges, neg)));
            }
        }
        let c = self.char_exp()?;
        Ok(self.push(Node::Str(vec![c])))
    }
}

impl Regex {
    /// Compiles a pattern.
    pub fn new(pattern: &str, flags: Flags, case_insensitive: bool) -> Result<Regex, String> {
        let mut nodes = Vec::new();
        let mut p = Parser {
            s: pattern.chars().collect(),
            pos: 0,
            flags,
            nodes: &mut nodes,
        };
        let root = p.union()?;
        if p.more() {
            return Err(format!("end-of-string expected at position {}", p.pos));
        }
        Ok(Regex {
            nodes,
            root,
            case_insensitive,
        })
    }

    /// Whether the whole `term` matches.
    pub fn is_match(&self, term: &str) -> bool {
        let chars: Vec<char> = term.chars().collect();
        let mut m = Matcher {
            re: self,
            text: &chars,
            memo: HashMap::new(),
        };
        m.ends(self.root, 0)
            .get(chars.len())
            .copied()
            .unwrap_or(false)
    }
}

struct Matcher<'a> {
    re: &'a Regex,
    text: &'a [char],
    memo: HashMap<(usize, usize), Vec<bool>>,
}

impl Matcher<'_> {
    fn char_eq(&self, a: char, b: char) -> bool {
        a == b || (self.re.case_insensitive && a.to_lowercase().eq(b.to_lowercase()))
    }

    fn in_class(&self, c: char, ranges: &[(char, char)]) -> bool {
        let hit = |x: char| ranges.iter().any(|(lo, hi)| *lo <= x && x <= *hi);
        if hit(c) {
            return true;
        }
        self.re.case_insensitive && (c.to_lowercase().any(hit) || c.to_uppercase().any(hit))
    }

    /// End offsets reachable by node `n` from `start` (indexed by offset).
    fn ends(&mut self, n: usize, start: usize) -> Vec<bool> {
        if let Some(v) = self.memo.get(&(n, start)) {
            return v.clone();
        }
        let len = self.text.len();
        let mut out = vec![false; len + 1];
        let node = self.re.nodes.get(n).cloned();
        match node {
            None | Some(Node::Empty) => {}
            Some(Node::Any) => {
                if start < len {
                    set(&mut out, start + 1);
                }
            }
            Some(Node::AnyString) => {
                for e in start..=len {
                    set(&mut out, e);
                }
            }
            Some(Node::Class(ranges, negated)) => {
                if let Some(c) = self.text.get(start) {
                    if self.in_class(*c, &ranges) != negated {
                        set(&mut out, start + 1);
                    }
                }
            }
            Some(Node::Str(lit)) => {
                let fits = lit.iter().enumerate().all(|(i, c)| {
                    self.text
                        .get(start + i)
                        .is_some_and(|t| self.char_eq(*t, *c))
                });
                if fits {
                    set(&mut out, start + lit.len());
                }
            }
            Some(Node::Concat(parts)) => {
                let mut cur = vec![false; len + 1];
                set(&mut cur, start);
                for p in parts {
                    let mut next = vec![false; len + 1];
                    for (pos, on) in cur.iter().enumerate() {
                        if *on {
                            or_into(&mut next, &self.ends(p, pos));
                        }
                    }
                    cur = next;
                }
                out = cur;
            }
            Some(Node::Union(parts)) => {
                for p in parts {
                    let e = self.ends(p, start);
                    or_into(&mut out, &e);
                }
            }
            Some(Node::Inter(a, b)) => {
                let ea = self.ends(a, start);
                let eb = self.ends(b, start);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = ea.get(i).copied().unwrap_or(false) && eb.get(i).copied().unwrap_or(false);
                }
            }
            Some(Node::Complement(a)) => {
                let ea = self.ends(a, start);
                for (i, o) in out.iter_mut().enumerate() {
                    *o = i >= start && !ea.get(i).copied().unwrap_or(false);
                }
            }
            Some(Node::Repeat(inner, min, max)) => {
                // Exactly `min` repetitions first.
                let mut cur = vec![false; len + 1];
                set(&mut cur, start);
                for _ in 0..min {
                    cur = self.step(inner, &cur);
                    if cur.iter().all(|b| !b) {
                        break;
                    }
                }
                out = cur.clone();
                match max {
                    Some(max) => {
                        for _ in min..max {
                            cur = self.step(inner, &cur);
                            if cur.iter().all(|b| !b) {
                                break;
                            }
                            or_into(&mut out, &cur);
                        }
                    }
                    None => {
                        // Any number more: the closure of the reachable offsets.
                        let mut frontier = cur;
                        loop {
                            let next = self.step(inner, &frontier);
                            let fresh: Vec<bool> = next
                                .iter()
                                .zip(out.iter())
                                .map(|(n, o)| *n && !*o)
                                .collect();
                            if fresh.iter().all(|b| !b) {
                                break;
                            }
                            or_into(&mut out, &fresh);
                            frontier = fresh;
                        }
                    }
                }
            }
            Some(Node::Interval(lo, hi, width)) => {
                let mut e = start;
                let mut value: u64 = 0;
                while let Some(d) = self.text.get(e).and_then(|c| c.to_digit(10)) {
                    value = value.saturating_mul(10).saturating_add(u64::from(d));
                    e += 1;
                    let digits = e - start;
                    let width_ok = width == 0 || digits == width;
                    if width_ok && lo <= value && value <= hi {
                        set(&mut out, e);
                    }
                }
            }
        }
        self.memo.insert((n, start), out.clone());
        out
    }
}

impl Matcher<'_> {
    /// The offsets one more match of `n` reaches from any offset in `from`.
    fn step(&mut self, n: usize, from: &[bool]) -> Vec<bool> {
        let mut next = vec![false; self.text.len() + 1];
        for (pos, on) in from.iter().enumerate() {
            if *on {
                let e = self.ends(n, pos);
                or_into(&mut next, &e);
            }
        }
        next
    }
}

fn set(v: &mut [bool], i: usize) {
    if let Some(x) = v.get_mut(i) {
        *x = true;
    }
}

fn or_into(into: &mut [bool], from: &[bool]) {
    for (a, b) in into.iter_mut().zip(from) {
        *a |= *b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Regex::new(p, Flags::ALL, false)
            .map(|r| r.is_match(t))
            .unwrap_or(false)
    }

    #[test]
    fn basics() {
        assert!(m("ab.*", "abc"));
        assert!(!m("ab", "abc"));
        assert!(m("a(b|c)+d?", "abcbc"));
        assert!(m("[a-c]{2,3}", "cab"));
        assert!(!m("[a-c]{2,3}", "cabc"));
        assert!(m("[^x]+", "abc"));
        assert!(!m("[^x]+", "axc"));
        assert!(m("\"a.b\"", "a.b"));
        assert!(!m("\"a.b\"", "axb"));
        assert!(m("a\\.b", "a.b"));
        assert!(m("\\d+", "123"));
        assert!(m("x{0}y", "y"));
    }

    #[test]
    fn optional_operators() {
        assert!(m("ab~(cd)", "abx"));
        assert!(!m("ab~(cd)", "abcd"));
        assert!(m("@&~(abc.+)", "abc"));
        assert!(!m("@&~(abc.+)", "abcd"));
        assert!(m("aaa.+&.+bbb", "aaabbb"));
        assert!(m("foo<1-100>", "foo42"));
        assert!(!m("foo<1-100>", "foo101"));
        assert!(m("<01-10>", "07"));
        assert!(!m("<01-10>", "7"));
        assert!(m("#|a", "a"));
        assert!(!m("#", ""));
        // Without the flags the characters are literals.
        let none = Flags::parse("NONE").unwrap_or(Flags::ALL);
        let r = Regex::new("a@b", none, false).ok();
        assert!(r.is_some_and(|r| r.is_match("a@b")));
    }

    #[test]
    fn case_insensitive_and_errors() {
        let r = Regex::new("ab[c-d]", Flags::ALL, true).ok();
        assert!(r.is_some_and(|r| r.is_match("ABD")));
        assert!(Regex::new("a(b", Flags::ALL, false).is_err());
        assert!(Regex::new("[abc", Flags::ALL, false).is_err());
        assert!(Regex::new("a{3,1}", Flags::ALL, false).is_err());
    }
}
