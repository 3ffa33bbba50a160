//! Ordered rollouts (DESIGN §9): within a stack, a service's `depends_on` orders its creation
//! and updates after its dependencies'. Two rules:
//!
//! - [`rollout_order`]: services are planned dependencies first, so a dependency's step always
//!   comes before its dependants' (otherwise in name order, as before);
//! - [`wait_for_dependencies`]: a dependant's create, update, scale or job step depends on the
//!   steps of this plan that change its dependencies, and carries a [`Wait`] per dependency, so
//!   apply holds it until each reaches its condition (a dependency the plan leaves alone is
//!   waited for too: apply checks it is in the condition already). The plan shows the waits:
//!   "(after #3 is healthy)".
//!
//! `docker stack deploy` ignores `depends_on`, so a stack it deployed plans nothing for it.

use super::Ctx;
use crate::model::Desired;
use crate::plan::model::{StepId, StepOp, Wait};
use crate::plan::pairing::ServicePair;
use std::collections::BTreeMap;

/// `pairs` reordered so that every service comes after the services it depends on (in its
/// stack), else in the order given: each service's dependencies are placed just before it
/// (depth first, without recursion, so a long chain costs no stack). Services on a cycle
/// (refused when the files are read) keep an order, never loop.
pub(crate) fn rollout_order<'a>(
    desired: &Desired,
    pairs: Vec<ServicePair<'a>>,
) -> Vec<ServicePair<'a>> {
    let index: BTreeMap<&str, usize> = (pairs.iter().enumerate())
        .map(|(i, pair)| (pair.name, i))
        .collect();
    let dependencies: BTreeMap<&str, Vec<usize>> = (desired.stacks.values())
        .flat_map(|stack| stack.depends_on.iter())
        .map(|(name, deps)| {
            let known = deps
                .iter()
                .filter_map(|d| index.get(d.service.as_str()).copied());
            (name.as_str(), known.collect())
        })
        .collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Placed,
    }
    let mut marks = vec![Mark::New; pairs.len()];
    let mut order: Vec<usize> = Vec::with_capacity(pairs.len());
    for start in 0..pairs.len() {
        if marks[start] != Mark::New {
            continue;
        }
        marks[start] = Mark::OnPath;
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        while let Some((node, next)) = path.last().copied() {
            let deps = dependencies.get(pairs[node].name).map(Vec::as_slice);
            match deps.unwrap_or_default().get(next).copied() {
                Some(dep) => {
                    if let Some(frame) = path.last_mut() {
                        frame.1 += 1;
                    }
                    if marks[dep] == Mark::New {
                        marks[dep] = Mark::OnPath;
                        path.push((dep, 0));
                    }
                }
                None => {
                    marks[node] = Mark::Placed;
                    order.push(node);
                    path.pop();
                }
            }
        }
    }
    let mut slots: Vec<Option<ServicePair<'a>>> = pairs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Whether a step creates tasks of its service (so it waits for the service's dependencies):
/// every service step but a removal.
fn starts_tasks(op: &StepOp) -> bool {
    matches!(
        op,
        StepOp::CreateService { .. }
            | StepOp::UpdateService { .. }
            | StepOp::ScaleService { .. }
            | StepOp::RebalanceService { .. }
            | StepOp::RunJob { .. }
    )
}

