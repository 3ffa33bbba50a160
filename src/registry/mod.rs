//! Images from registries, at the edge: the credentials of the user running shoal (their docker
//! config and credential helpers, [`auth`]), sent to the engine as `X-Registry-Auth` like
//! `docker stack deploy --with-registry-auth` ([`registry_auth`]), and the digest each tag
//! points to, asked of the registry's HTTP API v2 ([`client`]) so that `policy.images: pin`
//! sends `image:tag@sha256:…` as `docker stack deploy` does ([`pin_images`]).
//!
//! Not pinned: references that already carry a digest, images the driver side-loads
//! ([`Driver::side_loaded_images`]: the dind driver's `preload_images` come from the host, not a
//! registry, unless they are named for the cluster's own registry, which they are pushed into
//! before apply plans), and every image of a driver whose nodes pull nothing
//! ([`Driver::pulls_images`]: the sim). A registry that cannot be asked gives a warning and the
//! reference as written, so the planner keeps the digest the service runs.

pub mod auth;
pub mod client;
pub mod policies;

use crate::drivers::Driver;
use crate::model::reference::{pinned, Reference};
use crate::model::{Desired, ImagePolicy};
use auth::DockerConfig;
use std::collections::{BTreeMap, BTreeSet};

/// The `X-Registry-Auth` credentials for pulling `image`, from the docker config of the user
/// running shoal; `None` when it holds none for that registry.
pub fn registry_auth(image: &str) -> Option<bollard::auth::DockerCredentials> {
    let reference = Reference::parse(image).ok()?;
    DockerConfig::load()
        .credentials(&reference)
        .map(|c| c.to_bollard())
}

/// Pins the image of every service of `desired` to the digest its tag points to now, when
/// `policy.images` is `pin` and `driver`'s nodes pull images, except the images the driver
/// side-loads. Returns the warnings for the images that could not be resolved (those keep their
/// reference as written).
pub async fn pin_images(desired: &mut Desired, driver: &dyn Driver) -> Vec<String> {
    if desired.policy.images != ImagePolicy::Pin || !driver.pulls_images() {
        return Vec::new();
    }
    let preloaded: BTreeSet<String> = driver.side_loaded_images().into_iter().collect();
    let wanted: BTreeSet<String> = (desired.stacks.values())
        .flat_map(|stack| stack.services.values())
        .map(|spec| spec.task_template.container_spec.image.clone())
        .filter(|image| !image.contains('@') && !preloaded.contains(image))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let config = DockerConfig::load();
    let lookups = wanted.into_iter().map(|image| {
        let config = &config;
        async move {
            let result = match Reference::parse(&image) {
                Err(problem) => Err(problem),
                Ok(reference) => {
                    let credentials = config.credentials(&reference);
                    client::resolve_digest(&reference, credentials.as_ref())
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            (image, result)
        }
    });
    let mut digests = BTreeMap::new();
    let mut warnings = Vec::new();
    for (image, result) in futures::future::join_all(lookups).await {
        match result {
            Ok(digest) => {
                digests.insert(image.clone(), pinned(&image, &digest));
            }
            Err(why) => warnings.push(format!(
                "image {image} could not be accessed on a registry to record its digest ({why}): services keep the image they run, and new tasks resolve the tag on their node"
            )),
        }
    }
    for stack in desired.stacks.values_mut() {
        for spec in stack.services.values_mut() {
            let image = &mut spec.task_template.container_spec.image;
            if let Some(pinned) = digests.get(image.as_str()) {
                *image = pinned.clone();
            }
        }
    }
    warnings
}

/// What the registries offer for the image policies' `lookups` (tag lists, and the digests of
/// the tags digest policies follow), asked with the docker config's credentials as pinning asks;
/// and, by repository, why a registry could not be asked.
pub async fn offers(
    lookups: &[shoal_core::images::update::Lookup],
) -> (
    BTreeMap<String, shoal_core::images::choose::Offer>,
    BTreeMap<String, String>,
) {
    let config = DockerConfig::load();
    let asked = lookups.iter().map(|lookup| {
        let config = &config;
        async move {
            let result = async {
                let reference = Reference::parse(&lookup.reference)?;
                let credentials = config.credentials(&reference);
                let mut offer = shoal_core::images::choose::Offer::default();
                if lookup.tags {
                    offer.tags = client::list_tags(&reference, credentials.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                }
                for tag in &lookup.digests {
                    let tagged = Reference {
                        tag: tag.clone(),
                        digest: None,
                        ..reference.clone()
                    };
                    let digest = client::resolve_digest(&tagged, credentials.as_ref())
                        .await
                        .map_err(|e| e.to_string())?;
                    offer.digests.insert(tag.clone(), digest);
                }
                Ok::<_, String>(offer)
            }
            .await;
            (lookup.repository.clone(), result)
        }
    });
    let mut offers = BTreeMap::new();
    let mut failures = BTreeMap::new();
    for (repository, result) in futures::future::join_all(asked).await {
        match result {
            Ok(offer) => {
                offers.insert(repository, offer);
            }
            Err(why) => {
                failures.insert(repository, why);
            }
        }
    }
    (offers, failures)
}
