//! The rule that decides an image's new reference: given a policy, the reference a compose
//! file writes and what the registry offers, the reference the file should name, or none.
//!
//! - `semver`: the highest tag that is a version (a leading `v` allowed) within the range and
//!   passes `tags:`; pre-releases only when the range names one (the `semver` crate's rule);
//!   `latest` and other tags that are not versions are ignored; never lower than the version
//!   written, and nothing when the written tag is not a version (there is no "up" from it).
//! - `digest`: the digest the written tag points to now, when it differs from the written one.

use super::policy::{Follow, ImageTrack};
use crate::model::reference::Reference;

/// What the registry offers for one repository.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Offer {
    /// Its tags.
    pub tags: Vec<String>,
    /// The digests of the written tags (asked only for `digest: true`), by tag.
    pub digests: std::collections::BTreeMap<String, String>,
}

/// Whether `tag` is a tag as the docker CLI accepts it (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`), so
/// that what a registry answers can be written into a compose file without changing its YAML.
pub fn valid_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits (or `sha512:` and 128).
pub fn valid_digest(digest: &str) -> bool {
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    };
    match digest.split_once(':') {
        Some(("sha256", rest)) => hex(rest, 64),
        Some(("sha512", rest)) => hex(rest, 128),
        _ => false,
    }
}

/// `tag` read as a version: `1.2.0` or `v1.2.0`.
pub fn version_of(tag: &str) -> Option<semver::Version> {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The highest tag of `tags` that the policy allows (semver policies only), with its version.
pub fn newest<'t>(track: &ImageTrack, tags: &'t [String]) -> Option<(semver::Version, &'t str)> {
    let Follow::Semver { range, .. } = &track.follow else {
        return None;
    };
    tags.iter()
        .filter(|tag| valid_tag(tag) && track.considers(tag))
        .filter_map(|tag| version_of(tag).map(|v| (v, tag.as_str())))
        .filter(|(version, _)| range.matches(version))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
}

/// The reference `written` should become, or `None` when it stays as it is.
pub fn choose(track: &ImageTrack, written: &str, offer: &Offer) -> Option<String> {
    let reference = Reference::parse(written).ok()?;
    match &track.follow {
        Follow::Semver { .. } => {
            let current = version_of(&reference.tag)?;
            let (best, tag) = newest(track, &offer.tags)?;
            (best > current).then(|| with_tag(written, tag))
        }
        Follow::Digest => {
            if !track.considers(&reference.tag) {
                return None;
            }
            let digest = offer
                .digests
                .get(&reference.tag)
                .filter(|d| valid_digest(d))?;
            (reference.digest.as_ref() != Some(digest))
                .then(|| crate::model::reference::pinned(written, digest))
        }
    }
}

