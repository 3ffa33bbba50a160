//! Confirming an optimistic observation under the apply lock (DESIGN §3.6).
//!
//! Apply and the watcher observe the cluster while the apply lock is being taken rather than
//! after. Once the lock is held, they read again only what tells whether anything changed in
//! between: the machines as the driver lists them and, through the manager the observation
//! read from, the swarm object, the nodes, the networks, secrets and configs (small lists, kept
//! as read again) and the services' IDs and versions (`Version.Index`, which swarm moves on
//! every change of a service, its rollout's progress included; no specs, no task counts).
//! What moved is observed again: the services and their tasks when only services moved, all
//! of it when machines, nodes or the swarm did. The plan is therefore made from the cluster as
//! it is under the lock, as if it had been observed only then.

use super::{
    match_nodes_to_machines, nodes_by_id, observe, observed_swarm, tasks_of_services, Observation,
    ObserveError,
};
use crate::drivers::Driver;
use crate::engine::{EngineError, ObjectVersion, Swarm, SwarmObject};
use crate::model::observed::ObservedTask;
use crate::model::{
    MachineState, Observed, ObservedMachine, ObservedNode, ObservedObject, ObservedService, Role,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::Instrument;

/// What has to be observed again, by what a confirmation read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Again {
    /// Nothing moved: the observation holds (with the small lists as read again).
    Nothing,
    /// Services moved (created, removed, updated, scaled, their rollout advanced): they and
    /// their tasks are read again.
    Services,
    /// Machines, nodes or the swarm itself moved: the whole cluster is observed again.
    Everything,
}

/// What a confirmation reads again once the lock is held.
#[derive(Clone, Debug, Default)]
pub struct Reread {
    /// The machines, as the driver lists them (not probed).
    pub machines: Vec<ObservedMachine>,
    /// The swarm object.
    pub swarm: SwarmObject,
    /// The nodes.
    pub nodes: Vec<ObservedNode>,
    /// Each service's ID and version, by name.
    pub services: BTreeMap<String, ObjectVersion>,
    /// Swarm-scoped networks by name.
    pub networks: BTreeMap<String, ObservedObject>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, ObservedObject>,
    /// Configs by name.
    pub configs: BTreeMap<String, ObservedObject>,
}

/// What of `optimistic` must be observed again, given what was read again under the lock;
/// `listed` is the driver's list the observation probed. Machines are compared as the driver
/// lists them (name, state, the role they were made for), nodes and services by ID and
/// version, the swarm by ID.
pub fn to_observe_again(
    listed: &[ObservedMachine],
    optimistic: &Observed,
    reread: &Reread,
) -> Again {
    let machines = |list: &[ObservedMachine]| -> BTreeMap<String, (MachineState, Option<Role>)> {
        (list.iter())
            .map(|m| (m.name.clone(), (m.state, m.created_role)))
            .collect()
    };
    let (machines_before, machines_now) = (machines(listed), machines(&reread.machines));
    let swarm_before = optimistic.swarm.as_ref().map(|s| s.id.as_str());
    let nodes_before: BTreeMap<&str, u64> = (optimistic.nodes.values())
        .map(|n| (n.id.as_str(), n.version))
        .collect();
    let nodes_now: BTreeMap<&str, u64> = (reread.nodes.iter())
        .map(|n| (n.id.as_str(), n.version))
        .collect();
    if machines_before != machines_now
        || swarm_before != Some(reread.swarm.id.as_str())
        || nodes_before != nodes_now
    {
        return Again::Everything;
    }
    let services_before: BTreeMap<&str, (&str, u64)> = (optimistic.services.iter())
        .map(|(name, s)| (name.as_str(), (s.id.as_str(), s.version)))
        .collect();
    let services_now: BTreeMap<&str, (&str, u64)> = (reread.services.iter())
        .map(|(name, v)| (name.as_str(), (v.id.as_str(), v.version)))
        .collect();
    if services_before != services_now {
        Again::Services
    } else {
        Again::Nothing
    }
}

/// `optimistic` with what was read again: the swarm object, nodes, networks, secrets and
/// configs as read again, the services and tasks given when they were read again; machines
/// (and what their probes found) as observed. For [`Again::Nothing`] and [`Again::Services`].
pub fn brought_up_to_date(
    optimistic: Observed,
    reread: Reread,
    services: Option<(Vec<ObservedService>, Vec<ObservedTask>)>,
    now: u64,
) -> Observed {
    let mut observed = Observed {
        observed_at: now,
        swarm: Some(observed_swarm(reread.swarm)),
        nodes: nodes_by_id(reread.nodes),
        networks: reread.networks,
        secrets: reread.secrets,
        configs: reread.configs,
        ..optimistic
    };
    if let Some((services, tasks)) = services {
        observed.tasks = tasks_of_services(&services, tasks);
        observed.services = (services.into_iter())
            .map(|s| (s.spec.name.clone(), s))
            .collect();
    }
    match_nodes_to_machines(&mut observed);
    observed
}

