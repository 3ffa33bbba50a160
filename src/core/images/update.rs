//! An image update from start to end, as pure steps around the registry: which lookups the
//! policies need ([`lookups`]), the changes the answers make ([`changes`]), the edits per file
//! ([`edits_by_file`]), the commit message ([`message`]) and the listing of `shoal images`
//! ([`report`]).

use super::choose::{choose, newest, Offer};
use super::policy::{Follow, ImageTrack};
use super::rewrite::Edit;
use super::rewrite::{rewrite, RewriteError};
use super::sites::Site;
use crate::config::machines;
use crate::diag::{Diagnostic, Severity};
use crate::model::reference::Reference;
use crate::yaml::files::{read_error, FileSource};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// What the files say about images: the policies, the `image:` sites of every stack's compose
/// files (each file once), and the warnings (images given through `${VAR}`).
#[derive(Clone, Debug, Default)]
pub struct Scan {
    /// The policies of machines.yml.
    pub tracks: Vec<ImageTrack>,
    /// The image scalars of the compose files.
    pub sites: Vec<Site>,
    /// What could not be followed, and why.
    pub warnings: Vec<Diagnostic>,
}

/// Reads machines.yml's policies and the image sites of its stacks' compose files; the errors
/// of machines.yml and of unreadable compose files are returned as `Err`.
pub fn scan(files: &dyn FileSource) -> Result<Scan, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let machines = machines::load(files, &mut diags);
    let mut out = Scan {
        tracks: machines.images,
        ..Scan::default()
    };
    let mut seen = BTreeSet::new();
    for stack in &machines.stacks {
        for file in &stack.files {
            if !seen.insert(file.clone()) {
                continue;
            }
            match files.read(file) {
                Ok(Some(bytes)) => {
                    let (found, warnings) = super::sites::sites(file, &bytes);
                    out.sites.extend(found);
                    diags.extend(warnings);
                }
                Ok(None) => {}
                Err(e) => diags.push(read_error(file, &e)),
            }
        }
    }
    let (errors, warnings): (Vec<_>, Vec<_>) = diags
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if !errors.is_empty() {
        return Err(errors);
    }
    // Without a policy nothing is followed, so an interpolated image is nothing to warn about.
    if !out.tracks.is_empty() {
        out.warnings = warnings;
    }
    Ok(out)
}

/// The new text of each file `changes` touches, read from `files`.
pub fn rewritten(
    files: &dyn FileSource,
    changes: &[Change],
) -> Result<BTreeMap<String, String>, RewriteError> {
    let mut out = BTreeMap::new();
    for (file, edits) in edits_by_file(changes) {
        let unreadable = |why: String| RewriteError {
            file: file.clone(),
            line: 0,
            column: 0,
            from: edits[0].from.clone(),
            why,
        };
        let bytes = match files.read(&file) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(unreadable("the file is gone".into())),
            Err(e) => return Err(unreadable(e.to_string())),
        };
        let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8".into()))?;
        out.insert(file.clone(), rewrite(&file, &text, &edits)?);
    }
    Ok(out)
}

/// What to ask a registry about one policy's repository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    /// The policy's repository, as machines.yml writes it (the key of the offers).
    pub repository: String,
    /// A reference to the repository, as a compose file writes it (its registry and path are
    /// what is asked).
    pub reference: String,
    /// Whether its tag list is wanted (semver policies).
    pub tags: bool,
    /// The tags whose digests are wanted (digest policies: the tags the files write).
    pub digests: BTreeSet<String>,
}

/// The policy of `tracks` that governs `image`, if any.
pub fn track_of<'t>(tracks: &'t [ImageTrack], image: &str) -> Option<&'t ImageTrack> {
    let reference = Reference::parse(image).ok()?;
    tracks.iter().find(|track| track.governs(&reference))
}

/// The lookups the policies need for the images the files name; policies that no file uses
/// are still asked for their tags (`shoal images` shows what the registry offers).
pub fn lookups(tracks: &[ImageTrack], sites: &[Site]) -> Vec<Lookup> {
    tracks
        .iter()
        .map(|track| {
            let used: Vec<Reference> = sites
                .iter()
                .filter_map(|site| Reference::parse(&site.image).ok())
                .filter(|reference| track.governs(reference))
                .collect();
            let reference = sites
                .iter()
                .find(|site| Reference::parse(&site.image).is_ok_and(|r| track.governs(&r)))
                .map_or_else(|| track.repository.clone(), |site| site.image.clone());
            Lookup {
                repository: track.repository.clone(),
                reference,
                tags: matches!(track.follow, Follow::Semver { .. }),
                digests: match track.follow {
                    Follow::Digest => (used.into_iter().map(|r| r.tag))
                        .filter(|tag| track.considers(tag))
                        .collect(),
                    Follow::Semver { .. } => BTreeSet::new(),
                },
            }
        })
        .collect()
}

