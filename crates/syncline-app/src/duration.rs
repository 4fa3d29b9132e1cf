//! A duration flag (`--batch-linger 50ms`) that layers like the file's value.

use std::time::Duration;

/// A humantime duration given as a flag or env var. It parses like the TOML values
/// (`"50ms"`, `"1h 30m"`) and serializes back to that spelling, so the flags layer
/// deserializes into the same `#[serde(with = "humantime_serde")]` field as the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl std::str::FromStr for HumanDuration {
    type Err = humantime::DurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s).map(HumanDuration)
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Duration {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_spells_like_humantime() {
        let d: HumanDuration = "1m 500ms".parse().unwrap_or(HumanDuration(Duration::ZERO));
        assert_eq!(d.0, Duration::from_millis(60_500));
        assert_eq!(humantime::format_duration(d.0).to_string(), "1m 500ms");
        assert!("soon".parse::<HumanDuration>().is_err());
    }
}
