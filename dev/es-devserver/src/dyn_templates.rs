//! Dynamic templates: the `dynamic_templates` of a mapping (`match_mapping_type`,
//! `unmatch_mapping_type`, `match`, `unmatch`, `path_match`, `path_unmatch`, `match_pattern`)
//! and the per-document `dynamic_templates` of bulk items, which name the template for a
//! field path. A template that sets none of `match_mapping_type`, `match` and `path_match`
//! applies only when a document names it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};

/// The JSON type a new field was detected as (`{dynamic_type}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynType {
    /// A string that is neither a date nor (with `numeric_detection`) a number.
    String,
    /// An integer.
    Long,
    /// A floating-point number.
    Double,
    /// `true` / `false`.
    Boolean,
    /// A string detected as a date.
    Date,
    /// An object.
    Object,
}

impl DynType {
    /// The name templates use.
    pub fn name(self) -> &'static str {
        match self {
            DynType::String => "string",
            DynType::Long => "long",
            DynType::Double => "double",
            DynType::Boolean => "boolean",
            DynType::Date => "date",
            DynType::Object => "object",
        }
    }

    /// The field type of a template mapping without a `type`.
    fn default_mapping_type(self) -> &'static str {
        match self {
            DynType::String => "text",
            DynType::Long => "long",
            DynType::Double => "float",
            DynType::Boolean => "boolean",
            DynType::Date => "date",
            DynType::Object => "object",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PatternKind {
    Simple,
    Regex,
}

/// One parsed dynamic template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its name.
    pub name: String,
    types: Option<Vec<String>>,
    untypes: Vec<String>,
    only_by_name: bool,
    matches: Vec<String>,
    unmatches: Vec<String>,
    path_matches: Vec<String>,
    path_unmatches: Vec<String>,
    pattern: PatternKind,
    /// `mapping` (or `runtime`, then the field is not indexed).
    mapping: Value,
    /// A `runtime` template: matching fields stay out of the indexed mapping.
    pub runtime: bool,
}

fn strings(v: &Value, what: &str) -> EsResult<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(a) => a
            .iter()
            .map(|x| {
                x.as_str().map(str::to_string).ok_or_else(|| {
                    EsError::new(
                        400,
                        "mapper_parsing_exception",
                        format!("[{what}] values must either be a string or list of strings, but was [{x}]"),
                    )
                })
            })
            .collect(),
        other => Err(EsError::new(
            400,
            "mapper_parsing_exception",
            format!("[{what}] values must either be a string or list of strings, but was [{other}]"),
        )),
    }
}

const TYPES: &[&str] = &[
    "string", "long", "double", "boolean", "date", "object", "binary", "*",
];