/// Makes each dependant's steps wait for its dependencies (see the module's documentation).
pub(crate) fn wait_for_dependencies(ctx: &mut Ctx) {
    // The last step of this plan that starts tasks of each service.
    let mut last: BTreeMap<String, StepId> = BTreeMap::new();
    for step in ctx.steps.iter().filter(|s| starts_tasks(&s.op)) {
        last.insert(step.target.clone(), step.id);
    }
    let dependencies = (ctx.desired.stacks.values()).flat_map(|stack| stack.depends_on.iter());
    let mut waits: BTreeMap<&str, Vec<Wait>> = BTreeMap::new();
    for (dependant, deps) in dependencies {
        let list = waits.entry(dependant).or_default();
        for dep in deps {
            list.push(Wait {
                service: dep.service.clone(),
                condition: dep.condition,
                step: last.get(&dep.service).copied(),
            });
        }
    }
    for step in ctx.steps.iter_mut().filter(|s| starts_tasks(&s.op)) {
        let Some(list) = waits.get(step.target.as_str()) else {
            continue;
        };
        // A dependency changed after this step (only on a cycle) cannot be waited for.
        let list: Vec<Wait> = (list.iter())
            .filter(|w| w.step.is_none_or(|id| id < step.id))
            .cloned()
            .collect();
        step.depends_on.extend(list.iter().filter_map(|w| w.step));
        step.depends_on.sort_unstable();
        step.depends_on.dedup();
        step.waits = list;
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Condition, Dependency, Observed, Role, ServiceSpec};
    use crate::plan::testing::{desired_with, running, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions, StepId, Wait};

    fn job(stack: &str, name: &str, image: &str) -> ServiceSpec {
        let mut spec = service(stack, name, image, 1);
        spec.mode = Some(crate::model::spec::ServiceMode {
            replicated_job: Some(crate::model::spec::ReplicatedJob::default()),
            ..Default::default()
        });
        spec
    }

    /// `app`: web waits for migrate to complete, migrate for db to be healthy; `have` runs.
    fn planned(have: Vec<ServiceSpec>, want: Vec<ServiceSpec>) -> crate::plan::Plan {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, have);
        with_stack(&mut desired, "app", want);
        let stack = desired.stacks.get_mut("app").unwrap();
        let dep = |service: &str, condition| Dependency {
            service: service.to_string(),
            condition,
        };
        stack.depends_on.insert(
            "app_web".into(),
            vec![dep("app_migrate", Condition::ServiceCompletedSuccessfully)],
        );
        stack.depends_on.insert(
            "app_migrate".into(),
            vec![dep("app_db", Condition::ServiceHealthy)],
        );
        plan(&desired, &observed, &PlanOptions::default()).unwrap()
    }

    /// db (healthcheck) <- migrate (job) <- web.
    fn stack() -> Vec<ServiceSpec> {
        vec![
            service("app", "db", "db:1", 1),
            job("app", "migrate", "migrate:1"),
            service("app", "web", "web:1", 2),
        ]
    }

    #[test]
    fn a_first_rollout_runs_in_dependency_order_and_waits() {
        let plan = planned(Vec::new(), stack());
        assert_eq!(
            steps(&plan),
            [
                "create_service app_db",
                "run_job app_migrate",
                "create_service app_web",
            ]
        );
        let (db, migrate, web) = (&plan.steps[0], &plan.steps[1], &plan.steps[2]);
        assert!(migrate.depends_on.contains(&db.id));
        assert!(web.depends_on.contains(&migrate.id));
        assert_eq!(
            web.waits,
            [Wait {
                service: "app_migrate".into(),
                condition: Condition::ServiceCompletedSuccessfully,
                step: Some(migrate.id),
            }]
        );
        assert_eq!(migrate.waits[0].step, Some(db.id));
        assert!(db.waits.is_empty());
    }

    #[test]
    fn dependencies_come_first_whatever_their_names() {
        // z_db sorts last by name but is needed first.
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let observed = Observed::with_members_of(&desired);
        with_stack(
            &mut desired,
            "app",
            vec![
                service("app", "a_web", "web:1", 1),
                service("app", "z_db", "db:1", 1),
            ],
        );
        desired.stacks.get_mut("app").unwrap().depends_on.insert(
            "app_a_web".into(),
            vec![Dependency {
                service: "app_z_db".into(),
                condition: Condition::ServiceStarted,
            }],
        );
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["create_service app_z_db", "create_service app_a_web"]
        );
        assert!(plan.steps[1].depends_on.contains(&plan.steps[0].id));
    }

    #[test]
    fn an_unchanged_dependency_is_waited_for_without_a_step() {
        let mut want = stack();
        want[2] = service("app", "web", "web:2", 2);
        let plan = planned(stack(), want);
        assert_eq!(steps(&plan), ["update_service app_web"]);
        assert_eq!(
            plan.steps[0].waits,
            [Wait {
                service: "app_migrate".into(),
                condition: Condition::ServiceCompletedSuccessfully,
                step: None,
            }]
        );
        assert!(plan.steps[0].depends_on.is_empty());
    }

    #[test]
    fn an_unchanged_stack_plans_nothing_and_a_changed_job_runs_again() {
        assert!(planned(stack(), stack()).steps.is_empty());
        let mut want = stack();
        want[1] = job("app", "migrate", "migrate:2");
        let plan = planned(stack(), want);
        assert_eq!(steps(&plan), ["run_job app_migrate"]);
        assert!(plan.steps[0]
            .reason
            .to_string()
            .ends_with("the job runs again"));
        assert_eq!(plan.steps[0].waits[0].step, None);
    }

    #[test]
    fn waits_are_kept_in_the_json_and_read_back() {
        let plan = planned(Vec::new(), stack());
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json["steps"][2]["waits"],
            serde_json::json!([{"service": "app_migrate", "condition": "service_completed_successfully", "step": 2}])
        );
        let back: crate::plan::Plan = serde_json::from_value(json).unwrap();
        assert_eq!(back.steps[2].waits, plan.steps[2].waits);
        assert_eq!(back.steps[2].depends_on, [StepId(2)]);
    }
}
