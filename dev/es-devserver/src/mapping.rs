//! Mappings: parsing explicit mappings, checking documents against them while recording
//! dynamic mappings (one pass over the source with serde, no intermediate tree), and
//! resolving field names for search.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{EsError, EsResult};
use crate::field_checks::{self, CheckOpts};
use crate::names::parse_date;

/// The `dynamic` setting of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    /// Unknown fields are added to the mapping.
    True,
    /// Unknown fields are kept in `_source` but not indexed.
    False,
    /// Unknown fields are rejected.
    Strict,
    /// Unknown fields become runtime fields (treated like `false` here).
    Runtime,
}

impl Dynamic {
    fn parse(v: &Value) -> Option<Dynamic> {
        match v {
            Value::Bool(true) => Some(Dynamic::True),
            Value::Bool(false) => Some(Dynamic::False),
            Value::String(s) => match s.as_str() {
                "true" => Some(Dynamic::True),
                "false" => Some(Dynamic::False),
                "strict" => Some(Dynamic::Strict),
                "runtime" => Some(Dynamic::Runtime),
                _ => None,
            },
            _ => None,
        }
    }

    fn to_json(self) -> Value {
        match self {
            Dynamic::True => Value::from("true"),
            Dynamic::False => Value::from("false"),
            Dynamic::Strict => Value::from("strict"),
            Dynamic::Runtime => Value::from("runtime"),
        }
    }
}

/// What a field holds, as far as this server cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An object with properties.
    Object,
    /// A nested object (searched like an object here).
    Nested,
    /// Analyzed text.
    Text,
    /// Exact strings.
    Keyword,
    /// 64-bit integer.
    Long,
    /// 32-bit integer.
    Integer,
    /// 16-bit integer.
    Short,
    /// 8-bit integer.
    Byte,
    /// Unsigned 64-bit integer.
    UnsignedLong,
    /// 64-bit float.
    Double,
    /// 32-bit float.
    Float,
    /// 16-bit float (kept as 32-bit here).
    HalfFloat,
    /// Scaled float (kept as double here).
    ScaledFloat,
    /// Boolean.
    Boolean,
    /// Date (epoch milliseconds).
    Date,
    /// `date_nanos` (epoch nanoseconds).
    DateNanos,
    /// IP address (matched by its canonical text).
    Ip,
    /// A geo point (`geo_bounding_box`, `geo_distance`).
    GeoPoint,
    /// A type this server stores but does not validate or search (geo, vectors, ...).
    Opaque,
}

impl Kind {
    fn from_type(t: &str) -> Option<Kind> {
        Some(match t {
            "object" => Kind::Object,
            "nested" => Kind::Nested,
            "text" | "match_only_text" | "search_as_you_type" | "semantic_text" => Kind::Text,
            "keyword" | "constant_keyword" | "wildcard" | "version" => Kind::Keyword,
            "ip" => Kind::Ip,
            "long" => Kind::Long,
            "integer" => Kind::Integer,
            "short" => Kind::Short,
            "byte" => Kind::Byte,
            "unsigned_long" => Kind::UnsignedLong,
            "double" => Kind::Double,
            "float" => Kind::Float,
            "half_float" => Kind::HalfFloat,
            "scaled_float" => Kind::ScaledFloat,
            "boolean" => Kind::Boolean,
            "date" => Kind::Date,
            "date_nanos" => Kind::DateNanos,
            "geo_point" => Kind::GeoPoint,
            "geo_shape"
            | "point"
            | "shape"
            | "binary"
            | "flattened"
            | "dense_vector"
            | "sparse_vector"
            | "rank_feature"
            | "rank_features"
            | "completion"
            | "token_count"
            | "alias"
            | "join"
            | "percolator"
            | "histogram"
            | "aggregate_metric_double"
            | "counted_keyword"
            | "integer_range"
            | "float_range"
            | "long_range"
            | "double_range"
            | "date_range"
            | "ip_range"
            | "annotated_text" => Kind::Opaque,
            _ => return None,
        })
    }

    /// Whether the kind is numeric.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Kind::Long
                | Kind::Integer
                | Kind::Short
                | Kind::Byte
                | Kind::UnsignedLong
                | Kind::Double
                | Kind::Float
                | Kind::HalfFloat
                | Kind::ScaledFloat
        )
    }

    /// Whether the kind is an integer type.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            Kind::Long | Kind::Integer | Kind::Short | Kind::Byte | Kind::UnsignedLong
        )
    }

    fn is_object(self) -> bool {
        matches!(self, Kind::Object | Kind::Nested)
    }
}

/// One field of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The kind.
    pub kind: Kind,
    /// The declared `type` (absent for objects declared by `properties` alone).
    pub type_name: Option<String>,
    /// `dynamic` of an object.
    pub dynamic: Option<Dynamic>,
    /// Sub-fields of an object.
    pub properties: BTreeMap<String, Field>,
    /// Multi-fields.
    pub fields: BTreeMap<String, Field>,
    /// Other parameters, returned as given.
    pub params: Map<String, Value>,
}

impl Field {
    fn leaf(type_name: &str, kind: Kind) -> Field {
        Field {
            kind,
            type_name: Some(type_name.to_string()),
            dynamic: None,
            properties: BTreeMap::new(),
            fields: BTreeMap::new(),
            params: Map::new(),
        }
    }

    fn object() -> Field {
        Field {
            kind: Kind::Object,
            type_name: None,
            dynamic: None,
            properties: BTreeMap::new(),
            fields: BTreeMap::new(),
            params: Map::new(),
        }
    }

    /// `enabled: false` on an object: its content is stored, not parsed or indexed.
    pub fn is_disabled(&self) -> bool {
        self.params
            .get("enabled")
            .is_some_and(|v| v == &Value::Bool(false) || v == "false")
    }

    /// The type name as Elasticsearch reports it.
    pub fn type_str(&self) -> &str {
        match &self.type_name {
            Some(t) => t,
            None => "object",
        }
    }

    /// Serialized mapping of this field.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(t) = &self.type_name {
            if t != "object" || self.properties.is_empty() {
                m.insert("type".into(), Value::from(t.as_str()));
            }
        } else if self.properties.is_empty() && self.dynamic.is_none() && self.params.is_empty() {
            m.insert("type".into(), Value::from("object"));
        }
        if let Some(d) = self.dynamic {
            m.insert("dynamic".into(), d.to_json());
        }
        for (k, v) in &self.params {
            m.insert(k.clone(), v.clone());
        }
        if !self.fields.is_empty() {
            let f: Map<String, Value> = self
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            m.insert("fields".into(), Value::Object(f));
        }
        if !self.properties.is_empty() {
            let p: Map<String, Value> = self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            m.insert("properties".into(), Value::Object(p));
        }
        m.into()
    }
}

/// An index's mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mapping {
    /// Root `dynamic` (default `true`).
    pub dynamic: Option<Dynamic>,
    /// `date_detection` (default `true`).
    pub date_detection: Option<bool>,
    /// `numeric_detection` (default `false`).
    pub numeric_detection: Option<bool>,
    /// Root fields.
    pub properties: BTreeMap<String, Field>,
    /// Other root parameters (`_source`, `_routing`, `_meta`, `dynamic_templates`, ...).
    pub other: Map<String, Value>,
}

const ROOT_PARAMS: &[&str] = &[
    "_source",
    "_routing",
    "_meta",
    "_field_names",
    "_data_stream_timestamp",
    "dynamic_templates",
    "dynamic_date_formats",
    "runtime",
    "enabled",
    "subobjects",
    "_size",
    "_doc_count",
];