fn parse_one(name: &str, body: &Value) -> EsResult<Template> {
    let bad = |reason: String| EsError::new(400, "mapper_parsing_exception", reason);
    let m = body
        .as_object()
        .ok_or_else(|| bad(format!("Dynamic template [{name}] must be an object")))?;
    let mut t = Template {
        name: name.to_string(),
        types: None,
        untypes: Vec::new(),
        only_by_name: false,
        matches: Vec::new(),
        unmatches: Vec::new(),
        path_matches: Vec::new(),
        path_unmatches: Vec::new(),
        pattern: PatternKind::Simple,
        mapping: Value::Null,
        runtime: false,
    };
    for (k, v) in m {
        match k.as_str() {
            "match_mapping_type" => t.types = Some(strings(v, k)?),
            "unmatch_mapping_type" => t.untypes = strings(v, k)?,
            "match" => t.matches = strings(v, k)?,
            "unmatch" => t.unmatches = strings(v, k)?,
            "path_match" => t.path_matches = strings(v, k)?,
            "path_unmatch" => t.path_unmatches = strings(v, k)?,
            "match_pattern" => {
                t.pattern = match v.as_str() {
                    Some("simple") => PatternKind::Simple,
                    Some("regex") => PatternKind::Regex,
                    _ => {
                        return Err(bad(format!(
                            "Illegal match_pattern [{}] in dynamic template [{name}]",
                            v.as_str().unwrap_or_default()
                        )))
                    }
                }
            }
            "mapping" | "runtime" => {
                if !v.is_object() {
                    return Err(bad(format!(
                        "dynamic template [{name}] must have [{k}] as an object"
                    )));
                }
                t.runtime = k == "runtime";
                t.mapping = v.clone();
            }
            other => {
                return Err(bad(format!(
                    "Illegal dynamic template parameter: [{other}]"
                )))
            }
        }
    }
    if t.mapping.is_null() {
        return Err(bad(format!(
            "template [{name}] must have either mapping or runtime set"
        )));
    }
    for ty in t.types.iter().flatten().chain(t.untypes.iter()) {
        if !TYPES.contains(&ty.as_str()) {
            return Err(bad(format!(
                "No field type matched on [{ty}], possible values are [object, string, long, double, boolean, date, binary]"
            )));
        }
    }
    if t.pattern == PatternKind::Regex {
        for p in t
            .matches
            .iter()
            .chain(&t.unmatches)
            .chain(&t.path_matches)
            .chain(&t.path_unmatches)
        {
            regex::Regex::new(p).map_err(|e| {
                bad(format!("Pattern [{p}] of type [regex] is invalid. Cannot create dynamic template [{name}]."))
                    .caused_by(EsError::illegal_argument(e.to_string()))
            })?;
        }
    }
    t.only_by_name = t.types.is_none() && t.matches.is_empty() && t.path_matches.is_empty();
    Ok(t)
}

/// Parses a mapping's `dynamic_templates` (a list of one-key objects).
pub fn parse(v: Option<&Value>) -> EsResult<Vec<Template>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let list = v.as_array().ok_or_else(|| {
        EsError::new(
            400,
            "mapper_parsing_exception",
            "Dynamic template syntax error. An array of named objects is expected.",
        )
    })?;
    let mut out = Vec::new();
    for entry in list {
        let obj = entry.as_object().filter(|o| o.len() == 1).ok_or_else(|| {
            EsError::new(
                400,
                "mapper_parsing_exception",
                "Dynamic template syntax error. An array of named objects is expected.",
            )
        })?;
        for (name, body) in obj {
            out.push(parse_one(name, body)?);
        }
    }
    Ok(out)
}

impl Template {
    fn pattern_matches(&self, pattern: &str, text: &str) -> bool {
        match self.pattern {
            PatternKind::Simple => crate::names::glob_match(pattern, text),
            PatternKind::Regex => {
                regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(text))
            }
        }
    }

    /// Whether the template applies to a new field (by its conditions, not by name).
    pub fn matches(&self, path: &str, name: &str, ty: DynType) -> bool {
        if self.only_by_name {
            return false;
        }
        let any = |ps: &[String], text: &str| ps.iter().any(|p| self.pattern_matches(p, text));
        if !self.path_matches.is_empty() && !any(&self.path_matches, path) {
            return false;
        }
        if !self.matches.is_empty() && !any(&self.matches, name) {
            return false;
        }
        if any(&self.path_unmatches, path) || any(&self.unmatches, name) {
            return false;
        }
        let ty_name = ty.name();
        if let Some(types) = &self.types {
            if !types.iter().any(|t| t == "*" || t == ty_name) {
                return false;
            }
        }
        !self.untypes.iter().any(|t| t == "*" || t == ty_name)
    }

    /// The field definition for a new field: the template's mapping with `{name}` and
    /// `{dynamic_type}` replaced, and the type of a mapping that sets none.
    pub fn field_definition(&self, name: &str, ty: DynType) -> Value {
        let mut def = substitute(&self.mapping, name, ty.name());
        if let Value::Object(m) = &mut def {
            let object_with_properties = ty == DynType::Object && m.contains_key("properties");
            if !m.contains_key("type") && !object_with_properties {
                m.insert("type".into(), Value::from(ty.default_mapping_type()));
            }
        }
        def
    }
}

