//! What this build of librdkafka can do, checked against what a configuration asks for,
//! so that a missing capability stops startup with one clear line instead of a cryptic
//! client-creation error (or, worse, a silent fallback).

use std::collections::{BTreeMap, BTreeSet};

/// A configuration asks for something this build lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{setting}` = {}", self.reason())]
pub struct CapabilityError {
    /// The property that asks for it.
    pub setting: String,
    /// Its value.
    pub value: String,
    /// The missing `builtin.features` entry.
    pub feature: String,
    /// What the build has, comma separated.
    pub built_with: String,
}

impl CapabilityError {
    /// What is missing, without the setting's name: for configuration errors that name
    /// the setting themselves.
    pub fn reason(&self) -> String {
        format!(
            "`{}` needs librdkafka feature `{}`, which this build lacks (built with: {})",
            self.value, self.feature, self.built_with
        )
    }
}

/// librdkafka's `builtin.features` of this build (e.g. `ssl`, `sasl_scram`, `oidc`).
pub fn builtin_features() -> BTreeSet<String> {
    rdkafka::ClientConfig::new()
        .create_native_config()
        .and_then(|c| c.get("builtin.features"))
        .map(|s| s.split(',').map(|f| f.trim().to_owned()).collect())
        .unwrap_or_default()
}

/// Check `properties` against [`builtin_features`].
pub fn check(properties: &BTreeMap<String, String>) -> Result<(), CapabilityError> {
    check_against(properties, &builtin_features())
}

/// Check `properties` against a given feature set (testable without a special build).
pub fn check_against(
    properties: &BTreeMap<String, String>,
    features: &BTreeSet<String>,
) -> Result<(), CapabilityError> {
    let get = |k: &str| properties.get(k).map(|v| v.trim().to_ascii_lowercase());
    let mut needs: Vec<(&str, String, &str)> = Vec::new();
    if let Some(p) = get("security.protocol") {
        if p == "ssl" || p == "sasl_ssl" {
            needs.push(("security.protocol", p.clone(), "ssl"));
        }
        if p.starts_with("sasl_") {
            needs.push(("security.protocol", p.clone(), "sasl"));
        }
    }
    if let Some(m) = get("sasl.mechanism").or_else(|| get("sasl.mechanisms")) {
        let feature = match m.to_ascii_uppercase().as_str() {
            "GSSAPI" => Some("sasl_gssapi"),
            "PLAIN" => Some("sasl_plain"),
            "SCRAM-SHA-256" | "SCRAM-SHA-512" => Some("sasl_scram"),
            "OAUTHBEARER" => Some("sasl_oauthbearer"),
            _ => None,
        };
        if let Some(f) = feature {
            needs.push(("sasl.mechanism", m, f));
        }
    }
    if let Some(m) = get("sasl.oauthbearer.method") {
        if m == "oidc" {
            needs.push(("sasl.oauthbearer.method", m, "oidc"));
        }
    }
    for (setting, value, feature) in needs {
        if !features.contains(feature) {
            return Err(CapabilityError {
                setting: setting.to_owned(),
                value,
                feature: feature.to_owned(),
                built_with: features.iter().cloned().collect::<Vec<_>>().join(","),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn this_build_has_tls_and_every_sasl_mechanism() {
        let f = builtin_features();
        for needed in [
            "ssl",
            "sasl",
            "sasl_plain",
            "sasl_scram",
            "sasl_oauthbearer",
            "sasl_gssapi",
            "oidc",
        ] {
            assert!(f.contains(needed), "{needed} missing from {f:?}");
        }
        check(&props(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
        ]))
        .expect("SASL_SSL/SCRAM supported");
    }

    #[test]
    fn a_missing_feature_is_named() {
        let only_plain: BTreeSet<String> = ["sasl", "sasl_plain"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let e = check_against(
            &props(&[
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
            ]),
            &only_plain,
        )
        .unwrap_err();
        assert_eq!(e.feature, "sasl_scram");
        assert!(e.to_string().contains("sasl.mechanism"), "{e}");
        let e = check_against(&props(&[("security.protocol", "ssl")]), &only_plain).unwrap_err();
        assert_eq!(e.feature, "ssl");
        assert!(check_against(&props(&[("security.protocol", "plaintext")]), &only_plain).is_ok());
    }
}
