//! The JSON form of a step (DESIGN §3): `detail` is one object whose fields depend on the
//! action. Typed [`StepOp`]s convert to it when written and from it when read, so a saved plan
//! that lacks what an action needs is refused when it is read, not when it is applied.
//!
//! What is written is what people may see: secret values and credentials in a detail are
//! masked ([`super::mask`]), so `plan --json` and a saved plan never hold them. Apply never
//! carries out a plan read back: it plans again and checks the two show the same
//! ([`super::saved::check_fresh`]).

use super::mask::masked;
use super::model::{Action, FieldChange, Plan, Step, StepId, StepOp, Summary, Unseen};
use super::reason::Reason;
use crate::model::content_key::ContentKey;
use crate::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use crate::model::{Availability, Role};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The `detail` object of a step, as written in the plan JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Detail {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    availability: Option<Availability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    via: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    force_update: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    force: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service: Option<Box<ServiceSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    changes: Vec<FieldChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    network: Option<NetworkSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    object: Option<ObjectSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed_spec: Option<String>,
}

/// A step as written in the plan JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct WireStep {
    id: StepId,
    action: Action,
    target: String,
    depends_on: Vec<StepId>,
    reason: String,
    detail: Detail,
}

/// A plan as read from JSON, before replacements are recognized.
#[derive(Deserialize)]
pub(crate) struct WirePlan {
    format_version: u32,
    revision: Option<String>,
    fingerprint: String,
    summary: Summary,
    warnings: Vec<String>,
    #[serde(default)]
    unseen: Vec<Unseen>,
    steps: Vec<Step>,
    /// Only in saved plan files (see [`crate::plan::saved::saved_text`]).
    #[serde(default)]
    content_key: Option<ContentKey>,
}

/// A plan as written in JSON: its steps as shown, masked with its `show_values`.
#[derive(Serialize)]
pub(crate) struct ShownPlan<'a> {
    format_version: u32,
    revision: &'a Option<String>,
    fingerprint: &'a str,
    summary: Summary,
    warnings: &'a [String],
    #[serde(skip_serializing_if = "<[Unseen]>::is_empty")]
    unseen: &'a [Unseen],
    steps: Vec<WireStep>,
}

