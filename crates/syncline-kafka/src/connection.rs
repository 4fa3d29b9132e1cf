//! How every Syncline process reaches the Kafka cluster: the bootstrap servers plus the
//! librdkafka client properties (TLS, SASL, tuning), given the same way to every binary.
//!
//! Precedence, lowest first: a binary's defaults and TOML file, then the `SYNCLINE_KAFKA`
//! environment variable (one `key=value` per line), then `-X`/`--kafka key=value` flags
//! (repeatable, never split), then the first-class flags such as
//! `--kafka-security-protocol` (each with its own `SYNCLINE_KAFKA_*` variable).
//!
//! Values are never split on commas: `debug=consumer,cgrp` and
//! `sasl.oauthbearer.extensions=a=1,b=2` are single properties. Secrets (passwords, client
//! secrets, private keys) are redacted wherever a property map is shown: see [`is_secret`].

use std::collections::BTreeMap;
use std::fmt;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

/// The environment variable holding extra librdkafka properties, one `key=value` per line.
///
/// Lines are the separator because a line break cannot occur in a one-line property value;
/// the only librdkafka values that span lines are PEM blobs (`ssl.*.pem`), which are
/// refused here: give them as files (`ssl.ca.location`, `ssl.certificate.location`,
/// `ssl.key.location`) or in the TOML file instead.
pub const KAFKA_ENV: &str = "SYNCLINE_KAFKA";

/// Shown in place of a secret value.
pub const REDACTED: &str = "[redacted]";

/// A librdkafka property that could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct PropertyError {
    /// Where it came from: `kafka` (flag), `SYNCLINE_KAFKA` or a property name.
    pub setting: String,
    /// What is wrong.
    pub reason: String,
}

impl PropertyError {
    fn new(setting: impl Into<String>, reason: impl Into<String>) -> Self {
        PropertyError {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// Whether a librdkafka property holds a secret that must never be shown: every
/// `*.password`, `*secret*`, private keys (`ssl.key.*`, `ssl.keystore.*`,
/// `*.private.key*`), and the free-form OAUTHBEARER config and extensions, which commonly
/// carry client secrets or tokens.
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.starts_with("ssl.key.")
        || k.starts_with("ssl.keystore.")
        || k.contains("private.key")
        || k == "sasl.oauthbearer.config"
        || k == "sasl.oauthbearer.extensions"
        || k == "sasl.jaas.config"
}

/// `value`, or [`REDACTED`] when `key` is a secret.
pub fn redact<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        REDACTED
    } else {
        value
    }
}

/// Extra librdkafka properties: a map that shows secrets only as [`REDACTED`] in `Debug`,
/// and serializes faithfully (it is also how TOML files are read and layered).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(pub BTreeMap<String, String>);

impl KafkaProperties {
    /// A copy with every secret value replaced by [`REDACTED`], for printing.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), redact(k, v).to_owned()))
            .collect()
    }
}

impl fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, redact(k, v))))
            .finish()
    }
}

impl std::ops::Deref for KafkaProperties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KafkaProperties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a KafkaProperties {
    type Item = (&'a String, &'a String);
    type IntoIter = std::collections::btree_map::Iter<'a, String, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl FromIterator<(String, String)> for KafkaProperties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        KafkaProperties(iter.into_iter().collect())
    }
}

impl From<BTreeMap<String, String>> for KafkaProperties {
    fn from(m: BTreeMap<String, String>) -> Self {
        KafkaProperties(m)
    }
}

impl<const N: usize> From<[(String, String); N]> for KafkaProperties {
    fn from(a: [(String, String); N]) -> Self {
        KafkaProperties(a.into())
    }
}

/// The cluster address plus client properties. `Debug` redacts secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Connection {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// Every other client property (security, tuning).
    pub properties: KafkaProperties,
}