const COMMON_PARAMS: &[&str] = &[
    "index",
    "store",
    "doc_values",
    "null_value",
    "copy_to",
    "meta",
    "fields",
    "boost",
    "script",
    "on_script_error",
    "ignore_malformed",
    "similarity",
];
const TEXT_PARAMS: &[&str] = &[
    "analyzer",
    "search_analyzer",
    "search_quote_analyzer",
    "norms",
    "index_options",
    "position_increment_gap",
    "term_vector",
    "fielddata",
    "fielddata_frequency_filter",
    "eager_global_ordinals",
    "index_prefixes",
    "index_phrases",
    "max_shingle_size",
    "inference_id",
    "search_inference_id",
];
const KEYWORD_PARAMS: &[&str] = &[
    "ignore_above",
    "normalizer",
    "norms",
    "eager_global_ordinals",
    "split_queries_on_whitespace",
    "index_options",
    "time_series_dimension",
    "value",
    "script",
];
const NUMERIC_PARAMS: &[&str] = &[
    "coerce",
    "time_series_dimension",
    "time_series_metric",
    "scaling_factor",
];
const DATE_PARAMS: &[&str] = &["format", "locale", "precision", "resolution"];
const OBJECT_PARAMS: &[&str] = &[
    "properties",
    "dynamic",
    "enabled",
    "subobjects",
    "include_in_parent",
    "include_in_root",
    "type",
];

fn mapper_parsing(reason: String) -> EsError {
    EsError::new(400, "mapper_parsing_exception", reason)
}

fn java_map_string(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", java_map_string(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(java_map_string).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a mapping definition (`{"properties":{..},"dynamic":..}`).
pub fn parse_mapping(v: &Value) -> EsResult<Mapping> {
    let wrap = |e: EsError| -> EsError {
        let reason = format!("Failed to parse mapping: {}", e.reason);
        mapper_parsing(reason).caused_by(e)
    };
    let m = match v {
        Value::Object(m) => m,
        Value::Null => return Ok(Mapping::default()),
        _ => {
            return Err(wrap(mapper_parsing(
                "Expected map for property [mappings]".into(),
            )))
        }
    };
    let mut mapping = Mapping::default();
    let mut unsupported = Vec::new();
    for (k, val) in m {
        match k.as_str() {
            "properties" => {
                let props = val.as_object().ok_or_else(|| {
                    wrap(mapper_parsing(
                        "Expected map for property [properties] on field [_doc]".into(),
                    ))
                })?;
                mapping.properties = parse_properties(props, "").map_err(wrap)?;
            }
            "dynamic" => {
                mapping.dynamic = Some(Dynamic::parse(val).ok_or_else(|| {
                    wrap(mapper_parsing(format!(
                        "Could not convert [dynamic] to boolean or [runtime]: {}",
                        java_map_string(val)
                    )))
                })?);
            }
            "date_detection" => {
                mapping.date_detection = Some(bool_param(val, "date_detection").map_err(wrap)?)
            }
            "numeric_detection" => {
                mapping.numeric_detection =
                    Some(bool_param(val, "numeric_detection").map_err(wrap)?)
            }
            "dynamic_templates" => {
                crate::dyn_templates::parse(Some(val)).map_err(wrap)?;
                mapping.other.insert(k.clone(), val.clone());
            }
            other if ROOT_PARAMS.contains(&other) => {
                mapping.other.insert(k.clone(), val.clone());
            }
            _ => unsupported.push(format!("{k} : {}", java_map_string(val))),
        }
    }
    if !unsupported.is_empty() {
        return Err(wrap(mapper_parsing(format!(
            "Root mapping definition has unsupported parameters:  [{}]",
            unsupported.join("] [")
        ))));
    }
    Ok(mapping)
}

fn bool_param(v: &Value, name: &str) -> EsResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(mapper_parsing(format!(
            "Failed to parse value [{}] as only [true] or [false] are allowed for [{name}]",
            java_map_string(v)
        ))),
    }
}

fn parse_properties(props: &Map<String, Value>, prefix: &str) -> EsResult<BTreeMap<String, Field>> {
    let mut out: BTreeMap<String, Field> = BTreeMap::new();
    for (name, def) in props {
        if name.is_empty() {
            return Err(EsError::illegal_argument(
                "field name cannot be an empty string",
            ));
        }
        if name.trim().is_empty() {
            return Err(EsError::illegal_argument(
                "field name cannot contain only whitespace: ['".to_string() + name + "']",
            ));
        }
        let parts: Vec<&str> = name.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(EsError::illegal_argument(format!(
                "field name cannot contain only dots: [{name}]"
            )));
        }
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let field = parse_field(&full, def)?;
        // "a.b": {...} declares object "a" with field "b".
        let mut target = &mut out;
        let (last, init) = match parts.split_last() {
            Some(x) => x,
            None => continue,
        };
        for p in init {
            let entry = target.entry((*p).to_string()).or_insert_with(Field::object);
            if !entry.kind.is_object() {
                return Err(EsError::illegal_argument(format!(
                    "mapper [{p}] cannot be changed from type [{}] to [object]",
                    entry.type_str()
                )));
            }
            target = &mut entry.properties;
        }
        target.insert((*last).to_string(), field);
    }
    Ok(out)
}

fn parse_field(full: &str, def: &Value) -> EsResult<Field> {
    let m = def.as_object().ok_or_else(|| {
        mapper_parsing(format!(
            "Expected map for property [fields] on field [{full}] but got a class java.lang.String"
        ))
    })?;
    let type_name = match m.get("type") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(other) => {
            return Err(mapper_parsing(format!(
                "No handler for type [{}] declared on field [{full}]",
                java_map_string(other)
            )))
        }
        None => None,
    };
    let kind = match &type_name {
        Some(t) => Kind::from_type(t).ok_or_else(|| {
            mapper_parsing(format!(
                "No handler for type [{t}] declared on field [{full}]"
            ))
        })?,
        None => Kind::Object,
    };
    let mut field = Field {
        kind,
        type_name: type_name.clone(),
        dynamic: None,
        properties: BTreeMap::new(),
        fields: BTreeMap::new(),
        params: Map::new(),
    };
    let allowed: Vec<&str> = match kind {
        Kind::Object | Kind::Nested => OBJECT_PARAMS.to_vec(),
        Kind::Text => [COMMON_PARAMS, TEXT_PARAMS, &["type"]].concat(),
        Kind::Keyword => [COMMON_PARAMS, KEYWORD_PARAMS, &["type"]].concat(),
        Kind::Date | Kind::DateNanos => [COMMON_PARAMS, DATE_PARAMS, &["type"]].concat(),
        Kind::Boolean => [COMMON_PARAMS, &["type"]].concat(),
        Kind::Opaque | Kind::GeoPoint => Vec::new(),
        _ => [COMMON_PARAMS, NUMERIC_PARAMS, &["type"]].concat(),
    };
    for (k, v) in m {
        if !matches!(kind, Kind::Opaque | Kind::GeoPoint) && !allowed.contains(&k.as_str()) {
            return Err(mapper_parsing(format!(
                "unknown parameter [{k}] on mapper [{full}] of type [{}]",
                type_name.as_deref().unwrap_or("object")
            )));
        }
        match k.as_str() {
            "type" => {}
            "properties" if kind.is_object() => {
                let props = v.as_object().ok_or_else(|| {
                    mapper_parsing(format!(
                        "Expected map for property [properties] on field [{full}]"
                    ))
                })?;
                field.properties = parse_properties(props, full)?;
            }
            "dynamic" if kind.is_object() => {
                field.dynamic = Some(Dynamic::parse(v).ok_or_else(|| {
                    mapper_parsing(format!("Could not convert [{full}.dynamic] to boolean"))
                })?);
            }
            "fields" if kind != Kind::Opaque => {
                let fields = v.as_object().ok_or_else(|| {
                    mapper_parsing(format!(
                        "Expected map for property [fields] on field [{full}]"
                    ))
                })?;
                for (fname, fdef) in fields {
                    if fname.is_empty() {
                        return Err(EsError::illegal_argument(
                            "field name cannot be an empty string",
                        ));
                    }
                    let sub = parse_field(&format!("{full}.{fname}"), fdef)?;
                    if sub.kind.is_object() {
                        return Err(mapper_parsing(format!(
                            "Type [{}] cannot be used in multi field",
                            sub.type_str()
                        )));
                    }
                    field.fields.insert(fname.clone(), sub);
                }
            }
            _ => {
                field.params.insert(k.clone(), v.clone());
            }
        }
    }
    if matches!(kind, Kind::Date | Kind::DateNanos) {
        if let Some(f) = field.params.get("format") {
            let text = f.as_str().map_or_else(|| f.to_string(), str::to_string);
            crate::datefmt::DateFormat::new(&text).map_err(|e| {
                mapper_parsing(format!("Error parsing [format] on field [{full}]: {e}"))
            })?;
        }
    }
    if kind == Kind::ScaledFloat && !field.params.contains_key("scaling_factor") {
        return Err(mapper_parsing(format!(
            "Field [scaling_factor] is required for field [{full}]"
        )));
    }
    Ok(field)
}

