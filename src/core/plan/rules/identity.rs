//! Identity (DESIGN §5): a machine is one engine. Two machines whose engines report the same ID
//! are one host under two names (`tcp://h:2376` and `tcp://h:2376/`, a name and its address):
//! planning them as two would drain the one node when either name is dropped, and demote the
//! last manager through the other.

use super::Ctx;
use crate::plan::planner::PlanError;
use std::collections::BTreeMap;

/// Refuses a plan in which two machines reach the same engine, naming both.
pub fn refuse_one_engine_under_two_names(ctx: &Ctx) -> Result<(), PlanError> {
    let mut by_engine: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for machine in ctx.observed.machines.values() {
        if let Some(id) = &machine.engine_id {
            by_engine.entry(id).or_default().push(&machine.name);
        }
    }
    match by_engine.into_iter().find(|(_, names)| names.len() > 1) {
        Some((engine, names)) => Err(PlanError::OneEngineTwoNames {
            machines: names.join(" and "),
            engine: engine.to_string(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::desired_with;
    use crate::plan::{plan, PlanError, PlanOptions};

    #[test]
    fn two_machines_on_one_engine_are_refused_naming_both() {
        let desired = desired_with(&[("a", Role::Manager), ("b", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        for machine in observed.machines.values_mut() {
            machine.engine_id = Some("ENGINE:1".into());
        }
        let refused = plan(&desired, &observed, &PlanOptions::default()).unwrap_err();
        assert!(matches!(refused, PlanError::OneEngineTwoNames { .. }));
        let text = refused.to_string();
        assert!(text.contains("a and b"), "{text}");
        assert!(text.contains("ENGINE:1"), "{text}");
    }

    #[test]
    fn distinct_engines_are_planned() {
        let desired = desired_with(&[("a", Role::Manager), ("b", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        for machine in observed.machines.values_mut() {
            machine.engine_id = Some(format!("ENGINE:{}", machine.name));
        }
        assert!(plan(&desired, &observed, &PlanOptions::default()).is_ok());
    }
}
