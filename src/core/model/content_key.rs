//! The cluster's content key: what versions of secrets and configs are keyed with (DESIGN §3).
//!
//! A secret's or config's version (the `-<8 hex>` of its swarm name and the label
//! [`LABEL_CONTENT_VERSION`]) is the first 8 hex of an HMAC-SHA256 of its content under a random
//! 32-byte key kept in the swarm (the swarm label [`LABEL_CONTENT_KEY`]). Whoever reads a
//! version (a plan, a CI artifact, `docker secret ls`) cannot test guesses of a weak secret
//! without the key, and two clusters holding one content show unrelated versions.
//!
//! The key is never printed: [`ContentKey`] has no `Serialize`, its `Debug` shows nothing of it,
//! and the observation keeps it out of the swarm's label map. Only a saved plan file (0600)
//! carries a key, the one a plan made for a cluster that has none yet, so that applying it
//! later gives the names it showed. Making a key is the shell's (the observation module): the core
//! only computes with one.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Deserializer};
use sha2::{Digest, Sha256};

/// Swarm label holding the cluster's content key, 64 hex; written by apply, never printed.
pub const LABEL_CONTENT_KEY: &str = "io.shoal.content-key";

/// Label on a secret or config holding the keyed version of its content (see the module docs),
/// stamped on the objects shoal creates under the name `docker stack deploy` gives them: a
/// secret cannot be read back, so this is how shoal knows later what it holds.
pub const LABEL_CONTENT_VERSION: &str = "io.shoal.content-version";

/// Label of the same purpose written by shoal before content versions were keyed: the first 8
/// hex of the plain sha256 of the content. Still recognised, never written.
pub const LABEL_LEGACY_SHA256: &str = "io.shoal.sha256";

/// Bytes in a content key.
pub const CONTENT_KEY_BYTES: usize = 32;

/// A cluster's content key (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct ContentKey([u8; CONTENT_KEY_BYTES]);

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(..)")
    }
}

impl ContentKey {
    /// The key made of `bytes` (random ones, made by the observation module).
    pub fn from_bytes(bytes: [u8; CONTENT_KEY_BYTES]) -> ContentKey {
        ContentKey(bytes)
    }

    /// The key a label value holds: 64 hex digits; `None` for anything else.
    pub fn parse(text: &str) -> Option<ContentKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(ContentKey(bytes.try_into().ok()?))
    }

    /// The key as its label value holds it (64 hex). For the swarm label and the saved plan
    /// file only: never print it.
    pub fn to_label(&self) -> String {
        hex::encode(self.0)
    }

    /// The version of some content under this key: the first 8 hex of the HMAC-SHA256 of its
    /// `data` and, when one is set, the template driver that renders it (a config whose
    /// `template_driver` changes is new content, as in [`crate::model::spec::content_sha256`]).
    pub fn version(&self, data: &[u8], template_driver: Option<&str>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(data);
        if let Some(driver) = template_driver {
            mac.update(b"\0templating:");
            mac.update(driver.as_bytes());
        }
        hex::encode(&mac.finalize().into_bytes()[..4])
    }

    /// A short digest telling keys apart (for the observed state's fingerprint), from which
    /// the key cannot be recovered.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest([b"shoal content key:".as_slice(), &self.0].concat());
        hex::encode(&digest[..8])
    }
}

impl<'de> Deserialize<'de> for ContentKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ContentKey, D::Error> {
        let text = String::deserialize(deserializer)?;
        ContentKey::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a content key is 64 hex digits"))
    }
}

/// The legacy, unkeyed version of content whose sha256 is `sha256_hex`: its first 8 hex, what
/// names and [`LABEL_LEGACY_SHA256`] carried before versions were keyed.
pub fn legacy_version(sha256_hex: &str) -> &str {
    sha256_hex.get(..8).unwrap_or(sha256_hex)
}

/// What the swarm holds under [`LABEL_CONTENT_KEY`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum SwarmContentKey {
    /// No key yet (a new swarm, or one shoal has not written to since versions were keyed).
    #[default]
    Absent,
    /// The cluster's key.
    Key(ContentKey),
    /// A label that is not a key (edited by hand).
    Malformed,
}

impl SwarmContentKey {
    /// What a swarm label value (or its absence) holds.
    pub fn of_label(value: Option<&str>) -> SwarmContentKey {
        match value {
            None => SwarmContentKey::Absent,
            Some(text) => ContentKey::parse(text)
                .map(SwarmContentKey::Key)
                .unwrap_or(SwarmContentKey::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_depend_on_the_key_and_are_not_the_sha256_prefix() {
        let one = ContentKey::from_bytes([1; 32]);
        let two = ContentKey::from_bytes([2; 32]);
        let weak = b"password1";
        let sha = hex::encode(Sha256::digest(weak));
        assert_ne!(one.version(weak, None), legacy_version(&sha));
        assert_ne!(one.version(weak, None), two.version(weak, None));
        assert_eq!(one.version(weak, None), one.version(weak, None));
        assert_eq!(one.version(weak, None).len(), 8);
    }

    #[test]
    fn a_template_driver_is_part_of_the_content() {
        let key = ContentKey::from_bytes([1; 32]);
        let data = b"{{ .Service.Name }}";
        assert_ne!(key.version(data, None), key.version(data, Some("golang")));
    }

    #[test]
    fn a_key_reads_back_from_its_label_and_never_shows_in_debug() {
        let key = ContentKey::from_bytes([7; 32]);
        assert_eq!(ContentKey::parse(&key.to_label()), Some(key.clone()));
        assert!(!format!("{key:?}").contains(&key.to_label()[..8]));
        assert_eq!(
            SwarmContentKey::of_label(Some("nope")),
            SwarmContentKey::Malformed
        );
        assert_eq!(SwarmContentKey::of_label(None), SwarmContentKey::Absent);
        assert_ne!(key.fingerprint(), key.to_label()[..16]);
    }
}