fn substitute(v: &Value, name: &str, ty: &str) -> Value {
    let s = |t: &str| t.replace("{name}", name).replace("{dynamic_type}", ty);
    match v {
        Value::String(t) => Value::String(s(t)),
        Value::Array(a) => Value::Array(a.iter().map(|x| substitute(x, name, ty)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| (s(k), substitute(x, name, ty)))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

/// The template for a new field: the one the document names for its path, else the first
/// whose conditions match. `Err` when the named template does not exist.
pub fn find<'t>(
    templates: &'t [Template],
    named: Option<&BTreeMap<String, String>>,
    path: &str,
    name: &str,
    ty: DynType,
) -> Result<Option<&'t Template>, String> {
    if let Some(wanted) = named.and_then(|n| n.get(path)) {
        return match templates.iter().find(|t| t.name == *wanted) {
            Some(t) => Ok(Some(t)),
            None => Err(format!(
                "Can't find dynamic template for dynamic template name [{wanted}] of field [{path}]"
            )),
        };
    }
    Ok(templates.iter().find(|t| t.matches(path, name, ty)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(v: Value) -> Vec<Template> {
        parse(Some(&v)).unwrap_or_default()
    }

    #[test]
    fn matching_rules() {
        let ts = templates(json!([
            {"by_name": {"mapping": {"type": "geo_point"}}},
            {"longs_as_ints": {"match_mapping_type": "long", "mapping": {"type": "integer"}}},
            {"strings": {"match": "s_*", "unmatch": "*_text", "mapping": {"type": "keyword"}}},
            {"path": {"path_match": "a.*", "path_unmatch": "a.skip", "mapping": {"type": "{dynamic_type}"}}},
            {"re": {"match_pattern": "regex", "match": "^re\\d+$", "mapping": {"index": false}}}
        ]));
        assert_eq!(ts.len(), 5);
        let pick = |path: &str, ty: DynType| {
            let name = path.rsplit('.').next().unwrap_or(path);
            find(&ts, None, path, name, ty)
                .ok()
                .flatten()
                .map(|t| t.name.clone())
        };
        assert_eq!(pick("n", DynType::Long).as_deref(), Some("longs_as_ints"));
        assert_eq!(pick("s_x", DynType::String).as_deref(), Some("strings"));
        assert_eq!(pick("s_text", DynType::String), None);
        assert_eq!(pick("a.b", DynType::Boolean).as_deref(), Some("path"));
        assert_eq!(pick("a.skip", DynType::Boolean), None);
        assert_eq!(pick("re12", DynType::String).as_deref(), Some("re"));
        assert_eq!(pick("other", DynType::String), None);
        let mut named = BTreeMap::new();
        named.insert("loc".to_string(), "by_name".to_string());
        named.insert("bad".to_string(), "nope".to_string());
        assert_eq!(
            find(&ts, Some(&named), "loc", "loc", DynType::String)
                .ok()
                .flatten()
                .map(|t| t.name.as_str()),
            Some("by_name")
        );
        assert!(find(&ts, Some(&named), "bad", "bad", DynType::String).is_err());
        let path = ts.get(3).map(|t| t.field_definition("b", DynType::Boolean));
        assert_eq!(path, Some(json!({"type": "boolean"})));
        let re = ts
            .get(4)
            .map(|t| t.field_definition("re1", DynType::String));
        assert_eq!(re, Some(json!({"index": false, "type": "text"})));
    }

    #[test]
    fn invalid_templates() {
        for bad in [
            json!({"x": {}}),
            json!([{"x": {"mapping": {}, "wat": 1}}]),
            json!([{"x": {"match_mapping_type": "str", "mapping": {}}}]),
            json!([{"x": {"match": "a"}}]),
            json!([{"x": {"match_pattern": "regex", "match": "(", "mapping": {}}}]),
        ] {
            assert!(parse(Some(&bad)).is_err(), "{bad}");
        }
    }
}
