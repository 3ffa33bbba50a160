//! The JSON form of a plan (DESIGN §3, format 2), written and read back to the same [`Plan`].
//!
//! A step is `{id, target, depends_on, waits, reason, replace, action, detail}` (`waits`, the
//! services it waits for under compose `depends_on`, only when there are any): its [`StepOp`] is the
//! tagged pair `action` + `detail` (serde's adjacent tagging, so the detail holds exactly the
//! fields of its action), its [`Reason`] is `{text, code, FIELDS}` (the code and fields read
//! back; the text is for people and ignored when read), and `replace` says whether the step is
//! half of a replacement (`-/+`). Format 1 wrote the reason as its text alone and had no
//! `replace`: such a step reads back as [`Reason::Saved`], its replacement recognized again as
//! a machine or service both destroyed and created in the plan ([`guessed_replacements`]).
//! A warning is written like a reason, `{text, code, FIELDS}` ([`Warning`]); plans written
//! before warnings were typed hold their text alone, which reads back as [`Warning::Saved`].
//!
//! What is written is what people may see: secret values and credentials in a detail are
//! masked ([`super::mask`]), so `plan --json` and a saved plan never hold them. Apply never
//! carries out a plan read back: it plans again and checks the two show the same
//! ([`super::saved::check_fresh`]).

use super::mask::masked;
use super::model::{Action, Plan, Step, StepId, StepOp, Summary, Unseen, Wait, FORMAT_VERSION};
use super::reason::Reason;
use super::warning::Warning;
use crate::model::content_key::ContentKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

/// A reason as written: `{text, code, FIELDS}`, or the text alone for a reason read from a
/// version-1 file.
#[derive(Serialize)]
#[serde(untagged)]
enum WrittenReason<'a> {
    /// A version-1 reason: its text.
    Text(&'a str),
    /// A reason with its code and fields.
    Coded {
        /// The reason for people.
        text: String,
        /// Its code and fields.
        #[serde(flatten)]
        reason: &'a Reason,
    },
}