impl<'a> ShownPlan<'a> {
    /// `plan` as written. Every field is named, so a new one cannot be left out silently.
    pub(crate) fn of(plan: &'a Plan) -> ShownPlan<'a> {
        let Plan {
            format_version,
            revision,
            fingerprint,
            summary,
            warnings,
            unseen,
            steps,
            show_values,
            // Never shown: only the saved plan file carries it.
            new_content_key: _,
        } = plan;
        ShownPlan {
            format_version: *format_version,
            revision,
            fingerprint,
            summary: *summary,
            warnings,
            unseen,
            steps: shown_steps(steps, show_values),
        }
    }
}

/// `steps` as written, their secret values and credentials masked but for the keys in `show`.
pub(crate) fn shown_steps(steps: &[Step], show: &[String]) -> Vec<WireStep> {
    steps
        .iter()
        .map(|step| WireStep::shown(step.clone(), show))
        .collect()
}

impl From<Step> for WireStep {
    /// The step as written, every secret-looking value masked.
    fn from(step: Step) -> WireStep {
        WireStep::shown(step, &[])
    }
}

impl WireStep {
    /// The step as written, its secret values and credentials masked but for the keys in
    /// `show` (`policy.show_values`). Field changes were masked when planned.
    fn shown(step: Step, show: &[String]) -> WireStep {
        let action = step.action();
        let mut d = Detail::default();
        match step.op {
            StepOp::CreateMachine { role, labels } => {
                d.role = Some(role);
                d.labels = Some(labels);
            }
            StepOp::StartMachine | StepOp::DestroyMachine => {}
            StepOp::InitSwarm { via } => d.via = Some(via),
            StepOp::JoinSwarm { role, via, labels } => {
                d.role = Some(role);
                d.via = Some(via);
                d.labels = (!labels.is_empty()).then_some(labels);
            }
            StepOp::PromoteNode { node_id }
            | StepOp::DemoteNode { node_id }
            | StepOp::DrainNode { node_id } => d.node_id = Some(node_id),
            StepOp::UpdateNode {
                node_id,
                labels,
                availability,
            } => {
                d.node_id = node_id;
                d.labels = Some(labels);
                d.availability = Some(availability);
            }
            StepOp::RemoveNode { node_id, force } => {
                d.node_id = Some(node_id);
                d.force = force.then_some(true);
            }
            StepOp::CreateNetwork { network } => d.network = Some(network),
            StepOp::CreateSecret { object } | StepOp::CreateConfig { object } => {
                d.object = Some(object)
            }
            StepOp::RemoveNetwork { id }
            | StepOp::RemoveSecret { id }
            | StepOp::RemoveConfig { id }
            | StepOp::RemoveService { id } => d.id = Some(id),
            StepOp::CreateService { spec } => d.service = Some(spec),
            StepOp::UpdateService {
                id,
                spec,
                changes,
                observed_spec,
            } => {
                d.id = Some(id);
                d.service = Some(spec);
                d.changes = changes;
                d.observed_spec = observed_spec;
            }
            StepOp::ScaleService {
                id,
                replicas,
                observed_spec,
            } => {
                d.id = Some(id);
                d.replicas = Some(replicas);
                d.observed_spec = observed_spec;
            }
            StepOp::RebalanceService {
                id,
                force_update,
                observed_spec,
            } => {
                d.id = Some(id);
                d.force_update = Some(force_update);
                d.observed_spec = observed_spec;
            }
        }
        d.labels = d.labels.map(|labels| masked(&labels, Some("Labels"), show));
        d.service = d.service.map(|spec| Box::new(masked(&*spec, None, show)));
        d.network = d.network.map(|network| masked(&network, None, show));
        d.object = d.object.map(|object| masked(&object, None, show));
        WireStep {
            id: step.id,
            action,
            target: step.target,
            depends_on: step.depends_on,
            reason: step.reason.to_string(),
            detail: d,
        }
    }
}

/// A saved step whose detail lacks a field its action needs.
#[derive(Debug, thiserror::Error)]
#[error("step {id} ({action} {target}): its detail has no `{field}`, which {action} needs; make the plan again with `shoal plan --out FILE`")]
pub struct MissingDetail {
    id: StepId,
    action: Action,
    target: String,
    field: &'static str,
}

impl TryFrom<WireStep> for Step {
    type Error = MissingDetail;

