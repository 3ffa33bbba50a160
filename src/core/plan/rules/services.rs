//! Services (DESIGN §3): a missing service is created, one whose replicas alone differ is
//! scaled (`scale_service`), one whose other owned fields differ is updated
//! (`update_service`, with the field diff), one whose mode changes is removed and created
//! again, and with policy.rebalance on, unchanged services spread onto newly joined nodes.
//! A job (`replicated-job`, `global-job`) is created or updated by `run_job`, which runs it;
//! an unchanged job is never run again. Services are planned dependencies first
//! ([`super::depends_on::rollout_order`]).
//! A service whose engine spec shoal could not read is warned about: left alone when no stack
//! of the repository names it, replaced by the file's spec (as `docker stack deploy` would)
//! when one does.

use super::prune::ServicePrunes;
use super::stack_objects::ObjectSteps;
use super::{cli_dropped, depends_on, Ctx, Membership};
use crate::model::observed::UpdateState;
use crate::model::{ObservedService, ServiceSpec};
use crate::plan::diff::field_changes;
use crate::plan::model::{StepId, StepOp};
use crate::plan::normalize::{comparable, spec_to_send};
use crate::plan::pairing::{services, ServicePair};
use crate::plan::reason::Reason;
use crate::plan::warning::Warning;

/// Warns about ports published through the routing mesh on machines where it cannot work.
pub fn warn_ingress_without_mesh(ctx: &mut Ctx) {
    if ctx.options.routing_mesh != Some(false) {
        return;
    }
    for spec in ctx
        .desired
        .stacks
        .values()
        .flat_map(|s| s.services.values())
    {
        let ingress: Vec<String> = spec
            .endpoint_spec
            .iter()
            .flat_map(|e| &e.ports)
            .filter(|p| p.publish_mode != "host")
            .map(|p| p.published_port.unwrap_or(0).to_string())
            .collect();
        if !ingress.is_empty() {
            ctx.warnings.push(Warning::IngressWithoutMesh {
                service: spec.name.clone(),
                ports: ingress,
            });
        }
    }
}

/// Warns about the services whose engine spec shoal could not read.
fn warn_unreadable(ctx: &mut Ctx) {
    for service in ctx.observed.services.values() {
        let Some(why) = &service.spec.unreadable else {
            continue;
        };
        let name = &service.spec.name;
        let desired = ctx
            .desired
            .stacks
            .values()
            .any(|stack| stack.services.contains_key(name));
        ctx.warnings.push(Warning::UnreadableService {
            service: name.clone(),
            why: why.clone(),
            replaced: desired,
        });
    }
}

/// The service steps of the plan: prunes, then creations, updates and rebalances. Object
/// prunes and machine removals wait for them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ServiceSteps {
    /// Their steps, in plan order.
    pub(crate) steps: Vec<StepId>,
}

/// Creates, scales, updates, recreates or rebalances each desired service: after the objects
/// it uses that this plan creates (else after the `membership` steps), and after the `prunes`.
pub(crate) fn plan_services(
    ctx: &mut Ctx,
    membership: &Membership,
    objects: &ObjectSteps,
    prunes: &ServicePrunes,
) -> ServiceSteps {
    warn_unreadable(ctx);
    let rebalance =
        ctx.desired.policy.rebalance && membership.joined_any && ctx.observed.swarm.is_some();
    let pairs =
        depends_on::rollout_order(ctx.desired, services(ctx.desired, ctx.observed).collect());
    let mut planned = ServiceSteps {
        steps: prunes.steps.clone(),
    };
    for pair in pairs {
        // Objects created in this plan already wait for the membership steps, so a service
        // that waits for one of them waits for those transitively.
        let created: Vec<StepId> = uses(pair.spec)
            .iter()
            .filter_map(|key| objects.created.get(key).copied())
            .collect();
        let mut deps = if created.is_empty() {
            membership.steps.clone()
        } else {
            created
        };
        deps.extend(&prunes.steps);
        let steps = plan_service(ctx, &pair, deps, rebalance);
        planned.steps.extend(steps);
    }
    planned
}