impl<'a> WrittenReason<'a> {
    fn of(reason: &'a Reason) -> WrittenReason<'a> {
        match reason {
            Reason::Saved { text, .. } => WrittenReason::Text(text),
            reason => WrittenReason::Coded {
                text: reason.to_string(),
                reason,
            },
        }
    }
}

/// A warning as written: `{text, code, FIELDS}`, or the text alone for a warning read from a
/// plan file written before warnings were typed.
#[derive(Serialize)]
#[serde(untagged)]
enum WrittenWarning<'a> {
    /// A warning read back as text: its text.
    Text(&'a str),
    /// A warning with its code and fields.
    Coded {
        /// The warning for people.
        text: String,
        /// Its code and fields.
        #[serde(flatten)]
        warning: &'a Warning,
    },
}

impl<'a> WrittenWarning<'a> {
    fn of(warning: &'a Warning) -> WrittenWarning<'a> {
        match warning {
            Warning::Saved { text } => WrittenWarning::Text(text),
            warning => WrittenWarning::Coded {
                text: warning.to_string(),
                warning,
            },
        }
    }
}

/// A warning as read from JSON: an object with a code, or the text alone (plans written
/// before warnings were typed, or a code this build does not know).
#[derive(Deserialize)]
#[serde(from = "Value")]
struct ReadWarning(Warning);

impl From<Value> for ReadWarning {
    fn from(value: Value) -> ReadWarning {
        let text = match &value {
            Value::String(text) => text.clone(),
            Value::Object(fields) => match fields.get("text") {
                Some(Value::String(text)) => text.clone(),
                _ => String::new(),
            },
            other => other.to_string(),
        };
        if value.is_object() {
            if let Ok(warning) = Warning::deserialize(value) {
                return ReadWarning(warning);
            }
        }
        ReadWarning(Warning::Saved { text })
    }
}

/// A step as written in the plan JSON.
#[derive(Serialize)]
pub(crate) struct WrittenStep<'a> {
    id: StepId,
    target: &'a str,
    depends_on: &'a [StepId],
    #[serde(skip_serializing_if = "<[Wait]>::is_empty")]
    waits: &'a [Wait],
    reason: WrittenReason<'a>,
    replace: bool,
    #[serde(flatten)]
    op: StepOp,
}

impl<'a> WrittenStep<'a> {
    /// `step` as written, its secret values and credentials masked but for the keys in `show`
    /// (`policy.show_values`). Field changes were masked when planned.
    pub(crate) fn shown(step: &'a Step, show: &[String]) -> WrittenStep<'a> {
        WrittenStep {
            id: step.id,
            target: &step.target,
            depends_on: &step.depends_on,
            waits: &step.waits,
            reason: WrittenReason::of(&step.reason),
            replace: step.reason.replaces(),
            op: shown_op(step.op.clone(), show),
        }
    }
}

/// `op` with the secret values and credentials of its labels and specs masked but for the
/// keys in `show`.
fn shown_op(op: StepOp, show: &[String]) -> StepOp {
    let labels = |labels| masked(&labels, Some("Labels"), show);
    match op {
        StepOp::CreateMachine { role, labels: l } => StepOp::CreateMachine {
            role,
            labels: labels(l),
        },
        StepOp::JoinSwarm {
            role,
            labels: l,
            via,
        } => StepOp::JoinSwarm {
            role,
            labels: labels(l),
            via,
        },
        StepOp::UpdateNode {
            labels: l,
            availability,
            node_id,
        } => StepOp::UpdateNode {
            labels: labels(l),
            availability,
            node_id,
        },
        StepOp::CreateNetwork { network } => StepOp::CreateNetwork {
            network: masked(&network, None, show),
        },
        StepOp::CreateSecret { object } => StepOp::CreateSecret {
            object: masked(&object, None, show),
        },
        StepOp::CreateConfig { object } => StepOp::CreateConfig {
            object: masked(&object, None, show),
        },
        StepOp::CreateService { spec } => StepOp::CreateService {
            spec: Box::new(masked(&*spec, None, show)),
        },
        StepOp::UpdateService {
            id,
            spec,
            changes,
            observed_spec,
        } => StepOp::UpdateService {
            id,
            spec: Box::new(masked(&*spec, None, show)),
            changes,
            observed_spec,
        },
        StepOp::RunJob {
            id,
            spec,
            changes,
            observed_spec,
        } => StepOp::RunJob {
            id,
            spec: Box::new(masked(&*spec, None, show)),
            changes,
            observed_spec,
        },
        op => op,
    }
}

/// A plan as written in JSON: its steps as shown, masked with its `show_values`.
#[derive(Serialize)]
pub(crate) struct ShownPlan<'a> {
    format_version: u32,
    revision: &'a Option<String>,
    fingerprint: &'a str,
    summary: Summary,
    warnings: Vec<WrittenWarning<'a>>,
    #[serde(skip_serializing_if = "<[Unseen]>::is_empty")]
    unseen: &'a [Unseen],
    steps: Vec<WrittenStep<'a>>,
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
            warnings: warnings.iter().map(WrittenWarning::of).collect(),
            unseen,
            steps: steps
                .iter()
                .map(|step| WrittenStep::shown(step, show_values))
                .collect(),
        }
    }
}

/// A step as people see it, for telling whether a saved plan shows what a fresh one does: its
/// operation masked, its reason as text (a version-1 plan holds no more).
#[derive(Debug, PartialEq)]
pub(crate) struct SeenStep {
    id: StepId,
    target: String,
    depends_on: Vec<StepId>,
    waits: Vec<Wait>,
    reason: String,
    op: StepOp,
}

/// `steps` as people see them, their secret values and credentials masked but for the keys
/// in `show`.
pub(crate) fn seen_steps(steps: &[Step], show: &[String]) -> Vec<SeenStep> {
    steps
        .iter()
        .map(|step| SeenStep {
            id: step.id,
            target: step.target.clone(),
            depends_on: step.depends_on.clone(),
            waits: step.waits.clone(),
            reason: step.reason.to_string(),
            op: shown_op(step.op.clone(), show),
        })
        .collect()
}

/// A step as read from JSON, before its operation and reason are read.
#[derive(Deserialize)]
pub(crate) struct ReadStep {
    id: StepId,
    target: String,
    depends_on: Vec<StepId>,
    /// Absent when the step waits for nothing, and in version-1 files.
    #[serde(default)]
    waits: Vec<Wait>,
    reason: Value,
    /// Absent in version-1 files.
    #[serde(default)]
    replace: Option<bool>,
    action: Action,
    #[serde(default)]
    detail: Value,
}

/// A saved step that does not read as a step.
#[derive(Debug, thiserror::Error)]
#[error(
    "step {id} ({action} {target}): {problem}; make the plan again with `shoal plan --out FILE`"
)]
pub struct UnreadableStep {
    id: StepId,
    action: Action,
    target: String,
    problem: String,
}

