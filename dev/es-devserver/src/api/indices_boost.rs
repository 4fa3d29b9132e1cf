//! `indices_boost` in a search body: `[{"<index, alias or pattern>": boost}, ...]`. Each
//! entry is resolved like the search's own index expression (so a missing name is
//! `index_not_found_exception` unless `ignore_unavailable`), and for an index matched by
//! several entries the first one wins, as in Elasticsearch.

use std::collections::HashMap;

use serde_json::Value;

use crate::cluster::{Metadata, ResolveOpts};
use crate::error::{EsError, EsResult};
use crate::json::token_name;

/// Parses the array form (the object form was removed in Elasticsearch 8).
pub(super) fn parse(v: &Value) -> EsResult<Vec<(String, f32)>> {
    let arr = v.as_array().ok_or_else(|| {
        EsError::parsing(format!(
            "Unknown key for a {} in [indices_boost].",
            token_name(v)
        ))
    })?;
    let mut out = Vec::with_capacity(arr.len());
    for entry in arr {
        let m = entry.as_object().ok_or_else(|| {
            EsError::parsing(format!(
                "Expected [START_OBJECT] in [indices_boost] but found [{}]",
                token_name(entry)
            ))
        })?;
        let mut it = m.iter();
        let Some((name, boost)) = it.next() else {
            return Err(EsError::parsing(
                "Expected [FIELD_NAME] in [indices_boost] but found [END_OBJECT]",
            ));
        };
        if it.next().is_some() {
            return Err(EsError::parsing(
                "Expected [END_OBJECT] in [indices_boost] but found [FIELD_NAME]",
            ));
        }
        let b = boost.as_f64().ok_or_else(|| {
            EsError::parsing(format!(
                "Expected [VALUE_NUMBER] in [indices_boost] but found [{}]",
                token_name(boost)
            ))
        })?;
        out.push((name.clone(), b as f32));
    }
    Ok(out)
}

/// The boost of each concrete index an entry resolves to, the first entry winning.
pub(super) fn resolve(
    meta: &Metadata,
    boosts: &[(String, f32)],
    opts: &ResolveOpts,
) -> EsResult<HashMap<String, f32>> {
    let mut out = HashMap::new();
    for (expr, b) in boosts {
        for r in meta.resolve(expr, opts)? {
            out.entry(r.name).or_insert(*b);
        }
    }
    Ok(out)
}
