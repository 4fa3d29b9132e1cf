//! Query-time analysis: turning a query's text into the terms it searches for, with
//! Elasticsearch's built-in analyzers. Indexed text is always analyzed with the standard
//! analyzer (`query::tokenize`); a query may name another analyzer, which changes only the
//! query terms (e.g. `whitespace` keeps case, so `BROWN` does not find `brown`).

use crate::query::tokenize;

/// A built-in analyzer a query can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analyzer {
    /// `standard` (the default): lowercased letter/digit runs.
    Standard,
    /// `simple`: lowercased runs of letters.
    Simple,
    /// `whitespace`: split on whitespace, case kept.
    Whitespace,
    /// `keyword`: the whole text as one term.
    Keyword,
}

impl Analyzer {
    /// The built-in analyzer with this name, if there is one.
    pub fn named(name: &str) -> Option<Analyzer> {
        Some(match name {
            "standard" | "default" => Analyzer::Standard,
            "simple" => Analyzer::Simple,
            "whitespace" => Analyzer::Whitespace,
            "keyword" => Analyzer::Keyword,
            _ => return None,
        })
    }

    /// The terms of `text`, in order.
    pub fn terms(self, text: &str) -> Vec<String> {
        match self {
            Analyzer::Standard => tokenize(text),
            Analyzer::Simple => text
                .split(|c: char| !c.is_alphabetic())
                .filter(|t| !t.is_empty())
                .map(str::to_lowercase)
                .collect(),
            Analyzer::Whitespace => text.split_whitespace().map(str::to_string).collect(),
            Analyzer::Keyword => vec![text.to_string()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyzers() {
        assert_eq!(
            Analyzer::Standard.terms("Brown FOX-jump"),
            ["brown", "fox", "jump"]
        );
        assert_eq!(Analyzer::Whitespace.terms("BROWN  dog"), ["BROWN", "dog"]);
        assert_eq!(Analyzer::Simple.terms("a1b C"), ["a", "b", "c"]);
        assert_eq!(Analyzer::Keyword.terms("a b"), ["a b"]);
        assert_eq!(Analyzer::named("nope"), None);
    }
}
