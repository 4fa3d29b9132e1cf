//! The one configuration error of every binary, whatever layer the bad value came from.

/// A setting with a bad value. Displays as one line naming the setting:
/// "invalid setting `batch_max_events`: must be at least 1",
/// "invalid setting `redis.guard_ttl`: must be at least the cache TTL".
///
/// Settings of a binary's main table (`[consumer]`, `[outbox]`) are named bare, those of
/// a sink's table with the table (`elasticsearch.url`, `redis.mode`); `config` names the
/// file itself. The reason never holds a secret: callers redact URLs before quoting them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    /// The setting's name as written in the TOML file (or `config` for the file itself).
    pub setting: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    /// A new error for `setting`.
    pub fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }

    /// The same error with the setting qualified by its table (`url` in `elasticsearch`
    /// becomes `elasticsearch.url`); a setting already qualified is left alone, so this
    /// can be applied on every path out of a sink's code.
    #[must_use]
    pub fn in_table(mut self, table: &str) -> Self {
        let prefix = format!("{table}.");
        if !self.setting.starts_with(&prefix) && self.setting != "config" {
            self.setting = format!("{prefix}{}", self.setting);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_naming_the_setting() {
        let e = ConfigError::new("batch_max_events", "must be at least 1");
        assert_eq!(
            e.to_string(),
            "invalid setting `batch_max_events`: must be at least 1"
        );
    }

    #[test]
    fn qualifying_is_idempotent() {
        let e = ConfigError::new("url", "x").in_table("elasticsearch");
        assert_eq!(e.setting, "elasticsearch.url");
        assert_eq!(e.in_table("elasticsearch").setting, "elasticsearch.url");
        assert_eq!(
            ConfigError::new("config", "x").in_table("redis").setting,
            "config"
        );
    }
}
