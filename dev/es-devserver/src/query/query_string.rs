//! `query_string` and `q=`: Lucene's classic query syntax.
//!
//! Terms and clauses: `term`, `field:term`, `"a phrase"`, `field:(a b)`, `+required`,
//! `-excluded`, `NOT`/`!`, `AND`/`&&`, `OR`/`||`, `( )` groups, `^boost`, `term~` and
//! `term~1` (fuzzy), wildcards (`qu?ck*`), `/regular expression/`, ranges (`[a TO b]`,
//! `{a TO *}`, `>=x`, `<x`), `_exists_:field`, `field:*`, `*:*`. `AND`/`OR` bind like
//! Lucene's classic parser (no precedence: `AND` makes its neighbours required). Terms
//! without a field search the default fields (`df`, `default_field`, `fields`; `*` is every
//! field and lenient). With `lenient`, a value a field cannot take matches nothing.

use serde_json::Value;

use super::{
    compile, expand_fields, resolve_field, shard_error, Compiled, Ctx, FieldRef, Kind, MultiKind,
    Query, RegexpFlags, TextOpts,
};
use crate::error::{EsError, EsResult};

impl QsQuery {
    /// Whether the text parsed.
    pub fn is_valid(&self) -> bool {
        self.node.is_ok()
    }
}

/// Options of a `query_string` query.
#[derive(Debug, Clone, PartialEq)]
pub struct QsOpts {
    /// Fields (patterns, with an optional `^boost`) for terms without a field.
    pub default_fields: Vec<String>,
    /// `default_operator: AND`.
    pub and: bool,
    /// `lenient` (`None`: the index's `index.query_string.lenient`).
    pub lenient: Option<bool>,
    /// `fuzziness` of `term~` without a number (default `AUTO`).
    pub fuzziness: Option<Value>,
    /// `boost` of the whole query.
    pub boost: f32,
}

impl QsOpts {
    /// The `q=` defaults: `df` (else `*`), `OR`.
    pub fn new(default_fields: Vec<String>) -> QsOpts {
        QsOpts {
            default_fields,
            and: false,
            lenient: None,
            fuzziness: None,
            boost: 1.0,
        }
    }
}

/// How a clause takes part in its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Occur {
    Must,
    Should,
    MustNot,
}

/// What a leaf searches for.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Term(String),
    Phrase(String),
    Wildcard(String),
    Regex(String),
    Fuzzy(String, Option<String>),
    Range {
        lo: Option<String>,
        hi: Option<String>,
        inc_lo: bool,
        inc_hi: bool,
    },
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Group(Vec<(Occur, Node)>, f32),
    Leaf {
        field: Option<String>,
        term: Target,
        boost: f32,
    },
    All(f32),
}

/// A parsed `query_string` (or the syntax error it is, reported when the query runs, as
/// Elasticsearch parses it on the shards).
#[derive(Debug, Clone, PartialEq)]
pub struct QsQuery {
    text: String,
    opts: QsOpts,
    node: Result<Node, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conj {
    None,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mod {
    None,
    Req,
    Not,
}

struct Parser {
    c: Vec<char>,
    i: usize,
    and: bool,
}

const SPECIAL: &str = " \t\r\n()[]{}^~\":";

impl Parser {
    fn peek(&self) -> Option<char> {
        self.c.get(self.i).copied()
    }

    fn peek_at(&self, off: usize) -> Option<char> {
        self.c.get(self.i + off).copied()
    }

    fn ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.i += 1;
        }
    }

    fn ends_word(&self, off: usize) -> bool {
        match self.peek_at(off) {
            None => true,
            Some(c) => c.is_whitespace() || c == '(' || c == ')',
        }
    }