/// Confirms an observation taken while the lock was being taken, once it is held: reads again
/// what tells whether anything changed, and observes again what did (see the module). An
/// observation that read no swarm (none yet, or no manager answered, or quorum is lost) is
/// taken again whole; so is one whose manager fails the confirmation's reads.
pub(crate) async fn confirm(
    driver: &Arc<dyn Driver>,
    optimistic: Observation,
    now: u64,
) -> Result<Observed, ObserveError> {
    let Observation {
        observed: optimistic,
        listed,
        manager,
    } = optimistic;
    let readable = (optimistic.swarm.as_ref()).is_some_and(|s| s.quorum_error.is_none());
    let Some((machine, manager)) = manager.filter(|_| readable) else {
        return observe_again(driver, now).await;
    };
    let reread = match read_again(driver, manager.as_ref())
        .instrument(crate::phase!("read again"))
        .await
    {
        Ok(reread) => reread,
        Err(e) => {
            tracing::debug!(
                "cannot confirm the observation through {machine} ({e}): observing again"
            );
            return observe_again(driver, now).await;
        }
    };
    let again = to_observe_again(&listed, &optimistic, &reread);
    tracing::debug!(?again, "confirmed the observation under the apply lock");
    let services = match again {
        Again::Everything => return observe_again(driver, now).await,
        Again::Nothing => None,
        Again::Services => Some(
            tokio::try_join!(manager.list_services(), manager.list_tasks())
                .map_err(|source| ObserveError::Engine { machine, source })?,
        ),
    };
    Ok(brought_up_to_date(optimistic, reread, services, now))
}

async fn observe_again(driver: &Arc<dyn Driver>, now: u64) -> Result<Observed, ObserveError> {
    observe(driver, now)
        .instrument(crate::phase!("observe again"))
        .await
}

