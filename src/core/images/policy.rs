//! One image policy as `machines.yml` writes it: the repository it governs, how the new
//! reference is chosen (a semver range or a tag's digest) and which tags are considered.

use crate::model::reference::Reference;
use crate::yaml::Pos;

/// How a repository's reference follows the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Follow {
    /// The highest tag that is a version matching the range (`semver: "^1.2"`).
    Semver {
        /// The range.
        range: semver::VersionReq,
        /// The range as written.
        written: String,
    },
    /// The digest the written tag points to now (`digest: true`).
    Digest,
}

/// A `tags:` regular expression: only tags it matches are considered.
#[derive(Clone, Debug)]
pub struct TagFilter(pub regex::Regex);

impl PartialEq for TagFilter {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for TagFilter {}

impl TagFilter {
    /// Whether `tag` passes the filter.
    pub fn allows(&self, tag: &str) -> bool {
        self.0.is_match(tag)
    }
}

/// One entry of `images:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageTrack {
    /// The repository as written (`localhost:5001/app`).
    pub repository: String,
    /// Where machines.yml names it.
    pub pos: Pos,
    /// How its reference follows the registry.
    pub follow: Follow,
    /// The tags considered (all when `None`).
    pub tags: Option<TagFilter>,
}

impl ImageTrack {
    /// Whether `reference` names this policy's repository (the same registry and path, as the
    /// docker CLI normalises them: `nginx` is `docker.io/library/nginx`).
    pub fn governs(&self, reference: &Reference) -> bool {
        Reference::parse(&self.repository)
            .is_ok_and(|own| own.domain == reference.domain && own.path == reference.path)
    }

    /// Whether `tag` passes the `tags:` filter.
    pub fn considers(&self, tag: &str) -> bool {
        self.tags.as_ref().is_none_or(|filter| filter.allows(tag))
    }

    /// The policy in the words of machines.yml: `semver ^1.2`, `digest`, with `tags /re/`.
    pub fn describe(&self) -> String {
        let follow = match &self.follow {
            Follow::Semver { written, .. } => format!("semver {written}"),
            Follow::Digest => "digest".to_string(),
        };
        match &self.tags {
            Some(filter) => format!("{follow}, tags /{}/", filter.0.as_str()),
            None => follow,
        }
    }
}