    fn keyword(&mut self, words: &[&str]) -> bool {
        for w in words {
            let n = w.chars().count();
            let matches = w
                .chars()
                .enumerate()
                .all(|(k, ch)| self.peek_at(k) == Some(ch));
            let is_symbol = !w.chars().all(char::is_alphabetic);
            if matches && (is_symbol || self.ends_word(n)) {
                self.i += n;
                return true;
            }
        }
        false
    }

    /// Clauses up to the end, or up to `)` inside a group.
    fn clauses(&mut self, nested: bool) -> Result<Vec<(Occur, Node)>, String> {
        let mut out: Vec<(Occur, Node)> = Vec::new();
        loop {
            self.ws();
            match self.peek() {
                None => break,
                Some(')') if nested => break,
                Some(')') => {
                    return Err(format!(
                        "Encountered \" \")\" \") \"\" at column {}",
                        self.i + 1
                    ))
                }
                _ => {}
            }
            let mut conj = Conj::None;
            if !out.is_empty() {
                if self.keyword(&["AND", "&&"]) {
                    conj = Conj::And;
                } else if self.keyword(&["OR", "||"]) {
                    conj = Conj::Or;
                }
                self.ws();
            }
            let mut m = Mod::None;
            if self.peek() == Some('+') {
                self.i += 1;
                m = Mod::Req;
            } else if self.peek() == Some('-') || self.peek() == Some('!') {
                self.i += 1;
                m = Mod::Not;
            } else if self.keyword(&["NOT"]) {
                m = Mod::Not;
            }
            self.ws();
            if self.peek().is_none() || (nested && self.peek() == Some(')')) {
                return Err("Encountered \"<EOF>\"".into());
            }
            let node = self.clause()?;
            self.add(&mut out, conj, m, node);
        }
        Ok(out)
    }

    /// Lucene's `QueryParserBase.addClause`.
    fn add(&self, out: &mut Vec<(Occur, Node)>, conj: Conj, m: Mod, node: Node) {
        if let Some(last) = out.last_mut() {
            if conj == Conj::And && last.0 != Occur::MustNot {
                last.0 = Occur::Must;
            }
            if self.and && conj == Conj::Or && last.0 != Occur::MustNot {
                last.0 = Occur::Should;
            }
        }
        let (required, prohibited) = if !self.and {
            let prohibited = m == Mod::Not;
            (
                m == Mod::Req || (conj == Conj::And && !prohibited),
                prohibited,
            )
        } else {
            let prohibited = m == Mod::Not;
            (!prohibited && conj != Conj::Or, prohibited)
        };
        let occur = if prohibited {
            Occur::MustNot
        } else if required {
            Occur::Must
        } else {
            Occur::Should
        };
        out.push((occur, node));
    }

    /// A raw term: up to white space or a special character; `\` escapes. Returns the text
    /// (unescaped) and whether it has unescaped wildcards.
    fn raw_term(&mut self) -> (String, bool) {
        let mut s = String::new();
        let mut wild = false;
        while let Some(c) = self.peek() {
            if c == '\\' {
                if let Some(n) = self.peek_at(1) {
                    s.push(n);
                    self.i += 2;
                    continue;
                }
                self.i += 1;
                continue;
            }
            if SPECIAL.contains(c) {
                break;
            }
            if c == '*' || c == '?' {
                wild = true;
            }
            s.push(c);
            self.i += 1;
        }
        (s, wild)
    }

