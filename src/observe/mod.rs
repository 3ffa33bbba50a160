//! Observation: asks the driver for the machines and a manager's engine for the swarm; and the
//! pass every planning command shares, written once for the CLI and the watcher: load the
//! desired state → open the driver → observe → plan ([`load_and_plan`]).

pub mod confirm;

use crate::clock::unix_now;
use crate::diag::Invalid;
use crate::drivers::lock::LockHolder;
use crate::drivers::{Driver, DriverError};
use crate::engine::{EngineError, Swarm, SwarmObject};
use crate::model::content_key::{
    ContentKey, SwarmContentKey, CONTENT_KEY_BYTES, LABEL_CONTENT_KEY,
};
use crate::model::engine_api::ApiVersion;
use crate::model::observed::{LocalSwarmState, ObservedSwarm, ObservedTask};
use crate::model::{
    Desired, DriverKind, MachineState, Observed, ObservedMachine, ObservedNode, ObservedService,
    Role, LABEL_MACHINE,
};
use crate::plan::{plan, Plan, PlanError, PlanOptions, Warning};
use crate::source::Source;
use crate::yaml::files::FileSource;
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use tracing::Instrument;

/// Machines whose engines are asked at once.
const CONCURRENCY: usize = 16;

/// A machine after probing, with its engine and whether that engine is a manager.
type Probed = (
    ObservedMachine,
    Option<(Arc<dyn Swarm>, bool, Option<ApiVersion>)>,
);
/// A swarm read taken beside a probe, when one was.
type EarlyRead = Option<Result<SwarmRead, EngineError>>;

/// Why the cluster could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// The driver failed.
    #[error("cannot list the machines: {0}")]
    Driver(#[from] DriverError),
    /// A manager answered but failed.
    #[error("cannot read the swarm through {machine}: {source}")]
    Engine {
        /// The manager machine asked.
        machine: String,
        /// What it said.
        source: EngineError,
    },
}

/// Opens the driver a desired state names: the CLI opens it anew, the watcher keeps it open
/// between passes.
#[async_trait::async_trait]
pub trait OpenDriver: Sync {
    /// The driver for `desired`.
    async fn open(&self, desired: &Desired) -> Result<Arc<dyn Driver>, DriverError>;
}

/// How a desired state is loaded and planned.
#[derive(Clone, Debug, Default)]
pub struct Planning {
    /// The environment for `${VAR}` interpolation (see [`crate::source::interpolation_env`]).
    pub env: BTreeMap<String, String>,
    /// A driver instead of the one machines.yml names.
    pub driver_override: Option<DriverKind>,
    /// Allow a plan that removes every service of a stack or every machine.
    pub allow_destroy_all: bool,
    /// Take the apply lock for this holder (for this many seconds) before observing, so the
    /// plan is made under the lock and no other process changes the cluster before it is
    /// applied (DESIGN §3.6). `None` plans without the lock (plan, dry runs).
    pub lock: Option<(LockHolder, u64)>,
    /// The content key to version secrets and configs with while the swarm has none (see
    /// [`crate::model::content_key`]): one per process that plans again and compares (apply's
    /// confirmation, the watcher), or a saved plan's. `None`: a new one for each plan.
    pub content_key: Option<ContentKey>,
}

/// What [`load_and_plan`] found: the desired state, the open driver, the cluster and the plan.
pub struct Planned {
    /// The desired state of the files.
    pub desired: Desired,
    /// The driver it names, open.
    pub driver: Arc<dyn Driver>,
    /// The cluster as observed.
    pub observed: Observed,
    /// What brings the cluster to the desired state.
    pub plan: Plan,
}