impl TryFrom<ReadStep> for Step {
    type Error = UnreadableStep;

    fn try_from(read: ReadStep) -> Result<Step, UnreadableStep> {
        let ReadStep {
            id,
            target,
            depends_on,
            waits,
            reason,
            replace,
            action,
            detail,
        } = read;
        let unreadable = |problem: String| UnreadableStep {
            id,
            action,
            target: target.clone(),
            problem,
        };
        let detail = match detail {
            Value::Null => Value::Object(Default::default()),
            detail => detail,
        };
        let op = StepOp::deserialize(serde_json::json!({"action": action, "detail": detail}))
            .map_err(|e| unreadable(format!("its detail is not what {action} needs: {e}")))?;
        let reason = match reason {
            Value::String(text) => Reason::Saved {
                text,
                replaces: replace.unwrap_or(false),
            },
            Value::Object(mut fields) => {
                fields.remove("text");
                let reason = Reason::deserialize(Value::Object(fields))
                    .map_err(|e| unreadable(format!("its reason does not read: {e}")))?;
                match replace {
                    Some(replace) if replace != reason.replaces() => {
                        return Err(unreadable(format!(
                            "`replace` is {replace}, but a step for this reason {} half of a replacement",
                            if replace { "is never" } else { "is always" }
                        )))
                    }
                    _ => reason,
                }
            }
            other => {
                return Err(unreadable(format!(
                    "its reason is {other}, neither a text nor an object with a code"
                )))
            }
        };
        Ok(Step {
            id,
            target,
            depends_on,
            waits,
            reason,
            op,
        })
    }
}

/// A step read back, and whether it said if it is half of a replacement (format 1 did not).
#[derive(Deserialize)]
#[serde(try_from = "ReadStep")]
pub(crate) struct ReadBack {
    step: Step,
    flagged: bool,
}

impl TryFrom<ReadStep> for ReadBack {
    type Error = UnreadableStep;

    fn try_from(read: ReadStep) -> Result<ReadBack, UnreadableStep> {
        let flagged = read.replace.is_some();
        Ok(ReadBack {
            step: Step::try_from(read)?,
            flagged,
        })
    }
}

/// A plan as read from JSON.
#[derive(Deserialize)]
pub(crate) struct ReadPlan {
    format_version: u32,
    revision: Option<String>,
    fingerprint: String,
    summary: Summary,
    warnings: Vec<ReadWarning>,
    #[serde(default)]
    unseen: Vec<Unseen>,
    steps: Vec<ReadBack>,
    /// Only in saved plan files (see [`crate::plan::saved::saved_text`]).
    #[serde(default)]
    content_key: Option<ContentKey>,
}

/// Whether this build reads plans of format `version`.
pub(crate) fn reads_format(version: u64) -> bool {
    (1..=u64::from(FORMAT_VERSION)).contains(&version)
}

/// A plan of a format this build does not read.
#[derive(Debug, thiserror::Error)]
#[error("plan format {0} is not one this shoal reads (1 to {FORMAT_VERSION}): make the plan again with this version")]
pub struct UnknownFormat(u32);

impl TryFrom<ReadPlan> for Plan {
    type Error = UnknownFormat;

    /// Read into the current format: a version-1 step's replacement is recognized again.
    fn try_from(read: ReadPlan) -> Result<Plan, UnknownFormat> {
        if !reads_format(read.format_version.into()) {
            return Err(UnknownFormat(read.format_version));
        }
        let unflagged: BTreeSet<StepId> = read
            .steps
            .iter()
            .filter(|s| !s.flagged)
            .map(|s| s.step.id)
            .collect();
        let mut steps: Vec<Step> = read.steps.into_iter().map(|s| s.step).collect();
        let guessed = guessed_replacements(&steps);
        for step in &mut steps {
            if let Reason::Saved { replaces, .. } = &mut step.reason {
                if unflagged.contains(&step.id) {
                    *replaces = guessed.contains(&step.id);
                }
            }
        }
        Ok(Plan {
            format_version: FORMAT_VERSION,
            revision: read.revision,
            fingerprint: read.fingerprint,
            summary: read.summary,
            warnings: read.warnings.into_iter().map(|w| w.0).collect(),
            unseen: read.unseen,
            steps,
            show_values: Vec::new(),
            new_content_key: read.content_key,
        })
    }
}

