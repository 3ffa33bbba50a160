//! The planner: a pure function of desired state, observed state and options to a [`Plan`].
//!
//! Phases, in step order: machine replacements and creations, swarm init, joins, role and
//! label changes, stacks (networks, secrets and configs before services), prune, and machine
//! removals (drain → demote → remove node → destroy). Manager membership changes form one
//! chain, so they run one at a time, and the chain is checked against quorum before the plan
//! is returned.

use super::diff::field_changes;
use super::fingerprint::fingerprint;
use super::model::{Action, Detail, Effect, Plan, Step, Summary, FORMAT_VERSION};
use super::normalize::{comparable, spec_to_send};
use crate::model::observed::LocalSwarmState;
use crate::model::{
    Availability, Desired, MachineSpec, MachineState, NodeState, Observed, ObservedMachine,
    ObservedNode, Role, ServiceSpec, LABEL_STACK_NAMESPACE,
};
use std::collections::{BTreeMap, BTreeSet};

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
    /// No order of the manager changes keeps quorum.
    #[error("no safe order for the manager changes: {0}")]
    Unsafe(String),
}

fn majority(managers: usize) -> usize {
    managers / 2 + 1
}

/// Accumulates steps, numbering them in order.
struct Builder {
    steps: Vec<Step>,
}

impl Builder {
    fn push(
        &mut self,
        action: Action,
        target: impl Into<String>,
        depends_on: impl IntoIterator<Item = u32>,
        reason: impl Into<String>,
        detail: Detail,
    ) -> u32 {
        let id = self.steps.len() as u32 + 1;
        let mut deps: Vec<u32> = depends_on.into_iter().filter(|d| *d != 0).collect();
        deps.sort_unstable();
        deps.dedup();
        self.steps.push(Step {
            id,
            action,
            target: target.into(),
            depends_on: deps,
            reason: reason.into(),
            detail,
        });
        id
    }
}

/// How the planner treats one desired machine.
struct MachinePlan<'a> {
    spec: &'a MachineSpec,
    /// Its node in the current swarm, when it is a member and is kept.
    member: Option<&'a ObservedNode>,
    /// Step that creates the machine, if any.
    created: Option<u32>,
    /// Steps that must finish before it joins (removal of its stale node).
    before_join: Vec<u32>,
    /// Whether it must leave an old swarm before joining.
    leave_first: bool,
    /// Down but within its grace period (or self-heal is off): left alone for now.
    waiting: bool,
}

/// A machine or node on its way out of the cluster.
struct Leaving<'a> {
    /// Machine name, or the node's hostname for a node of no machine.
    target: String,
    /// The machine, when one exists.
    machine: Option<&'a ObservedMachine>,
    /// Its node, when it is in the swarm.
    node: Option<&'a ObservedNode>,
}

/// Manager membership bookkeeping for the quorum check.
#[derive(Clone, Copy)]
struct Quorum {
    managers: usize,
    reachable: usize,
}

impl Quorum {
    fn check(&self, what: &str) -> Result<(), PlanError> {
        if self.managers > 0 && self.reachable < majority(self.managers) {
            return Err(PlanError::Unsafe(format!(
                "after {what}, {} of {} managers would be reachable, below the majority of {}",
                self.reachable,
                self.managers,
                majority(self.managers)
            )));
        }
        Ok(())
    }
}