    fn number_suffix(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
            self.i += 1;
        }
        (self.i > start).then(|| {
            self.c
                .get(start..self.i)
                .unwrap_or_default()
                .iter()
                .collect()
        })
    }

    fn boost(&mut self) -> Result<f32, String> {
        if self.peek() != Some('^') {
            return Ok(1.0);
        }
        self.i += 1;
        self.number_suffix()
            .and_then(|n| n.parse::<f32>().ok())
            .ok_or_else(|| format!("Encountered \"^\" without a number at column {}", self.i))
    }

    fn until(&mut self, end: char) -> Result<String, String> {
        let mut s = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("Lexical error: missing closing [{end}]")),
                Some('\\') => {
                    if let Some(n) = self.peek_at(1) {
                        if n != end {
                            s.push('\\');
                        }
                        s.push(n);
                    }
                    self.i += 2;
                }
                Some(c) if c == end => {
                    self.i += 1;
                    return Ok(s);
                }
                Some(c) => {
                    s.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn clause(&mut self) -> Result<Node, String> {
        let mut field = None;
        // `field:`, where the field is a raw term followed by `:`.
        let save = self.i;
        if !matches!(self.peek(), Some('(' | '"' | '[' | '{' | '/')) {
            let (name, _) = self.raw_term();
            if !name.is_empty() && self.peek() == Some(':') {
                self.i += 1;
                field = Some(name);
            } else {
                self.i = save;
            }
        }
        self.value(field)
    }

    fn value(&mut self, field: Option<String>) -> Result<Node, String> {
        let leaf =
            |field: Option<String>, term: Target, boost: f32| Node::Leaf { field, term, boost };
        match self.peek() {
            Some('(') => {
                self.i += 1;
                let mut inner = self.clauses(true)?;
                if self.peek() != Some(')') {
                    return Err("Encountered \"<EOF>\", expected \")\"".into());
                }
                self.i += 1;
                let boost = self.boost()?;
                if let Some(f) = &field {
                    set_field(&mut inner, f);
                }
                Ok(Node::Group(inner, boost))
            }
            Some('"') => {
                self.i += 1;
                let text = self.until('"')?;
                if self.peek() == Some('~') {
                    // Phrase slop: matched as an exact phrase here.
                    self.i += 1;
                    self.number_suffix();
                }
                let boost = self.boost()?;
                Ok(leaf(field, Target::Phrase(text), boost))
            }
            Some('/') => {
                self.i += 1;
                let re = self.until('/')?;
                let boost = self.boost()?;
                Ok(leaf(field, Target::Regex(re), boost))
            }
            Some(open @ ('[' | '{')) => {
                self.i += 1;
                let inc_lo = open == '[';
                self.ws();
                let (lo, _) = self.range_bound();
                self.ws();
                if !self.keyword(&["TO"]) {
                    return Err("Encountered a range without \"TO\"".into());
                }
                self.ws();
                let (hi, _) = self.range_bound();
                self.ws();
                let inc_hi = match self.peek() {
                    Some(']') => true,
                    Some('}') => false,
                    _ => return Err("Encountered a range without its closing bracket".into()),
                };
                self.i += 1;
                let boost = self.boost()?;
                let open_end = |s: String| (s != "*").then_some(s);
                Ok(leaf(
                    field,
                    Target::Range {
                        lo: open_end(lo),
                        hi: open_end(hi),
                        inc_lo,
                        inc_hi,
                    },
                    boost,
                ))
            }
            Some('>' | '<') => {
                let upper = self.peek() == Some('<');
                self.i += 1;
                let inclusive = self.peek() == Some('=');
                if inclusive {
                    self.i += 1;
                }
                let (v, _) = self.raw_term();
                if v.is_empty() {
                    return Err("Encountered a comparison without a value".into());
                }
                let boost = self.boost()?;
                let term = if upper {
                    Target::Range {
                        lo: None,
                        hi: Some(v),
                        inc_lo: true,
                        inc_hi: inclusive,
                    }
                } else {
                    Target::Range {
                        lo: Some(v),
                        hi: None,
                        inc_lo: inclusive,
                        inc_hi: true,
                    }
                };
                Ok(leaf(field, term, boost))
            }
            _ => {
                let (text, wild) = self.raw_term();
                if text.is_empty() {
                    return Err(format!(
                        "Encountered \"{}\" at column {}",
                        self.peek()
                            .map(String::from)
                            .unwrap_or_else(|| "<EOF>".into()),
                        self.i + 1
                    ));
                }
                let mut fuzzy = None;
                if self.peek() == Some('~') {
                    self.i += 1;
                    fuzzy = Some(self.number_suffix());
                }
                let boost = self.boost()?;
                if text == "*" {
                    return Ok(match field.as_deref() {
                        None | Some("*") => Node::All(boost),
                        Some(_) => leaf(field, Target::Exists, boost),
                    });
                }
                if field.as_deref() == Some("_exists_") {
                    return Ok(leaf(Some(text), Target::Exists, boost));
                }
                let term = match fuzzy {
                    Some(edits) if !wild => Target::Fuzzy(text, edits),
                    _ if wild => Target::Wildcard(text),
                    _ => Target::Term(text),
                };
                Ok(leaf(field, term, boost))
            }
        }
    }

    fn range_bound(&mut self) -> (String, bool) {
        if self.peek() == Some('"') {
            self.i += 1;
            return (self.until('"').unwrap_or_default(), false);
        }
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ']' || c == '}' {
                break;
            }
            s.push(c);
            self.i += 1;
        }
        (s, false)
    }
}

