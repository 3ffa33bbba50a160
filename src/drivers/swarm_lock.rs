//! The apply lock in the swarm's own Raft store (DESIGN §4): labels on the swarm object, taken,
//! renewed and released with compare-and-swap on the swarm's version. Every manager of a swarm
//! reads and writes the same store, so two shoal processes that reach the swarm through
//! different managers (their machines.yml list them in another order, or one sees a manager the
//! other does not) still meet at one lock: the second writer's versioned update fails and it
//! reads the first one's lock.
//!
//! Before a swarm exists there is no such store; drivers then keep the lock in their own store
//! (see the generic driver).

use super::lock::{HeldLock, LockHolder};
use super::{Driver, DriverError, DriverResult};
use crate::engine::{EngineError, Swarm};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Versioned updates tried before giving up on a swarm whose labels keep changing.
const ATTEMPTS: usize = 8;

/// Takes (or renews) the lock for `holder` until `now + ttl_seconds` through `manager`;
/// refuses with [`DriverError::Locked`] while another live holder has it. Fails with the
/// engine's error when `manager` is not a manager of a swarm (the caller then uses its own store).
pub async fn lock(
    manager: &dyn Swarm,
    holder: &LockHolder,
    now: u64,
    ttl_seconds: u64,
) -> Result<(), SwarmLockError> {
    for _ in 0..ATTEMPTS {
        let swarm = manager.inspect_swarm().await?;
        let current = HeldLock::from_labels(&swarm.labels);
        if let Some(held) = current.as_ref().filter(|h| !h.can_be_taken_by(holder, now)) {
            return Err(SwarmLockError::Driver(DriverError::Locked(Box::new(
                held.clone(),
            ))));
        }
        if let Some(held) = current.as_ref().filter(|h| h.holder.id != holder.id) {
            tracing::warn!(
                "taking over the apply lock {} of {} (pid {} on {}): {}",
                held.holder.id,
                held.holder.program,
                held.holder.pid,
                held.holder.host,
                if held.expires_at <= now {
                    "it expired"
                } else {
                    "its process is gone"
                }
            );
        }
        let mine = HeldLock::taken(current.as_ref(), holder, now, ttl_seconds);
        match manager
            .update_swarm_labels(swarm.version, mine.record_in(&swarm.labels))
            .await
        {
            Ok(()) => return Ok(()),
            Err(EngineError::OutOfSequence(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SwarmLockError::Driver(DriverError::Other(
        "could not take the apply lock: the swarm's labels kept changing while it was being taken; try again"
            .to_string(),
    )))
}

/// Changes the swarm's labels through `manager` with `change` (`None`: nothing to change),
/// at the version inspected, again when another writer got in between; whether it wrote.
pub async fn change_labels(
    manager: &dyn Swarm,
    mut change: impl FnMut(&BTreeMap<String, String>) -> Option<BTreeMap<String, String>>,
) -> Result<bool, SwarmLockError> {
    for _ in 0..ATTEMPTS {
        let swarm = manager.inspect_swarm().await?;
        let Some(next) = change(&swarm.labels) else {
            return Ok(false);
        };
        match manager.update_swarm_labels(swarm.version, next).await {
            Ok(()) => return Ok(true),
            Err(EngineError::OutOfSequence(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SwarmLockError::Driver(DriverError::Other(
        "could not change the swarm's labels: they kept changing (other writers); try again"
            .to_string(),
    )))
}

/// Releases the lock whose ID is `lock_id`, if it is the one held; returns it.
pub async fn unlock(
    manager: &dyn Swarm,
    lock_id: &str,
) -> Result<Option<HeldLock>, SwarmLockError> {
    for _ in 0..ATTEMPTS {
        let swarm = manager.inspect_swarm().await?;
        let Some(held) = HeldLock::from_labels(&swarm.labels).filter(|h| h.holder.id == lock_id)
        else {
            return Ok(None);
        };
        match manager
            .update_swarm_labels(swarm.version, HeldLock::erased_from(&swarm.labels))
            .await
        {
            Ok(()) => return Ok(Some(held)),
            Err(EngineError::OutOfSequence(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SwarmLockError::Driver(DriverError::Other(
        "could not release the apply lock: the swarm's labels kept changing; it expires by itself"
            .to_string(),
    )))
}

/// Why the swarm lock could not be taken or released.
#[derive(Debug, thiserror::Error)]
pub enum SwarmLockError {
    /// The engine is no manager of a swarm (there is none yet): use the driver's own store.
    #[error("{0}")]
    NoSwarm(EngineError),
    /// Held by another, or the engine failed.
    #[error(transparent)]
    Driver(DriverError),
}

impl From<EngineError> for SwarmLockError {
    fn from(error: EngineError) -> Self {
        match error {
            // No swarm yet, or one without a leader (whose Raft store takes no write: the plan
            // refuses it with the recovery).
            EngineError::NotManager(_) | EngineError::NoLeader(_) => SwarmLockError::NoSwarm(error),
            other => SwarmLockError::Driver(DriverError::Other(format!(
                "cannot read or write the apply lock in the swarm: {other}"
            ))),
        }
    }
}

impl SwarmLockError {
    /// The driver's error, for a driver with no store of its own to fall back to.
    pub fn into_driver_error(self) -> DriverError {
        match self {
            SwarmLockError::NoSwarm(e) => {
                DriverError::Unavailable(format!("no swarm to keep the apply lock in: {e}"))
            }
            SwarmLockError::Driver(e) => e,
        }
    }
}

/// The first of `machines` whose engine serves a swarm's control API: where the apply lock
/// lives once a swarm exists.
pub async fn swarm_manager(driver: &dyn Driver, machines: &[String]) -> Option<Arc<dyn Swarm>> {
    for machine in machines {
        let Ok(engine) = driver.engine(machine).await else {
            continue;
        };
        if engine.info().await.is_ok_and(|i| i.control_available) {
            return Some(engine);
        }
    }
    None
}

/// Takes or renews the lock in the swarm of `manager` (see [`swarm_manager`]); `Ok(false)`
/// when there is no swarm to keep it in, and the driver keeps it in its own store.
pub async fn lock_in_swarm(
    manager: Option<&dyn Swarm>,
    holder: &LockHolder,
    now: u64,
    ttl_seconds: u64,
) -> DriverResult<bool> {
    let Some(manager) = manager else {
        return Ok(false);
    };
    match lock(manager, holder, now, ttl_seconds).await {
        Ok(()) => Ok(true),
        Err(SwarmLockError::NoSwarm(e)) => {
            tracing::debug!("no swarm to keep the apply lock in ({e}); using the driver's store");
            Ok(false)
        }
        Err(e) => Err(e.into_driver_error()),
    }
}

/// Releases the lock `lock_id` from the swarm of `manager`, if held there.
pub async fn unlock_in_swarm(
    manager: Option<&dyn Swarm>,
    lock_id: &str,
) -> DriverResult<Option<HeldLock>> {
    let Some(manager) = manager else {
        return Ok(None);
    };
    match unlock(manager, lock_id).await {
        Ok(held) => Ok(held),
        Err(SwarmLockError::NoSwarm(_)) => Ok(None),
        Err(e) => Err(e.into_driver_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::sim::SimDriver;
    use crate::model::{MachineSpec, Role};
    use std::collections::BTreeMap;

    /// A manager machine `name` of the sim, in no swarm yet, and its engine.
    async fn manager_machine(driver: &SimDriver, name: &str) -> std::sync::Arc<dyn Swarm> {
        driver
            .create(&MachineSpec {
                name: name.into(),
                role: Role::Manager,
                labels: BTreeMap::new(),
                host: None,
            })
            .await
            .unwrap();
        driver.engine(name).await.unwrap()
    }

    async fn two_managers() -> (
        SimDriver,
        std::sync::Arc<dyn Swarm>,
        std::sync::Arc<dyn Swarm>,
    ) {
        let driver = SimDriver::in_memory();
        let a = manager_machine(&driver, "a").await;
        let b = manager_machine(&driver, "b").await;
        a.init_swarm().await.unwrap();
        let tokens = a.join_tokens().await.unwrap();
        let address = a.info().await.unwrap().node_addr;
        b.join_swarm(&address, &tokens.manager).await.unwrap();
        (driver, a, b)
    }

    #[tokio::test]
    async fn two_writers_through_different_managers_meet_at_one_lock() {
        let (_driver, a, b) = two_managers().await;
        let first = LockHolder::this_process("shoal apply");
        let mut second = LockHolder::this_process("shoal apply");
        second.host = "another-host".into();
        lock(a.as_ref(), &first, 1_000, 30).await.unwrap();
        let refused = lock(b.as_ref(), &second, 1_010, 30).await.unwrap_err();
        assert!(
            matches!(refused, SwarmLockError::Driver(DriverError::Locked(_))),
            "{refused}"
        );
        // Renewed through the other manager, it outlives its first TTL.
        lock(b.as_ref(), &first, 1_025, 30).await.unwrap();
        assert!(lock(a.as_ref(), &second, 1_040, 30).await.is_err());
        assert_eq!(
            unlock(b.as_ref(), &first.id)
                .await
                .unwrap()
                .map(|h| h.since),
            Some(1_000)
        );
        lock(a.as_ref(), &second, 1_041, 30).await.unwrap();
    }

    #[tokio::test]
    async fn a_lock_on_another_host_is_taken_only_once_expired() {
        let (_driver, a, _b) = two_managers().await;
        let mut remote = LockHolder::this_process("shoal watch");
        remote.host = "elsewhere".into();
        lock(a.as_ref(), &remote, 1_000, 30).await.unwrap();
        let me = LockHolder::this_process("shoal apply");
        assert!(lock(a.as_ref(), &me, 1_029, 30).await.is_err());
        lock(a.as_ref(), &me, 1_030, 30).await.unwrap();
        assert_eq!(unlock(a.as_ref(), &remote.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn no_swarm_says_so() {
        let driver = SimDriver::in_memory();
        let a = manager_machine(&driver, "a").await;
        let me = LockHolder::this_process("shoal apply");
        assert!(matches!(
            lock(a.as_ref(), &me, 1, 30).await,
            Err(SwarmLockError::NoSwarm(_))
        ));
    }
}