/// Why a confirmation's reads failed.
#[derive(Debug, thiserror::Error)]
enum ReadAgainError {
    #[error(transparent)]
    Driver(#[from] crate::drivers::DriverError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The confirmation's reads, all at once: the driver's list and the manager's small lists.
async fn read_again(
    driver: &Arc<dyn Driver>,
    manager: &dyn Swarm,
) -> Result<Reread, ReadAgainError> {
    let swarm = async {
        Ok::<_, EngineError>(tokio::try_join!(
            manager.inspect_swarm(),
            manager.list_nodes(),
            manager.service_versions(),
            manager.list_networks(),
            manager.list_secrets(),
            manager.list_configs(),
        )?)
    };
    let (machines, swarm) = tokio::join!(driver.list(), swarm);
    let (swarm, nodes, services, networks, secrets, configs) = swarm?;
    Ok(Reread {
        machines: machines?,
        swarm,
        nodes,
        services,
        networks,
        secrets,
        configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::lock::{HeldLock, LockHolder};
    use crate::drivers::sim::SimDriver;
    use crate::drivers::{DriverError, DriverResult};
    use crate::model::{Desired, MachineSpec};
    use crate::observe::{plan_loaded, OpenDriver, Planning};
    use crate::plan::testing::{machine, manager};
    use crate::plan::Action;
    use std::sync::Mutex;
    use std::time::Duration;

    /// A sim whose lock is taken only once the cluster has been read (its engine reached, and
    /// in the sim every read answers at once), then runs `between` (someone else's write),
    /// then is taken: the order that confirmation exists for, made certain. A lock asked for
    /// before any read (observation after the lock) is refused after a while.
    struct LockAfterRead {
        sim: SimDriver,
        read: tokio::sync::Notify,
        between: Mutex<Option<Write>>,
    }

    /// A write made behind shoal's back.
    type Write = Box<dyn FnOnce(&SimDriver) + Send>;

    #[async_trait::async_trait]
    impl Driver for LockAfterRead {
        async fn list(&self) -> DriverResult<Vec<ObservedMachine>> {
            self.sim.list().await
        }
        async fn create(&self, machine: &MachineSpec) -> DriverResult<()> {
            self.sim.create(machine).await
        }
        async fn start(&self, machine: &str) -> DriverResult<()> {
            self.sim.start(machine).await
        }
        async fn destroy(&self, machine: &str) -> DriverResult<()> {
            self.sim.destroy(machine).await
        }
        async fn endpoint(&self, machine: &str) -> DriverResult<String> {
            self.sim.endpoint(machine).await
        }
        async fn engine(&self, machine: &str) -> DriverResult<Arc<dyn Swarm>> {
            self.read.notify_one();
            self.sim.engine(machine).await
        }
        async fn lock(&self, holder: &LockHolder, now: u64, ttl: u64) -> DriverResult<()> {
            if tokio::time::timeout(Duration::from_secs(5), self.read.notified())
                .await
                .is_err()
            {
                return Err(DriverError::Other(
                    "the lock was asked for before the cluster was read".into(),
                ));
            }
            let between = self.between.lock().unwrap().take();
            if let Some(write) = between {
                write(&self.sim);
            }
            self.sim.lock(holder, now, ttl).await
        }
        async fn unlock(&self, holder: &LockHolder) -> DriverResult<()> {
            self.sim.unlock(holder).await
        }
        async fn force_unlock(&self, id: &str) -> DriverResult<Option<HeldLock>> {
            self.sim.force_unlock(id).await
        }
        async fn destroy_all(&self) -> DriverResult<()> {
            self.sim.destroy_all().await
        }
    }

    struct Opened(Arc<dyn Driver>);

    #[async_trait::async_trait]
    impl OpenDriver for Opened {
        async fn open(&self, _: &Desired) -> Result<Arc<dyn Driver>, DriverError> {
            Ok(self.0.clone())
        }
    }

    /// A sim cluster of one manager running `app_web` (3 replicas), and its desired state.
    async fn running_cluster() -> (SimDriver, Desired) {
        let mut desired = crate::plan::testing::desired_with(&[("m1", Role::Manager)]);
        let web = crate::plan::testing::service("app", "web", "nginx:1", 3);
        crate::plan::testing::with_stack(&mut desired, "app", vec![web]);
        let sim = SimDriver::in_memory();
        let driver: Arc<dyn Driver> = Arc::new(sim.clone());
        let options = crate::plan::PlanOptions::default();
        let plan = crate::plan::plan(&desired, &Observed::default(), &options).unwrap();
        let apply = crate::apply::ApplyOptions {
            settle: Duration::ZERO,
            wait: None,
            ..crate::apply::ApplyOptions::default()
        };
        let progress = crate::apply::progress::Lines;
        crate::apply::apply(&plan, &desired, driver, &apply, &progress)
            .await
            .unwrap();
        (sim, desired)
    }

    fn planning(holder: &LockHolder) -> Planning {
        Planning {
            lock: Some((holder.clone(), 60)),
            content_key: Some(crate::model::content_key::ContentKey::from_bytes([7; 32])),
            ..Planning::default()
        }
    }

    /// Issue 25: the lock is taken while the cluster is observed (this sim refuses a lock asked
    /// for before the first read), and an unchanged cluster plans to nothing.
    #[tokio::test]
    async fn the_lock_is_taken_while_the_cluster_is_observed() {
        let (sim, desired) = running_cluster().await;
        let driver = Arc::new(LockAfterRead {
            sim: sim.clone(),
            read: tokio::sync::Notify::new(),
            between: Mutex::new(None),
        });
        let holder = LockHolder::this_process("shoal apply");
        let planned = plan_loaded(desired, None, &planning(&holder), &Opened(driver))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(planned.plan.is_empty(), "{:?}", planned.plan.steps);
        assert!(sim
            .snapshot()
            .lock
            .is_some_and(|l| l.holder.id == holder.id));
    }

    /// Issue 25: a write by someone else after the optimistic read and before the lock is held
    /// (here: a hand scale to 6) is seen by the confirmation, and the plan is made from the
    /// state read again under the lock (scale back to 3), not from the optimistic read (which
    /// planned nothing).
    #[tokio::test]
    async fn a_write_between_the_optimistic_read_and_the_lock_is_planned_on() {
        let (sim, desired) = running_cluster().await;
        let scale: Write = Box::new(|sim| sim.set_replicas("app_web", 6).unwrap());
        let driver = Arc::new(LockAfterRead {
            sim: sim.clone(),
            read: tokio::sync::Notify::new(),
            between: Mutex::new(Some(scale)),
        });
        let holder = LockHolder::this_process("shoal apply");
        let planned = plan_loaded(desired, None, &planning(&holder), &Opened(driver))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let steps: Vec<(Action, &str)> = (planned.plan.steps.iter())
            .map(|s| (s.action(), s.target.as_str()))
            .collect();
        assert_eq!(steps, [(Action::ScaleService, "app_web")]);
        assert_eq!(
            planned.observed.services["app_web"].spec.replicas(),
            Some(6)
        );
    }

    /// An observation of one manager machine `m1` (node `n1`) and one service `app_web`.
    fn observed() -> Observed {
        let mut observed = Observed::default();
        let mut m1 = machine("m1", Role::Manager);
        m1.node_id = Some("n1".into());
        observed.machines.insert("m1".into(), m1);
        observed.nodes.insert("n1".into(), manager("n1", true));
        observed.swarm = Some(observed_swarm(SwarmObject {
            id: "swarm".into(),
            version: 1,
            labels: BTreeMap::new(),
        }));
        let web = crate::plan::testing::service("app", "web", "nginx:1", 3);
        observed.services.insert(
            "app_web".into(),
            crate::model::ObservedService {
                id: "s1".into(),
                version: 10,
                spec: web,
                running: 3,
                desired: 3,
                update_status: None,
                template_key: None,
            },
        );
        observed
    }

    /// The machines of `observed` as the driver listed them.
    fn listed(observed: &Observed) -> Vec<ObservedMachine> {
        observed.machines.values().cloned().collect()
    }

    /// What reading `observed` again finds when nothing changed.
    fn unchanged(observed: &Observed) -> Reread {
        Reread {
            machines: listed(observed),
            swarm: SwarmObject {
                id: "swarm".into(),
                version: 1,
                labels: BTreeMap::new(),
            },
            // The engine lists nodes without their machine: observation matches them.
            nodes: (observed.nodes.values())
                .map(|n| ObservedNode {
                    machine: None,
                    ..n.clone()
                })
                .collect(),
            services: (observed.services.iter())
                .map(|(name, s)| {
                    let version = ObjectVersion {
                        id: s.id.clone(),
                        version: s.version,
                    };
                    (name.clone(), version)
                })
                .collect(),
            ..Reread::default()
        }
    }

    #[test]
    fn nothing_moved_keeps_the_observation() {
        let before = observed();
        let reread = unchanged(&before);
        assert_eq!(
            to_observe_again(&listed(&before), &before, &reread),
            Again::Nothing
        );
        let after = brought_up_to_date(before.clone(), reread, None, 99);
        assert_eq!(after.services, before.services);
        assert_eq!(after.nodes["n1"].machine.as_deref(), Some("m1"));
        assert_eq!(after.observed_at, 99);
    }

    #[test]
    fn a_service_updated_scaled_removed_or_added_is_read_again() {
        let before = observed();
        let mut updated = unchanged(&before);
        updated.services.get_mut("app_web").unwrap().version = 11;
        assert_eq!(
            to_observe_again(&listed(&before), &before, &updated),
            Again::Services
        );
        let mut removed = unchanged(&before);
        removed.services.clear();
        assert_eq!(
            to_observe_again(&listed(&before), &before, &removed),
            Again::Services
        );
        let mut replaced = unchanged(&before);
        replaced.services.get_mut("app_web").unwrap().id = "s2".into();
        assert_eq!(
            to_observe_again(&listed(&before), &before, &replaced),
            Again::Services
        );
        let mut added = unchanged(&before);
        added
            .services
            .insert("app_db".into(), ObjectVersion::default());
        assert_eq!(
            to_observe_again(&listed(&before), &before, &added),
            Again::Services
        );
    }

    #[test]
    fn a_machine_node_or_swarm_that_moved_observes_everything_again() {
        let before = observed();
        let mut stopped = unchanged(&before);
        stopped.machines[0].state = MachineState::Stopped;
        assert_eq!(
            to_observe_again(&listed(&before), &before, &stopped),
            Again::Everything
        );
        let mut created = unchanged(&before);
        created.machines.push(machine("w1", Role::Worker));
        assert_eq!(
            to_observe_again(&listed(&before), &before, &created),
            Again::Everything
        );
        let mut node = unchanged(&before);
        node.nodes[0].version += 1;
        assert_eq!(
            to_observe_again(&listed(&before), &before, &node),
            Again::Everything
        );
        let mut joined = unchanged(&before);
        joined.nodes.push(manager("n2", false));
        assert_eq!(
            to_observe_again(&listed(&before), &before, &joined),
            Again::Everything
        );
        let mut swarm = unchanged(&before);
        swarm.swarm.id = "another".into();
        assert_eq!(
            to_observe_again(&listed(&before), &before, &swarm),
            Again::Everything
        );
    }

    #[test]
    fn the_small_lists_and_swarm_labels_are_taken_as_read_again() {
        let before = observed();
        let mut reread = unchanged(&before);
        reread
            .swarm
            .labels
            .insert("io.shoal.paused.by".into(), "ann".into());
        reread.secrets.insert(
            "app_db-0123abcd".into(),
            ObservedObject {
                id: "x".into(),
                labels: BTreeMap::new(),
                network: None,
                content_sha256: None,
            },
        );
        assert_eq!(
            to_observe_again(&listed(&before), &before, &reread),
            Again::Nothing
        );
        let after = brought_up_to_date(before, reread, None, 1);
        assert!(after.secrets.contains_key("app_db-0123abcd"));
        assert_eq!(
            after.swarm.unwrap().labels.get("io.shoal.paused.by"),
            Some(&"ann".to_string())
        );
    }
}
