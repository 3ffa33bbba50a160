//! Content versions (DESIGN §3, §7): each secret and config is versioned with the cluster's
//! content key (an HMAC of its content, see [`crate::model::content_key`]), before any rule
//! names it.
//!
//! The key is the swarm's (`io.shoal.content-key`). A cluster without one yet (a new cluster,
//! or one last applied by a shoal that did not key versions) is planned with the key the
//! caller made for this plan ([`PlanOptions::content_key`]): the plan carries it
//! ([`crate::plan::Plan::new_content_key`]) into its saved file and to apply, which writes it
//! into the swarm before the first secret or config is created, so what apply creates is what
//! the plan showed. A label that is not a key is refused, never replaced: every version
//! depends on it.

use super::super::planner::{PlanError, PlanOptions};
use crate::model::content_key::{ContentKey, SwarmContentKey};
use crate::model::{Desired, Observed, Stack};
use std::borrow::Cow;

/// The key to version with, and whether it is new (the swarm has none: apply writes it).
#[derive(Debug, Default)]
pub struct KeyInUse {
    /// The key; `None` when the swarm has none and the caller gave none (nothing is versioned).
    pub key: Option<ContentKey>,
    /// The key is not the swarm's yet.
    pub new: bool,
}

/// The key the plan versions with: the swarm's, else the one `options` brings. A malformed
/// swarm label is refused, and so is a plan that must version objects without any key.
pub fn key_in_use(
    desired: &Desired,
    observed: &Observed,
    options: &PlanOptions,
) -> Result<KeyInUse, PlanError> {
    let in_swarm = observed
        .swarm
        .as_ref()
        .map(|s| s.content_key.clone())
        .unwrap_or_default();
    match in_swarm {
        SwarmContentKey::Key(key) => Ok(KeyInUse {
            key: Some(key),
            new: false,
        }),
        SwarmContentKey::Malformed => Err(PlanError::ContentKeyMalformed),
        SwarmContentKey::Absent => {
            let objects = desired
                .stacks
                .values()
                .any(|s| !s.secrets.is_empty() || !s.configs.is_empty());
            if objects && options.content_key.is_none() {
                return Err(PlanError::NoContentKey);
            }
            Ok(KeyInUse {
                key: options.content_key.clone(),
                new: options.content_key.is_some(),
            })
        }
    }
}

/// `desired` with every secret and config versioned under `key`: its [`ObjectSpec::version`]
/// set and its name `<name>-<version>`, the services' references renamed alike. Borrowed
/// unchanged when there is no key or nothing to version.
///
/// [`ObjectSpec::version`]: crate::model::ObjectSpec::version
pub fn version_objects<'a>(desired: &'a Desired, key: Option<&ContentKey>) -> Cow<'a, Desired> {
    let Some(key) = key else {
        return Cow::Borrowed(desired);
    };
    if desired
        .stacks
        .values()
        .all(|s| s.secrets.is_empty() && s.configs.is_empty())
    {
        return Cow::Borrowed(desired);
    }
    let mut versioned = desired.clone();
    for stack in versioned.stacks.values_mut() {
        version_stack(stack, key);
    }
    Cow::Owned(versioned)
}