/// One reference to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The policy's repository, as written.
    pub repository: String,
    /// The compose file.
    pub file: String,
    /// The service.
    pub service: String,
    /// The line of the scalar.
    pub line: usize,
    /// The reference as written.
    pub from: String,
    /// The new reference.
    pub to: String,
    #[serde(skip)]
    edit: Edit,
}

impl Change {
    /// The change in a commit message's words: `images: localhost:5001/app 1.2.0 → 1.3.0`.
    pub fn summary(&self) -> String {
        format!(
            "images: {} {} → {}",
            self.repository,
            version_shown(&self.from),
            version_shown(&self.to)
        )
    }
}

/// The tag of `image`, with the start of its digest when it has one (`main@sha256:0123456789ab`).
fn version_shown(image: &str) -> String {
    match Reference::parse(image).ok() {
        Some(Reference {
            tag,
            digest: Some(digest),
            ..
        }) => format!("{tag}@{}", digest.chars().take(19).collect::<String>()),
        Some(reference) => reference.tag,
        None => image.to_string(),
    }
}

/// The changes the registry's `offers` (by repository) make to the `sites` the policies govern.
pub fn changes(
    tracks: &[ImageTrack],
    sites: &[Site],
    offers: &BTreeMap<String, Offer>,
) -> Vec<Change> {
    sites
        .iter()
        .filter_map(|site| {
            let track = track_of(tracks, &site.image)?;
            let offer = offers.get(&track.repository)?;
            let to = choose(track, &site.image, offer)?;
            Some(Change {
                repository: track.repository.clone(),
                file: site.file.clone(),
                service: site.service.clone(),
                line: site.pos.line,
                from: site.image.clone(),
                to: to.clone(),
                edit: Edit {
                    pos: site.pos,
                    from: site.image.clone(),
                    to,
                },
            })
        })
        .collect()
}

/// The edits of `changes`, by file.
pub fn edits_by_file(changes: &[Change]) -> BTreeMap<String, Vec<Edit>> {
    let mut out: BTreeMap<String, Vec<Edit>> = BTreeMap::new();
    for change in changes {
        out.entry(change.file.clone())
            .or_default()
            .push(change.edit.clone());
    }
    out
}

/// The commit message: one line per distinct change (`images: localhost:5001/app 1.2.0 → 1.3.0`).
pub fn message(changes: &[Change]) -> String {
    let lines: BTreeSet<String> = changes.iter().map(Change::summary).collect();
    lines.into_iter().collect::<Vec<_>>().join("\n")
}

/// One policy as `shoal images` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TrackReport {
    /// The repository, as written.
    pub repository: String,
    /// The policy in words (`semver ^1.2`, `digest`).
    pub policy: String,
    /// The references the compose files write for it.
    pub written: Vec<Written>,
    /// The newest tag the registry offers within the policy (semver), or the digest of the
    /// written tag (digest); `None` when the registry offers nothing that fits.
    pub newest: Option<String>,
    /// Why the registry could not be asked, if it could not.
    pub error: Option<String>,
}

/// A reference a compose file writes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Written {
    /// The file.
    pub file: String,
    /// The line.
    pub line: usize,
    /// The service.
    pub service: String,
    /// The reference.
    pub image: String,
    /// What `shoal images update` would write instead, if anything.
    pub update: Option<String>,
}

