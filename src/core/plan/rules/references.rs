//! Rule: refuse a plan whose services need what the cluster lacks or holds for another
//! service, so that apply never stops half-way on the engine's refusal.
//!
//! The files alone are checked by `validate` (`crate::compose::validate`); this rule adds
//! what only the observation tells: an external network, secret or config that does not exist
//! in the swarm, and a published port already held by a service the plan leaves in place
//! (one of another stack, or one prune does not remove). It runs after the service prunes,
//! whose removals free their ports before any service is created.

use super::Ctx;
use crate::compose::validate::port_conflict;
use crate::model::desired::is_node_local_network;
use crate::model::Stack;
use crate::plan::model::StepOp;
use crate::plan::planner::PlanError;
use std::collections::BTreeSet;

/// Refuses the plan, naming every unmet reference and what to do, when a service of the
/// desired stacks cannot be created or updated on the observed cluster.
pub fn refuse_unmet_references(ctx: &Ctx) -> Result<(), PlanError> {
    let mut problems = missing_externals(ctx);
    problems.extend(taken_ports(ctx));
    if problems.is_empty() {
        return Ok(());
    }
    if ctx.observed.swarm.is_none() {
        problems.push(
            "the swarm does not exist yet, so nothing external does: apply the machines first with the stack left out of `stacks:` in machines.yml, create the objects, then add the stack back".to_string(),
        );
    }
    Err(PlanError::Unmet(problems.join("\n  ")))
}

/// A manager to run `docker` against, for the messages.
fn manager(ctx: &Ctx) -> String {
    ctx.desired
        .machines_with_role(crate::model::Role::Manager)
        .next()
        .map_or_else(|| "<manager>".to_string(), |m| m.name.clone())
}

fn missing_externals(ctx: &Ctx) -> Vec<String> {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let on = format!("(on a manager: eval $(shoal env {}))", manager(ctx));
    let created = |pick: fn(&Stack) -> Vec<&String>| -> BTreeSet<&String> {
        desired.stacks.values().flat_map(pick).collect()
    };
    let networks = created(|s| s.networks.keys().collect());
    let secrets = created(|s| s.secrets.keys().collect());
    let configs = created(|s| s.configs.keys().collect());
    let mut out = BTreeSet::new();
    for stack in desired.stacks.values() {
        let file = &stack.file;
        let attached: BTreeSet<&String> = stack
            .services
            .values()
            .flat_map(|s| s.task_template.networks.iter().map(|n| &n.target))
            .collect();
        for name in &stack.external_networks {
            let missing = !networks.contains(name)
                && !observed.networks.contains_key(name)
                && !is_node_local_network(name);
            if missing && attached.contains(name) {
                out.insert(format!(
                    "stack {} ({file}) uses external network {name}, which does not exist in the swarm: create it with `docker network create --driver overlay --attachable {name}` {on}, or remove it from {file}",
                    stack.name
                ));
            }
        }
        for spec in stack.services.values() {
            let container = &spec.task_template.container_spec;
            for name in container.secrets.iter().map(|s| &s.secret_name) {
                if !secrets.contains(name) && !observed.secrets.contains_key(name) {
                    out.insert(format!(
                        "service {} ({file}) uses external secret {name}, which does not exist in the swarm: create it with `docker secret create {name} FILE` {on}, or give it a `file:` in {file}",
                        spec.name
                    ));
                }
            }
            for name in container.configs.iter().map(|c| &c.config_name) {
                if !configs.contains(name) && !observed.configs.contains_key(name) {
                    out.insert(format!(
                        "service {} ({file}) uses external config {name}, which does not exist in the swarm: create it with `docker config create {name} FILE` {on}, or give it a `file:` in {file}",
                        spec.name
                    ));
                }
            }
        }
    }
    out.into_iter().collect()
}

fn taken_ports(ctx: &Ctx) -> Vec<String> {
    let desired: BTreeSet<&String> = ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| s.services.keys())
        .collect();
    let removed: BTreeSet<&String> = ctx
        .steps
        .iter()
        .filter(|s| matches!(s.op, StepOp::RemoveService { .. }))
        .map(|s| &s.target)
        .collect();
    let staying: Vec<_> = ctx
        .observed
        .services
        .iter()
        .filter(|(name, _)| !desired.contains(name) && !removed.contains(name))
        .collect();
    let mut out = Vec::new();
    for stack in ctx.desired.stacks.values() {
        for spec in stack.services.values() {
            for (name, held) in &staying {
                if let Some(port) = port_conflict(spec, &held.spec) {
                    out.push(format!(
                        "service {} ({}) publishes port {port}, which service {name} already publishes and keeps: publish one on another port, or remove {name} (`docker service rm {name}`)",
                        spec.name, stack.file
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{load, MemSource};
    use crate::model::Observed;
    use crate::plan::{plan, PlanOptions};
    use std::collections::BTreeMap;

    const MACHINES: &str = "cluster: c\ndriver: sim\nmachines:\n  m1: {role: manager}\n";

    fn plan_error(compose: &str, observed_compose: Option<&str>) -> String {
        let files = MemSource::new(
            "c",
            [("machines.yml", MACHINES), ("docker-compose.yml", compose)],
        );
        let desired = load(&files, &BTreeMap::new()).unwrap();
        let mut observed = Observed::with_members_of(&desired);
        if let Some(other) = observed_compose {
            let files = MemSource::new(
                "c",
                [
                    ("machines.yml", "cluster: c\ndriver: sim\nmachines:\n  m1: {role: manager}\nstacks: {other: docker-compose.yml}\n"),
                    ("docker-compose.yml", other),
                ],
            );
            let held = load(&files, &BTreeMap::new()).unwrap();
            for (name, spec) in &held.stacks["other"].services {
                observed.services.insert(
                    name.clone(),
                    crate::model::ObservedService {
                        id: format!("id-{name}"),
                        version: 1,
                        spec: spec.clone(),
                        running: 1,
                        desired: 1,
                        update_status: None,
                        template_key: None,
                    },
                );
            }
        }
        plan(&desired, &observed, &PlanOptions::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn missing_external_objects_are_refused() {
        let err = plan_error(
            "services:\n  web:\n    image: nginx\n    networks: [edge]\n    secrets: [db]\nnetworks:\n  edge: {external: true}\nsecrets:\n  db: {external: true}\n",
            None,
        );
        assert!(err.contains("external network edge"), "{err}");
        assert!(err.contains("docker network create"), "{err}");
        assert!(err.contains("external secret db"), "{err}");
    }

    #[test]
    fn node_local_networks_are_valid_externals() {
        let compose = "services:\n  web:\n    image: nginx\n    networks: [outside]\nnetworks:\n  outside: {external: true, name: host}\n";
        let files = MemSource::new(
            "c",
            [("machines.yml", MACHINES), ("docker-compose.yml", compose)],
        );
        let desired = load(&files, &BTreeMap::new()).unwrap();
        let observed = Observed::with_members_of(&desired);
        let planned = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(planned.steps.len(), 1, "{:?}", planned.steps);
        assert!(
            planned
                .warnings
                .iter()
                .all(|w| !w.to_string().contains("external network")),
            "{:?}",
            planned.warnings
        );
    }

    #[test]
    fn a_port_held_by_another_stack_is_refused() {
        let err = plan_error(
            "services:\n  web:\n    image: nginx\n    ports: [\"8080:80\"]\n",
            Some("services:\n  api:\n    image: nginx\n    ports: [\"8080:80\"]\n"),
        );
        assert!(err.contains("port 8080/tcp"), "{err}");
        assert!(err.contains("other_api"), "{err}");
    }
}
