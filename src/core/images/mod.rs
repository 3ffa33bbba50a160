//! Image policies (DESIGN §9, `images:` in machines.yml): which image references the compose
//! files should name, decided from what a registry offers, and written back into the files so
//! that every deployed image is a commit.
//!
//! Pure: [`policy`] holds a policy as read ([`crate::config::images`] reads it), [`choose`]
//! decides the new reference from the registry's tags and digests, [`sites`] finds the `image:`
//! scalars of compose files, [`rewrite`] changes only their tag or digest in the file's text, and
//! [`update`] ties them together into the changes and the commit message. The registry is asked
//! at the edge (`shoal::registry`).

pub mod choose;
pub mod policy;
pub mod rewrite;
pub mod sites;
pub mod update;
