//! The apply lock: a volume `<cluster>-lock` on the host engine whose labels hold its holder,
//! since when and until when it is held (see [`crate::drivers::lock`] for who may take it).
//!
//! Creating a volume whose name exists does not fail: the engine answers with the existing
//! volume, labels and all. The engine creates a name once, so whoever's random `nonce` comes
//! back holds the lock. An expired lock, or one the same holder took earlier, is removed and
//! taken again; the removal checks the nonce first, which narrows, but does not close, the window
//! in which two takers of one expired lock could both succeed.

use super::{is_not_found, DindError};
use crate::drivers::lock::{HeldLock, LockHolder};
use crate::drivers::{DriverError, DriverResult};
use bollard::models::{Volume, VolumeCreateRequest};
use bollard::query_parameters::RemoveVolumeOptions;
use bollard::Docker;

pub use crate::drivers::lock::{LABEL_LOCK_EXPIRES, LABEL_LOCK_HOLDER, LABEL_LOCK_SINCE};
/// Label telling one taking of the lock from another.
pub const LABEL_LOCK_NONCE: &str = "io.shoal.lock.nonce";

/// The lock volume's name, `<cluster>-lock`.
pub(crate) fn lock_name(cluster: &str) -> String {
    format!("{cluster}-lock")
}

/// What makes one taking of the lock tell itself from a racing one: a random UUID.
fn nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

struct Held {
    lock: HeldLock,
    nonce: String,
}

fn held(volume: &Volume) -> Held {
    let get = |key: &str| volume.labels.get(key).cloned().unwrap_or_default();
    Held {
        lock: HeldLock {
            holder: LockHolder::decode(&get(LABEL_LOCK_HOLDER)),
            since: get(LABEL_LOCK_SINCE).parse().unwrap_or(0),
            expires_at: get(LABEL_LOCK_EXPIRES).parse().unwrap_or(0),
        },
        nonce: get(LABEL_LOCK_NONCE),
    }
}

async fn remove_if_same(docker: &Docker, name: &str, nonce: &str) -> Result<(), DindError> {
    match docker.inspect_volume(name).await {
        Ok(volume) if held(&volume).nonce == nonce => {}
        Ok(_) => return Ok(()),
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => {
            return Err(DindError::docker(
                format!("cannot inspect volume {name}"),
                e,
            ))
        }
    }
    match docker
        .remove_volume(name, Some(RemoveVolumeOptions { force: true }))
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(DindError::docker(format!("cannot remove volume {name}"), e)),
    }
}

/// Takes the lock of `cluster` for `holder` until `now + ttl_seconds`.
pub(crate) async fn lock(
    docker: &Docker,
    cluster: &str,
    holder: &LockHolder,
    now: u64,
    ttl_seconds: u64,
) -> DriverResult<()> {
    let name = lock_name(cluster);
    let expires_at = now.saturating_add(ttl_seconds);
    for _ in 0..5 {
        let mine = nonce();
        let request = VolumeCreateRequest {
            name: Some(name.clone()),
            driver: Some("local".to_string()),
            labels: Some(super::labels_for(
                cluster,
                [
                    (LABEL_LOCK_HOLDER, holder.encode()),
                    (LABEL_LOCK_SINCE, now.to_string()),
                    (LABEL_LOCK_EXPIRES, expires_at.to_string()),
                    (LABEL_LOCK_NONCE, mine.clone()),
                ],
            )),
            ..Default::default()
        };
        let volume = docker
            .create_volume(request)
            .await
            .map_err(|e| DindError::docker(format!("cannot create the lock volume {name}"), e))?;
        let current = held(&volume);
        if current.nonce == mine {
            return Ok(());
        }
        if current.lock.can_be_taken_by(holder, now) {
            if current.lock.holder.id != holder.id {
                tracing::warn!(
                    "taking over the apply lock {} of {} (pid {} on {}): {}",
                    current.lock.holder.id,
                    current.lock.holder.program,
                    current.lock.holder.pid,
                    current.lock.holder.host,
                    if current.lock.expires_at <= now {
                        "it expired"
                    } else {
                        "its process is gone"
                    }
                );
            }
            remove_if_same(docker, &name, &current.nonce).await?;
            continue;
        }
        return Err(DriverError::Locked(Box::new(current.lock)));
    }
    Err(DriverError::Other(format!(
        "could not take the lock {name}: it changed hands while it was being taken; try again"
    )))
}

/// Releases the lock of `cluster` if the lock with ID `lock_id` is the one held; returns it.
pub(crate) async fn unlock(
    docker: &Docker,
    cluster: &str,
    lock_id: &str,
) -> DriverResult<Option<HeldLock>> {
    let name = lock_name(cluster);
    match docker.inspect_volume(&name).await {
        Ok(volume) => {
            let current = held(&volume);
            if current.lock.holder.id != lock_id {
                return Ok(None);
            }
            remove_if_same(docker, &name, &current.nonce).await?;
            Ok(Some(current.lock))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => {
            Err(DindError::docker(format!("cannot inspect the lock volume {name}"), e).into())
        }
    }
}
