//! The default values of index settings, as `GET /{index}/_settings?include_defaults=true`
//! lists them under `defaults` (the settings an index does not set explicitly).

use std::collections::BTreeMap;

use serde_json::Value;

/// Index settings and their defaults (the values Elasticsearch 8 reports).
const DEFAULTS: &[(&str, &str)] = &[
    ("index.auto_expand_replicas", "false"),
    ("index.blocks.metadata", "false"),
    ("index.blocks.read", "false"),
    ("index.blocks.read_only", "false"),
    ("index.blocks.read_only_allow_delete", "false"),
    ("index.blocks.write", "false"),
    ("index.codec", "default"),
    ("index.default_pipeline", "_none"),
    ("index.final_pipeline", "_none"),
    ("index.gc_deletes", "60s"),
    ("index.hidden", "false"),
    ("index.highlight.max_analyzed_offset", "1000000"),
    ("index.load_fixed_bitset_filters_eagerly", "true"),
    ("index.mapping.coerce", "true"),
    ("index.mapping.depth.limit", "20"),
    ("index.mapping.dynamic_strings.auto_text", "true"),
    (
        "index.mapping.field_name_length.ignore_dynamic_beyond_limit",
        "false",
    ),
    (
        "index.mapping.field_name_length.limit",
        "9223372036854775807",
    ),
    ("index.mapping.ignore_malformed", "false"),
    ("index.mapping.nested_fields.limit", "50"),
    ("index.mapping.nested_objects.limit", "10000"),
    (
        "index.mapping.total_fields.ignore_dynamic_beyond_limit",
        "false",
    ),
    ("index.mapping.total_fields.limit", "1000"),
    ("index.max_docvalue_fields_search", "100"),
    ("index.max_inner_result_window", "100"),
    ("index.max_ngram_diff", "1"),
    ("index.max_refresh_listeners", "1000"),
    ("index.max_regex_length", "1000"),
    ("index.max_rescore_window", "10000"),
    ("index.max_result_window", "10000"),
    ("index.max_script_fields", "32"),
    ("index.max_shingle_diff", "3"),
    ("index.max_slices_per_scroll", "1024"),
    ("index.max_terms_count", "65536"),
    ("index.mode", "standard"),
    ("index.priority", "1"),
    ("index.query.default_field", "*"),
    ("index.query_string.lenient", "false"),
    ("index.refresh_interval", "1s"),
    ("index.routing.allocation.enable", "all"),
    ("index.routing.allocation.total_shards_per_node", "-1"),
    ("index.routing.rebalance.enable", "all"),
    ("index.routing_partition_size", "1"),
    ("index.search.idle.after", "30s"),
    ("index.shard.check_on_startup", "false"),
    ("index.soft_deletes.enabled", "true"),
    ("index.soft_deletes.retention_lease.period", "12h"),
    ("index.translog.durability", "REQUEST"),
    ("index.translog.flush_threshold_size", "10gb"),
    ("index.translog.sync_interval", "5s"),
    ("index.unassigned.node_left.delayed_timeout", "1m"),
    ("index.verified_before_close", "false"),
    ("index.write.wait_for_active_shards", "1"),
];

/// The default of one index setting, if it has one this server knows.
pub fn default_of(key: &str) -> Option<&'static str> {
    DEFAULTS.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The defaults of the settings `flat` does not set (flat keys, string values).
pub fn defaults_for(flat: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    DEFAULTS
        .iter()
        .filter(|(k, _)| !flat.contains_key(*k))
        .map(|(k, v)| {
            let value = if *k == "index.query.default_field" {
                Value::Array(vec![Value::from(*v)])
            } else {
                Value::from(*v)
            };
            (k.to_string(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_settings_are_left_out() {
        let mut flat = BTreeMap::new();
        flat.insert("index.refresh_interval".to_string(), Value::from("5s"));
        let d = defaults_for(&flat);
        assert!(!d.contains_key("index.refresh_interval"));
        assert_eq!(
            d.get("index.mapping.dynamic_strings.auto_text"),
            Some(&Value::from("true"))
        );
        assert_eq!(default_of("index.max_regex_length"), Some("1000"));
    }

    #[test]
    fn every_default_is_a_known_setting() {
        for (k, _) in DEFAULTS {
            assert!(crate::settings::is_known_setting(k), "{k}");
        }
    }
}