/// The steps of a version-1 plan that are half of a replacement: the creations and removals
/// of a machine or service that the plan both destroys and creates (format 1 did not say).
fn guessed_replacements(steps: &[Step]) -> BTreeSet<StepId> {
    let created: BTreeSet<&str> = steps
        .iter()
        .filter(|s| matches!(s.action(), Action::CreateMachine | Action::CreateService))
        .map(|s| s.target.as_str())
        .collect();
    let replaced: BTreeSet<&str> = steps
        .iter()
        .filter(|s| {
            matches!(
                s.action(),
                Action::DestroyMachine | Action::RemoveNode | Action::RemoveService
            )
        })
        .map(|s| s.target.as_str())
        .filter(|t| created.contains(t))
        .collect();
    steps
        .iter()
        .filter(|s| {
            matches!(
                s.action(),
                Action::CreateMachine
                    | Action::DestroyMachine
                    | Action::CreateService
                    | Action::RemoveService
            )
        })
        .filter(|s| replaced.contains(s.target.as_str()))
        .map(|s| s.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::model::{Observed, Role};
    use crate::plan::saved::parse_saved;
    use crate::plan::testing::desired_with;
    use crate::plan::{plan, Action, Plan, PlanOptions, Reason, Warning};

    #[test]
    fn a_saved_plan_reads_back_to_the_same_plan() {
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
        assert_eq!(back, made);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        assert!(made.steps.iter().any(|s| s.reason.replaces()));
        assert!(json.contains(r#""replace":true"#), "{json}");
        assert!(
            json.contains(r#""code":"self_heal""#) && json.contains(r#""stage":"destroy_machine""#),
            "{json}"
        );
    }

    #[test]
    fn warnings_read_back_from_their_code_or_as_their_text() {
        let json = r#"{"format_version":2,"revision":null,"fingerprint":"sha256:0","summary":{"add":0,"change":0,"destroy":0},"warnings":["an old warning",{"text":"the cluster is paused by ana: …","code":"paused","by":"ana","reason":""},{"text":"warning: a.yml:1: odd","code":"files"},{"text":"a newer kind","code":"from_a_later_shoal"}],"steps":[]}"#;
        let plan: Plan = serde_json::from_str(json).unwrap();
        assert_eq!(
            plan.warnings,
            [
                Warning::Saved {
                    text: "an old warning".into()
                },
                Warning::Paused {
                    by: "ana".into(),
                    reason: String::new()
                },
                Warning::files("warning: a.yml:1: odd"),
                Warning::Saved {
                    text: "a newer kind".into()
                },
            ]
        );
        let written = serde_json::to_value(&plan).unwrap();
        assert_eq!(written["warnings"][0], "an old warning");
        assert_eq!(
            written["warnings"][2],
            serde_json::json!({"text": "warning: a.yml:1: odd", "code": "files"})
        );
    }

    #[test]
    fn a_saved_step_without_its_detail_is_refused_when_read() {
        let json = r#"{"format_version":1,"revision":null,"fingerprint":"sha256:0","summary":{"add":0,"change":1,"destroy":0},"warnings":[],"steps":[{"id":1,"action":"scale_service","target":"app_web","depends_on":[],"reason":"replicas: 1 → 3","detail":{"id":"svc"}}]}"#;
        let err = serde_json::from_str::<Plan>(json).unwrap_err().to_string();
        assert!(err.contains("step 1 (scale_service app_web)"), "{err}");
        assert!(err.contains("`replicas`"), "{err}");
    }

    /// One step of a format-2 plan, with `reason` and `replace` as given.
    fn one_step(reason: &str, replace: &str) -> String {
        format!(
            r#"{{"format_version":2,"revision":null,"fingerprint":"sha256:0","summary":{{"add":1,"change":0,"destroy":0}},"warnings":[],"steps":[{{"id":1,"target":"app_web","depends_on":[],"reason":{reason},{replace}"action":"remove_service","detail":{{"id":"svc"}}}}]}}"#
        )
    }

    #[test]
    fn a_reason_reads_back_from_its_code_and_fields_not_its_text() {
        let json = one_step(
            r#"{"text":"edited","code":"service_dropped","stack":"app","service":"app_web"}"#,
            r#""replace":false,"#,
        );
        let plan: Plan = serde_json::from_str(&json).unwrap();
        assert_eq!(
            plan.steps[0].reason,
            Reason::ServiceDropped {
                stack: "app".into(),
                service: "app_web".into()
            }
        );
        assert_eq!(
            plan.steps[0].reason.to_string(),
            "stack app no longer defines app_web"
        );
    }

    #[test]
    fn a_step_whose_replace_flag_contradicts_its_reason_is_refused() {
        let lying = one_step(
            r#"{"code":"service_dropped","stack":"app","service":"app_web"}"#,
            r#""replace":true,"#,
        );
        let err = serde_json::from_str::<Plan>(&lying)
            .unwrap_err()
            .to_string();
        assert!(err.contains("step 1 (remove_service app_web)"), "{err}");
        assert!(err.contains("`replace` is true"), "{err}");
        let mode = r#"{"code":"mode_change","from":"replicated","to":"global"}"#;
        let err = serde_json::from_str::<Plan>(&one_step(mode, r#""replace":false,"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`replace` is false"), "{err}");
        assert!(serde_json::from_str::<Plan>(&one_step(mode, r#""replace":true,"#)).is_ok());
        // Without the flag, the reason says.
        let plan: Plan = serde_json::from_str(&one_step(mode, "")).unwrap();
        assert!(plan.steps[0].reason.replaces());
    }

    #[test]
    fn unknown_codes_and_words_are_refused_naming_the_step() {
        for (reason, says) in [
            (r#"{"code":"cosmic_rays"}"#, "unknown variant `cosmic_rays`"),
            (
                r#"{"code":"mode_change","from":"replicated","to":"sideways"}"#,
                "unknown variant `sideways`",
            ),
            (
                r#"{"code":"object_dropped","stack":"app","kind":"volume","name":"v"}"#,
                "unknown variant `volume`",
            ),
            (r#"{"code":"service_dropped"}"#, "missing field `stack`"),
            ("42", "neither a text nor an object"),
            (r#"{"text":"no code"}"#, "missing field `code`"),
        ] {
            let err = serde_json::from_str::<Plan>(&one_step(reason, ""))
                .unwrap_err()
                .to_string();
            assert!(err.contains("step 1 (remove_service app_web)"), "{err}");
            assert!(err.contains(says), "{reason}: {err}");
        }
    }

    #[test]
    fn a_plan_of_an_unknown_format_is_refused_however_it_is_read() {
        let json =
            one_step(r#""gone""#, "").replace(r#""format_version":2"#, r#""format_version":3"#);
        let err = serde_json::from_str::<Plan>(&json).unwrap_err().to_string();
        assert!(
            err.contains("plan format 3 is not one this shoal reads"),
            "{err}"
        );
        let zero = json.replace(r#""format_version":3"#, r#""format_version":0"#);
        assert!(serde_json::from_str::<Plan>(&zero).is_err());
    }

    fn v1(name: &str) -> Plan {
        let path = format!(
            "{}/../../fixtures/plans/v1/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        parse_saved(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn replacing(plan: &Plan) -> Vec<(Action, bool)> {
        let step = |s: &crate::plan::Step| (s.action(), s.reason.replaces());
        plan.steps.iter().map(step).collect()
    }

    #[test]
    fn version_one_files_read_with_their_text_and_their_replacements_recognized() {
        let mode = v1("mode.json");
        assert_eq!(mode.format_version, crate::plan::FORMAT_VERSION);
        assert_eq!(
            replacing(&mode),
            [(Action::RemoveService, true), (Action::CreateService, true)]
        );
        assert_eq!(
            mode.steps[0].reason.to_string(),
            "mode changes from replicated to global, which swarm cannot update in place"
        );
        assert!(matches!(mode.steps[0].reason, Reason::Saved { .. }));
        let heal = v1("heal.json");
        assert_eq!(
            replacing(&heal),
            [
                (Action::RemoveNode, false),
                (Action::CreateMachine, true),
                (Action::JoinSwarm, false)
            ]
        );
        let create = v1("create.json");
        assert_eq!(create.steps.len(), 6);
        assert!(create.steps.iter().all(|s| !s.reason.replaces()));
        // Written again, a version-1 step keeps its text and says what was recognized.
        let again = serde_json::to_string(&mode).unwrap();
        assert!(
            again.contains(r#""reason":"mode changes from replicated"#),
            "{again}"
        );
        let back: Plan = serde_json::from_str(&again).unwrap();
        assert_eq!(back, mode);
    }
}