fn set_field(clauses: &mut [(Occur, Node)], field: &str) {
    for (_, n) in clauses {
        match n {
            Node::Group(inner, _) => set_field(inner, field),
            Node::Leaf { field: f, .. } if f.is_none() => *f = Some(field.to_string()),
            Node::All(b) => {
                *n = Node::Leaf {
                    field: Some(field.to_string()),
                    term: Target::Exists,
                    boost: *b,
                }
            }
            _ => {}
        }
    }
}

/// Parses a query string.
pub fn parse(text: &str, opts: QsOpts) -> Query {
    let mut p = Parser {
        c: text.chars().collect(),
        i: 0,
        and: opts.and,
    };
    let node = if text.trim().is_empty() {
        Ok(Node::Group(Vec::new(), 1.0))
    } else {
        p.clauses(false).map(|mut cl| {
            if cl.len() == 1 && cl.first().is_some_and(|(o, _)| *o != Occur::MustNot) {
                cl.swap_remove(0).1
            } else {
                Node::Group(cl, 1.0)
            }
        })
    };
    Query::QueryString(Box::new(QsQuery {
        text: text.to_string(),
        opts,
        node,
    }))
}

/// Compiles a parsed query string for an index.
pub(crate) fn compile_qs(q: &QsQuery, ctx: &Ctx<'_>) -> EsResult<Compiled> {
    match &q.node {
        Ok(n) => Ok(boosted(compile_node(n, q, ctx)?, q.opts.boost)),
        Err(msg) => Err(shard_error(
            ctx.index,
            ctx.uuid,
            format!("Failed to parse query [{}]", q.text),
            None,
        )
        .caused_by(EsError::parse(format!("Cannot parse '{}': {msg}", q.text)))),
    }
}

fn boosted(c: Compiled, boost: f32) -> Compiled {
    if (boost - 1.0).abs() < f32::EPSILON {
        c
    } else {
        Compiled::Bool {
            must: vec![c],
            filter: vec![],
            should: vec![],
            must_not: vec![],
            required: 0,
            boost,
        }
    }
}

fn compile_node(n: &Node, q: &QsQuery, ctx: &Ctx<'_>) -> EsResult<Compiled> {
    match n {
        Node::All(b) => Ok(Compiled::All(*b)),
        Node::Group(clauses, boost) => {
            let (mut must, mut should, mut must_not) = (Vec::new(), Vec::new(), Vec::new());
            for (occur, c) in clauses {
                let compiled = compile_node(c, q, ctx)?;
                match occur {
                    Occur::Must => must.push(compiled),
                    Occur::Should => should.push(compiled),
                    Occur::MustNot => must_not.push(compiled),
                }
            }
            let required = usize::from(must.is_empty() && !should.is_empty());
            Ok(Compiled::Bool {
                must,
                filter: vec![],
                should,
                must_not,
                required,
                boost: *boost,
            })
        }
        Node::Leaf { field, term, boost } => compile_leaf(field.as_deref(), term, *boost, q, ctx),
    }
}