    fn try_from(wire: WireStep) -> Result<Step, MissingDetail> {
        let missing = |field| MissingDetail {
            id: wire.id,
            action: wire.action,
            target: wire.target.clone(),
            field,
        };
        let d = wire.detail.clone();
        let node_id = || d.node_id.clone().ok_or_else(|| missing("node_id"));
        let id = || d.id.clone().ok_or_else(|| missing("id"));
        let via = || d.via.clone().ok_or_else(|| missing("via"));
        let role = || d.role.ok_or_else(|| missing("role"));
        let force = d.force == Some(true);
        let op = match wire.action {
            Action::CreateMachine => StepOp::CreateMachine {
                role: role()?,
                labels: d.labels.clone().unwrap_or_default(),
            },
            Action::StartMachine => StepOp::StartMachine,
            Action::DestroyMachine => StepOp::DestroyMachine,
            Action::InitSwarm => StepOp::InitSwarm { via: via()? },
            Action::JoinSwarm => StepOp::JoinSwarm {
                role: role()?,
                via: via()?,
                labels: d.labels.clone().unwrap_or_default(),
            },
            Action::PromoteNode => StepOp::PromoteNode {
                node_id: node_id()?,
            },
            Action::DemoteNode => StepOp::DemoteNode {
                node_id: node_id()?,
            },
            Action::DrainNode => StepOp::DrainNode {
                node_id: node_id()?,
            },
            Action::UpdateNode => StepOp::UpdateNode {
                node_id: d.node_id.clone(),
                labels: d.labels.clone().ok_or_else(|| missing("labels"))?,
                availability: d.availability.ok_or_else(|| missing("availability"))?,
            },
            Action::RemoveNode => StepOp::RemoveNode {
                node_id: node_id()?,
                force,
            },
            Action::CreateNetwork => StepOp::CreateNetwork {
                network: d.network.clone().ok_or_else(|| missing("network"))?,
            },
            Action::RemoveNetwork => StepOp::RemoveNetwork { id: id()? },
            Action::CreateSecret => StepOp::CreateSecret {
                object: d.object.clone().ok_or_else(|| missing("object"))?,
            },
            Action::RemoveSecret => StepOp::RemoveSecret { id: id()? },
            Action::CreateConfig => StepOp::CreateConfig {
                object: d.object.clone().ok_or_else(|| missing("object"))?,
            },
            Action::RemoveConfig => StepOp::RemoveConfig { id: id()? },
            Action::CreateService => StepOp::CreateService {
                spec: d.service.clone().ok_or_else(|| missing("service"))?,
            },
            Action::UpdateService => StepOp::UpdateService {
                id: id()?,
                spec: d.service.clone().ok_or_else(|| missing("service"))?,
                changes: d.changes.clone(),
                observed_spec: d.observed_spec.clone(),
            },
            Action::ScaleService => StepOp::ScaleService {
                id: id()?,
                replicas: d.replicas.ok_or_else(|| missing("replicas"))?,
                observed_spec: d.observed_spec.clone(),
            },
            Action::RemoveService => StepOp::RemoveService { id: id()? },
            Action::RebalanceService => StepOp::RebalanceService {
                id: id()?,
                force_update: d.force_update.ok_or_else(|| missing("force_update"))?,
                observed_spec: d.observed_spec.clone(),
            },
        };
        Ok(Step {
            id: wire.id,
            target: wire.target,
            depends_on: wire.depends_on,
            reason: Reason::Saved {
                text: wire.reason,
                replaces: false,
            },
            op,
        })
    }
}

impl From<WirePlan> for Plan {
    /// A saved plan's reasons are text; its replacements are recognized again as the machines
    /// and services both destroyed and created in it.
    fn from(wire: WirePlan) -> Plan {
        let created: BTreeSet<String> = wire
            .steps
            .iter()
            .filter(|s| matches!(s.action(), Action::CreateMachine | Action::CreateService))
            .map(|s| s.target.clone())
            .collect();
        let replaced: BTreeSet<String> = wire
            .steps
            .iter()
            .filter(|s| {
                matches!(
                    s.action(),
                    Action::DestroyMachine | Action::RemoveNode | Action::RemoveService
                )
            })
            .map(|s| s.target.clone())
            .filter(|t| created.contains(t))
            .collect();
        let mut steps = wire.steps;
        for step in &mut steps {
            let half = matches!(
                step.action(),
                Action::CreateMachine
                    | Action::DestroyMachine
                    | Action::CreateService
                    | Action::RemoveService
            );
            if let Reason::Saved { replaces, .. } = &mut step.reason {
                *replaces = half && replaced.contains(&step.target);
            }
        }
        Plan {
            format_version: wire.format_version,
            revision: wire.revision,
            fingerprint: wire.fingerprint,
            summary: wire.summary,
            warnings: wire.warnings,
            unseen: wire.unseen,
            steps,
            show_values: Vec::new(),
            new_content_key: wire.content_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::testing::desired_with;
    use crate::plan::{plan, Plan, PlanOptions};

    #[test]
    fn a_saved_plan_reads_back_to_the_same_json_and_keeps_its_replacements() {
        let desired = desired_with(&[("m1", Role::Manager), ("w1", Role::Worker)]);
        let mut observed = Observed::with_members_of(&desired);
        observed.machines.get_mut("w1").unwrap().state = crate::model::MachineState::Incomplete;
        let node = observed
            .nodes
            .values_mut()
            .find(|n| n.hostname == "w1")
            .unwrap();
        node.state = crate::model::NodeState::Down;
        node.down_for_seconds = Some(600);
        let made = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        let json = serde_json::to_string(&made).unwrap();
        let back: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let replaces =
            |p: &Plan| -> Vec<bool> { p.steps.iter().map(|s| s.reason.replaces()).collect() };
        assert_eq!(replaces(&back), replaces(&made));
        assert!(replaces(&made).contains(&true));
    }

    #[test]
    fn a_saved_step_without_its_detail_is_refused_when_read() {
        let json = r#"{"format_version":1,"revision":null,"fingerprint":"sha256:0","summary":{"add":0,"change":1,"destroy":0},"warnings":[],"steps":[{"id":1,"action":"scale_service","target":"app_web","depends_on":[],"reason":"replicas: 1 → 3","detail":{"id":"svc"}}]}"#;
        let err = serde_json::from_str::<Plan>(json).unwrap_err().to_string();
        assert!(err.contains("step 1 (scale_service app_web)"), "{err}");
        assert!(err.contains("`replicas`"), "{err}");
    }
}
