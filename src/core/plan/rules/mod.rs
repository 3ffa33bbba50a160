//! The planner's rules, one function each, in the order `plan()` calls them (DESIGN §3).
//!
//! | Rule (DESIGN §3)                                              | Function                                  |
//! |---------------------------------------------------------------|-------------------------------------------|
//! | content versions: secrets and configs versioned with the cluster's key | [`content_versions::key_in_use`], [`content_versions::version_objects`], [`stack_objects::adopt_objects`] |
//! | fields the engines cannot store (by their API version): not sent, said once | [`engine_fields::drop_unstored_fields`] |
//! | another cluster's swarm: refuse, never change it              | [`ownership::refuse_another_clusters_swarm`] |
//! | one host under two names: refuse, naming both               | [`identity::refuse_one_engine_under_two_names`] |
//! | quorum lost: refuse and explain `--force-new-cluster` (or start stopped managers first) | [`swarm_states::refuse_unsafe_swarm_states`] with `Quorum::check_observed` |
//! | never lose a cluster: no re-init, no forced leave; leaderless refused | [`swarm_states::refuse_unsafe_swarm_states`] |
//! | self-heal: start stopped machines, re-create gone or incomplete ones, wait for unreachable ones | [`self_heal::heal_machines`] |
//! | create machines machines.yml wants                            | [`create_machines::create_missing_machines`] |
//! | init the swarm on one manager                                 | [`init_swarm::init_swarm`]                |
//! | joins: managers one at a time, workers in parallel            | [`joins::join_machines`]                  |
//! | node labels of the machine that initialized the swarm         | [`node_specs::label_init_machine`]        |
//! | roles: promote before demote, demote one at a time, leader last | [`roles::change_roles`]                 |
//! | node specs: labels and availability from machines.yml         | [`node_specs::update_node_specs`]         |
//! | changed networks, secrets, configs: replaced when unused, refused with the way out when used | [`object_replacement::replace_changed_objects`] |
//! | stack objects: networks, secrets, configs before services     | [`stack_objects::create_stack_objects`]   |
//! | a paused cluster: planned, with who paused it and why | [`pause::warn_paused`] |
//! | warnings: external objects missing, ingress without IPVS      | [`stack_objects::warn_missing_external`], [`services::warn_ingress_without_mesh`] |
//! | prune of labelled services (before creates: ports move)       | [`prune::prune_services`]                 |
//! | refuse missing external objects and published ports another service keeps | [`references::refuse_unmet_references`] |
//! | refuse a volume `subpath` on engines that would mount the whole volume | [`engine_fields::refuse_unstored_subpath`] |
//! | destroy-all guard (every service of a stack, every machine)   | [`destroy_guard::guard_stack_services`], [`destroy_guard::guard_machines`] |
//! | services: create, `scale_service` vs `update_service`, mode change, rebalance | [`services::plan_services`] |
//! | jobs: `run_job` when created or changed, never re-run when unchanged | [`services::plan_services`] |
//! | ordered rollouts (`depends_on`): dependencies first, dependants wait for their condition | [`depends_on::rollout_order`], [`depends_on::wait_for_dependencies`] |
//! | a field `docker stack deploy` drops, missing from a running service: no restart for it alone | [`cli_dropped::without_missing`] |
//! | prune of labelled networks, secrets, configs (after services) | [`prune::prune_objects`]                  |
//! | what could not be observed, listed with the plan (unseen is not in sync) | [`unseen::unseen_parts`] |
//! | machine removal: drain before remove, demote before remove, remove node, destroy | [`machine_removal::remove_machines`] |
//!
//! Each rule reads the desired and observed state and the pairing from the [`Ctx`], adds its
//! steps and warnings to it, and takes what earlier rules made as parameters and returns what
//! it makes as a value ([`Membership`], [`stack_objects::ObjectSteps`],
//! [`services::ServiceSteps`], ...): the order of the calls is the order of the steps, and the
//! types say which rule needs which. Manager changes are counted in a
//! [`super::quorum::Quorum`] passed to the rules that make them.

pub mod cli_dropped;
pub mod content_versions;
pub mod create_machines;
pub mod depends_on;
pub mod destroy_guard;
pub mod engine_fields;
pub mod identity;
pub mod init_swarm;
pub mod joins;
pub mod machine_removal;
pub mod node_specs;
pub mod object_replacement;
pub mod ownership;
pub mod pause;
pub mod prune;
pub mod references;
pub mod roles;
pub mod self_heal;
pub mod services;
pub mod stack_objects;
pub mod swarm_states;
pub mod unseen;

use super::model::{Step, StepId, StepOp};
use super::pairing::Pairing;
use super::planner::PlanOptions;
use super::reason::Reason;
use super::warning::Warning;
use crate::model::{Desired, Observed};

/// What every rule reads and writes: the inputs (desired and observed state, the options and
/// their pairing, never changed once made), the steps so far and the warnings. What one rule
/// makes for another is passed between them as values (see `plan()`).
pub(crate) struct Ctx<'a> {
    /// Desired state.
    pub(crate) desired: &'a Desired,
    /// Observed state.
    pub(crate) observed: &'a Observed,
    /// The user's options.
    pub(crate) options: &'a PlanOptions,
    /// Desired and observed, paired.
    pub(crate) pairing: Pairing<'a>,
    /// Steps so far, in order.
    pub(crate) steps: Vec<Step>,
    /// Warnings for people.
    pub(crate) warnings: Vec<Warning>,
}

impl<'a> Ctx<'a> {
    /// A context with no steps yet.
    pub(crate) fn new(
        desired: &'a Desired,
        observed: &'a Observed,
        options: &'a PlanOptions,
    ) -> Self {
        Ctx {
            desired,
            observed,
            options,
            pairing: Pairing::new(desired, observed),
            steps: Vec::new(),
            warnings: desired.warnings.iter().map(Warning::files).collect(),
        }
    }

    /// Adds a step after `depends_on` (sorted, without repeats) and returns its id.
    pub(crate) fn push(
        &mut self,
        op: StepOp,
        target: impl Into<String>,
        depends_on: impl IntoIterator<Item = StepId>,
        reason: Reason,
    ) -> StepId {
        let id = StepId(self.steps.len() as u32 + 1);
        let mut deps: Vec<StepId> = depends_on.into_iter().collect();
        deps.sort_unstable();
        deps.dedup();
        self.steps.push(Step {
            id,
            target: target.into(),
            depends_on: deps,
            waits: Vec::new(),
            reason,
            op,
        });
        id
    }
}

/// The swarm membership this plan makes: the swarm's init, every join, the init machine's
/// labels, role and node changes. Stack objects, services and machine removals wait for them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    /// Their steps, in plan order.
    pub(crate) steps: Vec<StepId>,
    /// Whether any machine joins (rebalance spreads services onto it).
    pub(crate) joined_any: bool,
}

impl Membership {
    /// The membership made of the swarm's entry, the joins and the node changes after them.
    pub(crate) fn of(
        entry: &init_swarm::SwarmEntry,
        joins: &joins::Joins,
        changes: impl IntoIterator<Item = StepId>,
    ) -> Membership {
        Membership {
            steps: (entry.init.iter().chain(&joins.steps).copied())
                .chain(changes)
                .collect(),
            joined_any: !joins.steps.is_empty(),
        }
    }
}