fn compile_leaf(
    field: Option<&str>,
    term: &Target,
    boost: f32,
    q: &QsQuery,
    ctx: &Ctx<'_>,
) -> EsResult<Compiled> {
    if let Target::Regex(re) = term {
        // The length limit applies before any field, lenient or not.
        super::check_regex_length(ctx, re)?;
    }
    let lenient = q.opts.lenient.unwrap_or(ctx.limits.query_string_lenient);
    let patterns: Vec<String> = match field {
        Some(f) => vec![f.to_string()],
        None => q.opts.default_fields.clone(),
    };
    let mut targets: Vec<(String, f32, bool)> = Vec::new();
    for p in &patterns {
        let (name, field_boost) = match p.split_once('^') {
            Some((n, b)) => (n.to_string(), b.parse::<f32>().unwrap_or(1.0)),
            None => (p.clone(), 1.0),
        };
        if name.contains('*') {
            // Expanded fields are always lenient, as in Elasticsearch.
            for f in expand_fields(ctx.mapping, std::slice::from_ref(&name)) {
                if !targets.iter().any(|(t, _, _)| *t == f) {
                    targets.push((f, field_boost, true));
                }
            }
        } else {
            targets.push((name, field_boost, lenient));
        }
    }
    let mut compiled = Vec::new();
    for (f, field_boost, lenient) in targets {
        let b = boost * field_boost;
        let query = field_query(ctx, &f, term, b, q)?;
        match compile(&query, ctx) {
            Ok(c) => compiled.push(c),
            Err(_) if lenient => {}
            Err(e) => return Err(e),
        }
    }
    Ok(match compiled.len() {
        0 => Compiled::None,
        1 => compiled.swap_remove(0),
        _ => Compiled::Dis(compiled),
    })
}

fn is_text(ctx: &Ctx<'_>, field: &str) -> bool {
    matches!(resolve_field(ctx.mapping, field), FieldRef::Field { field: f, .. } if f.kind == Kind::Text)
}