/// Computes the plan that turns `observed` into `desired`.
pub fn plan(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let mut warnings = desired.warnings.clone();
    check_quorum(observed)?;
    let mut b = Builder { steps: Vec::new() };
    let grace = desired.policy.down_grace_seconds;
    let swarm_exists = observed.swarm.is_some();

    let mut quorum = Quorum {
        managers: observed
            .nodes
            .values()
            .filter(|n| n.role == Role::Manager)
            .count(),
        reachable: observed
            .nodes
            .values()
            .filter(|n| n.is_reachable_manager())
            .count(),
    };
    let mut manager_chain: u32 = 0;
    let node_of: BTreeMap<&str, &ObservedNode> = observed
        .nodes
        .values()
        .filter_map(|n| n.machine.as_deref().map(|m| (m, n)))
        .collect();

    // Phase 1: replacements of lost machines, and creation of missing ones.
    let mut machines: BTreeMap<&str, MachinePlan> = BTreeMap::new();
    for spec in desired.machines.values() {
        let machine = observed.machines.get(&spec.name);
        let node = node_of.get(spec.name.as_str()).copied();
        let mut plan = MachinePlan {
            spec,
            member: None,
            created: None,
            before_join: Vec::new(),
            leave_first: false,
            waiting: false,
        };
        let node_lost = node.is_some_and(|n| n.state != NodeState::Ready);
        let down_for = node.and_then(|n| n.down_for_seconds).unwrap_or(0);
        let gone = machine.is_none();
        let stopped = machine.is_some_and(|m| m.state == MachineState::Stopped);
        let replace = !gone
            && desired.policy.self_heal
            && (stopped || node_lost)
            && (node.is_none() || down_for >= grace);
        if !gone && (stopped || node_lost) && !replace {
            plan.waiting = node.is_some() || !desired.policy.self_heal;
            warnings.push(match (desired.policy.self_heal, node) {
                (true, Some(_)) => format!(
                    "{} has been down for {down_for}s; self-heal replaces it after {grace}s",
                    spec.name
                ),
                _ => format!(
                    "{} is down and self-heal is off: it is left as it is",
                    spec.name
                ),
            });
        }
        if (gone && node.is_some()) || replace {
            let why = if gone {
                format!("{} is gone", spec.name)
            } else {
                format!(
                    "{} is down (node {})",
                    spec.name,
                    describe_down(node, down_for)
                )
            };
            if let Some(node) = node {
                if node.role == Role::Manager {
                    quorum.managers -= 1;
                    if node.is_reachable_manager() {
                        quorum.reachable -= 1;
                    }
                    quorum.check(&format!("demoting {}", spec.name))?;
                    manager_chain = b.push(
                        Action::DemoteNode,
                        &spec.name,
                        [manager_chain],
                        format!("{why}: its manager seat is freed before it is replaced"),
                        Detail {
                            node_id: Some(node.id.clone()),
                            ..Detail::default()
                        },
                    );
                }
                let removed = b.push(
                    Action::RemoveNode,
                    &spec.name,
                    [if node.role == Role::Manager {
                        manager_chain
                    } else {
                        0
                    }],
                    format!("{why}: its node is removed before the machine is replaced"),
                    Detail {
                        node_id: Some(node.id.clone()),
                        force: Some(true),
                        ..Detail::default()
                    },
                );
                plan.before_join.push(removed);
            }
            let mut before_create = Vec::new();
            if !gone {
                before_create.push(b.push(
                    Action::DestroyMachine,
                    &spec.name,
                    plan.before_join.clone(),
                    format!("{why}: self-heal replaces the machine"),
                    Detail::default(),
                ));
            }
            plan.created = Some(b.push(
                Action::CreateMachine,
                &spec.name,
                before_create,
                if gone {
                    format!("{why}: self-heal creates it again")
                } else {
                    format!("{why}: self-heal creates a new one")
                },
                Detail {
                    role: Some(spec.role),
                    labels: Some(spec.labels.clone()),
                    ..Detail::default()
                },
            ));
        } else if let (Some(machine), Some(node)) = (machine, node) {
            if machine.swarm_state == LocalSwarmState::Active && swarm_exists {
                plan.member = Some(node);
            } else {
                plan.leave_first = machine.swarm_state != LocalSwarmState::Inactive;
            }
        } else if let Some(machine) = machine {
            plan.leave_first = machine.swarm_state != LocalSwarmState::Inactive;
        }
        machines.insert(spec.name.as_str(), plan);
    }
    // Creation of machines that never existed comes right after replacements.
    let missing: Vec<&str> = machines
        .iter()
        .filter(|(name, p)| p.created.is_none() && !observed.machines.contains_key(**name))
        .map(|(name, _)| *name)
        .collect();
    for name in missing {
        let plan = machines.get_mut(name).expect("machine planned");
        let role = plan.spec.role;
        let wanted = desired.machines_with_role(role).count();
        let existing = desired
            .machines_with_role(role)
            .filter(|m| observed.machines.contains_key(&m.name))
            .count();
        plan.created = Some(b.push(
            Action::CreateMachine,
            name,
            [],
            format!("machines.yml wants {wanted} {role}(s), {existing} exist"),
            Detail {
                role: Some(role),
                labels: Some(plan.spec.labels.clone()),
                ..Detail::default()
            },
        ));
    }

    // Phase 2: swarm init.
    let mut init_step = 0;
    let via: String = if let Some(leader) = current_manager(observed, &machines) {
        leader
    } else {
        let first = desired
            .machines_with_role(Role::Manager)
            .map(|m| m.name.clone())
            .min_by_key(|name| (machines[name.as_str()].created.is_some(), name.clone()));
        match first {
            None => String::new(),
            Some(name) => {
                let plan = &machines[name.as_str()];
                init_step = b.push(
                    Action::InitSwarm,
                    "swarm",
                    [plan.created.unwrap_or(0)],
                    format!("no swarm exists: {name} initializes it"),
                    Detail {
                        via: Some(name.clone()),
                        force: plan.leave_first.then_some(true),
                        ..Detail::default()
                    },
                );
                quorum = Quorum {
                    managers: 1,
                    reachable: 1,
                };
                manager_chain = init_step;
                name
            }
        }
    };

    // Phase 3: joins (managers one at a time, workers in parallel), then node labels.
    let mut membership_steps: Vec<u32> = vec![init_step];
    let mut joined_any = false;
    for plan in machines.values() {
        let name = &plan.spec.name;
        if plan.member.is_some() || plan.waiting || *name == via && init_step != 0 {
            continue;
        }
        let role = plan.spec.role;
        let mut deps = vec![plan.created.unwrap_or(0), init_step];
        deps.extend(&plan.before_join);
        if role == Role::Manager {
            deps.push(manager_chain);
            quorum.managers += 1;
            quorum.reachable += 1;
        }
        let id = b.push(
            Action::JoinSwarm,
            name,
            deps,
            format!("{name} is not in the swarm: it joins as a {role}"),
            Detail {
                role: Some(role),
                via: Some(via.clone()),
                labels: (!plan.spec.labels.is_empty()).then(|| plan.spec.labels.clone()),
                force: plan.leave_first.then_some(true),
                ..Detail::default()
            },
        );
        if role == Role::Manager {
            manager_chain = id;
        }
        membership_steps.push(id);
        joined_any = true;
    }
    if init_step != 0 && !machines[via.as_str()].spec.labels.is_empty() {
        membership_steps.push(b.push(
            Action::UpdateNode,
            &via,
            [init_step],
            format!("machines.yml gives {via} node labels"),
            Detail {
                labels: Some(machines[via.as_str()].spec.labels.clone()),
                availability: Some(Availability::Active),
                ..Detail::default()
            },
        ));
    }

    // Phase 4: roles (promotions first, then demotions, the leader last), labels, availability.
    let members: Vec<(&MachineSpec, &ObservedNode)> = machines
        .values()
        .filter_map(|p| p.member.map(|n| (p.spec, n)))
        .collect();
    for (spec, node) in members
        .iter()
        .filter(|(s, n)| s.role == Role::Manager && n.role == Role::Worker)
    {
        quorum.managers += 1;
        if node.state == NodeState::Ready {
            quorum.reachable += 1;
        }
        manager_chain = b.push(
            Action::PromoteNode,
            &spec.name,
            [manager_chain],
            format!("machines.yml makes {} a manager", spec.name),
            Detail {
                node_id: Some(node.id.clone()),
                ..Detail::default()
            },
        );
        membership_steps.push(manager_chain);
    }
    let mut demotions: Vec<(&MachineSpec, &ObservedNode)> = members
        .iter()
        .filter(|(s, n)| s.role == Role::Worker && n.role == Role::Manager)
        .copied()
        .collect();
    demotions.sort_by_key(|(s, n)| (n.is_reachable_manager(), n.leader, s.name.clone()));
    for (spec, node) in demotions {
        quorum.managers -= 1;
        if node.is_reachable_manager() {
            quorum.reachable -= 1;
        }
        quorum.check(&format!("demoting {}", spec.name))?;
        manager_chain = b.push(
            Action::DemoteNode,
            &spec.name,
            [manager_chain],
            format!("machines.yml makes {} a worker", spec.name),
            Detail {
                node_id: Some(node.id.clone()),
                ..Detail::default()
            },
        );
        membership_steps.push(manager_chain);
    }
    for (spec, node) in &members {
        let labels_differ = node.labels != spec.labels;
        let inactive = node.availability != Availability::Active;
        if !labels_differ && !inactive {
            continue;
        }
        let reason = match (labels_differ, inactive) {
            (true, true) => format!(
                "node labels differ from machines.yml and the node is {}",
                availability_word(node.availability)
            ),
            (true, false) => "node labels differ from machines.yml".to_string(),
            _ => format!(
                "the node is {}; machines.yml keeps it active",
                availability_word(node.availability)
            ),
        };
        membership_steps.push(b.push(
            Action::UpdateNode,
            &spec.name,
            [],
            reason,
            Detail {
                node_id: Some(node.id.clone()),
                labels: Some(spec.labels.clone()),
                availability: Some(Availability::Active),
                ..Detail::default()
            },
        ));
    }

    // Phase 5: stacks.
    let mut stack_steps: Vec<u32> = Vec::new();
    let mut service_steps: Vec<u32> = Vec::new();
    let mut object_steps: BTreeMap<String, u32> = BTreeMap::new();
    let mut known_networks: BTreeSet<&str> = observed.networks.keys().map(String::as_str).collect();
    for stack in desired.stacks.values() {
        for (name, network) in &stack.networks {
            known_networks.insert(name);
            if observed.networks.contains_key(name) {
                continue;
            }
            let id = b.push(
                Action::CreateNetwork,
                name,
                membership_steps.clone(),
                format!(
                    "stack {} uses network {name}, which does not exist",
                    stack.name
                ),
                Detail {
                    network: Some(network.clone()),
                    ..Detail::default()
                },
            );
            object_steps.insert(format!("network:{name}"), id);
            stack_steps.push(id);
        }
        for (kind, objects, existing, action) in [
            (
                "secret",
                &stack.secrets,
                &observed.secrets,
                Action::CreateSecret,
            ),
            (
                "config",
                &stack.configs,
                &observed.configs,
                Action::CreateConfig,
            ),
        ] {
            for (name, object) in objects {
                if existing.contains_key(name) {
                    continue;
                }
                let id = b.push(
                    action,
                    name,
                    membership_steps.clone(),
                    format!("{kind} {} has content not yet in the swarm", object.source),
                    Detail {
                        object: Some(object.clone()),
                        ..Detail::default()
                    },
                );
                object_steps.insert(format!("{kind}:{name}"), id);
                stack_steps.push(id);
            }
        }
    }
    for stack in desired.stacks.values() {
        for external in &stack.external_networks {
            if !known_networks.contains(external.as_str()) {
                warnings.push(format!(
                    "stack {} uses external network {external}, which does not exist: create it (docker network create --driver overlay {external}) or its services will fail",
                    stack.name
                ));
            }
        }
    }
    for stack in desired.stacks.values() {
        let mut missing: BTreeSet<String> = BTreeSet::new();
        for spec in stack.services.values() {
            let container = &spec.task_template.container_spec;
            for name in container.secrets.iter().map(|s| &s.secret_name) {
                if !stack.secrets.contains_key(name) && !observed.secrets.contains_key(name) {
                    missing.insert(format!(
                        "secret {name} (create it with `docker secret create {name} FILE`)"
                    ));
                }
            }
            for name in container.configs.iter().map(|c| &c.config_name) {
                if !stack.configs.contains_key(name) && !observed.configs.contains_key(name) {
                    missing.insert(format!(
                        "config {name} (create it with `docker config create {name} FILE`)"
                    ));
                }
            }
        }
        for what in missing {
            warnings.push(format!(
                "stack {} uses external {what}, which does not exist: the services using it will fail to deploy",
                stack.name
            ));
        }
    }
    if options.routing_mesh == Some(false) {
        for spec in desired.stacks.values().flat_map(|s| s.services.values()) {
            let ingress: Vec<String> = spec
                .endpoint_spec
                .iter()
                .flat_map(|e| &e.ports)
                .filter(|p| p.publish_mode != "host")
                .map(|p| p.published_port.unwrap_or(0).to_string())
                .collect();
            if !ingress.is_empty() {
                warnings.push(format!(
                    "{} publishes port {} through the ingress routing mesh, which cannot work on these machines (their kernel has no IPVS): the service runs but the port does not answer. Publish in host mode instead (ports: - {{target: ..., published: ..., mode: host}}) with deploy.endpoint_mode: dnsrr; `shoal doctor` tells more",
                    spec.name,
                    ingress.join(", ")
                ));
            }
        }
    }
    let rebalance = desired.policy.rebalance && joined_any && swarm_exists;
    // Services of managed stacks that the files no longer name are removed before new services
    // are created, so a renamed service can take over its predecessor's ports.
    let managed: BTreeSet<&str> = desired
        .stacks
        .keys()
        .map(String::as_str)
        .chain(
            observed
                .swarm
                .as_ref()
                .and_then(|s| s.labels.get(LABEL_STACKS))
                .into_iter()
                .flat_map(|list| list.split(',').filter(|s| !s.is_empty())),
        )
        .collect();
    let stack_of = |labels: &BTreeMap<String, String>| -> Option<String> {
        labels
            .get(LABEL_STACK_NAMESPACE)
            .filter(|s| managed.contains(s.as_str()))
            .cloned()
    };
    let mut pruned: Vec<u32> = Vec::new();
    if desired.policy.prune {
        let mut prune_services = Vec::new();
        for (name, service) in &observed.services {
            let Some(stack) = stack_of(&service.spec.labels) else {
                continue;
            };
            let wanted = desired
                .stacks
                .get(&stack)
                .is_some_and(|s| s.services.contains_key(name));
            if !wanted {
                prune_services.push((name, service, stack));
            }
        }
        if !options.allow_destroy_all {
            for (_, _, stack) in &prune_services {
                let emptied = desired
                    .stacks
                    .get(stack)
                    .is_none_or(|s| s.services.is_empty());
                if emptied {
                    let total = prune_services.iter().filter(|(_, _, s)| s == stack).count();
                    return Err(PlanError::DestroyAll {
                        what: format!(
                            "remove all {total} service(s) of stack {stack}, which the files no longer define"
                        ),
                    });
                }
            }
        }
        for (name, service, stack) in prune_services {
            pruned.push(b.push(
                Action::RemoveService,
                name,
                membership_steps.clone(),
                format!("stack {stack} no longer defines {name}"),
                Detail {
                    id: Some(service.id.clone()),
                    ..Detail::default()
                },
            ));
        }
        service_steps.extend(&pruned);
    }
    for stack in desired.stacks.values() {
        for (name, spec) in &stack.services {
            // Objects created in this plan already wait for the membership steps, so a service
            // that waits for one of them waits for those transitively.
            let created: Vec<u32> = uses(spec)
                .iter()
                .filter_map(|key| object_steps.get(key).copied())
                .collect();
            let mut deps = if created.is_empty() {
                membership_steps.clone()
            } else {
                created
            };
            deps.extend(&pruned);
            let Some(current) = observed.services.get(name) else {
                let id = b.push(
                    Action::CreateService,
                    name,
                    deps,
                    format!("stack {} defines {name}, which does not exist", stack.name),
                    Detail {
                        service: Some(Box::new(spec.clone())),
                        ..Detail::default()
                    },
                );
                service_steps.push(id);
                continue;
            };
            let (want, have) = comparable(spec, &current.spec);
            if want == have {
                if rebalance && spec.replicas().is_some_and(|r| r > 1) {
                    service_steps.push(b.push(
                        Action::RebalanceService,
                        name,
                        deps,
                        "new nodes joined and policy.rebalance is on: tasks are spread onto them",
                        Detail {
                            id: Some(current.id.clone()),
                            force_update: Some(current.spec.task_template.force_update + 1),
                            ..Detail::default()
                        },
                    ));
                }
                continue;
            }
            let mut scaled = have.clone();
            if let Some(replicas) = want.replicas() {
                scaled.set_replicas(replicas);
            }
            if scaled == want && want.replicas().is_some() {
                let replicas = want.replicas().unwrap_or(1);
                service_steps.push(b.push(
                    Action::ScaleService,
                    name,
                    deps,
                    format!(
                        "replicas: {} → {replicas}",
                        have.replicas().map_or("-".to_string(), |r| r.to_string())
                    ),
                    Detail {
                        id: Some(current.id.clone()),
                        replicas: Some(replicas),
                        ..Detail::default()
                    },
                ));
            } else if want.mode_name() != have.mode_name() {
                let removed = b.push(
                    Action::RemoveService,
                    name,
                    deps.clone(),
                    format!(
                        "mode changes from {} to {}, which swarm cannot update in place",
                        have.mode_name(),
                        want.mode_name()
                    ),
                    Detail {
                        id: Some(current.id.clone()),
                        ..Detail::default()
                    },
                );
                deps.push(removed);
                service_steps.push(removed);
                service_steps.push(b.push(
                    Action::CreateService,
                    name,
                    deps,
                    format!("recreated as a {} service", want.mode_name()),
                    Detail {
                        service: Some(Box::new(spec.clone())),
                        ..Detail::default()
                    },
                ));
            } else {
                let changes = field_changes(&have, &want);
                let fields: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
                service_steps.push(b.push(
                    Action::UpdateService,
                    name,
                    deps,
                    format!(
                        "{} {} from the compose file",
                        fields.join(", "),
                        if fields.len() == 1 {
                            "differs"
                        } else {
                            "differ"
                        }
                    ),
                    Detail {
                        id: Some(current.id.clone()),
                        service: Some(Box::new(spec_to_send(spec, &current.spec))),
                        changes,
                        ..Detail::default()
                    },
                ));
            }
        }
    }

    // Phase 6: prune networks, secrets and configs of managed stacks that the files no longer name.
    if desired.policy.prune {
        let wanted_networks: BTreeSet<&str> = desired
            .stacks
            .values()
            .flat_map(|s| s.networks.keys().map(String::as_str))
            .collect();
        let wanted_secrets: BTreeSet<&str> = desired
            .stacks
            .values()
            .flat_map(|s| s.secrets.keys().map(String::as_str))
            .collect();
        let wanted_configs: BTreeSet<&str> = desired
            .stacks
            .values()
            .flat_map(|s| s.configs.keys().map(String::as_str))
            .collect();
        for (kind, objects, wanted, action) in [
            (
                "network",
                &observed.networks,
                &wanted_networks,
                Action::RemoveNetwork,
            ),
            (
                "secret",
                &observed.secrets,
                &wanted_secrets,
                Action::RemoveSecret,
            ),
            (
                "config",
                &observed.configs,
                &wanted_configs,
                Action::RemoveConfig,
            ),
        ] {
            for (name, object) in objects {
                let Some(stack) = stack_of(&object.labels) else {
                    continue;
                };
                if wanted.contains(name.as_str()) {
                    continue;
                }
                stack_steps.push(b.push(
                    action,
                    name,
                    service_steps.clone(),
                    format!("stack {stack} no longer uses {kind} {name}"),
                    Detail {
                        id: Some(object.id.clone()),
                        ..Detail::default()
                    },
                ));
            }
        }
    }

    stack_steps.extend(&service_steps);

    // Phase 7: machines the files no longer name, and down nodes of no machine:
    // drain → demote → remove node → destroy machine. Unreachable managers go first (removing
    // them only helps quorum), the leader last.
    let removed: Vec<&str> = observed
        .machines
        .keys()
        .filter(|name| !desired.machines.contains_key(*name))
        .map(String::as_str)
        .collect();
    if !removed.is_empty() && desired.machines.is_empty() && !options.allow_destroy_all {
        return Err(PlanError::DestroyAll {
            what: format!("destroy all {} machine(s)", removed.len()),
        });
    }
    let claimed: BTreeSet<&str> = observed
        .machines
        .keys()
        .chain(desired.machines.keys())
        .map(String::as_str)
        .collect();
    let mut leaving: Vec<Leaving> = removed
        .iter()
        .map(|name| Leaving {
            target: name.to_string(),
            machine: Some(&observed.machines[*name]),
            node: node_of.get(name).copied(),
        })
        .collect();
    for node in observed.nodes.values() {
        if node.machine.as_deref().is_some_and(|m| claimed.contains(m)) {
            continue;
        }
        if node.state == NodeState::Ready {
            warnings.push(format!(
                "node {} ({}) belongs to no machine of this cluster; it is left alone",
                node.hostname, node.id
            ));
        } else {
            leaving.push(Leaving {
                target: node.hostname.clone(),
                machine: None,
                node: Some(node),
            });
        }
    }
    leaving.sort_by_key(|l| {
        (
            l.node.is_some_and(|n| n.is_reachable_manager()),
            l.node.is_some_and(|n| n.leader),
            l.target.clone(),
        )
    });
    let mut after_stacks: Vec<u32> = membership_steps.clone();
    after_stacks.extend(&stack_steps);
    // Tearing the whole cluster down (allowed above): machines go, workers first, the leader
    // last; there is no swarm left to keep in quorum, so no node steps.
    let tearing_down = desired.machines.is_empty();
    let mut destroyed_workers: Vec<u32> = Vec::new();
    for leave in leaving {
        let name = leave.target.as_str();
        if tearing_down {
            if let Some(machine) = leave.machine {
                let manager = leave
                    .node
                    .map_or(machine.created_role == Some(Role::Manager), |n| {
                        n.role == Role::Manager
                    });
                let mut deps = after_stacks.clone();
                if manager {
                    deps.extend(&destroyed_workers);
                }
                let id = b.push(
                    Action::DestroyMachine,
                    name,
                    deps,
                    "machines.yml names no machines and --allow-destroy-all was given",
                    Detail::default(),
                );
                if !manager {
                    destroyed_workers.push(id);
                }
            }
            continue;
        }
        let why = match leave.machine {
            Some(_) => format!("{name} is no longer in machines.yml"),
            None => format!("node {name} is down and belongs to no machine of this cluster"),
        };
        let mut last = 0;
        if let Some(node) = leave.node {
            let up = node.state == NodeState::Ready
                && leave
                    .machine
                    .is_some_and(|m| m.state == MachineState::Running);
            if up && node.availability != Availability::Drain {
                last = b.push(
                    Action::DrainNode,
                    name,
                    after_stacks.clone(),
                    format!("{why}: its tasks move first"),
                    Detail {
                        node_id: Some(node.id.clone()),
                        ..Detail::default()
                    },
                );
            }
            if node.role == Role::Manager {
                quorum.managers -= 1;
                if node.is_reachable_manager() {
                    quorum.reachable -= 1;
                }
                if quorum.managers == 0 {
                    return Err(PlanError::Unsafe(format!(
                        "removing {name} would leave the swarm without a manager"
                    )));
                }
                quorum.check(&format!("demoting {name}"))?;
                let mut deps = after_stacks.clone();
                deps.extend([last, manager_chain]);
                manager_chain = b.push(
                    Action::DemoteNode,
                    name,
                    deps,
                    format!("{why}: it leaves the managers first"),
                    Detail {
                        node_id: Some(node.id.clone()),
                        ..Detail::default()
                    },
                );
                last = manager_chain;
            }
            let mut deps = after_stacks.clone();
            deps.push(last);
            last = b.push(
                Action::RemoveNode,
                name,
                deps,
                why.clone(),
                Detail {
                    node_id: Some(node.id.clone()),
                    force: (!up).then_some(true),
                    ..Detail::default()
                },
            );
        }
        if leave.machine.is_some() {
            let mut deps = after_stacks.clone();
            deps.push(last);
            b.push(Action::DestroyMachine, name, deps, why, Detail::default());
        }
    }

    let summary = summarize(&b.steps);
    Ok(Plan {
        format_version: FORMAT_VERSION,
        revision: options.revision.clone(),
        fingerprint: fingerprint(observed),
        summary,
        warnings,
        steps: b.steps,
    })
}

