//! `_source` filtering: `_source: false`, include/exclude lists with wildcards.

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};
use crate::names::{glob_match, glob_prefix_viable};
use crate::params::Params;

/// What to return of `_source`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceFilter {
    /// Whether to return `_source` at all.
    pub fetch: bool,
    /// Include patterns (empty = everything).
    pub includes: Vec<String>,
    /// Exclude patterns.
    pub excludes: Vec<String>,
}

fn string_list(v: &Value, what: &str) -> EsResult<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    EsError::parsing(format!(
                        "Unknown key for a {} in [{what}].",
                        crate::json::token_name(x)
                    ))
                })
            })
            .collect(),
        other => Err(EsError::parsing(format!(
            "Unknown key for a {} in [{what}].",
            crate::json::token_name(other)
        ))),
    }
}

impl SourceFilter {
    /// Everything.
    pub fn all() -> Self {
        SourceFilter {
            fetch: true,
            includes: Vec::new(),
            excludes: Vec::new(),
        }
    }

    /// Nothing.
    pub fn none() -> Self {
        SourceFilter {
            fetch: false,
            includes: Vec::new(),
            excludes: Vec::new(),
        }
    }

    /// From `_source`, `_source_includes` and `_source_excludes` parameters; `None` if none
    /// is given.
    pub fn from_params(p: &Params) -> EsResult<Option<SourceFilter>> {
        let src = p.get("_source");
        let inc = p
            .list("_source_includes")
            .or_else(|| p.list("_source_include"));
        let exc = p
            .list("_source_excludes")
            .or_else(|| p.list("_source_exclude"));
        if src.is_none() && inc.is_none() && exc.is_none() {
            return Ok(None);
        }
        let mut f = SourceFilter::all();
        match src {
            Some("true") | Some("") | None => {}
            Some("false") => f.fetch = false,
            Some(list) => {
                f.includes = list
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
        }
        if let Some(i) = inc {
            f.fetch = true;
            f.includes = i;
        }
        if let Some(e) = exc {
            f.fetch = true;
            f.excludes = e;
        }
        Ok(Some(f))
    }

    /// From a body `_source` value.
    pub fn from_body(v: &Value) -> EsResult<SourceFilter> {
        match v {
            Value::Bool(b) => Ok(if *b {
                SourceFilter::all()
            } else {
                SourceFilter::none()
            }),
            Value::String(_) | Value::Array(_) => Ok(SourceFilter {
                fetch: true,
                includes: string_list(v, "_source")?,
                excludes: Vec::new(),
            }),
            Value::Object(m) => {
                let mut f = SourceFilter::all();
                for (k, val) in m {
                    match k.as_str() {
                        "includes" | "include" => f.includes = string_list(val, k)?,
                        "excludes" | "exclude" => f.excludes = string_list(val, k)?,
                        other => {
                            return Err(EsError::parsing(format!(
                                "Unknown key for a {} in [{other}].",
                                crate::json::token_name(val)
                            )))
                        }
                    }
                }
                Ok(f)
            }
            other => Err(EsError::parsing(format!(
                "Expected one of [VALUE_BOOLEAN, START_OBJECT] but found [{}]",
                crate::json::token_name(other)
            ))),
        }
    }

    /// Whether the source is returned unchanged.
    pub fn is_identity(&self) -> bool {
        self.fetch && self.includes.is_empty() && self.excludes.is_empty()
    }

    /// Filters a parsed source.
    pub fn apply(&self, src: &Value) -> Value {
        match src {
            Value::Object(m) => Value::Object(self.filter_map(m, "", self.includes.is_empty())),
            other => other.clone(),
        }
    }

    fn included(&self, path: &str) -> bool {
        self.includes.iter().any(|p| glob_match(p, path))
    }

    fn excluded(&self, path: &str) -> bool {
        self.excludes.iter().any(|p| glob_match(p, path))
    }

    fn may_include_below(&self, path: &str) -> bool {
        let prefix = format!("{path}.");
        self.includes.iter().any(|p| glob_prefix_viable(p, &prefix))
    }

    fn filter_map(
        &self,
        m: &Map<String, Value>,
        prefix: &str,
        all_included: bool,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if self.excluded(&path) {
                continue;
            }
            let inc_here = all_included || self.included(&path);
            if let Some(fv) = self.filter_value(v, &path, inc_here) {
                out.insert(k.clone(), fv);
            }
        }
        out
    }

    fn filter_value(&self, v: &Value, path: &str, inc_here: bool) -> Option<Value> {
        match v {
            Value::Object(inner) => {
                if !inc_here && !self.may_include_below(path) {
                    return None;
                }
                let filtered = self.filter_map(inner, path, inc_here);
                if filtered.is_empty() && !inc_here {
                    None
                } else {
                    Some(Value::Object(filtered))
                }
            }
            Value::Array(items) => {
                if !inc_here && !self.may_include_below(path) {
                    return None;
                }
                let filtered: Vec<Value> = items
                    .iter()
                    .filter_map(|i| match i {
                        Value::Object(_) | Value::Array(_) => self.filter_value(i, path, inc_here),
                        other => inc_here.then(|| other.clone()),
                    })
                    .collect();
                if filtered.is_empty() && !inc_here {
                    None
                } else {
                    Some(Value::Array(filtered))
                }
            }
            other => inc_here.then(|| other.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(inc: &[&str], exc: &[&str]) -> SourceFilter {
        SourceFilter {
            fetch: true,
            includes: inc.iter().map(|s| s.to_string()).collect(),
            excludes: exc.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn filtering() {
        let src = json!({"include": {"field1": "v1", "field2": "v2"}, "count": 1, "bigint": 72057594037927936u64});
        assert_eq!(
            f(&["include.field1"], &[]).apply(&src),
            json!({"include": {"field1": "v1"}})
        );
        assert_eq!(
            f(&[], &["count"]).apply(&src),
            json!({"include": {"field1": "v1", "field2": "v2"}, "bigint": 72057594037927936u64})
        );
        assert_eq!(
            f(&["include"], &["*.field2"]).apply(&src),
            json!({"include": {"field1": "v1"}})
        );
        assert_eq!(
            f(&["bigint"], &[]).apply(&src),
            json!({"bigint": 72057594037927936u64})
        );
        assert_eq!(
            f(&["inc*"], &[]).apply(&src),
            json!({"include": {"field1": "v1", "field2": "v2"}})
        );
    }
}
