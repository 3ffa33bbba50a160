//! The planner: a pure function of desired state, observed state and options to a [`Plan`].
//!
//! [`plan`] is the list of rules of DESIGN §3, called in step order; each rule is a function
//! of [`super::rules`] (see its index). Manager membership changes form one chain, so they
//! run one at a time, and [`super::quorum::Quorum`] checks each against quorum.

use super::fingerprint::fingerprint;
use super::model::{Effect, Plan, Step, Summary, FORMAT_VERSION};
use super::quorum::Quorum;
use super::rules::{
    content_versions, create_machines, depends_on, destroy_guard, engine_fields, identity,
    init_swarm, joins, machine_removal, node_specs, object_replacement, ownership, pause, prune,
    references, roles, self_heal, services, stack_objects, swarm_states, unseen, Ctx, Membership,
};
use crate::model::content_key::{ContentKey, LABEL_CONTENT_KEY};
use crate::model::{Desired, Observed};

/// Swarm label listing the stacks shoal manages, so a stack dropped from machines.yml is pruned.
pub const LABEL_STACKS: &str = "io.shoal.stacks";

/// Choices the user makes on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Commit the desired state came from.
    pub revision: Option<String>,
    /// Allow a plan that removes every service of a stack or every machine.
    pub allow_destroy_all: bool,
    /// Whether the ingress routing mesh works on the machines (`None`: unknown).
    pub routing_mesh: Option<bool>,
    /// The content key to version secrets and configs with when the swarm has none yet (a
    /// random one, made by the caller: the planner makes no randomness), or the one a saved
    /// plan carries. Ignored when the swarm has a key.
    pub content_key: Option<ContentKey>,
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The swarm's managers have lost quorum; any change would make it worse.
    #[error("the swarm has lost quorum: {detail}.\n  No node, service or network can be changed until quorum is back.\n  To recover: bring the lost managers back; if they are gone for good, run\n    docker swarm init --force-new-cluster --advertise-addr <address>\n  on a surviving manager (reach it with `shoal env {survivor}`), then run `shoal plan` again:\n  shoal will rejoin or replace the other managers.")]
    QuorumLost {
        /// How many managers answer and how many are needed, or what the managers said.
        detail: String,
        /// A surviving manager machine, or `<manager>` when none is known.
        survivor: String,
    },
    /// The plan would remove everything of something, and that was not allowed.
    #[error("refusing to {what}: an empty or broken file must not wipe a cluster.\n  If this is really wanted, run again with --allow-destroy-all.")]
    DestroyAll {
        /// What would be destroyed.
        what: String,
    },
    /// Machines are in a swarm, but no manager of it answers with a leader.
    #[error("machines {machines} are in a swarm, but no manager of it answers with a leader.\n  shoal never initializes a new swarm or makes a node leave one while a swarm may exist: its services, secrets and Raft data would be lost.\n  To recover: bring the managers back at the addresses they had (`shoal status`; `eval $(shoal env {manager}) && docker info` shows what a manager sees). If the other managers are gone for good, run\n    docker swarm init --force-new-cluster --advertise-addr <address>\n  on {manager}, then run `shoal plan` again: shoal will rejoin or replace the rest.")]
    Leaderless {
        /// The machines in a swarm, each with its local swarm state.
        machines: String,
        /// A manager machine to recover through, or `<manager>`.
        manager: String,
    },
    /// A desired machine's engine is in a swarm state shoal never changes by itself.
    #[error("machine {machine} is {state}: {}", advice.replace("MACHINE", machine))]
    NodeSwarmState {
        /// The machine.
        machine: String,
        /// Its local swarm state, in words.
        state: String,
        /// What to do by hand (`MACHINE` stands for the machine's name).
        advice: &'static str,
    },
    /// The services need what the cluster lacks (an external network, secret or config) or
    /// holds for another service (a published port); the engine would refuse them half-way.
    #[error("the stacks cannot be deployed on this cluster as it is:\n  {0}")]
    Unmet(String),
    /// No order of the manager changes keeps quorum.
    #[error("no safe order for the manager changes: {0}")]
    Unsafe(String),
    /// The swarm the machines reach records another cluster: it is never changed.
    #[error("the swarm reached through {managers} belongs to cluster {owner}, not to cluster {cluster} (its io.shoal.cluster label says so).\n  shoal never changes another cluster's swarm: its services would be pruned as this cluster's.\n  If a host is in both clusters' machines.yml, remove it from one. If that swarm really is this cluster's now (a renamed cluster), say so on one of its managers:\n    docker swarm update --label-add io.shoal.cluster={cluster}")]
    AnotherCluster {
        /// The cluster the swarm records.
        owner: String,
        /// This cluster.
        cluster: String,
        /// The machines whose engines are members of it.
        managers: String,
    },
    /// A network, secret or config must be replaced for settings swarm cannot update, but
    /// services use it, so swarm would refuse to remove it.
    #[error("{kind} {name} of {file}: {changes} changed, which swarm cannot update in place, so it must be removed and created again; but service(s) {services} use it, and swarm refuses to remove it.\n  To go on: {}; or undo the change in {file}.", object_replacement::way_out(kind))]
    ObjectInUse {
        /// `network`, `secret` or `config`.
        kind: &'static str,
        /// The object.
        name: String,
        /// The compose file that defines it.
        file: String,
        /// The compose keys that differ, joined.
        changes: String,
        /// The services using it, joined.
        services: String,
    },
    /// The swarm's content key label was edited into something that is not a key.
    #[error("the swarm label {LABEL_CONTENT_KEY} is not a content key (64 hex digits): it was edited by hand.\n  Every secret and config shoal created is named after it, so shoal does not guess.\n  To go on: put the value back (from a backup, or as an earlier `docker swarm inspect` showed it), run on a manager (`eval $(shoal env <manager>)`): docker swarm update --label-add {LABEL_CONTENT_KEY}=<value>; or remove it (docker swarm update --label-rm {LABEL_CONTENT_KEY}): the next apply writes a new key, and every secret and config shoal versioned is then created again under a new version (their services restart).")]
    ContentKeyMalformed,
    /// Secrets or configs must be versioned, the swarm has no key and the caller gave none.
    #[error("no content key to version the secrets and configs with: the swarm has none and none was given (a bug in the caller of the planner; plan again with `shoal plan`)")]
    NoContentKey,
    /// A service uses a field the cluster's engines do not store, and without which it would
    /// run differently (a volume `subpath`: the whole volume would be mounted).
    #[error("{file}: service {service} uses `{}` ({place}), which engines before API {} (Docker {}) do not store; this cluster's managers speak API {has}, so the service would run without it, unseen.\n  Upgrade the engines to Docker {} or later, or change {file} so that {service} does without it.", field.compose_key(), field.since(), field.docker_release(), field.docker_release())]
    EngineTooOld {
        /// The compose file.
        file: String,
        /// The service, by its full name.
        service: String,
        /// Where in the service it is used.
        place: String,
        /// The field.
        field: crate::model::engine_api::EngineField,
        /// The API version the managers speak.
        has: crate::model::engine_api::ApiVersion,
    },
    /// Two machines reach one engine: one host under two names.
    #[error("machines {machines} reach the same Docker engine (ID {engine}): they are one host under two names.\n  Keep one of them in machines.yml; shoal would otherwise drain or demote the one node through the other name.")]
    OneEngineTwoNames {
        /// The machines, joined with `and`.
        machines: String,
        /// The engine ID they share.
        engine: String,
    },
}