fn version_stack(stack: &mut Stack, key: &ContentKey) {
    for kind in ["secret", "config"] {
        let objects = match kind {
            "secret" => &mut stack.secrets,
            _ => &mut stack.configs,
        };
        let mut renames = Vec::new();
        *objects = std::mem::take(objects)
            .into_values()
            .map(|mut object| {
                let cli = object.name.clone();
                object.version = key.version(&object.data, object.template_driver.as_deref());
                object.name = format!("{cli}-{}", object.version);
                renames.push((cli, object.name.clone()));
                (object.name.clone(), object)
            })
            .collect();
        for (from, to) in renames {
            super::stack_objects::rename_references(stack, kind, &from, &to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::content_key::LABEL_CONTENT_VERSION;
    use crate::model::{ObjectSpec, Role};
    use crate::plan::testing::{desired_with, service, with_stack};
    use crate::plan::{plan, Plan};

    fn with_secret(content: &[u8]) -> Desired {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut web = service("app", "web", "nginx:1", 1);
        web.task_template.container_spec.secrets = vec![crate::model::spec::SecretReference {
            secret_name: "app_db".into(),
            ..Default::default()
        }];
        with_stack(&mut desired, "app", vec![web]);
        let secret = ObjectSpec {
            name: "app_db".into(),
            sha256: crate::compose::convert::sha256_hex(content),
            source: "db.txt".into(),
            data: content.to_vec(),
            ..ObjectSpec::default()
        };
        let stack = desired.stacks.get_mut("app").unwrap();
        stack.secrets.insert("app_db".into(), secret);
        desired
    }

    fn planned(desired: &Desired, observed: &Observed, key: Option<ContentKey>) -> Plan {
        let options = PlanOptions {
            content_key: key,
            ..PlanOptions::default()
        };
        plan(desired, observed, &options).unwrap()
    }

    fn created_version(plan: &Plan) -> String {
        let text = serde_json::to_string(plan).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let step = value["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["action"] == "create_secret")
            .expect("a create_secret step")
            .clone();
        step["detail"]["object"]["labels"][LABEL_CONTENT_VERSION]
            .as_str()
            .unwrap()
            .to_string()
    }

    #[test]
    fn two_clusters_with_one_content_get_unrelated_versions() {
        let desired = with_secret(b"password1");
        let observed = Observed::with_members_of(&desired);
        let one = planned(&desired, &observed, Some(ContentKey::from_bytes([1; 32])));
        let two = planned(&desired, &observed, Some(ContentKey::from_bytes([2; 32])));
        assert_ne!(created_version(&one), created_version(&two));
        let sha = crate::compose::convert::sha256_hex(b"password1");
        assert_ne!(created_version(&one), sha[..8], "not the sha256 prefix");
        let text = serde_json::to_string(&one).unwrap();
        assert!(!text.contains(&sha[..8]), "{text}");
    }

    #[test]
    fn the_swarms_key_wins_over_a_new_one_and_is_not_new() {
        let desired = with_secret(b"password1");
        let mut observed = Observed::with_members_of(&desired);
        let key = ContentKey::from_bytes([3; 32]);
        observed.swarm.as_mut().unwrap().content_key = SwarmContentKey::Key(key.clone());
        let plan = planned(&desired, &observed, Some(ContentKey::from_bytes([4; 32])));
        assert_eq!(created_version(&plan), key.version(b"password1", None));
        assert_eq!(plan.new_content_key, None, "the swarm has it");
        let again = planned(&desired, &observed, Some(ContentKey::from_bytes([5; 32])));
        assert_eq!(created_version(&again), created_version(&plan), "stable");
    }

    #[test]
    fn a_cluster_without_a_key_is_planned_with_the_new_one_which_the_plan_carries() {
        let desired = with_secret(b"password1");
        let observed = Observed::with_members_of(&desired);
        let key = ContentKey::from_bytes([6; 32]);
        let plan = planned(&desired, &observed, Some(key.clone()));
        assert_eq!(plan.new_content_key, Some(key.clone()));
        assert_eq!(created_version(&plan), key.version(b"password1", None));
        let shown = serde_json::to_string(&plan).unwrap();
        assert!(
            !shown.contains(&key.to_label()),
            "plan --json never shows it"
        );
    }

    #[test]
    fn a_malformed_key_label_is_refused_and_no_key_at_all_too() {
        let desired = with_secret(b"x");
        let mut observed = Observed::with_members_of(&desired);
        assert_eq!(
            plan(&desired, &observed, &PlanOptions::default()).unwrap_err(),
            PlanError::NoContentKey
        );
        observed.swarm.as_mut().unwrap().content_key = SwarmContentKey::Malformed;
        let refused = plan(&desired, &observed, &PlanOptions::default()).unwrap_err();
        assert_eq!(refused, PlanError::ContentKeyMalformed);
        assert!(refused.to_string().contains("io.shoal.content-key"));
    }
}
