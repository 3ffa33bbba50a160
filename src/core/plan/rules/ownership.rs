//! Ownership (DESIGN §4): the swarm records the cluster it belongs to (`io.shoal.cluster`, written
//! by apply), and a swarm that records another cluster is never changed: when a host of another
//! shoal cluster is the only manager this cluster reaches, its services are not this cluster's
//! to prune.

use super::Ctx;
use crate::model::LABEL_CLUSTER;
use crate::plan::planner::PlanError;

/// Refuses to plan against a swarm whose `io.shoal.cluster` label names another cluster. A
/// swarm with no such label (made by hand, or by a shoal that did not record it) is adopted: the
/// next apply records this cluster on it.
pub fn refuse_another_clusters_swarm(ctx: &Ctx) -> Result<(), PlanError> {
    let Some(swarm) = &ctx.observed.swarm else {
        return Ok(());
    };
    match swarm.labels.get(LABEL_CLUSTER) {
        Some(owner) if *owner != ctx.desired.cluster => Err(PlanError::AnotherCluster {
            owner: owner.clone(),
            cluster: ctx.desired.cluster.clone(),
            managers: managers_of(ctx),
        }),
        _ => Ok(()),
    }
}

/// The machines through which the swarm was read: those whose engine is a member of it.
fn managers_of(ctx: &Ctx) -> String {
    let names: Vec<&str> = ctx
        .observed
        .machines
        .values()
        .filter(|m| m.node_id.is_some())
        .map(|m| m.name.as_str())
        .collect();
    if names.is_empty() {
        "<none>".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role, LABEL_CLUSTER};
    use crate::plan::testing::{desired_with, service, steps, with_stack};
    use crate::plan::{plan, PlanError, PlanOptions};

    fn cluster_of(label: Option<&str>) -> Result<crate::plan::Plan, PlanError> {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        desired.cluster = "web".into();
        with_stack(
            &mut desired,
            "app",
            vec![service("app", "web", "nginx:1", 1)],
        );
        let mut observed = Observed::with_members_of(&desired);
        if let Some(owner) = label {
            let swarm = observed.swarm.as_mut().unwrap();
            swarm.labels.insert(LABEL_CLUSTER.into(), owner.into());
        }
        plan(&desired, &observed, &PlanOptions::default())
    }

    #[test]
    fn a_swarm_of_another_cluster_is_refused_and_never_changed() {
        let refused = cluster_of(Some("shop")).unwrap_err();
        let text = refused.to_string();
        assert!(matches!(refused, PlanError::AnotherCluster { .. }));
        assert!(text.contains("cluster shop"), "{text}");
        assert!(text.contains("m1"), "{text}");
    }

    #[test]
    fn a_swarm_of_this_cluster_or_of_none_is_planned() {
        assert_eq!(
            steps(&cluster_of(Some("web")).unwrap()),
            ["create_service app_web"]
        );
        assert_eq!(
            steps(&cluster_of(None).unwrap()),
            ["create_service app_web"]
        );
    }
}