/// The steps of one service, after `deps`.
fn plan_service(
    ctx: &mut Ctx,
    pair: &ServicePair,
    mut deps: Vec<StepId>,
    rebalance: bool,
) -> Vec<StepId> {
    let (name, spec) = (pair.name, pair.spec);
    let Some(current) = pair.current else {
        let (stack, service) = (pair.stack.to_string(), name.to_string());
        let (op, reason) = if spec.is_job() {
            (
                run_job(None, spec.clone(), Vec::new(), None),
                Reason::JobMissing { stack, service },
            )
        } else {
            let op = StepOp::CreateService {
                spec: Box::new(spec.clone()),
            };
            (op, Reason::ServiceMissing { stack, service })
        };
        return vec![ctx.push(op, name, deps, reason)];
    };
    let (want, have) = comparable(spec, &current.spec);
    let id = current.id.clone();
    // Fields the CLI drops, missing from the running service, wait for a real update.
    let (relaxed, waiting) = cli_dropped::without_missing(&want, &have);
    let want = if relaxed == have || only_replicas_differ(&relaxed, &have) {
        if !waiting.is_empty() {
            ctx.warnings.push(Warning::CliDroppedFields {
                service: name.to_string(),
                fields: waiting,
            });
        }
        relaxed
    } else {
        want
    };
    if want == have && current.spec.unreadable.is_none() {
        if let Some(message) = rolled_back(current) {
            let op = StepOp::RebalanceService {
                id,
                force_update: current.spec.task_template.force_update + 1,
                observed_spec: Some(current.spec_digest()),
            };
            return vec![ctx.push(op, name, deps, Reason::RolledBack { message })];
        }
        if !rebalance || spec.replicas().is_none_or(|r| r <= 1) {
            return Vec::new();
        }
        let op = StepOp::RebalanceService {
            id,
            force_update: current.spec.task_template.force_update + 1,
            observed_spec: Some(current.spec_digest()),
        };
        return vec![ctx.push(op, name, deps, Reason::Rebalance)];
    }
    let readable = current.spec.unreadable.is_none();
    if let (true, Some(replicas)) = (
        only_replicas_differ(&want, &have) && readable,
        want.replicas(),
    ) {
        let op = StepOp::ScaleService {
            id,
            replicas,
            observed_spec: Some(current.spec_digest()),
        };
        let reason = Reason::Scale {
            from: have.replicas(),
            to: replicas,
        };
        return vec![ctx.push(op, name, deps, reason)];
    }
    if want.mode_name() != have.mode_name() && readable {
        let reason = Reason::ModeChange {
            from: have.mode_name(),
            to: want.mode_name(),
        };
        let removed = ctx.push(StepOp::RemoveService { id }, name, deps.clone(), reason);
        deps.push(removed);
        let op = if spec.is_job() {
            run_job(None, spec.clone(), Vec::new(), None)
        } else {
            StepOp::CreateService {
                spec: Box::new(spec.clone()),
            }
        };
        let reason = Reason::Recreated {
            mode: want.mode_name(),
        };
        return vec![removed, ctx.push(op, name, deps, reason)];
    }
    let changes = field_changes(&have, &want);
    let fields = changes.iter().map(|c| c.path.clone()).collect();
    if spec.is_job() {
        let op = run_job(
            Some(id),
            spec_to_send(spec, &current.spec),
            changes,
            Some(current.spec_digest()),
        );
        return vec![ctx.push(op, name, deps, Reason::JobChanged { fields })];
    }
    let op = StepOp::UpdateService {
        id,
        spec: Box::new(spec_to_send(spec, &current.spec)),
        changes,
        observed_spec: Some(current.spec_digest()),
    };
    vec![ctx.push(op, name, deps, Reason::SpecDrift { fields })]
}