impl Mapping {
    /// `_routing: {doc_values: true}`: the routing is kept as doc values, not as a stored
    /// field, so responses leave `_routing` out of a hit's or document's metadata.
    pub fn routing_in_doc_values(&self) -> bool {
        self.other
            .get("_routing")
            .and_then(|r| r.get("doc_values"))
            .is_some_and(|v| v == &Value::Bool(true) || v == "true")
    }

    /// The mapping as `GET /{index}/_mapping` shows it.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(d) = self.dynamic {
            m.insert("dynamic".into(), d.to_json());
        }
        if let Some(d) = self.date_detection {
            m.insert("date_detection".into(), Value::Bool(d));
        }
        if let Some(d) = self.numeric_detection {
            m.insert("numeric_detection".into(), Value::Bool(d));
        }
        for (k, v) in &self.other {
            m.insert(k.clone(), v.clone());
        }
        if !self.properties.is_empty() {
            let p: Map<String, Value> = self
                .properties
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            m.insert("properties".into(), Value::Object(p));
        }
        Value::Object(m)
    }

    /// Merges a mapping update (`PUT /{index}/_mapping`) into this mapping.
    pub fn merge(&mut self, update: &Mapping) -> EsResult<()> {
        let mut merged = self.clone();
        merge_props(&mut merged.properties, &update.properties, "")?;
        if update.dynamic.is_some() {
            merged.dynamic = update.dynamic;
        }
        if update.date_detection.is_some() {
            merged.date_detection = update.date_detection;
        }
        if update.numeric_detection.is_some() {
            merged.numeric_detection = update.numeric_detection;
        }
        for (k, v) in &update.other {
            merged.other.insert(k.clone(), v.clone());
        }
        *self = merged;
        Ok(())
    }

    /// Applies dynamic updates found by [`check_source`].
    pub fn apply_updates(&mut self, updates: &[DynamicUpdate]) -> EsResult<()> {
        for u in updates {
            let mut props = &mut self.properties;
            let Some((last, init)) = u.path.split_last() else {
                continue;
            };
            for p in init {
                let entry = props.entry(p.clone()).or_insert_with(Field::object);
                if !entry.kind.is_object() {
                    return Err(EsError::illegal_argument(format!(
                        "mapper [{}] cannot be changed from type [{}] to [object]",
                        u.path.join("."),
                        entry.type_str()
                    )));
                }
                props = &mut entry.properties;
            }
            let new_field = u.field.clone().unwrap_or_else(|| u.kind.field());
            match props.get(last) {
                Some(existing) => {
                    if existing.kind.is_object() != new_field.kind.is_object()
                        || (!existing.kind.is_object() && existing.kind != new_field.kind)
                    {
                        // Another document mapped the field first: re-checking decides.
                        return Err(EsError::illegal_argument(format!(
                            "mapper [{}] cannot be changed from type [{}] to [{}]",
                            u.path.join("."),
                            existing.type_str(),
                            new_field.type_str()
                        )));
                    }
                }
                None => {
                    props.insert(last.clone(), new_field);
                }
            }
        }
        Ok(())
    }

    fn root_dynamic(&self) -> Dynamic {
        self.dynamic.unwrap_or(Dynamic::True)
    }
}

fn merge_props(
    into: &mut BTreeMap<String, Field>,
    from: &BTreeMap<String, Field>,
    prefix: &str,
) -> EsResult<()> {
    for (name, f) in from {
        let full = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match into.get_mut(name) {
            None => {
                into.insert(name.clone(), f.clone());
            }
            Some(existing) => {
                if existing.type_str() != f.type_str() {
                    return Err(EsError::illegal_argument(format!(
                        "mapper [{full}] cannot be changed from type [{}] to [{}]",
                        existing.type_str(),
                        f.type_str()
                    )));
                }
                if existing.kind.is_object() {
                    merge_props(&mut existing.properties, &f.properties, &full)?;
                    if f.dynamic.is_some() {
                        existing.dynamic = f.dynamic;
                    }
                } else {
                    for (k, v) in &f.params {
                        existing.params.insert(k.clone(), v.clone());
                    }
                    for (k, v) in &f.fields {
                        existing.fields.insert(k.clone(), v.clone());
                    }
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Field resolution for search.

/// What a field name in a query refers to.
#[derive(Debug, Clone)]
pub enum FieldRef<'m> {
    /// `_id`.
    Id,
    /// `_index`.
    Index,
    /// `_routing`.
    Routing,
    /// A mapped field: the path of its value in `_source` and its (multi-)field mapping.
    Field {
        /// Dotted path in `_source`.
        path: String,
        /// The field mapping used for matching.
        field: &'m Field,
    },
    /// Not mapped.
    Unmapped,
}

/// Resolves a field name (`a.b`, `title.keyword`, `_id`) against a mapping.
pub fn resolve_field<'m>(m: &'m Mapping, name: &str) -> FieldRef<'m> {
    match name {
        "_id" => return FieldRef::Id,
        "_index" => return FieldRef::Index,
        "_routing" => return FieldRef::Routing,
        _ => {}
    }
    let parts: Vec<&str> = name.split('.').collect();
    let mut props = &m.properties;
    let mut i = 0;
    while let Some(p) = parts.get(i) {
        let Some(f) = props.get(*p) else {
            return FieldRef::Unmapped;
        };
        let is_last = i + 1 == parts.len();
        if is_last {
            return FieldRef::Field {
                path: name.to_string(),
                field: f,
            };
        }
        if f.kind.is_object() {
            if f.is_disabled() {
                // Nothing under `enabled: false` is indexed.
                return FieldRef::Unmapped;
            }
            props = &f.properties;
            i += 1;
            continue;
        }
        // A multi-field: exactly one more part.
        if i + 2 == parts.len() {
            if let Some(sub) = parts.get(i + 1).and_then(|s| f.fields.get(*s)) {
                return FieldRef::Field {
                    path: parts.get(..=i).unwrap_or_default().join("."),
                    field: sub,
                };
            }
        }
        return FieldRef::Unmapped;
    }
    FieldRef::Unmapped
}

/// All leaf field names matching a pattern (`*`, `include.*`), with multi-fields.
pub fn leaf_fields(m: &Mapping) -> Vec<String> {
    fn rec(props: &BTreeMap<String, Field>, prefix: &str, out: &mut Vec<String>) {
        for (k, f) in props {
            let full = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if f.kind.is_object() {
                rec(&f.properties, &full, out);
            } else {
                out.push(full.clone());
                for sub in f.fields.keys() {
                    out.push(format!("{full}.{sub}"));
                }
            }
        }
    }
    let mut out = Vec::new();
    rec(&m.properties, "", &mut out);
    out
}

// ---------------------------------------------------------------------------------------
// Document checking with dynamic mapping.

/// A new field kind introduced by dynamic mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKind {
    /// Object.
    Object,
    /// Text with a `keyword` sub-field.
    Text,
    /// A plain keyword (`index.mapping.dynamic_strings.auto_text: false`).
    Keyword,
    /// Long.
    Long,
    /// Float.
    Float,
    /// Boolean.
    Boolean,
    /// Date.
    Date,
    /// Made by a dynamic template: the field is the walker's (and the update's) own.
    Templated(usize),
}

impl NewKind {
    fn field(self) -> Field {
        match self {
            NewKind::Object => Field::object(),
            NewKind::Text => {
                let mut f = Field::leaf("text", Kind::Text);
                let mut kw = Field::leaf("keyword", Kind::Keyword);
                kw.params.insert("ignore_above".into(), Value::from(256));
                f.fields.insert("keyword".into(), kw);
                f
            }
            NewKind::Keyword => Field::leaf("keyword", Kind::Keyword),
            NewKind::Long => Field::leaf("long", Kind::Long),
            NewKind::Float => Field::leaf("float", Kind::Float),
            NewKind::Boolean => Field::leaf("boolean", Kind::Boolean),
            NewKind::Date => Field::leaf("date", Kind::Date),
            NewKind::Templated(_) => Field::object(),
        }
    }

    fn kind(self) -> Kind {
        match self {
            NewKind::Object => Kind::Object,
            NewKind::Text => Kind::Text,
            NewKind::Keyword => Kind::Keyword,
            NewKind::Long => Kind::Long,
            NewKind::Float => Kind::Float,
            NewKind::Boolean => Kind::Boolean,
            NewKind::Date => Kind::Date,
            NewKind::Templated(_) => Kind::Opaque,
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            NewKind::Object => "object",
            NewKind::Text => "text",
            NewKind::Keyword => "keyword",
            NewKind::Long => "long",
            NewKind::Float => "float",
            NewKind::Boolean => "boolean",
            NewKind::Date => "date",
            NewKind::Templated(_) => "object",
        }
    }
}

/// A mapping addition found while checking a document.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicUpdate {
    /// Path segments of the new field.
    pub path: Vec<String>,
    /// Its kind.
    pub kind: NewKind,
    /// The field a dynamic template made (else the kind's default field).
    pub field: Option<Field>,
}