fn field_query(
    ctx: &Ctx<'_>,
    field: &str,
    term: &Target,
    boost: f32,
    q: &QsQuery,
) -> EsResult<Query> {
    let f = field.to_string();
    Ok(match term {
        Target::Term(t) | Target::Phrase(t) => Query::Match {
            field: f,
            query: Value::from(t.as_str()),
            and: q.opts.and,
            msm: None,
            phrase: matches!(term, Target::Phrase(_)),
            boost,
        },
        Target::Wildcard(w) => {
            // Wildcard terms are normalized like the field's terms: lowercased on text.
            let value = if is_text(ctx, field) {
                w.to_lowercase()
            } else {
                w.clone()
            };
            let prefix = value.strip_suffix('*').filter(|p| !p.contains(['*', '?']));
            match prefix {
                Some(p) => Query::Prefix {
                    field: f,
                    value: p.to_string(),
                    case_insensitive: false,
                    boost,
                },
                None => Query::Wildcard {
                    field: f,
                    value,
                    case_insensitive: false,
                    boost,
                },
            }
        }
        Target::Regex(re) => Query::Regexp {
            field: f,
            value: re.clone(),
            flags: RegexpFlags::ALL,
            case_insensitive: false,
            boost,
        },
        Target::Fuzzy(t, edits) => {
            let mut opts = TextOpts::default();
            let fuzziness = match edits {
                Some(e) => Value::from(e.as_str()),
                None => q.opts.fuzziness.clone().unwrap_or(Value::from("AUTO")),
            };
            opts.accept("fuzziness", &fuzziness)?;
            Query::MultiMatch {
                fields: vec![f],
                query: t.clone(),
                kind: MultiKind::BestFields,
                opts,
                and: q.opts.and,
                msm: None,
                boost,
            }
        }
        Target::Range {
            lo,
            hi,
            inc_lo,
            inc_hi,
        } => Query::Range {
            field: f,
            lo: lo.as_ref().map(|v| (Value::from(v.as_str()), *inc_lo)),
            hi: hi.as_ref().map(|v| (Value::from(v.as_str()), *inc_hi)),
            format: None,
            boost,
        },
        Target::Exists => Query::Exists(f, boost),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(q: &str, and: bool) -> Node {
        let mut o = QsOpts::new(vec!["*".into()]);
        o.and = and;
        match parse(q, o) {
            Query::QueryString(qs) => qs.node.unwrap_or(Node::All(0.0)),
            _ => Node::All(0.0),
        }
    }

    fn occurs(n: &Node) -> Vec<Occur> {
        match n {
            Node::Group(c, _) => c.iter().map(|(o, _)| *o).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn operators_bind_like_lucene() {
        use Occur::*;
        assert_eq!(occurs(&node("a b", false)), vec![Should, Should]);
        assert_eq!(occurs(&node("a b", true)), vec![Must, Must]);
        assert_eq!(
            occurs(&node("a AND b OR c", false)),
            vec![Must, Must, Should]
        );
        assert_eq!(occurs(&node("a OR b", true)), vec![Should, Should]);
        assert_eq!(occurs(&node("+a -b c", false)), vec![Must, MustNot, Should]);
        assert_eq!(occurs(&node("a NOT b", false)), vec![Should, MustNot]);
        assert_eq!(occurs(&node("a && !b", false)), vec![Must, MustNot]);
    }

    #[test]
    fn terms() {
        let leaf = |q: &str| match node(q, false) {
            Node::Leaf { field, term, boost } => Some((field, term, boost)),
            _ => None,
        };
        assert_eq!(
            leaf("title:foo^2"),
            Some((Some("title".into()), Target::Term("foo".into()), 2.0))
        );
        assert_eq!(
            leaf("f:\"a b\""),
            Some((Some("f".into()), Target::Phrase("a b".into()), 1.0))
        );
        assert_eq!(
            leaf("f:qu?ck*").map(|l| l.1),
            Some(Target::Wildcard("qu?ck*".into()))
        );
        assert_eq!(
            leaf("f:/jo.n/").map(|l| l.1),
            Some(Target::Regex("jo.n".into()))
        );
        assert_eq!(
            leaf("f:[1 TO *}").map(|l| l.1),
            Some(Target::Range {
                lo: Some("1".into()),
                hi: None,
                inc_lo: true,
                inc_hi: false
            })
        );
        assert_eq!(
            leaf("age:>=10").map(|l| l.1),
            Some(Target::Range {
                lo: Some("10".into()),
                hi: None,
                inc_lo: true,
                inc_hi: true
            })
        );
        assert_eq!(leaf("_exists_:f").map(|l| l.1), Some(Target::Exists));
        assert_eq!(leaf("f:*").map(|l| l.1), Some(Target::Exists));
        assert_eq!(
            leaf("f:quikc~1").map(|l| l.1),
            Some(Target::Fuzzy("quikc".into(), Some("1".into())))
        );
        assert_eq!(leaf("a\\:b").map(|l| l.1), Some(Target::Term("a:b".into())));
        assert!(matches!(node("*:*", false), Node::All(_)));
        assert!(matches!(node("f:(a b)", false), Node::Group(ref c, _) if c.len() == 2));
    }

    #[test]
    fn syntax_errors() {
        for q in ["(a b", "a AND", "f:[1 TO 2", "a )", "\"open"] {
            let parsed = parse(q, QsOpts::new(vec!["*".into()]));
            let Query::QueryString(qs) = parsed else {
                panic!("not a query string")
            };
            assert!(qs.node.is_err(), "{q}");
        }
    }
}