/// How people say a node's availability.
fn availability_word(availability: Availability) -> &'static str {
    match availability {
        Availability::Active => "active",
        Availability::Pause => "paused",
        Availability::Drain => "drained",
    }
}

fn describe_down(node: Option<&ObservedNode>, down_for: u64) -> String {
    match node {
        Some(n) => format!("{} for {down_for}s", state_name(n.state)),
        None => "missing".to_string(),
    }
}

fn state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Unknown => "unknown",
        NodeState::Down => "down",
        NodeState::Ready => "ready",
        NodeState::Disconnected => "disconnected",
    }
}

/// Refuses to plan when the swarm has lost quorum.
fn check_quorum(observed: &Observed) -> Result<(), PlanError> {
    let Some(swarm) = &observed.swarm else {
        return Ok(());
    };
    let managers: Vec<&ObservedNode> = observed
        .nodes
        .values()
        .filter(|n| n.role == Role::Manager)
        .collect();
    let reachable: Vec<&&ObservedNode> = managers
        .iter()
        .filter(|n| n.is_reachable_manager())
        .collect();
    let lost = swarm.quorum_error.is_some()
        || (!managers.is_empty() && reachable.len() < majority(managers.len()));
    if !lost {
        return Ok(());
    }
    let survivor = reachable
        .first()
        .and_then(|n| n.machine.clone())
        .or_else(|| {
            observed
                .machines
                .values()
                .find(|m| {
                    m.state == MachineState::Running
                        && m.swarm_state == LocalSwarmState::Active
                        && m.created_role == Some(Role::Manager)
                })
                .map(|m| m.name.clone())
        })
        .unwrap_or_else(|| "<manager>".to_string());
    let detail = match &swarm.quorum_error {
        Some(message) => {
            // No node list without a leader: count the machines created as managers instead.
            let managers: Vec<&ObservedMachine> = observed
                .machines
                .values()
                .filter(|m| m.created_role == Some(Role::Manager))
                .collect();
            let up = managers
                .iter()
                .filter(|m| {
                    m.state == MachineState::Running && m.swarm_state == LocalSwarmState::Active
                })
                .count();
            format!(
                "{up} of {} manager machines answer and their swarm has no leader ({message})",
                managers.len()
            )
        }
        None => format!(
            "{} of {} managers are reachable, and {} are needed",
            reachable.len(),
            managers.len(),
            majority(managers.len())
        ),
    };
    Err(PlanError::QuorumLost { detail, survivor })
}