/// A scalar JSON value seen in a document.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    I(i64),
    U(u64),
    F(f64),
    S(&'a str),
}

impl Scalar<'_> {
    fn preview(&self) -> String {
        match self {
            Scalar::Null => "null".into(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::I(i) => i.to_string(),
            Scalar::U(u) => u.to_string(),
            Scalar::F(f) => f.to_string(),
            Scalar::S(s) => s.chars().take(20).collect(),
        }
    }
}

/// Why a value does not fit a field type (the `caused_by` reason), or `None` if it fits.
fn scalar_mismatch(
    kind: Kind,
    params: Option<&Map<String, Value>>,
    v: Scalar<'_>,
) -> Option<String> {
    let range = |lo: f64, hi: f64, name: &str, f: f64, text: String| -> Option<String> {
        if f < lo || f > hi {
            Some(format!("Value [{text}] is out of range for {name}"))
        } else {
            None
        }
    };
    let num = |s: &str| -> Result<f64, String> {
        let t = s;
        match t.parse::<f64>() {
            Ok(f)
                if !t.is_empty()
                    && !t.starts_with(char::is_whitespace)
                    && !t.ends_with(char::is_whitespace) =>
            {
                Ok(f)
            }
            _ => Err(format!("For input string: \"{s}\"")),
        }
    };
    match kind {
        Kind::Object
        | Kind::Nested
        | Kind::Text
        | Kind::Keyword
        | Kind::Opaque
        | Kind::GeoPoint => None,
        Kind::Ip => match v {
            Scalar::Null => None,
            Scalar::S(s) => field_checks::ip_mismatch(s),
            other => field_checks::ip_mismatch(&other.preview()),
        },
        Kind::Boolean => match v {
            Scalar::Null | Scalar::Bool(_) => None,
            Scalar::S("true") | Scalar::S("false") | Scalar::S("") => None,
            Scalar::S(s) => Some(format!("Failed to parse value [{s}] as only [true] or [false] are allowed.")),
            other => Some(format!(
                "Failed to parse value [{}] as only [true] or [false] are allowed.",
                other.preview()
            )),
        },
        Kind::Date | Kind::DateNanos
            if params.and_then(crate::datefmt::field_format).is_some() =>
        {
            // A custom format parses every value, numbers included (as their text).
            let df = params.and_then(crate::datefmt::field_format)?;
            let text = match v {
                Scalar::Null => return None,
                Scalar::S(s) => s.to_string(),
                Scalar::I(i) => i.to_string(),
                Scalar::U(u) => u.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::Bool(b) => b.to_string(),
            };
            match df.parse(&text) {
                Some(_) => None,
                None => Some(format!(
                    "failed to parse date field [{text}] with format [{}]",
                    df.text()
                )),
            }
        }
        Kind::Date | Kind::DateNanos => match v {
            Scalar::Null | Scalar::I(_) | Scalar::U(_) | Scalar::F(_) => None,
            Scalar::S(s) => {
                if parse_date(s).is_some() || (!s.is_empty() && s.trim_start_matches('-').bytes().all(|b| b.is_ascii_digit()) && s.len() < 20) {
                    None
                } else {
                    Some(format!(
                        "failed to parse date field [{s}] with format [strict_date_optional_time||epoch_millis]"
                    ))
                }
            }
            Scalar::Bool(b) => Some(format!(
                "failed to parse date field [{b}] with format [strict_date_optional_time||epoch_millis]"
            )),
        },
        _ => {
            // Numeric kinds.
            let (f, text) = match v {
                Scalar::Null => return None,
                Scalar::Bool(b) => {
                    return Some(format!(
                        "Current token (VALUE_{}) not numeric, can not use numeric value accessors",
                        if b { "TRUE" } else { "FALSE" }
                    ))
                }
                Scalar::I(i) => (i as f64, i.to_string()),
                Scalar::U(u) => (u as f64, u.to_string()),
                Scalar::F(f) => (f, f.to_string()),
                Scalar::S(s) => match num(s) {
                    Ok(f) => (f, s.to_string()),
                    Err(e) => return Some(e),
                },
            };
            if !f.is_finite() {
                return Some(format!("[{}] supports only finite values, but got [{text}]", kind_name(kind)));
            }
            match kind {
                Kind::Long => {
                    if let Scalar::U(u) = v {
                        if u > i64::MAX as u64 {
                            return Some(format!("Value [{u}] is out of range for a long"));
                        }
                        return None;
                    }
                    range(-9.223372036854776e18, 9.223372036854776e18, "a long", f, text)
                }
                Kind::Integer => range(-2147483648.0, 2147483647.0, "an integer", f, text),
                Kind::Short => range(-32768.0, 32767.0, "a short", f, text),
                Kind::Byte => range(-128.0, 127.0, "a byte", f, text),
                Kind::UnsignedLong => range(0.0, 1.8446744073709552e19, "an unsigned_long", f, text),
                Kind::Float | Kind::HalfFloat => {
                    if (f as f32).is_finite() {
                        None
                    } else {
                        Some(format!("[{}] supports only finite values, but got [{text}]", kind_name(kind)))
                    }
                }
                _ => None,
            }
        }
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Float => "float",
        Kind::HalfFloat => "half_float",
        Kind::Double => "double",
        Kind::ScaledFloat => "scaled_float",
        _ => "number",
    }
}

/// A pending error: the exception without its `[line:col]` prefix.
struct Pending {
    kind: &'static str,
    reason: String,
    cause: Option<EsError>,
    /// Whether the reason gets the `[line:col]` of the parser (document parsing errors do,
    /// mapping errors do not).
    located: bool,
}