/// The step that creates (`id` `None`) or updates a job, which runs it.
fn run_job(
    id: Option<String>,
    spec: ServiceSpec,
    changes: Vec<crate::plan::model::FieldChange>,
    observed_spec: Option<String>,
) -> StepOp {
    StepOp::RunJob {
        id,
        spec: Box::new(spec),
        changes,
        observed_spec,
    }
}

/// Whether `have` becomes `want` by setting its replica count alone.
fn only_replicas_differ(want: &ServiceSpec, have: &ServiceSpec) -> bool {
    let Some(replicas) = want.replicas() else {
        return false;
    };
    let mut scaled = have.clone();
    scaled.set_replicas(replicas);
    scaled == *want
}

/// The engine's message when swarm rolled the service's last update back: its rolled-back
/// state stays until the next update, and keeps it degraded though its spec is the wanted one.
fn rolled_back(current: &ObservedService) -> Option<String> {
    let status = current.update_status.as_ref()?;
    (status.state == UpdateState::RollbackCompleted).then(|| {
        if status.message.is_empty() {
            "rollback completed".to_string()
        } else {
            status.message.clone()
        }
    })
}

/// Keys (`network:<name>`, `secret:<name>`, `config:<name>`) of the objects a service uses.
fn uses(spec: &ServiceSpec) -> Vec<String> {
    let container = &spec.task_template.container_spec;
    let networks = spec.task_template.networks.iter().map(|n| &n.target);
    let secrets = container.secrets.iter().map(|s| &s.secret_name);
    let configs = container.configs.iter().map(|c| &c.config_name);
    networks
        .map(|n| format!("network:{n}"))
        .chain(secrets.map(|s| format!("secret:{s}")))
        .chain(configs.map(|c| format!("config:{c}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, running, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions, StepOp};

    fn planned(
        have: Vec<crate::model::ServiceSpec>,
        want: Vec<crate::model::ServiceSpec>,
    ) -> crate::plan::Plan {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, have);
        with_stack(&mut desired, "app", want);
        plan(&desired, &observed, &PlanOptions::default()).unwrap()
    }

    #[test]
    fn a_rolled_back_service_matching_the_files_again_is_made_healthy() {
        use crate::model::observed::{UpdateState, UpdateStatus};
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, vec![service("app", "web", "web:1", 2)]);
        with_stack(&mut desired, "app", vec![service("app", "web", "web:1", 2)]);
        assert!(plan(&desired, &observed, &PlanOptions::default())
            .unwrap()
            .steps
            .is_empty());
        observed.services.get_mut("app_web").unwrap().update_status = Some(UpdateStatus {
            state: UpdateState::RollbackCompleted,
            message: "rollback completed".into(),
        });
        let healed = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(steps(&healed), ["rebalance_service app_web"]);
        assert!(healed.steps[0]
            .reason
            .to_string()
            .contains("swarm rolled its last update back"));
    }

    #[test]
    fn replicas_alone_scale_the_service() {
        let plan = planned(
            vec![service("app", "web", "nginx", 1)],
            vec![service("app", "web", "nginx", 3)],
        );
        assert_eq!(steps(&plan), ["scale_service app_web"]);
        assert!(matches!(
            plan.steps[0].op,
            StepOp::ScaleService { replicas: 3, .. }
        ));
        assert_eq!(plan.steps[0].reason.to_string(), "replicas: 1 → 3");
    }

    #[test]
    fn other_fields_update_the_service_with_its_diff() {
        let plan = planned(
            vec![service("app", "web", "nginx:1", 1)],
            vec![service("app", "web", "nginx:2", 3)],
        );
        assert_eq!(steps(&plan), ["update_service app_web"]);
        assert!(!plan.steps[0].op.changes().is_empty());
    }

    #[test]
    fn an_unchanged_service_plans_nothing() {
        let plan = planned(
            vec![service("app", "web", "nginx", 2)],
            vec![service("app", "web", "nginx", 2)],
        );
        assert!(plan.steps.is_empty());
    }
}