/// `written` with its tag replaced by `tag` and any digest dropped (the digest was the old
/// tag's): `localhost:5001/app:1.2.0` → `localhost:5001/app:1.3.0`.
fn with_tag(written: &str, tag: &str) -> String {
    let name = written.split_once('@').map_or(written, |(name, _)| name);
    let name = match name.rfind(':') {
        Some(at) if !name[at..].contains('/') => &name[..at],
        _ => name,
    };
    format!("{name}:{tag}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn semver(range: &str, tags: Option<&str>) -> ImageTrack {
        ImageTrack {
            repository: "localhost:5001/app".into(),
            pos: Default::default(),
            follow: Follow::Semver {
                range: semver::VersionReq::parse(range).unwrap(),
                written: range.into(),
            },
            tags: tags.map(|t| super::super::policy::TagFilter(regex::Regex::new(t).unwrap())),
        }
    }

    fn offer(tags: &[&str]) -> Offer {
        Offer {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            digests: Default::default(),
        }
    }

    #[test]
    fn the_highest_matching_version_wins_and_the_next_major_is_ignored() {
        let track = semver("^1.2", None);
        let offered = offer(&["1.2.0", "1.3.0", "2.0.0", "latest", "1.2.5"]);
        assert_eq!(
            choose(&track, "localhost:5001/app:1.2.0", &offered).as_deref(),
            Some("localhost:5001/app:1.3.0")
        );
    }

    #[test]
    fn latest_and_tags_that_are_not_versions_are_ignored() {
        let track = semver("^1.2", None);
        let offered = offer(&["1.2.0", "latest", "main", "1.3", "2.0.0"]);
        assert_eq!(choose(&track, "localhost:5001/app:1.2.0", &offered), None);
        assert_eq!(
            choose(&track, "localhost:5001/app:latest", &offer(&["1.9.0"])),
            None
        );
    }

    #[test]
    fn never_downgrades() {
        let track = semver(">=1.0.0", None);
        assert_eq!(
            choose(
                &track,
                "localhost:5001/app:1.5.0",
                &offer(&["1.2.0", "1.4.9"])
            ),
            None
        );
        // A written version outside the range is not lowered into it either.
        let track = semver("^1.2", None);
        assert_eq!(
            choose(&track, "localhost:5001/app:3.0.0", &offer(&["1.9.0"])),
            None
        );
    }

    #[test]
    fn pre_releases_only_when_the_range_names_one() {
        let offered = offer(&["1.2.0", "1.3.0-rc.1"]);
        assert_eq!(
            choose(&semver("^1.2", None), "localhost:5001/app:1.2.0", &offered),
            None
        );
        assert_eq!(
            choose(
                &semver(">=1.3.0-rc.0", None),
                "localhost:5001/app:1.2.0",
                &offered
            )
            .as_deref(),
            Some("localhost:5001/app:1.3.0-rc.1")
        );
    }

    #[test]
    fn a_leading_v_is_a_version_and_is_kept() {
        let offered = offer(&["v1.2.0", "v1.4.1", "v1.10.0"]);
        assert_eq!(
            choose(&semver("^1.2", None), "localhost:5001/app:v1.2.0", &offered).as_deref(),
            Some("localhost:5001/app:v1.10.0")
        );
    }

    #[test]
    fn what_a_hostile_registry_answers_never_reaches_the_file() {
        let track = semver(">=1.0.0-0", None);
        let offered = offer(&[
            "1.9.0\"\n  privileged: true",
            "1.8.0 # comment",
            "1.7.0-x\"",
            &"9".repeat(200),
            "1.3.0",
        ]);
        assert_eq!(
            choose(&track, "localhost:5001/app:1.2.0", &offered).as_deref(),
            Some("localhost:5001/app:1.3.0")
        );
        let digest = ImageTrack {
            follow: Follow::Digest,
            ..semver("*", None)
        };
        for bad in ["sha256:x\" # ", "sha256:ABC", "md5:00", ""] {
            let offered = Offer {
                tags: vec![],
                digests: [("main".to_string(), bad.to_string())].into(),
            };
            assert_eq!(
                choose(&digest, "localhost:5001/app:main", &offered),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_tags_filter_narrows_the_candidates() {
        let offered = offer(&["1.2.0", "1.3.0", "1.4.0", "1.3.1"]);
        let track = semver("^1.2", Some(r"^1\.[23]\."));
        assert_eq!(
            choose(&track, "localhost:5001/app:1.2.0", &offered).as_deref(),
            Some("localhost:5001/app:1.3.1")
        );
    }

    #[test]
    fn a_registry_with_a_port_and_a_pinned_digest() {
        let track = semver("^1", None);
        assert_eq!(
            choose(
                &track,
                &format!("localhost:5001/app:1.0.0@sha256:{}", "a".repeat(64)),
                &offer(&["1.1.0"])
            )
            .as_deref(),
            Some("localhost:5001/app:1.1.0")
        );
    }

    #[test]
    fn digest_follows_the_tag() {
        let track = ImageTrack {
            follow: Follow::Digest,
            ..semver("*", None)
        };
        let new = format!("sha256:{}", "b".repeat(64));
        let offered = Offer {
            tags: vec![],
            digests: [("main".to_string(), new.clone())].into(),
        };
        assert_eq!(
            choose(&track, "localhost:5001/app:main", &offered),
            Some(format!("localhost:5001/app:main@{new}"))
        );
        assert_eq!(
            choose(
                &track,
                &format!("localhost:5001/app:main@sha256:{}", "0".repeat(64)),
                &offered
            ),
            Some(format!("localhost:5001/app:main@{new}"))
        );
        assert_eq!(
            choose(&track, &format!("localhost:5001/app:main@{new}"), &offered),
            None
        );
        assert_eq!(
            choose(&track, "localhost:5001/app:main", &Offer::default()),
            None
        );
    }
}