/// The machine of a reachable manager to work through: the leader when it is kept.
fn current_manager(observed: &Observed, machines: &BTreeMap<&str, MachinePlan>) -> Option<String> {
    observed.swarm.as_ref()?;
    let mut candidates: Vec<&ObservedNode> = observed
        .nodes
        .values()
        .filter(|n| n.is_reachable_manager())
        .filter(|n| {
            n.machine.as_deref().is_some_and(|m| {
                observed
                    .machines
                    .get(m)
                    .is_some_and(|o| o.state == MachineState::Running)
            })
        })
        .collect();
    candidates.sort_by_key(|n| {
        let kept = n
            .machine
            .as_deref()
            .is_some_and(|m| machines.contains_key(m));
        (!kept, !n.leader, n.machine.clone())
    });
    candidates.first().and_then(|n| n.machine.clone())
}

/// Keys (`network:<name>`, `secret:<name>`, `config:<name>`) of the objects a service uses.
fn uses(spec: &ServiceSpec) -> Vec<String> {
    let container = &spec.task_template.container_spec;
    spec.task_template
        .networks
        .iter()
        .map(|n| format!("network:{}", n.target))
        .chain(
            container
                .secrets
                .iter()
                .map(|s| format!("secret:{}", s.secret_name)),
        )
        .chain(
            container
                .configs
                .iter()
                .map(|c| format!("config:{}", c.config_name)),
        )
        .collect()
}

fn summarize(steps: &[Step]) -> Summary {
    let mut summary = Summary::default();
    for step in steps {
        match step.action.effect() {
            Effect::Add => summary.add += 1,
            Effect::Change => summary.change += 1,
            Effect::Destroy => summary.destroy += 1,
        }
    }
    summary
}
