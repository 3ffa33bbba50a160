//! Test-only builders of small desired and observed states for the rules' unit tests.

use super::model::Plan;
use crate::model::observed::{LocalSwarmState, ObservedSwarm};
use crate::model::{
    Availability, Desired, MachineSpec, MachineState, NodeState, Observed, ObservedMachine,
    ObservedNode, ObservedService, Reachability, Role, ServiceSpec, Stack, LABEL_STACK_NAMESPACE,
};
use std::collections::BTreeMap;

/// Desired state with these machines and no stacks, under the default policy.
pub fn desired_with(machines: &[(&str, Role)]) -> Desired {
    let mut desired = Desired::default();
    for (name, role) in machines {
        desired.machines.insert(
            name.to_string(),
            MachineSpec {
                name: name.to_string(),
                role: *role,
                labels: BTreeMap::new(),
                host: None,
            },
        );
    }
    desired
}

/// A ready (or down) manager node whose ID, hostname and machine are `name`.
pub fn manager(name: &str, reachable: bool) -> ObservedNode {
    ObservedNode {
        id: name.into(),
        machine: Some(name.into()),
        hostname: name.into(),
        role: Role::Manager,
        availability: Availability::Active,
        labels: BTreeMap::new(),
        state: if reachable {
            NodeState::Ready
        } else {
            NodeState::Down
        },
        leader: false,
        reachability: Some(if reachable {
            Reachability::Reachable
        } else {
            Reachability::Unreachable
        }),
        version: 1,
        down_for_seconds: (!reachable).then_some(600),
    }
}

/// A running machine in the swarm.
pub fn machine(name: &str, role: Role) -> ObservedMachine {
    ObservedMachine {
        name: name.into(),
        state: MachineState::Running,
        created_role: Some(role),
        swarm_state: LocalSwarmState::Active,
        node_id: Some(name.into()),
        engine_id: None,
        problem: None,
        address: None,
    }
}

/// A swarm with these nodes and no machines.
pub fn observed_with(nodes: Vec<ObservedNode>) -> Observed {
    Observed {
        swarm: Some(ObservedSwarm {
            id: "swarm".into(),
            labels: BTreeMap::new(),
            quorum_error: None,
            content_key: Default::default(),
        }),
        nodes: nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
        ..Observed::default()
    }
}

/// A replicated service of `stack` named `<stack>_<name>`.
pub fn service(stack: &str, name: &str, image: &str, replicas: u64) -> ServiceSpec {
    let mut spec = ServiceSpec {
        name: format!("{stack}_{name}"),
        ..ServiceSpec::default()
    };
    spec.labels
        .insert(LABEL_STACK_NAMESPACE.into(), stack.to_string());
    spec.task_template.container_spec.image = image.into();
    spec.set_replicas(replicas);
    spec
}

/// Adds a stack with these services to `desired`.
pub fn with_stack(desired: &mut Desired, stack: &str, services: Vec<ServiceSpec>) {
    desired.stacks.insert(
        stack.to_string(),
        Stack {
            name: stack.to_string(),
            services: services.into_iter().map(|s| (s.name.clone(), s)).collect(),
            ..Stack::default()
        },
    );
}

/// Adds these services to `observed` as running.
pub fn running(observed: &mut Observed, services: Vec<ServiceSpec>) {
    for (i, spec) in services.into_iter().enumerate() {
        observed.services.insert(
            spec.name.clone(),
            ObservedService {
                id: format!("svc{i}"),
                version: 1,
                running: spec.replicas().unwrap_or(1),
                desired: spec.replicas().unwrap_or(1),
                spec,
                update_status: None,
                template_key: None,
            },
        );
    }
}

/// The plan's steps as `action target`.
pub fn steps(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| format!("{} {}", s.action(), s.target))
        .collect()
}