/// The listing of `shoal images`: each policy, what the files write, what the registry offers.
/// `failures` holds, by repository, why its registry could not be asked.
pub fn report(
    tracks: &[ImageTrack],
    sites: &[Site],
    offers: &BTreeMap<String, Offer>,
    failures: &BTreeMap<String, String>,
) -> Vec<TrackReport> {
    tracks
        .iter()
        .map(|track| {
            let offer = offers.get(&track.repository);
            let written = sites
                .iter()
                .filter(|site| {
                    track_of(tracks, &site.image).is_some_and(|t| t.repository == track.repository)
                })
                .map(|site| Written {
                    file: site.file.clone(),
                    line: site.pos.line,
                    service: site.service.clone(),
                    image: site.image.clone(),
                    update: offer.and_then(|offer| choose(track, &site.image, offer)),
                })
                .collect();
            let newest = offer.and_then(|offer| match track.follow {
                Follow::Semver { .. } => newest(track, &offer.tags).map(|(_, tag)| tag.to_string()),
                Follow::Digest => {
                    let digests: BTreeSet<String> = offer
                        .digests
                        .iter()
                        .map(|(tag, digest)| format!("{tag}@{digest}"))
                        .collect();
                    (!digests.is_empty())
                        .then(|| digests.into_iter().collect::<Vec<_>>().join(", "))
                }
            });
            TrackReport {
                repository: track.repository.clone(),
                policy: track.describe(),
                written,
                newest,
                error: failures.get(&track.repository).cloned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::policy::TagFilter;
    use crate::yaml::Pos;

    fn track(repository: &str, range: &str) -> ImageTrack {
        ImageTrack {
            repository: repository.into(),
            pos: Pos::default(),
            follow: Follow::Semver {
                range: semver::VersionReq::parse(range).unwrap(),
                written: range.into(),
            },
            tags: None,
        }
    }

    fn site(service: &str, line: usize, image: &str) -> Site {
        Site {
            file: "docker-compose.yml".into(),
            service: service.into(),
            pos: Pos { line, column: 12 },
            image: image.into(),
        }
    }

    #[test]
    fn changes_and_the_message() {
        let tracks = [track("localhost:5001/app", "^1.2")];
        let sites = [
            site("app", 3, "localhost:5001/app:1.2.0"),
            site("worker", 5, "localhost:5001/app:1.2.0"),
            site("other", 7, "localhost:5001/other:1.0.0"),
        ];
        let offers = [(
            "localhost:5001/app".to_string(),
            Offer {
                tags: vec![
                    "1.2.0".into(),
                    "1.3.0".into(),
                    "2.0.0".into(),
                    "latest".into(),
                ],
                digests: BTreeMap::new(),
            },
        )]
        .into();
        let found = changes(&tracks, &sites, &offers);
        assert_eq!(found.len(), 2);
        assert_eq!(message(&found), "images: localhost:5001/app 1.2.0 → 1.3.0");
        assert_eq!(edits_by_file(&found)["docker-compose.yml"].len(), 2);
        let listed = report(&tracks, &sites, &offers, &BTreeMap::new());
        assert_eq!(listed[0].newest.as_deref(), Some("1.3.0"));
        assert_eq!(listed[0].written.len(), 2);
        assert_eq!(
            listed[0].written[0].update.as_deref(),
            Some("localhost:5001/app:1.3.0")
        );
    }

    #[test]
    fn interpolated_images_are_told_only_where_policies_exist() {
        let compose = "services:\n  web:\n    image: ${WEB_IMAGE}\n";
        let without = crate::config::MemSource::new(
            "repo",
            vec![
                ("machines.yml", "machines: {}\n"),
                ("docker-compose.yml", compose),
            ],
        );
        assert!(scan(&without).unwrap().warnings.is_empty());
        let with = crate::config::MemSource::new(
            "repo",
            vec![
                ("machines.yml", "images:\n  nginx: {semver: ^1}\n"),
                ("docker-compose.yml", compose),
            ],
        );
        let found = scan(&with).unwrap();
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].line, 3);
        let broken = crate::config::MemSource::new(
            "repo",
            vec![("machines.yml", "images:\n  nginx: {semver: nope}\n")],
        );
        assert!(scan(&broken).is_err());
    }

    #[test]
    fn lookups_ask_for_tags_or_the_written_tags_digests() {
        let mut digest = track("localhost:5001/web", "*");
        digest.follow = Follow::Digest;
        digest.tags = Some(TagFilter(regex::Regex::new("^main$").unwrap()));
        let tracks = [track("localhost:5001/app", "^1"), digest];
        let sites = [
            site("web", 3, "localhost:5001/web:main"),
            site("web2", 4, "localhost:5001/web:stable@sha256:aa"),
        ];
        let asked = lookups(&tracks, &sites);
        assert_eq!(asked[0].reference, "localhost:5001/app");
        assert!(asked[0].tags);
        assert!(!asked[1].tags);
        assert_eq!(asked[1].digests.iter().collect::<Vec<_>>(), ["main"]);
        let digest_offer = [(
            "localhost:5001/web".to_string(),
            Offer {
                tags: vec![],
                digests: [(
                    "main".to_string(),
                    format!("sha256:0123456789ab{}", "c".repeat(52)),
                )]
                .into(),
            },
        )]
        .into();
        let found = changes(&tracks, &sites, &digest_offer);
        assert_eq!(found.len(), 1);
        assert_eq!(
            message(&found),
            "images: localhost:5001/web main → main@sha256:0123456789ab"
        );
    }
}
