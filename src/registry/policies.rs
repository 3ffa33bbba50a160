//! Image policies at the edge (DESIGN §9): the files scanned ([`shoal_core::images::update`]),
//! the registries asked ([`super::offers`]), and the decisions and new file texts made by the
//! core. One pass, shared by `shoal images` and the watcher's `--images-every` timer.

use crate::diag::Diagnostic;
use crate::yaml::files::FileSource;
use shoal_core::images::rewrite::RewriteError;
use shoal_core::images::update::{self, Change, Scan, TrackReport};
use std::collections::BTreeMap;

/// Why a pass could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// machines.yml or a compose file is invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// A reference could not be rewritten in place.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
}

/// One pass over the files: what the policies say, what the registries offer, what changes.
#[derive(Debug)]
pub struct Pass {
    /// The policies and image sites.
    pub scan: Scan,
    /// Each policy as `shoal images` lists it.
    pub report: Vec<TrackReport>,
    /// The references to change.
    pub changes: Vec<Change>,
    /// The new texts of the files the changes touch.
    pub files: BTreeMap<String, String>,
}

impl Pass {
    /// The commit message of the changes (`images: localhost:5001/app 1.2.0 → 1.3.0`, a line each).
    pub fn message(&self) -> String {
        update::message(&self.changes)
    }
}

/// Scans `files`, asks the registries and decides.
pub async fn pass(files: &dyn FileSource) -> Result<Pass, PolicyError> {
    let scan = update::scan(files).map_err(PolicyError::Invalid)?;
    let lookups = update::lookups(&scan.tracks, &scan.sites);
    let (offers, failures) = super::offers(&lookups).await;
    let report = update::report(&scan.tracks, &scan.sites, &offers, &failures);
    let changes = update::changes(&scan.tracks, &scan.sites, &offers);
    let files = update::rewritten(files, &changes)?;
    Ok(Pass {
        scan,
        report,
        changes,
        files,
    })
}