impl Connection {
    /// A connection to `brokers` with no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        Connection {
            brokers: brokers.into(),
            properties: KafkaProperties::default(),
        }
    }

    /// The same connection with `properties` added (they win over existing ones).
    pub fn with_properties(mut self, properties: &BTreeMap<String, String>) -> Self {
        self.properties
            .extend(properties.iter().map(|(k, v)| (k.clone(), v.clone())));
        self
    }

    /// A librdkafka client config with the servers and every property set. Properties
    /// that only make sense for one client kind (consumer or producer) are harmless on
    /// the other: librdkafka ignores them with a warning.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in self.properties.iter() {
            c.set(k, v);
        }
        c
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("brokers", &self.brokers)
            .field("properties", &self.properties)
            .finish()
    }
}

impl From<&str> for Connection {
    fn from(brokers: &str) -> Self {
        Connection::new(brokers)
    }
}

impl From<&String> for Connection {
    fn from(brokers: &String) -> Self {
        Connection::new(brokers.as_str())
    }
}

impl From<String> for Connection {
    fn from(brokers: String) -> Self {
        Connection::new(brokers)
    }
}

impl From<&Connection> for Connection {
    fn from(c: &Connection) -> Self {
        c.clone()
    }
}

/// Parse one `key=value` property. The value is everything after the first `=` and may
/// contain `=` and `,`.
pub fn parse_property(origin: &str, kv: &str) -> Result<(String, String), PropertyError> {
    match kv.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() && !k.trim().contains(char::is_whitespace) => {
            Ok((k.trim().to_owned(), v.to_owned()))
        }
        _ => Err(PropertyError::new(
            origin,
            format!("`{}` is not `key=value`", redact_unparsed(kv)),
        )),
    }
}

/// A malformed entry may still hold a secret after some other separator; show only its
/// start.
fn redact_unparsed(kv: &str) -> String {
    let head: String = kv.chars().take(24).collect();
    if is_secret(&head) || head.len() < kv.len() {
        format!("{}…", head.split(['=', ':', ' ']).next().unwrap_or(""))
    } else {
        head
    }
}

/// Parse the [`KAFKA_ENV`] format: one `key=value` per line; blank lines and lines
/// starting with `#` are ignored; `\r\n` line ends are accepted.
pub fn parse_env_list(text: &str) -> Result<Vec<(String, String)>, PropertyError> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (k, v) = parse_property(KAFKA_ENV, line.trim_start())?;
        if k.ends_with(".pem") {
            return Err(PropertyError::new(
                KAFKA_ENV,
                format!(
                    "`{k}` holds a multi-line PEM value, which one-per-line {KAFKA_ENV} cannot \
                     carry; use the matching `.location` property with a file path"
                ),
            ));
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Connection flags every Syncline binary flattens into its command line. `Debug` shows
/// the properties they set with secrets redacted.
#[derive(Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Extra librdkafka property `key=value` (repeatable, never split on commas; applied
    /// after the config file and SYNCLINE_KAFKA, which takes one property per line).
    #[arg(
        short = 'X',
        long = "kafka",
        alias = "property",
        value_name = "KEY=VALUE",
        action = clap::ArgAction::Append,
        global = true
    )]
    pub kafka: Vec<String>,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_SECURITY_PROTOCOL",
        value_name = "PROTOCOL",
        global = true
    )]
    pub kafka_security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or GSSAPI.
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_SASL_MECHANISM",
        value_name = "MECHANISM",
        global = true
    )]
    pub kafka_sasl_mechanism: Option<String>,
    /// `sasl.username`.
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_SASL_USERNAME",
        value_name = "USER",
        global = true
    )]
    pub kafka_sasl_username: Option<String>,
    /// `sasl.password` (prefer the env var: flags are visible in the process list).
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub kafka_sasl_password: Option<String>,
    /// `ssl.ca.location`: PEM file of the CA(s) that signed the brokers' certificates.
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_CA_FILE",
        value_name = "FILE",
        global = true
    )]
    pub kafka_ca_file: Option<String>,
    /// `ssl.certificate.location`: client certificate (PEM) for brokers that require mTLS.
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_CERT_FILE",
        value_name = "FILE",
        global = true
    )]
    pub kafka_cert_file: Option<String>,
    /// `ssl.key.location`: the client certificate's private key (PEM).
    #[arg(
        long,
        env = "SYNCLINE_KAFKA_KEY_FILE",
        value_name = "FILE",
        global = true
    )]
    pub kafka_key_file: Option<String>,
}

