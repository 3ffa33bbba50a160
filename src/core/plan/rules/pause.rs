//! Pause (DESIGN §9): a paused cluster (`shoal pause`) is still planned, so people and the
//! watcher's `/status` see what is pending; the plan says who paused it and why, and that apply
//! refuses to write until `shoal resume` (or `apply --ignore-pause`).

use super::Ctx;
use crate::plan::warning::Warning;

/// Warns that the cluster is paused, naming who paused it and why.
pub fn warn_paused(ctx: &mut Ctx) {
    let Some(pause) = ctx.observed.pause() else {
        return;
    };
    ctx.warnings.push(Warning::Paused {
        by: pause.by.clone(),
        reason: pause.reason.clone(),
    });
}

#[cfg(test)]
mod tests {
    use crate::model::pause::Pause;
    use crate::model::Role;
    use crate::plan::testing::{desired_with, machine, manager, observed_with};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn a_paused_cluster_is_planned_with_a_warning_naming_who_and_why() {
        let desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = observed_with(vec![manager("m1", true)]);
        observed
            .machines
            .insert("m1".into(), machine("m1", Role::Manager));
        let calm = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert!(!calm
            .warnings
            .iter()
            .any(|w| w.to_string().contains("paused")));
        let pause = Pause {
            by: "ana@ops1".into(),
            since: 1,
            reason: "db migration".into(),
        };
        pause.write_into(&mut observed.swarm.as_mut().unwrap().labels);
        let paused = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert!(
            paused
                .warnings
                .iter()
                .any(|w| w.to_string().contains("paused by ana@ops1 (db migration)")),
            "{:?}",
            paused.warnings
        );
    }
}
