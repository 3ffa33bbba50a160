//! What an engine can store, by the API version agreed with it (pure, plain data).
//!
//! The engine backend negotiates an API version with each engine once per run (`1.41` for
//! Docker 20.10, `1.45` for 26.1, `1.51` for 28.5); observation records the lowest among the
//! managers ([`crate::model::Observed::api_version`]), and the planner reads it through
//! [`EngineCaps`]: a service field newer than that version is one the engine drops unseen
//! (an older engine does not know it; a newer one clears it for older API versions, moby
//! `adjustForAPIVersion`), so it is neither planned nor sent.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An Engine API version, `major.minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion {
    /// Always 1 so far.
    pub major: u32,
    /// `41` for Docker 20.10, `45` for 26.x, `51` for 28.5.
    pub minor: u32,
}

impl ApiVersion {
    /// `major.minor`.
    pub const fn new(major: u32, minor: u32) -> ApiVersion {
        ApiVersion { major, minor }
    }

    /// Reads `1.41` (as `/version`'s `ApiVersion` and bollard's client version write it);
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<ApiVersion> {
        let (major, minor) = text.trim().trim_start_matches('v').split_once('.')?;
        Some(ApiVersion::new(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Serialize for ApiVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ApiVersion {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        ApiVersion::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not an API version: {text:?}")))
    }
}

/// A service field that only newer engines store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum EngineField {
    /// `oom_score_adj` (`ContainerSpec.OomScoreAdj`).
    OomScoreAdj,
    /// `healthcheck.start_interval` (`Healthcheck.StartInterval`).
    HealthStartInterval,
    /// `volumes[].volume.subpath` (`Mount.VolumeOptions.Subpath`).
    VolumeSubpath,
}

impl EngineField {
    /// Every field, oldest first.
    pub const ALL: [EngineField; 3] = [
        EngineField::HealthStartInterval,
        EngineField::VolumeSubpath,
        EngineField::OomScoreAdj,
    ];

    /// The first API version whose engines store it (moby's API version history).
    pub const fn since(self) -> ApiVersion {
        match self {
            EngineField::HealthStartInterval => ApiVersion::new(1, 44),
            EngineField::VolumeSubpath => ApiVersion::new(1, 45),
            EngineField::OomScoreAdj => ApiVersion::new(1, 46),
        }
    }

    /// Its key in a compose service.
    pub const fn compose_key(self) -> &'static str {
        match self {
            EngineField::HealthStartInterval => "healthcheck.start_interval",
            EngineField::VolumeSubpath => "volumes[].volume.subpath",
            EngineField::OomScoreAdj => "oom_score_adj",
        }
    }

    /// The first Docker release whose engines store it, for people.
    pub const fn docker_release(self) -> &'static str {
        match self {
            EngineField::HealthStartInterval => "25.0",
            EngineField::VolumeSubpath => "26.0",
            EngineField::OomScoreAdj => "27.0",
        }
    }
}

/// What the engines of a cluster can store, from the lowest API version agreed with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineCaps {
    /// The lowest API version agreed with the managers' engines; `None` when unknown (the sim,
    /// a cluster not yet created), which is taken as storing everything.
    pub api_version: Option<ApiVersion>,
}

impl EngineCaps {
    /// The capabilities of engines that agreed on `api_version`.
    pub const fn of(api_version: Option<ApiVersion>) -> EngineCaps {
        EngineCaps { api_version }
    }

    /// Whether these engines store `field`.
    pub fn stores(self, field: EngineField) -> bool {
        self.api_version.is_none_or(|v| v >= field.since())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_compare_and_print() {
        let old = ApiVersion::parse("1.41").unwrap();
        let new = ApiVersion::parse("1.51").unwrap();
        assert!(old < new && ApiVersion::new(1, 9) < old);
        assert_eq!(new.to_string(), "1.51");
        assert_eq!(ApiVersion::parse("v1.45"), Some(ApiVersion::new(1, 45)));
        assert_eq!(ApiVersion::parse("latest"), None);
        assert_eq!(serde_json::to_string(&old).unwrap(), "\"1.41\"");
        assert_eq!(serde_json::from_str::<ApiVersion>("\"1.41\"").unwrap(), old);
    }

    #[test]
    fn each_engine_era_stores_what_its_api_knows() {
        let stores = |version: Option<&str>| {
            let caps = EngineCaps::of(version.and_then(ApiVersion::parse));
            EngineField::ALL
                .into_iter()
                .filter(|f| caps.stores(*f))
                .collect::<Vec<_>>()
        };
        assert!(stores(Some("1.41")).is_empty(), "Docker 20.10");
        assert_eq!(
            stores(Some("1.45")),
            [EngineField::HealthStartInterval, EngineField::VolumeSubpath],
            "Docker 26.1"
        );
        assert_eq!(stores(Some("1.51")), EngineField::ALL, "Docker 28.5");
        assert_eq!(stores(None), EngineField::ALL, "unknown: the sim");
    }
}