impl fmt::Debug for KafkaArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<String> = self
            .kafka
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => format!("{k}={}", redact(k.trim(), v)),
                None => REDACTED.to_owned(),
            })
            .collect();
        f.debug_struct("KafkaArgs")
            .field("kafka", &shown)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| REDACTED),
            )
            .field("kafka_ca_file", &self.kafka_ca_file)
            .field("kafka_cert_file", &self.kafka_cert_file)
            .field("kafka_key_file", &self.kafka_key_file)
            .finish()
    }
}

impl KafkaArgs {
    /// The properties these flags and `SYNCLINE_KAFKA` set, in precedence order (later
    /// wins): the env list, then `--kafka`, then the first-class flags.
    pub fn properties(&self) -> Result<BTreeMap<String, String>, PropertyError> {
        let mut out = BTreeMap::new();
        if let Ok(text) = std::env::var(KAFKA_ENV) {
            out.extend(parse_env_list(&text)?);
        }
        for kv in self.kafka.iter().filter(|s| !s.trim().is_empty()) {
            let (k, v) = parse_property("kafka", kv)?;
            out.insert(k, v);
        }
        let first_class = [
            ("security.protocol", &self.kafka_security_protocol),
            ("sasl.mechanism", &self.kafka_sasl_mechanism),
            ("sasl.username", &self.kafka_sasl_username),
            ("sasl.password", &self.kafka_sasl_password),
            ("ssl.ca.location", &self.kafka_ca_file),
            ("ssl.certificate.location", &self.kafka_cert_file),
            ("ssl.key.location", &self.kafka_key_file),
        ];
        for (key, value) in first_class {
            if let Some(v) = value {
                out.insert(key.to_owned(), v.clone());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_keep_their_commas_and_equals_signs() {
        assert_eq!(
            parse_property("kafka", "debug=consumer,cgrp").unwrap(),
            ("debug".to_owned(), "consumer,cgrp".to_owned())
        );
        assert_eq!(
            parse_property("kafka", "sasl.oauthbearer.extensions=a=1,b=2").unwrap(),
            (
                "sasl.oauthbearer.extensions".to_owned(),
                "a=1,b=2".to_owned()
            )
        );
        assert!(parse_property("kafka", "no-equals-sign").is_err());
        assert!(parse_property("kafka", "=value").is_err());
    }

    #[test]
    fn env_list_is_one_property_per_line() {
        let got = parse_env_list(
            "debug=consumer,cgrp\r\n\n# a comment\nsasl.oauthbearer.extensions=a=1,b=2\n",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("debug".to_owned(), "consumer,cgrp".to_owned()),
                (
                    "sasl.oauthbearer.extensions".to_owned(),
                    "a=1,b=2".to_owned()
                ),
            ]
        );
        let e = parse_env_list("ssl.ca.pem=-----BEGIN CERTIFICATE-----").unwrap_err();
        assert!(e.reason.contains("ssl.ca.pem"), "{e}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let conn = Connection::new("b:9092").with_properties(
            &[
                ("sasl.password".to_owned(), "hunter2-planted".to_owned()),
                ("ssl.key.password".to_owned(), "hunter3-planted".to_owned()),
                (
                    "sasl.oauthbearer.client.secret".to_owned(),
                    "hunter4-planted".to_owned(),
                ),
                ("ssl.key.pem".to_owned(), "hunter5-planted".to_owned()),
                ("sasl.username".to_owned(), "alice".to_owned()),
            ]
            .into(),
        );
        let shown = format!("{conn:?} {conn:#?} {:?}", conn.properties.redacted());
        assert!(!shown.contains("planted"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(shown.contains(REDACTED));
        // The faithful map is still there for the client.
        assert_eq!(conn.properties["sasl.password"], "hunter2-planted");
    }

    #[test]
    fn a_malformed_entry_does_not_echo_a_secret() {
        let e = parse_property("kafka", "sasl.password:hunter2-planted-and-long").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