struct Walker<'m> {
    mapping: &'m Mapping,
    opts: CheckOpts,
    /// The mapping's dynamic templates.
    templates: Vec<crate::dyn_templates::Template>,
    /// The document's `dynamic_templates` (field path to template name).
    named: Option<&'m BTreeMap<String, String>>,
    /// Fields dynamic templates made for this document (`NewKind::Templated`).
    made: Vec<Field>,
    id: &'m str,
    updates: Vec<DynamicUpdate>,
    error: Option<Pending>,
    depth: usize,
}

const MAX_DEPTH: usize = 100;

#[derive(Clone, Copy)]
enum Node<'m> {
    Mapped(&'m BTreeMap<String, Field>, Dynamic),
    New(Dynamic),
}

#[derive(Clone, Copy)]
enum Target<'m> {
    Field(&'m Field, Dynamic),
    Pending(NewKind, Dynamic),
    Unmapped(Dynamic),
}

impl<'m> Walker<'m> {
    fn pending(&self, path: &str) -> Option<NewKind> {
        self.updates
            .iter()
            .find(|u| joined_eq(&u.path, path))
            .map(|u| u.kind)
    }

    fn resolve(&self, node: Node<'m>, path: &str, key: &str) -> Target<'m> {
        match node {
            Node::Mapped(props, dynamic) => match props.get(key) {
                Some(f) => Target::Field(f, f.dynamic.unwrap_or(dynamic)),
                None => match self.pending(path) {
                    Some(k) => Target::Pending(k, dynamic),
                    None => Target::Unmapped(dynamic),
                },
            },
            Node::New(dynamic) => match self.pending(path) {
                Some(k) => Target::Pending(k, dynamic),
                None => Target::Unmapped(dynamic),
            },
        }
    }

    fn fail<E: de::Error>(
        &mut self,
        kind: &'static str,
        reason: String,
        cause: Option<EsError>,
    ) -> E {
        if self.error.is_none() {
            self.error = Some(Pending {
                kind,
                reason,
                cause,
                located: true,
            });
        }
        E::custom("mapping")
    }

    /// A mapping error (no `[line:col]`), such as a field name over the length limit.
    fn mapping_error<E: de::Error>(&mut self, kind: &'static str, reason: String) -> E {
        if self.error.is_none() {
            self.error = Some(Pending {
                kind,
                reason,
                cause: None,
                located: false,
            });
        }
        E::custom("mapping")
    }

    /// Checks a scalar against a mapped leaf field: its type's rules, `date_nanos`'s range,
    /// and `ignore_malformed`.
    fn check_leaf<E: de::Error>(&mut self, f: &Field, path: &str, v: Scalar<'_>) -> Result<(), E> {
        let mut cause = scalar_mismatch(f.kind, Some(&f.params), v);
        if cause.is_none() && f.type_str() == "date_nanos" {
            cause = date_nanos_of(&f.params, v).and_then(field_checks::date_nanos_mismatch);
        }
        match cause {
            None => Ok(()),
            Some(_) if field_checks::ignores_malformed(f.type_str(), &f.params, &self.opts) => {
                Ok(())
            }
            Some(cause) => Err(self.field_error(path, f.type_str(), v.preview(), cause)),
        }
    }

    /// Whether a new field's name fits `index.mapping.field_name_length.limit`: `Ok(true)`
    /// to add it, `Ok(false)` to leave it out (with `ignore_dynamic_beyond_limit`).
    fn name_fits<E: de::Error>(&mut self, key: &str) -> Result<bool, E> {
        match self.opts.field_name_limit {
            Some(limit) if key.chars().count() as u64 > limit => {
                if self.opts.ignore_long_dynamic_names {
                    Ok(false)
                } else {
                    Err(self.mapping_error(
                        "illegal_argument_exception",
                        field_checks::long_name_message(key, limit),
                    ))
                }
            }
            _ => Ok(true),
        }
    }

    fn field_error<E: de::Error>(
        &mut self,
        path: &str,
        type_name: &str,
        preview: String,
        cause: String,
    ) -> E {
        let reason = format!(
            "failed to parse field [{path}] of type [{type_name}] in document with id '{}'. Preview of field's value: '{preview}'",
            self.id
        );
        self.fail(
            "document_parsing_exception",
            reason,
            Some(EsError::illegal_argument(cause)),
        )
    }

    fn strict_error<E: de::Error>(&mut self, path: &str, key: &str) -> E {
        let parent = match path.rfind('.') {
            Some(p) => path.get(..p).unwrap_or("_doc").to_string(),
            None => "_doc".to_string(),
        };
        let reason = format!("mapping set to strict, dynamic introduction of [{key}] within [{parent}] is not allowed");
        self.fail("strict_dynamic_mapping_exception", reason, None)
    }

    /// The field a dynamic template makes for a new field: `None` without a template,
    /// `Some(None)` for a `runtime` template (not indexed), or the error of a template the
    /// document names but the mapping does not have.
    fn template_field<E: de::Error>(
        &mut self,
        path: &str,
        key: &str,
        ty: crate::dyn_templates::DynType,
    ) -> Result<Option<Option<Field>>, E> {
        if self.templates.is_empty() && self.named.is_none() {
            return Ok(None);
        }
        let found = crate::dyn_templates::find(&self.templates, self.named, path, key, ty);
        match found {
            Err(msg) => Err(self.fail(
                "document_parsing_exception",
                format!("failed to parse: {msg}"),
                Some(EsError::illegal_argument(msg.clone())),
            )),
            Ok(None) => Ok(None),
            Ok(Some(t)) if t.runtime => Ok(Some(None)),
            Ok(Some(t)) => {
                let def = t.field_definition(key, ty);
                match parse_field(path, &def) {
                    Ok(f) => Ok(Some(Some(f))),
                    Err(e) => Err(self.fail(
                        "document_parsing_exception",
                        format!("failed to parse: {}", e.reason),
                        Some(e),
                    )),
                }
            }
        }
    }

    fn add_templated(&mut self, path: &str, field: Field) {
        let i = self.made.len();
        self.made.push(field.clone());
        self.updates.push(DynamicUpdate {
            path: path.split('.').map(str::to_string).collect(),
            kind: NewKind::Templated(i),
            field: Some(field),
        });
    }

    /// A new object at `path` (under `dynamic: true`), through a template if one applies.
    fn new_object<E: de::Error>(&mut self, path: &str, key: &str) -> Result<NewObj, E> {
        if !self.name_fits(key)? {
            return Ok(NewObj::Skip);
        }
        match self.template_field(path, key, crate::dyn_templates::DynType::Object)? {
            None => {
                self.add(path, NewKind::Object);
                Ok(NewObj::Object(Dynamic::True))
            }
            Some(None) => Ok(NewObj::Skip),
            Some(Some(f)) => {
                let i = self.made.len();
                let outcome = if f.kind.is_object() {
                    NewObj::Object(f.dynamic.unwrap_or(Dynamic::True))
                } else {
                    NewObj::Leaf(i)
                };
                self.add_templated(path, f);
                Ok(outcome)
            }
        }
    }

    fn add(&mut self, path: &str, kind: NewKind) {
        self.updates.push(DynamicUpdate {
            path: path.split('.').map(str::to_string).collect(),
            kind,
            field: None,
        });
    }

    fn new_kind_for(&self, v: Scalar<'_>) -> Option<NewKind> {
        match v {
            Scalar::Null => None,
            Scalar::Bool(_) => Some(NewKind::Boolean),
            Scalar::I(_) => Some(NewKind::Long),
            Scalar::U(u) => Some(if u > i64::MAX as u64 {
                NewKind::Float
            } else {
                NewKind::Long
            }),
            Scalar::F(_) => Some(NewKind::Float),
            Scalar::S(s) => {
                if self.mapping.numeric_detection == Some(true) {
                    if s.parse::<i64>().is_ok() {
                        return Some(NewKind::Long);
                    }
                    if s.parse::<f64>().is_ok() {
                        return Some(NewKind::Float);
                    }
                }
                if self.mapping.date_detection != Some(false) && parse_date(s).is_some() {
                    Some(NewKind::Date)
                } else if self.opts.auto_text {
                    Some(NewKind::Text)
                } else {
                    Some(NewKind::Keyword)
                }
            }
        }
    }

    fn scalar<E: de::Error>(
        &mut self,
        target: Target<'m>,
        path: &str,
        key: &str,
        v: Scalar<'_>,
    ) -> Result<(), E> {
        match target {
            Target::Field(f, _) => {
                if f.kind.is_object() {
                    if matches!(v, Scalar::Null) {
                        return Ok(());
                    }
                    let reason = format!(
                        "object mapping for [{path}] tried to parse field [{key}] as object, but found a concrete value"
                    );
                    return Err(self.fail("document_parsing_exception", reason, None));
                }
                self.check_leaf(f, path, v)
            }
            Target::Pending(NewKind::Templated(i), _) => {
                let Some(f) = self.made.get(i).cloned() else {
                    return Ok(());
                };
                if f.kind.is_object() {
                    if matches!(v, Scalar::Null) {
                        return Ok(());
                    }
                    let reason = format!(
                        "object mapping for [{path}] tried to parse field [{key}] as object, but found a concrete value"
                    );
                    return Err(self.fail("document_parsing_exception", reason, None));
                }
                self.check_leaf(&f, path, v)
            }
            Target::Pending(k, _) => {
                if k == NewKind::Object {
                    if matches!(v, Scalar::Null) {
                        return Ok(());
                    }
                    let reason = format!(
                        "object mapping for [{path}] tried to parse field [{key}] as object, but found a concrete value"
                    );
                    return Err(self.fail("document_parsing_exception", reason, None));
                }
                if let Some(cause) = scalar_mismatch(k.kind(), None, v) {
                    return Err(self.field_error(path, k.type_name(), v.preview(), cause));
                }
                Ok(())
            }
            Target::Unmapped(d) => match d {
                Dynamic::True => {
                    let Some(k) = self.new_kind_for(v) else {
                        return Ok(());
                    };
                    if !self.name_fits(key)? {
                        return Ok(());
                    }
                    match self.template_field(path, key, dyn_type_of(k))? {
                        None => self.add(path, k),
                        Some(None) => {}
                        Some(Some(f)) => {
                            if f.kind.is_object() {
                                let reason = format!(
                                    "object mapping for [{path}] tried to parse field [{key}] as object, but found a concrete value"
                                );
                                return Err(self.fail("document_parsing_exception", reason, None));
                            }
                            self.check_leaf(&f, path, v)?;
                            self.add_templated(path, f);
                        }
                    }
                    Ok(())
                }
                Dynamic::Strict => {
                    if matches!(v, Scalar::Null) {
                        return Ok(());
                    }
                    Err(self.strict_error(path, key))
                }
                Dynamic::False | Dynamic::Runtime => Ok(()),
            },
        }
    }
}

fn joined_eq(parts: &[String], path: &str) -> bool {
    let mut rest = path;
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            match rest.strip_prefix('.') {
                Some(r) => rest = r,
                None => return false,
            }
        }
        match rest.strip_prefix(p.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    rest.is_empty()
}

enum Key<'de> {
    B(&'de str),
    O(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::B(s) => s,
            Key::O(s) => s,
        }
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
        Ok(Key::B(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
        Ok(Key::O(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
        Ok(Key::O(v))
    }
}

/// Walks an object at `node`, whose path is `path` (empty at the root).
struct ObjSeed<'w, 'm> {
    w: &'w mut Walker<'m>,
    node: Node<'m>,
    path: String,
}

impl<'de> DeserializeSeed<'de> for ObjSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let w = self.w;
        w.depth += 1;
        if w.depth > MAX_DEPTH {
            let reason = format!("The depth limit of [{MAX_DEPTH}] has been exceeded");
            return Err(w.fail("document_parsing_exception", reason, None));
        }
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let key = key.as_str();
            if key.is_empty() {
                return Err(w.fail(
                    "document_parsing_exception",
                    "failed to parse: field name cannot be an empty string".into(),
                    Some(EsError::illegal_argument(
                        "field name cannot be an empty string",
                    )),
                ));
            }
            // Fast path: a mapped leaf field needs no path unless it fails.
            if !key.contains('.') {
                if let Node::Mapped(props, _) = self.node {
                    if let Some(f) = props.get(key).filter(|f| !f.kind.is_object()) {
                        map.next_value_seed(LeafSeed {
                            w: &mut *w,
                            field: f,
                            parent: &self.path,
                            key,
                        })?;
                        continue;
                    }
                }
            }
            // Dotted keys walk (and create) intermediate objects.
            let mut node = self.node;
            let mut path = self.path.clone();
            let mut parts = key.split('.').peekable();
            let mut skip = false;
            // The value was read while walking the key (a template made a leaf of a part).
            let mut consumed = false;
            let mut last = "";
            while let Some(part) = parts.next() {
                if part.is_empty() {
                    return Err(w.fail(
                        "document_parsing_exception",
                        format!("failed to parse: field name cannot contain only dots: [{key}]"),
                        Some(EsError::illegal_argument(format!(
                            "field name cannot contain only dots: [{key}]"
                        ))),
                    ));
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(part);
                if parts.peek().is_none() {
                    last = part;
                    break;
                }
                match w.resolve(node, &path, part) {
                    Target::Field(f, d) if f.kind.is_object() => {
                        node = Node::Mapped(&f.properties, d)
                    }
                    Target::Field(f, _) => {
                        let reason = format!(
                            "Could not dynamically add mapping for field [{key}]. Existing mapping for [{path}] must be of type object but found [{}].",
                            f.type_str()
                        );
                        return Err(w.fail("document_parsing_exception", reason, None));
                    }
                    Target::Pending(NewKind::Object, d) => node = Node::New(d),
                    Target::Pending(NewKind::Templated(i), d)
                        if w.made.get(i).is_some_and(|f| f.kind.is_object()) =>
                    {
                        node = Node::New(w.made.get(i).and_then(|f| f.dynamic).unwrap_or(d));
                    }
                    Target::Pending(k, _) => {
                        let type_name = match k {
                            NewKind::Templated(i) => w
                                .made
                                .get(i)
                                .map_or("object".to_string(), |f| f.type_str().to_string()),
                            other => other.type_name().to_string(),
                        };
                        let reason = format!(
                            "Could not dynamically add mapping for field [{key}]. Existing mapping for [{path}] must be of type object but found [{type_name}]."
                        );
                        return Err(w.fail("document_parsing_exception", reason, None));
                    }
                    Target::Unmapped(Dynamic::True) => match w.new_object(&path, part)? {
                        NewObj::Object(d) => node = Node::New(d),
                        NewObj::Skip => {
                            skip = true;
                            break;
                        }
                        NewObj::Leaf(i) => {
                            // A template made a leaf of what the dotted key makes an object:
                            // the value is the object `{rest: value}`.
                            let rest: Vec<&str> = parts.collect();
                            let value: Value = map.next_value()?;
                            consumed = true;
                            let Some(f) = w.made.get(i).cloned() else {
                                break;
                            };
                            if matches!(f.kind, Kind::Opaque | Kind::GeoPoint) {
                                break;
                            }
                            let mut obj = value;
                            for p in rest.iter().rev() {
                                let mut m = Map::new();
                                m.insert((*p).to_string(), obj);
                                obj = Value::Object(m);
                            }
                            let preview: String =
                                field_checks::java_preview(&obj).chars().take(20).collect();
                            let cause = format!("Can't get text on a START_OBJECT at {path}");
                            // Elasticsearch reports this one without a parser location.
                            let e = w.field_error::<A::Error>(&path, f.type_str(), preview, cause);
                            if let Some(p) = w.error.as_mut() {
                                p.located = false;
                            }
                            return Err(e);
                        }
                    },
                    Target::Unmapped(Dynamic::Strict) => return Err(w.strict_error(&path, part)),
                    Target::Unmapped(_) => {
                        skip = true;
                        break;
                    }
                }
            }
            if consumed {
                continue;
            }
            if skip {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let target = w.resolve(node, &path, last);
            map.next_value_seed(ValueSeed {
                w: &mut *w,
                target,
                path: &path,
                key: last,
            })?;
        }
        w.depth -= 1;
        Ok(())
    }
}

/// Walks a value of a mapped leaf field (the common case), building its path only for
/// errors.
struct LeafSeed<'w, 'm, 'p> {
    w: &'w mut Walker<'m>,
    field: &'m Field,
    parent: &'p str,
    key: &'p str,
}

impl LeafSeed<'_, '_, '_> {
    fn path(&self) -> String {
        if self.parent.is_empty() {
            self.key.to_string()
        } else {
            format!("{}.{}", self.parent, self.key)
        }
    }

    fn check<E: de::Error>(self, v: Scalar<'_>) -> Result<(), E> {
        // The path is built only when the value does not fit.
        if scalar_mismatch(self.field.kind, Some(&self.field.params), v).is_none()
            && self.field.type_str() != "date_nanos"
        {
            return Ok(());
        }
        let path = self.path();
        self.w.check_leaf(self.field, &path, v)
    }
}

impl<'de> DeserializeSeed<'de> for LeafSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LeafSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.check(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.check(Scalar::I(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.check(Scalar::U(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.check(Scalar::F(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.check(Scalar::S(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let w = self.w;
        w.depth += 1;
        if w.depth > MAX_DEPTH {
            let reason = format!("The depth limit of [{MAX_DEPTH}] has been exceeded");
            return Err(w.fail("document_parsing_exception", reason, None));
        }
        while seq
            .next_element_seed(LeafSeed {
                w: &mut *w,
                field: self.field,
                parent: self.parent,
                key: self.key,
            })?
            .is_some()
        {}
        w.depth -= 1;
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let path = self.path();
        let target = Target::Field(self.field, Dynamic::True);
        ValueSeed {
            w: self.w,
            target,
            path: &path,
            key: self.key,
        }
        .visit_map(map)
    }
}

/// Walks one value of the field at `path`.
struct ValueSeed<'w, 'm, 'p> {
    w: &'w mut Walker<'m>,
    target: Target<'m>,
    path: &'p str,
    key: &'p str,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.w
            .scalar(self.target, self.path, self.key, Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.w
            .scalar(self.target, self.path, self.key, Scalar::I(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.w
            .scalar(self.target, self.path, self.key, Scalar::U(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.w
            .scalar(self.target, self.path, self.key, Scalar::F(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.w
            .scalar(self.target, self.path, self.key, Scalar::S(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.w
            .scalar(self.target, self.path, self.key, Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let w = self.w;
        w.depth += 1;
        if w.depth > MAX_DEPTH {
            let reason = format!("The depth limit of [{MAX_DEPTH}] has been exceeded");
            return Err(w.fail("document_parsing_exception", reason, None));
        }
        let original = self.target;
        loop {
            // A dynamic field added by an earlier element applies to the later ones.
            let target = match original {
                Target::Unmapped(d) => match w.pending(self.path) {
                    Some(k) => Target::Pending(k, d),
                    None => original,
                },
                other => other,
            };
            let seed = ValueSeed {
                w: &mut *w,
                target,
                path: self.path,
                key: self.key,
            };
            if seq.next_element_seed(seed)?.is_none() {
                break;
            }
        }
        w.depth -= 1;
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let w = self.w;
        let node = match self.target {
            // `enabled: false`: the object is kept in `_source` and not parsed at all.
            Target::Field(f, _) if f.kind.is_object() && f.is_disabled() => {
                drain_map(map)?;
                return Ok(());
            }
            Target::Field(f, d) if f.kind.is_object() => Node::Mapped(&f.properties, d),
            Target::Field(f, _) if matches!(f.kind, Kind::Opaque | Kind::GeoPoint) => {
                drain_map(map)?;
                return Ok(());
            }
            Target::Field(f, _) => {
                // `ignore_malformed` does not cover objects.
                let preview = object_preview(map)?;
                let cause = format!("Can't get text on a START_OBJECT at {}", self.path);
                return Err(w.field_error(self.path, f.type_str(), preview, cause));
            }
            Target::Pending(NewKind::Object, d) => Node::New(d),
            Target::Pending(NewKind::Templated(i), d) => {
                let Some(f) = w.made.get(i).cloned() else {
                    drain_map(map)?;
                    return Ok(());
                };
                if f.kind.is_object() {
                    Node::New(f.dynamic.unwrap_or(d))
                } else {
                    return templated_leaf_object(w, &f, self.path, map);
                }
            }
            Target::Pending(k, _) => {
                let cause = format!("Can't get text on a START_OBJECT at {}", self.path);
                return Err(w.field_error(self.path, k.type_name(), "{...}".into(), cause));
            }
            Target::Unmapped(Dynamic::True) => match w.new_object(self.path, self.key)? {
                NewObj::Object(d) => Node::New(d),
                NewObj::Skip => {
                    drain_map(map)?;
                    return Ok(());
                }
                NewObj::Leaf(i) => {
                    let Some(f) = w.made.get(i).cloned() else {
                        drain_map(map)?;
                        return Ok(());
                    };
                    return templated_leaf_object(w, &f, self.path, map);
                }
            },
            Target::Unmapped(Dynamic::Strict) => return Err(w.strict_error(self.path, self.key)),
            Target::Unmapped(_) => {
                drain_map(map)?;
                return Ok(());
            }
        };
        ObjSeed {
            w,
            node,
            path: self.path.to_string(),
        }
        .visit_map(map)
    }
}

/// What a new object field became.
enum NewObj {
    /// An object (with its `dynamic`).
    Object(Dynamic),
    /// Left out of the mapping.
    Skip,
    /// A leaf a dynamic template made (index into the walker's fields).
    Leaf(usize),
}

fn dyn_type_of(k: NewKind) -> crate::dyn_templates::DynType {
    use crate::dyn_templates::DynType;
    match k {
        NewKind::Text | NewKind::Keyword => DynType::String,
        NewKind::Long => DynType::Long,
        NewKind::Float => DynType::Double,
        NewKind::Boolean => DynType::Boolean,
        NewKind::Date => DynType::Date,
        NewKind::Object | NewKind::Templated(_) => DynType::Object,
    }
}

/// An object value for a leaf field a template made: stored for types that take objects
/// (`geo_point`, `flattened`, ...), an error otherwise.
fn templated_leaf_object<'de, A: MapAccess<'de>>(
    w: &mut Walker<'_>,
    f: &Field,
    path: &str,
    map: A,
) -> Result<(), A::Error> {
    if matches!(f.kind, Kind::Opaque | Kind::GeoPoint) {
        return drain_map(map);
    }
    let preview = object_preview(map)?;
    let cause = format!("Can't get text on a START_OBJECT at {path}");
    Err(w.field_error(path, f.type_str(), preview, cause))
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Reads the rest of an object for an error's value preview (`{object=wow}`).
fn object_preview<'de, A: MapAccess<'de>>(mut map: A) -> Result<String, A::Error> {
    let mut m = Map::new();
    while let Some((k, v)) = map.next_entry::<String, Value>()? {
        m.insert(k, v);
    }
    Ok(field_checks::java_preview(&Value::Object(m))
        .chars()
        .take(20)
        .collect())
}

/// A `date_nanos` value in nanoseconds since the epoch (`None` when it does not parse).
fn date_nanos_of(params: &Map<String, Value>, v: Scalar<'_>) -> Option<i128> {
    let text = match v {
        Scalar::S(s) => s.to_string(),
        Scalar::I(i) => return Some(i128::from(i) * 1_000_000),
        Scalar::U(u) => return Some(i128::from(u) * 1_000_000),
        Scalar::F(f) => return Some((f * 1e6) as i128),
        Scalar::Null | Scalar::Bool(_) => return None,
    };
    let ms = match crate::datefmt::field_format(params) {
        Some(df) => df.parse(&text)?,
        None => parse_date(&text).or_else(|| text.parse::<i64>().ok())?,
    };
    Some(i128::from(ms) * 1_000_000 + i128::from(field_checks::sub_millis_nanos(&text)))
}

/// Checks a document source against a mapping. Returns the dynamic mapping updates it
/// needs, or the error Elasticsearch reports (`document_parsing_exception`,
/// `strict_dynamic_mapping_exception`).
pub fn check_source(mapping: &Mapping, source: &[u8], id: &str) -> EsResult<Vec<DynamicUpdate>> {
    check_source_with(mapping, &CheckOpts::default(), None, source, id)
}

/// [`check_source`] with the index's checking options.
pub fn check_source_with(
    mapping: &Mapping,
    opts: &CheckOpts,
    named: Option<&BTreeMap<String, String>>,
    source: &[u8],
    id: &str,
) -> EsResult<Vec<DynamicUpdate>> {
    let templates =
        crate::dyn_templates::parse(mapping.other.get("dynamic_templates")).unwrap_or_default();
    let mut w = Walker {
        mapping,
        opts: *opts,
        templates,
        named,
        made: Vec::new(),
        id,
        updates: Vec::new(),
        error: None,
        depth: 0,
    };
    let mut de = serde_json::Deserializer::from_slice(source);
    let first_non_ws = source.iter().position(|b| !b.is_ascii_whitespace());
    let is_object = first_non_ws.and_then(|i| source.get(i)) == Some(&b'{');
    let result = if is_object {
        ObjSeed {
            w: &mut w,
            node: Node::Mapped(&mapping.properties, mapping.root_dynamic()),
            path: String::new(),
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
    } else {
        Err(de::Error::custom("not an object"))
    };
    match result {
        Ok(()) => Ok(w.updates),
        Err(e) => {
            let (line, col) = (e.line().max(1), e.column().max(1));
            match w.error.take() {
                Some(p) if !p.located => {
                    let mut err = EsError::new(400, p.kind, p.reason);
                    if let Some(c) = p.cause {
                        err = err.caused_by(c);
                    }
                    Err(err)
                }
                Some(p) => {
                    let mut err = EsError::new(400, p.kind, format!("[{line}:{col}] {}", p.reason));
                    if let Some(c) = p.cause {
                        err = err.caused_by(c);
                    }
                    Err(err)
                }
                None if !is_object => Err(EsError::new(
                    400,
                    "document_parsing_exception",
                    "[1:1] failed to parse: Malformed content, must start with an object"
                        .to_string(),
                )
                .caused_by(EsError::new(
                    400,
                    "x_content_parse_exception",
                    "Malformed content, must start with an object",
                ))),
                None => {
                    let msg = crate::json::describe_serde_error(&e);
                    Err(EsError::new(
                        400,
                        "document_parsing_exception",
                        format!("[{line}:{col}] failed to parse: {msg}"),
                    )
                    .caused_by(EsError::new(
                        400,
                        "x_content_parse_exception",
                        format!("[{line}:{col}] {msg}"),
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapping(v: Value) -> Mapping {
        parse_mapping(&v).unwrap_or_default()
    }

    #[test]
    fn dynamic_updates() {
        let m = Mapping::default();
        let ups = check_source(
            &m,
            br#"{"a":"x","b":1,"c":1.5,"d":true,"e":{"f":"2015-01-01"},"g":[1,2],"h":null}"#,
            "1",
        )
        .unwrap_or_default();
        let kinds: Vec<(String, NewKind)> =
            ups.iter().map(|u| (u.path.join("."), u.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                ("a".into(), NewKind::Text),
                ("b".into(), NewKind::Long),
                ("c".into(), NewKind::Float),
                ("d".into(), NewKind::Boolean),
                ("e".into(), NewKind::Object),
                ("e.f".into(), NewKind::Date),
                ("g".into(), NewKind::Long),
            ]
        );
        let mut m2 = m.clone();
        assert!(m2.apply_updates(&ups).is_ok());
        assert_eq!(
            m2.to_json()["properties"]["a"]["fields"]["keyword"]["ignore_above"],
            256
        );
    }

    #[test]
    fn long_rejects_strings() {
        let m = mapping(json!({"properties": {"n": {"type": "long"}}}));
        assert!(check_source(&m, br#"{"n":"42"}"#, "1").is_ok());
        assert!(check_source(&m, br#"{"n":4.5}"#, "1").is_ok());
        let e = check_source(&m, br#"{"n":"abc"}"#, "1").err();
        let e = e.unwrap_or_else(|| EsError::new(0, "", ""));
        assert_eq!(e.kind, "document_parsing_exception");
        assert!(
            e.reason
                .contains("failed to parse field [n] of type [long] in document with id '1'"),
            "{}",
            e.reason
        );
        assert_eq!(
            e.caused_by.map(|c| c.reason),
            Some("For input string: \"abc\"".to_string())
        );
    }

    #[test]
    fn strict_rejects_unknown() {
        let m = mapping(json!({"dynamic": "strict", "properties": {"a": {"type": "keyword"}}}));
        assert!(check_source(&m, br#"{"a":"x"}"#, "1").is_ok());
        let e = check_source(&m, br#"{"a":"x","b":1}"#, "1")
            .err()
            .map(|e| e.kind.to_string());
        assert_eq!(e.as_deref(), Some("strict_dynamic_mapping_exception"));
    }

    #[test]
    fn same_doc_conflict() {
        let m = Mapping::default();
        assert!(check_source(&m, br#"{"a":[1,"x"]}"#, "1").is_err());
        assert!(check_source(&m, br#"{"a":[{"b":1},{"b":2}]}"#, "1").is_ok());
    }

    #[test]
    fn malformed() {
        let m = Mapping::default();
        assert!(check_source(&m, br#"{"a":"#, "1").is_err());
        assert!(check_source(&m, br#"[1]"#, "1").is_err());
        assert!(check_source(&m, br#"{"a":1} x"#, "1").is_err());
        assert!(check_source(&m, br#"{"":1}"#, "1").is_err());
    }

    #[test]
    fn resolve() {
        let m = mapping(
            json!({"properties": {"t": {"type": "text", "fields": {"keyword": {"type": "keyword"}}}, "o": {"properties": {"x": {"type": "long"}}}}}),
        );
        assert!(
            matches!(resolve_field(&m, "t.keyword"), FieldRef::Field { ref path, field } if path == "t" && field.kind == Kind::Keyword)
        );
        assert!(
            matches!(resolve_field(&m, "o.x"), FieldRef::Field { ref path, field } if path == "o.x" && field.kind == Kind::Long)
        );
        assert!(matches!(resolve_field(&m, "nope"), FieldRef::Unmapped));
    }

    #[test]
    fn invalid_mappings() {
        assert!(parse_mapping(&json!({"properties": {"": {"type": "keyword"}}})).is_err());
        assert!(parse_mapping(&json!({"properties": {"a": {"type": "nope"}}})).is_err());
        assert!(parse_mapping(&json!({"_doc": {"properties": {}}})).is_err());
    }
}