/// Which stage of [`load_and_plan`] failed, and why.
#[derive(Debug, thiserror::Error)]
pub enum PlanningError {
    /// The files are not valid.
    #[error(transparent)]
    Invalid(Invalid),
    /// The driver could not be opened.
    #[error("cannot open the {driver} driver: {problem}")]
    Open {
        /// The driver's name.
        driver: &'static str,
        /// Why (in the message, so not also a source: `{:#}` would print it twice).
        problem: DriverError,
    },
    /// The apply lock is held by another process, or could not be taken.
    #[error(transparent)]
    Lock(DriverError),
    /// What the driver sets up before planning (the dind registry) could not be.
    #[error("the {driver} driver could not set up the cluster: {problem}")]
    Prepare {
        /// The driver's name.
        driver: &'static str,
        /// Why (in the message only, as for `Open`).
        problem: DriverError,
    },
    /// The cluster could not be observed.
    #[error(transparent)]
    Observe(#[from] ObserveError),
    /// No safe plan exists.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The task reading the files stopped.
    #[error("reading the files failed: {0}")]
    Task(String),
    /// No random content key could be made.
    #[error(transparent)]
    ContentKey(#[from] NewKeyError),
}

/// Why no content key could be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a content key for the cluster's secrets and configs: {RANDOM_SOURCE}: {0}. shoal needs the operating system's random generator")]
pub struct NewKeyError(std::io::Error);

/// Where random keys come from.
const RANDOM_SOURCE: &str = "/dev/urandom";

/// A new random content key (32 bytes from the operating system's generator), for plans of a
/// cluster whose swarm has none yet.
pub fn new_content_key() -> Result<ContentKey, NewKeyError> {
    use std::io::Read;
    let mut bytes = [0u8; CONTENT_KEY_BYTES];
    std::fs::File::open(RANDOM_SOURCE)
        .and_then(|mut source| source.read_exact(&mut bytes))
        .map_err(NewKeyError)?;
    Ok(ContentKey::from_bytes(bytes))
}

/// Loads and validates the desired state in `files` with `env` for interpolation, and applies
/// the driver override.
pub fn load_desired(
    files: &dyn FileSource,
    env: &BTreeMap<String, String>,
    driver_override: Option<DriverKind>,
) -> Result<Desired, Invalid> {
    let mut desired = crate::config::load(files, env)?;
    if let Some(driver) = driver_override {
        desired.driver = driver;
    }
    Ok(desired)
}

/// The options of every plan, for `revision`, the driver (whether it has a routing mesh) and
/// the content key for a swarm without one: built here only, for the CLI and the watcher.
pub fn plan_options(
    driver: &dyn Driver,
    revision: Option<String>,
    allow_destroy_all: bool,
    content_key: ContentKey,
) -> PlanOptions {
    PlanOptions {
        revision,
        allow_destroy_all,
        routing_mesh: driver.routing_mesh(),
        content_key: Some(content_key),
    }
}

/// Loads the desired state in `source` (off the async threads: git reads block), opens its
/// driver through `opener`, observes the cluster and plans; the plan's revision is the source's.
pub async fn load_and_plan(
    source: Source,
    planning: &Planning,
    opener: &dyn OpenDriver,
) -> Result<Planned, PlanningError> {
    let Source { files, revision } = source;
    let env = planning.env.clone();
    let driver_override = planning.driver_override;
    let desired =
        tokio::task::spawn_blocking(move || load_desired(files.as_ref(), &env, driver_override))
            .instrument(crate::phase!("load files"))
            .await
            .map_err(|e| PlanningError::Task(e.to_string()))?
            .map_err(PlanningError::Invalid)?;
    plan_loaded(desired, revision, planning, opener).await
}

/// Opens the driver of a desired state already loaded through `opener`, takes the apply lock
/// when `planning` asks for it, observes and plans: the part of [`load_and_plan`] after loading,
/// also used by the watcher for the last good commit it keeps.
pub async fn plan_loaded(
    desired: Desired,
    revision: Option<String>,
    planning: &Planning,
    opener: &dyn OpenDriver,
) -> Result<Planned, PlanningError> {
    let driver = opener
        .open(&desired)
        .instrument(crate::phase!("open driver"))
        .await
        .map_err(|problem| PlanningError::Open {
            driver: desired.driver.as_str(),
            problem,
        })?;
    let (observed, plan) = match observe_and_plan(&driver, &desired, revision, planning).await {
        Ok(planned) => planned,
        Err(error) => {
            // A lock another holder has is not this process's to release.
            let taken = !matches!(error, PlanningError::Lock(_));
            if let Some((holder, _)) = planning.lock.as_ref().filter(|_| taken) {
                if let Err(e) = driver.unlock(holder).await {
                    tracing::warn!("could not release the apply lock: {e}");
                }
            }
            return Err(error);
        }
    };
    Ok(Planned {
        desired,
        driver,
        observed,
        plan,
    })
}

/// Observes the cluster and plans `desired` against it, its images pinned to the digests their
/// tags point to (`policy.images: pin`; see [`crate::registry::pin_images`]).
///
/// With `planning.lock`, the plan is made under the apply lock (DESIGN §3.6), but the cluster
/// is not observed after it is taken: it is observed while the lock is being taken (and the
/// driver prepared, see [`Driver::prepare`], then the images pinned), and once the lock is held
/// that observation is confirmed, what changed meanwhile observed again ([`confirm::confirm`]).
async fn observe_and_plan(
    driver: &Arc<dyn Driver>,
    desired: &Desired,
    revision: Option<String>,
    planning: &Planning,
) -> Result<(Observed, Plan), PlanningError> {
    let content_key = match &planning.content_key {
        Some(key) => key.clone(),
        None => new_content_key()?,
    };
    let options = plan_options(
        driver.as_ref(),
        revision,
        planning.allow_destroy_all,
        content_key,
    );
    let mut desired = desired.clone();
    let (observed, image_warnings) = match &planning.lock {
        None => {
            let observing = observe(driver, unix_now()).instrument(crate::phase!("observe"));
            let (image_warnings, observed) =
                tokio::join!(pinned(&mut desired, driver.as_ref()), observing);
            (observed?, image_warnings)
        }
        Some((holder, ttl_seconds)) => {
            let driver_name = desired.driver.as_str();
            let locking = async {
                driver
                    .lock(holder, unix_now(), *ttl_seconds)
                    .instrument(crate::phase!("lock"))
                    .await
                    .map_err(PlanningError::Lock)?;
                driver
                    .prepare()
                    .instrument(crate::phase!("prepare driver"))
                    .await
                    .map_err(|problem| PlanningError::Prepare {
                        driver: driver_name,
                        problem,
                    })?;
                Ok::<_, PlanningError>(pinned(&mut desired, driver.as_ref()).await)
            };
            let observing =
                observe_through(driver, unix_now()).instrument(crate::phase!("observe"));
            let (locked, optimistic) = tokio::join!(locking, observing);
            let image_warnings = locked?;
            let observed = confirm::confirm(driver, optimistic?, unix_now())
                .instrument(crate::phase!("confirm"))
                .await?;
            (observed, image_warnings)
        }
    };
    let mut plan = crate::phase!("plan").in_scope(|| plan(&desired, &observed, &options))?;
    let external = driver.warnings().into_iter().chain(image_warnings);
    plan.warnings.extend(external.map(Warning::external));
    Ok((observed, plan))
}

/// Pins `desired`'s images (see [`crate::registry::pin_images`]); the warnings.
async fn pinned(desired: &mut Desired, driver: &dyn Driver) -> Vec<String> {
    crate::registry::pin_images(desired, driver)
        .instrument(crate::phase!("pin images"))
        .await
}

/// Observes the cluster at `now` (seconds since the epoch).
///
/// Every running machine is probed at once. A machine created as a manager also has the swarm
/// read beside its `info` (one round trip instead of two): that read is used when the probe
/// confirms an active manager, and dropped otherwise; other managers are read after, in turn,
/// when the first cannot answer.
pub async fn observe(driver: &Arc<dyn Driver>, now: u64) -> Result<Observed, ObserveError> {
    Ok(observe_through(driver, now).await?.observed)
}

/// An observation, the driver's list of machines it probed, and the manager whose engine its
/// swarm part was read through (`None` when no manager answered): what
/// [`confirm::confirm`] reads again.
pub(crate) struct Observation {
    /// What was observed.
    pub observed: Observed,
    /// The machines as the driver listed them, before they were probed.
    pub listed: Vec<ObservedMachine>,
    /// The manager read from: its machine and its engine.
    pub manager: Option<(String, Arc<dyn Swarm>)>,
}

/// [`observe`], keeping the manager it read the swarm through.
pub(crate) async fn observe_through(
    driver: &Arc<dyn Driver>,
    now: u64,
) -> Result<Observation, ObserveError> {
    let listed = driver
        .list()
        .instrument(crate::phase!("list machines"))
        .await?;
    let listing = listed.clone();
    let early = listed
        .iter()
        .find(|m| m.state == MachineState::Running && m.created_role == Some(Role::Manager))
        .map(|m| m.name.clone());
    let probed: Vec<(Probed, EarlyRead)> = stream::iter(listed)
        .map(|machine| {
            let span = crate::phase!("probe", machine.name);
            let read_early = early.as_deref() == Some(machine.name.as_str());
            probe(driver, machine, read_early).instrument(span)
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut observed = Observed {
        observed_at: now,
        ..Observed::default()
    };
    let mut managers: Vec<(String, Arc<dyn Swarm>, EarlyRead)> = Vec::new();
    for ((machine, engine), read) in probed {
        if let Some((engine, true, api_version)) = engine {
            managers.push((machine.name.clone(), engine, read));
            observed.api_version = lowest(observed.api_version, api_version);
        }
        observed.machines.insert(machine.name.clone(), machine);
    }
    // The manager read early goes first.
    managers.sort_by_key(|(_, _, read)| read.is_none());
    let mut quorum_error = None;
    let mut read_through = None;
    for (name, manager, read) in managers {
        let read = match read {
            Some(read) => read,
            None => {
                read_swarm(manager.as_ref())
                    .instrument(crate::phase!("read swarm", name))
                    .await
            }
        };
        match read {
            Ok(read) => {
                read.into(&mut observed);
                quorum_error = None;
                read_through = Some((name, manager));
                break;
            }
            Err(EngineError::NoLeader(message)) => quorum_error = Some(message),
            Err(EngineError::NotManager(_) | EngineError::Unreachable(_)) => continue,
            Err(source) => {
                return Err(ObserveError::Engine {
                    machine: name.clone(),
                    source,
                })
            }
        }
    }
    if let Some(message) = quorum_error {
        observed.swarm = Some(ObservedSwarm {
            id: String::new(),
            labels: BTreeMap::new(),
            quorum_error: Some(message),
            content_key: SwarmContentKey::Absent,
        });
    }
    match_nodes_to_machines(&mut observed);
    Ok(Observation {
        observed,
        listed: listing,
        manager: read_through,
    })
}

/// The lower of two API versions, either of which may be unknown.
fn lowest(a: Option<ApiVersion>, b: Option<ApiVersion>) -> Option<ApiVersion> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Asks one machine's engine for its membership; returns the engine and whether it is a
/// manager; with `read_early`, also the swarm read beside the `info` request (kept only when
/// the machine is an active manager).
async fn probe(
    driver: &Arc<dyn Driver>,
    mut machine: ObservedMachine,
    read_early: bool,
) -> (Probed, EarlyRead) {
    if machine.state != MachineState::Running {
        return ((machine, None), None);
    }
    let engine = match driver
        .engine(&machine.name)
        .instrument(crate::phase!("connect", machine.name))
        .await
    {
        Ok(engine) => engine,
        Err(e) => {
            machine.state = MachineState::Unreachable;
            machine.problem = Some(e.to_string());
            return ((machine, None), None);
        }
    };
    let early = async {
        if read_early {
            Some(
                read_swarm(engine.as_ref())
                    .instrument(crate::phase!("read swarm", machine.name))
                    .await,
            )
        } else {
            None
        }
    };
    let (info, early) = tokio::join!(
        engine.info().instrument(crate::phase!("read", "info")),
        early
    );
    match info {
        Ok(info) => {
            machine.swarm_state = info.swarm_state;
            machine.node_id = info.node_id;
            machine.engine_id = info.engine_id;
            let manager = info.control_available && info.swarm_state == LocalSwarmState::Active;
            let early = early.filter(|_| manager);
            ((machine, Some((engine, manager, info.api_version))), early)
        }
        Err(e) => {
            machine.state = MachineState::Unreachable;
            machine.problem = Some(e.to_string());
            ((machine, None), None)
        }
    }
}

/// Reads the swarm's part of `observed` again through `manager` (see [`read_swarm`]), its
/// machines kept as they are, as of `now`: a look after steps that wrote the swarm's objects
/// only.
///
/// # Errors
///
/// What the manager failed with.
pub async fn read_swarm_into(
    manager: &dyn Swarm,
    observed: &mut Observed,
    now: u64,
) -> Result<(), EngineError> {
    read_swarm(manager).await?.into(observed);
    observed.observed_at = now;
    match_nodes_to_machines(observed);
    Ok(())
}

/// Reads nodes, services, their tasks (one request for all), networks, secrets, configs and
/// the swarm object from a manager: the swarm's part of an observation.
async fn read_swarm(manager: &dyn Swarm) -> Result<SwarmRead, EngineError> {
    let mut observed = Observed::default();
    // Reads only, all at once: an observation costs the slowest request, not their sum.
    let (swarm, nodes, services, tasks, networks, secrets, configs) = tokio::try_join!(
        manager
            .inspect_swarm()
            .instrument(crate::phase!("read", "swarm")),
        manager
            .list_nodes()
            .instrument(crate::phase!("read", "nodes")),
        manager
            .list_services()
            .instrument(crate::phase!("read", "services")),
        manager
            .list_tasks()
            .instrument(crate::phase!("read", "tasks")),
        manager
            .list_networks()
            .instrument(crate::phase!("read", "networks")),
        manager
            .list_secrets()
            .instrument(crate::phase!("read", "secrets")),
        manager
            .list_configs()
            .instrument(crate::phase!("read", "configs")),
    )?;
    observed.tasks = tasks_of_services(&services, tasks);
    observed.networks = networks;
    observed.secrets = secrets;
    observed.configs = configs;
    observed.swarm = Some(observed_swarm(swarm));
    observed.nodes = nodes_by_id(nodes);
    observed.services = services
        .into_iter()
        .map(|s| (s.spec.name.clone(), s))
        .collect();
    Ok(SwarmRead(observed))
}

/// The swarm object as observed: its labels, the content key kept apart.
fn observed_swarm(swarm: SwarmObject) -> ObservedSwarm {
    let mut labels = swarm.labels;
    let content_key = SwarmContentKey::of_label(labels.remove(LABEL_CONTENT_KEY).as_deref());
    ObservedSwarm {
        id: swarm.id,
        labels,
        quorum_error: None,
        content_key,
    }
}

/// The tasks of `services` among `tasks` (the others belong to services of no stack).
fn tasks_of_services(
    services: &[ObservedService],
    mut tasks: Vec<ObservedTask>,
) -> Vec<ObservedTask> {
    let ids: std::collections::BTreeSet<&str> = services.iter().map(|s| s.id.as_str()).collect();
    tasks.retain(|t| ids.contains(t.service_id.as_str()));
    tasks
}

/// Nodes by ID.
fn nodes_by_id(nodes: Vec<ObservedNode>) -> BTreeMap<String, ObservedNode> {
    nodes.into_iter().map(|n| (n.id.clone(), n)).collect()
}

/// The swarm's part of an observation, read from one manager.
struct SwarmRead(Observed);

impl SwarmRead {
    /// Moves the swarm's part into `observed`, whose machines stay.
    fn into(self, observed: &mut Observed) {
        let SwarmRead(read) = self;
        observed.swarm = read.swarm;
        observed.nodes = read.nodes;
        observed.services = read.services;
        observed.tasks = read.tasks;
        observed.networks = read.networks;
        observed.secrets = read.secrets;
        observed.configs = read.configs;
    }
}

/// Sets each node's machine: the machine whose engine reports the node's ID; else the machine
/// its identity label names (`io.shoal.machine`, written when it joined), so the node of a
/// machine whose engine is silent is still known as that machine's; else, for nodes no engine
/// or label claims, the machine named like the node's hostname. A machine claims one node at
/// most.
fn match_nodes_to_machines(observed: &mut Observed) {
    let by_id: BTreeMap<String, String> = observed
        .machines
        .values()
        .filter_map(|m| m.node_id.clone().map(|id| (id, m.name.clone())))
        .collect();
    let mut claimed: Vec<String> = by_id.values().cloned().collect();
    let mut ids: Vec<String> = observed.nodes.keys().cloned().collect();
    // Ready nodes claim a name before down ones, so a replaced machine maps to its new node.
    ids.sort_by_key(|id| observed.nodes[id].state != crate::model::NodeState::Ready);
    for pass in [NodeIdentity::Label, NodeIdentity::Hostname] {
        for id in &ids {
            let node = observed.nodes.get_mut(id).expect("node listed");
            if node.machine.is_some() {
                continue;
            }
            if let Some(machine) = by_id.get(id) {
                node.machine = Some(machine.clone());
                continue;
            }
            let name = match pass {
                NodeIdentity::Label => node.labels.get(LABEL_MACHINE).cloned(),
                NodeIdentity::Hostname => Some(node.hostname.clone()),
            };
            if let Some(name) = name.filter(|n| !claimed.contains(n)) {
                claimed.push(name.clone());
                node.machine = Some(name);
            }
        }
    }
}

/// How a node no engine claims is matched to a machine, in order of trust.
#[derive(Clone, Copy)]
enum NodeIdentity {
    /// The `io.shoal.machine` label shoal wrote when the machine joined.
    Label,
    /// The node's hostname (machines made before identity labels, and dind nodes).
    Hostname,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NodeState, Role};
    use crate::plan::testing::{machine, manager};

    #[test]
    fn a_silent_machines_node_is_known_by_its_identity_label() {
        let mut observed = Observed::default();
        let mut m1 = machine("m1", Role::Manager);
        m1.node_id = Some("n1".into());
        let mut m3 = machine("m3", Role::Manager);
        m3.state = MachineState::Unreachable;
        m3.node_id = None;
        observed.machines.insert("m1".into(), m1);
        observed.machines.insert("m3".into(), m3);
        let mut n1 = manager("n1", true);
        n1.hostname = "host-a".into();
        let mut n3 = manager("n3", false);
        n3.hostname = "host-c".into();
        n3.labels.insert(LABEL_MACHINE.into(), "m3".into());
        let mut stray = manager("n9", false);
        stray.hostname = "host-z".into();
        for mut node in [n1, n3, stray] {
            node.machine = None;
            observed.nodes.insert(node.id.clone(), node);
        }
        match_nodes_to_machines(&mut observed);
        assert_eq!(observed.nodes["n1"].machine.as_deref(), Some("m1"));
        assert_eq!(observed.nodes["n3"].machine.as_deref(), Some("m3"));
        assert_eq!(observed.nodes["n9"].machine.as_deref(), Some("host-z"));
    }

    #[test]
    fn an_engines_own_node_wins_over_a_stale_label() {
        let mut observed = Observed::default();
        let mut w1 = machine("w1", Role::Worker);
        w1.node_id = Some("new".into());
        observed.machines.insert("w1".into(), w1);
        let mut old = manager("old", false);
        old.labels.insert(LABEL_MACHINE.into(), "w1".into());
        old.hostname = "w1".into();
        old.state = NodeState::Down;
        let mut new = manager("new", true);
        new.hostname = "w1".into();
        for mut node in [old, new] {
            node.machine = None;
            observed.nodes.insert(node.id.clone(), node);
        }
        match_nodes_to_machines(&mut observed);
        assert_eq!(observed.nodes["new"].machine.as_deref(), Some("w1"));
        assert_eq!(observed.nodes["old"].machine, None);
    }
}