/// Computes the plan that turns `observed` into `desired`. Each rule takes what earlier rules
/// made and returns what it makes, so the order the steps need is the order of the values.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let key = content_versions::key_in_use(desired, observed, options)?;
    let versioned = content_versions::version_objects(desired, key.key.as_ref());
    let new_key = key.key.filter(|_| key.new);
    let caps = crate::model::engine_api::EngineCaps::of(observed.api_version);
    let (desired, engine_warnings) = engine_fields::drop_unstored_fields(&versioned, caps);
    let (desired, adoption_warnings) = stack_objects::adopt_objects(&desired, observed);
    let mut ctx = Ctx::new(&desired, observed, options);
    ctx.warnings.extend(engine_warnings);
    ctx.warnings.extend(adoption_warnings);
    ownership::refuse_another_clusters_swarm(&ctx)?;
    pause::warn_paused(&mut ctx);
    identity::refuse_one_engine_under_two_names(&ctx)?;
    let access = swarm_states::refuse_unsafe_swarm_states(&mut ctx)?;
    let mut quorum = Quorum::observed(observed);
    let healed = self_heal::heal_machines(&mut ctx, &mut quorum)?;
    let machines = create_machines::create_missing_machines(&mut ctx, healed);
    if access == swarm_states::SwarmAccess::MachinesOnly {
        return Ok(finish(ctx, observed, options, new_key));
    }
    let entry = init_swarm::init_swarm(&mut ctx, &machines, &mut quorum);
    let joins = joins::join_machines(&mut ctx, &machines, &entry, &mut quorum);
    let init_labels = node_specs::label_init_machine(&mut ctx, &entry);
    let roles = roles::change_roles(&mut ctx, &machines, &mut quorum)?;
    let nodes = node_specs::update_node_specs(&mut ctx, &machines);
    let membership = Membership::of(
        &entry,
        &joins,
        init_labels.into_iter().chain(roles).chain(nodes),
    );
    let replaced = object_replacement::replace_changed_objects(&mut ctx, &membership)?;
    let objects = replaced.and(stack_objects::create_stack_objects(&mut ctx, &membership));
    stack_objects::warn_missing_external(&mut ctx);
    services::warn_ingress_without_mesh(&mut ctx);
    let service_prunes = prune::prune_services(&mut ctx, &membership)?;
    references::refuse_unmet_references(&ctx)?;
    engine_fields::refuse_unstored_subpath(&ctx)?;
    let services = services::plan_services(&mut ctx, &membership, &objects, &service_prunes);
    depends_on::wait_for_dependencies(&mut ctx);
    let object_prunes = prune::prune_objects(&mut ctx, &services);
    destroy_guard::guard_machines(&ctx)?;
    machine_removal::remove_machines(
        &mut ctx,
        &mut quorum,
        &membership,
        &objects,
        &services,
        &object_prunes,
    )?;
    Ok(finish(ctx, observed, options, new_key))
}

/// The plan of the steps the rules added, with the secret values and credentials of their
/// diffs masked (their specs are masked when shown: apply needs them whole). `new_content_key`:
/// the key the plan versions with when the swarm has none yet (apply writes it).
fn finish(
    mut ctx: Ctx,
    observed: &Observed,
    options: &PlanOptions,
    new_content_key: Option<ContentKey>,
) -> Plan {
    super::mask::mask_steps(&mut ctx.steps, &ctx.desired.policy.show_values);
    Plan {
        format_version: FORMAT_VERSION,
        revision: options.revision.clone(),
        fingerprint: fingerprint(observed),
        summary: summarize(&ctx.steps),
        warnings: ctx.warnings,
        unseen: unseen::unseen_parts(observed),
        steps: ctx.steps,
        show_values: ctx.desired.policy.show_values.clone(),
        new_content_key,
    }
}

fn summarize(steps: &[Step]) -> Summary {
    let mut summary = Summary::default();
    for step in steps {
        match step.effect() {
            Effect::Add => summary.add += 1,
            Effect::Change => summary.change += 1,
            Effect::Destroy => summary.destroy += 1,
        }
    }
    summary
}
