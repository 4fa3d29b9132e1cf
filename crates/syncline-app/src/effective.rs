//! What `--check-config` prints: the effective settings as a TOML document shaped like the
//! binary's configuration file (one table per table of the file, keys as the file spells
//! them), every secret redacted. The same format for every binary, rendered only here.

use serde::Serialize;

/// Shown in place of a secret value (a password, an API key, a private key).
pub const REDACTED: &str = "[redacted]";

/// Settings that may hold secrets and can show themselves without them.
///
/// [`EffectiveConfig::table`] only takes settings through this trait, so no table reaches
/// `--check-config` unredacted.
pub trait Redact {
    /// A copy with every secret (passwords, API keys, tokens, URL userinfo passwords,
    /// secret librdkafka properties) replaced by [`REDACTED`] or a masked form.
    #[must_use]
    fn redacted(&self) -> Self;
}

/// The effective settings of a binary, table by table, in the order they were added.
#[derive(Debug, Default)]
pub struct EffectiveConfig {
    toml: String,
}

/// Settings that the TOML serializer refused (a bug in the settings type, e.g. a map with
/// keys that are not strings).
#[derive(Debug, thiserror::Error)]
#[error("cannot show the `[{table}]` settings as TOML: {source}")]
pub struct RenderError {
    table: String,
    #[source]
    source: toml::ser::Error,
}

impl EffectiveConfig {
    /// An empty document.
    pub fn new() -> Self {
        EffectiveConfig::default()
    }

    /// Add the table `name` (`consumer`, `elasticsearch`, ...) holding `settings`,
    /// redacted ([`Redact::redacted`]). Fields serialize as the file spells them; unset
    /// optional settings are left out.
    pub fn table<T: Serialize + Redact>(
        mut self,
        name: &str,
        settings: &T,
    ) -> Result<Self, RenderError> {
        // A one-entry map puts the fields under `[name]` and nested maps under
        // `[name.key]`, in the struct's field order.
        let doc = std::collections::BTreeMap::from([(name, settings.redacted())]);
        let text = toml::to_string_pretty(&doc).map_err(|source| RenderError {
            table: name.to_owned(),
            source,
        })?;
        if !self.toml.is_empty() {
            self.toml.push('\n');
        }
        self.toml.push_str(&text);
        Ok(self)
    }

    /// The TOML document.
    pub fn to_toml(&self) -> &str {
        &self.toml
    }
}

/// `url` with the password of its userinfo (`user:password@`) replaced by [`REDACTED`],
/// for output. A URL that does not parse shows only its scheme, in case the rest holds a
/// secret.
pub fn redact_url(url: &str) -> String {
    use url::Position;
    match url::Url::parse(url) {
        Ok(u) if u.password().is_some() => format!(
            "{}{REDACTED}{}",
            &u[..Position::BeforePassword],
            &u[Position::AfterPassword..]
        ),
        Ok(_) => url.to_owned(),
        Err(_) => format!("{}://…", url.split("://").next().unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;

    #[derive(Serialize, Clone)]
    struct Settings {
        url: String,
        password: Option<String>,
        unset: Option<String>,
        #[serde(with = "humantime_serde")]
        timeout: Duration,
        kafka: BTreeMap<String, String>,
    }

    impl Redact for Settings {
        fn redacted(&self) -> Self {
            Settings {
                url: redact_url(&self.url),
                password: self.password.as_ref().map(|_| REDACTED.to_owned()),
                ..self.clone()
            }
        }
    }

    #[test]
    fn tables_render_as_the_file_spells_them_redacted() {
        let s = Settings {
            url: "http://u:hunter2@h:9200".into(),
            password: Some("hunter2".into()),
            unset: None,
            timeout: Duration::from_millis(1500),
            kafka: BTreeMap::from([("debug".into(), "consumer,cgrp".into())]),
        };
        let e = EffectiveConfig::new()
            .table("consumer", &s)
            .and_then(|e| e.table("redis", &s))
            .map_err(|e| e.to_string());
        let text = e.as_ref().map(|e| e.to_toml()).unwrap_or_default();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.starts_with("[consumer]\n"), "{text}");
        assert!(
            text.contains("url = \"http://u:[redacted]@h:9200/\""),
            "{text}"
        );
        assert!(text.contains("timeout = \"1s 500ms\""), "{text}");
        assert!(
            text.contains("[consumer.kafka]\ndebug = \"consumer,cgrp\""),
            "{text}"
        );
        assert!(text.contains("\n[redis]\n"), "{text}");
        assert!(!text.contains("unset"), "{text}");
        // What is printed reads back as the file it describes.
        let back: Result<toml::Table, _> = toml::from_str(text);
        assert!(back.is_ok(), "{back:?}");
    }

    #[test]
    fn unparseable_urls_show_only_the_scheme() {
        assert_eq!(redact_url("http://u:pw@[::1"), "http://…");
        assert_eq!(redact_url("http://h:9200"), "http://h:9200");
    }
}
