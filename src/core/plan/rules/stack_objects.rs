//! Stack objects (DESIGN §3.1): networks, secrets and configs a stack uses and the swarm lacks
//! are created after the membership changes and before the services that use them. External
//! objects that do not exist are warned about.
//!
//! Before any rule runs, [`crate::plan::rules::content_versions`] versions each secret and
//! config with the cluster's key, and [`adopt_objects`] settles the swarm name it goes by:
//! - the name `docker stack deploy` gives it (`<stack>_<name>`) when the swarm has no version
//!   of it yet, or holds one under that name with the same content (so a stack deployed by
//!   either tool is re-deployed by the other without restarting a task);
//! - the name it was given before versions were keyed (`<stack>_<name>-<8 hex of sha256>`, or
//!   the CLI name with the label `io.shoal.sha256`) when that object holds this content: kept,
//!   so upgrading shoal restarts no service; a warning says how to re-version a secret now
//!   (the label `io.shoal.rotate: "true"`), otherwise its next content gets a keyed version;
//! - the content-derived name (`<stack>_<name>-<version>`) for a new content, so a change
//!   never edits an object in place.

use super::{Ctx, Membership};
use crate::model::content_key::{legacy_version, LABEL_CONTENT_VERSION, LABEL_LEGACY_SHA256};
use crate::model::desired::is_node_local_network;
use crate::model::spec::LABEL_ROTATE;
use crate::model::{Desired, ObjectSpec, Observed, ObservedObject, Stack};
use crate::plan::model::{StepId, StepOp};
use crate::plan::reason::Reason;
use crate::plan::warning::Warning;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

/// Which name a secret or config goes by.
#[derive(Debug, PartialEq, Eq)]
enum Naming {
    /// The content-derived name: it exists, or it replaces another version.
    Content,
    /// The CLI name, whose object holds this content (or is created now).
    Cli,
    /// The CLI name, whose object's content cannot be verified (a secret the CLI created).
    CliUnverified,
    /// The name (given) that an object holding this content got before versions were keyed.
    Legacy(String),
}

/// How `object` is named given the `existing` objects of its kind.
fn naming(object: &ObjectSpec, existing: &BTreeMap<String, ObservedObject>) -> Naming {
    let cli = object.cli_name();
    if cli == object.name || existing.contains_key(&object.name) {
        return Naming::Content;
    }
    let rotate = object.labels.get(LABEL_ROTATE).map(String::as_str) == Some("true");
    let legacy = legacy_version(&object.sha256);
    let legacy_name = format!("{cli}-{legacy}");
    if existing.contains_key(&legacy_name) && !rotate {
        return Naming::Legacy(legacy_name);
    }
    let Some(found) = existing.get(cli) else {
        let other_version = existing.keys().any(|name| {
            name.strip_prefix(cli)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        return if other_version {
            Naming::Content
        } else {
            Naming::Cli
        };
    };
    if let Some(data) = &found.content_sha256 {
        // A config: its data tells.
        return if *data == object.sha256 {
            Naming::Cli
        } else {
            Naming::Content
        };
    }
    let keyed = found.labels.get(LABEL_CONTENT_VERSION);
    let unkeyed = found.labels.get(LABEL_LEGACY_SHA256);
    match (keyed, unkeyed) {
        (Some(version), _) if *version == object.version => Naming::Cli,
        (None, Some(version)) if version == legacy && !rotate => Naming::Legacy(cli.to_string()),
        (Some(_), _) | (None, Some(_)) => Naming::Content,
        (None, None) if rotate => Naming::Content,
        (None, None) => Naming::CliUnverified,
    }
}

/// `desired` with each secret and config under the swarm name it goes by (see the module
/// docs), the services' references renamed alike, and the warnings about secrets adopted
/// without being verified or kept under a version that is not keyed. Borrowed unchanged when
/// every object keeps its content name.
pub fn adopt_objects<'a>(
    desired: &'a Desired,
    observed: &Observed,
) -> (Cow<'a, Desired>, Vec<Warning>) {
    let mut adopted = Cow::Borrowed(desired);
    let mut warnings = Vec::new();
    for (key, stack) in &desired.stacks {
        let kinds = [
            ("secret", &stack.secrets, &observed.secrets),
            ("config", &stack.configs, &observed.configs),
        ];
        for (kind, objects, existing) in kinds {
            for object in objects.values() {
                let naming = naming(object, existing);
                let to = match &naming {
                    Naming::Content => continue,
                    Naming::Cli | Naming::CliUnverified => object.cli_name().to_string(),
                    Naming::Legacy(name) => name.clone(),
                };
                if naming == Naming::CliUnverified {
                    warnings.push(Warning::ObjectUnverified {
                        kind: kind.to_string(),
                        name: to.clone(),
                        stack: stack.name.clone(),
                        source: object.source.clone(),
                        file: stack.file.clone(),
                    });
                }
                if matches!(naming, Naming::Legacy(_)) && kind == "secret" {
                    warnings.push(Warning::SecretUnkeyed {
                        name: to.clone(),
                        stack: stack.name.clone(),
                        source: object.source.clone(),
                        file: stack.file.clone(),
                    });
                }
                let stack = adopted
                    .to_mut()
                    .stacks
                    .get_mut(key)
                    .expect("the stack is desired");
                rename(stack, kind, &object.name, &to);
            }
        }
    }
    (adopted, warnings)
}

/// Renames the `kind` object `from` of `stack` to `to`, stamping its keyed content version,
/// and the services' references to it.
fn rename(stack: &mut Stack, kind: &str, from: &str, to: &str) {
    let objects = match kind {
        "secret" => &mut stack.secrets,
        _ => &mut stack.configs,
    };
    let Some(mut object) = objects.remove(from) else {
        return;
    };
    object.name = to.to_string();
    object
        .labels
        .insert(LABEL_CONTENT_VERSION.to_string(), object.version.clone());
    objects.insert(to.to_string(), object);
    rename_references(stack, kind, from, to);
}

/// Renames the services' references of `stack` to the `kind` object `from` to `to`.
pub(crate) fn rename_references(stack: &mut Stack, kind: &str, from: &str, to: &str) {
    for spec in stack.services.values_mut() {
        let container = &mut spec.task_template.container_spec;
        let secrets = container.secrets.iter_mut().map(|s| &mut s.secret_name);
        let configs = container.configs.iter_mut().map(|c| &mut c.config_name);
        let names: Vec<&mut String> = match kind {
            "secret" => secrets.collect(),
            _ => configs.collect(),
        };
        for name in names.into_iter().filter(|name| name.as_str() == from) {
            *name = to.to_string();
        }
        container.sort_references();
    }
}

/// The steps that create (or replace) networks, secrets and configs: the services that use
/// them wait for them, and machine removals for all of them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ObjectSteps {
    /// The step that creates each object, by `kind:name` (`network:web`, `secret:app_key`).
    pub(crate) created: BTreeMap<String, StepId>,
    /// Every step, in plan order (a replacement's removal and creation).
    pub(crate) steps: Vec<StepId>,
}

impl ObjectSteps {
    /// Records `step`, which creates the `kind` object `name`.
    pub(crate) fn record_creation(&mut self, kind: &str, name: &str, step: StepId) {
        self.created.insert(format!("{kind}:{name}"), step);
        self.steps.push(step);
    }

    /// These steps, then `later`'s.
    pub(crate) fn and(mut self, later: ObjectSteps) -> ObjectSteps {
        self.created.extend(later.created);
        self.steps.extend(later.steps);
        self
    }
}

/// Creates the stacks' missing networks, secrets and configs, after the `membership` steps.
pub(crate) fn create_stack_objects(ctx: &mut Ctx, membership: &Membership) -> ObjectSteps {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let mut created = ObjectSteps::default();
    for stack in desired.stacks.values() {
        for (name, network) in &stack.networks {
            if observed.networks.contains_key(name) {
                continue;
            }
            let op = StepOp::CreateNetwork {
                network: network.clone(),
            };
            let reason = Reason::NetworkMissing {
                stack: stack.name.clone(),
                network: name.clone(),
            };
            let id = ctx.push(op, name, membership.steps.clone(), reason);
            created.record_creation("network", name, id);
        }
        let secrets = stack.secrets.iter().map(|(n, o)| ("secret", n, o));
        let configs = stack.configs.iter().map(|(n, o)| ("config", n, o));
        for (kind, name, object) in secrets.chain(configs) {
            let existing = match kind {
                "secret" => &observed.secrets,
                _ => &observed.configs,
            };
            if existing.contains_key(name) {
                continue;
            }
            let op = match kind {
                "secret" => StepOp::CreateSecret {
                    object: object.clone(),
                },
                _ => StepOp::CreateConfig {
                    object: object.clone(),
                },
            };
            let reason = Reason::ObjectMissing {
                kind,
                source: object.source.clone(),
            };
            let id = ctx.push(op, name, membership.steps.clone(), reason);
            created.record_creation(kind, name, id);
        }
    }
    created
}

/// Warns about external networks, secrets and configs that do not exist.
pub fn warn_missing_external(ctx: &mut Ctx) {
    let (desired, observed) = (ctx.desired, ctx.observed);
    let known: BTreeSet<&str> = observed
        .networks
        .keys()
        .chain(desired.stacks.values().flat_map(|s| s.networks.keys()))
        .map(String::as_str)
        .collect();
    for stack in desired.stacks.values() {
        for external in &stack.external_networks {
            if !known.contains(external.as_str()) && !is_node_local_network(external) {
                ctx.warnings.push(Warning::ExternalNetworkMissing {
                    stack: stack.name.clone(),
                    network: external.clone(),
                });
            }
        }
    }
    for stack in desired.stacks.values() {
        let mut missing: BTreeSet<(&str, &String)> = BTreeSet::new();
        for spec in stack.services.values() {
            let container = &spec.task_template.container_spec;
            for name in container.secrets.iter().map(|s| &s.secret_name) {
                if !stack.secrets.contains_key(name) && !observed.secrets.contains_key(name) {
                    missing.insert(("secret", name));
                }
            }
            for name in container.configs.iter().map(|c| &c.config_name) {
                if !stack.configs.contains_key(name) && !observed.configs.contains_key(name) {
                    missing.insert(("config", name));
                }
            }
        }
        for (kind, name) in missing {
            ctx.warnings.push(Warning::ExternalObjectMissing {
                stack: stack.name.clone(),
                kind: kind.to_string(),
                name: name.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{NetworkSpec, Observed, Role};
    use crate::plan::testing::{desired_with, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions};

    #[test]
    fn networks_are_created_before_the_services_that_use_them() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let observed = Observed::with_members_of(&desired);
        with_stack(&mut desired, "app", vec![service("app", "web", "nginx", 1)]);
        let stack = desired.stacks.get_mut("app").unwrap();
        stack.networks.insert(
            "app_default".into(),
            NetworkSpec {
                name: "app_default".into(),
                ..NetworkSpec::default()
            },
        );
        stack.external_networks.push("shared".into());
        let plan = plan(&desired, &observed, &PlanOptions::default()).unwrap();
        assert_eq!(
            steps(&plan),
            ["create_network app_default", "create_service app_web"]
        );
        assert!(plan.warnings[0]
            .to_string()
            .contains("external network shared"));
    }

    mod legacy {
        use crate::model::content_key::{ContentKey, SwarmContentKey, LABEL_LEGACY_SHA256};
        use crate::model::spec::{SecretReference, LABEL_ROTATE};
        use crate::model::{
            Desired, ObjectSpec, Observed, ObservedObject, Role, LABEL_STACK_NAMESPACE,
        };
        use crate::plan::testing::{desired_with, running, service, steps, with_stack};
        use crate::plan::{plan, Plan, PlanOptions};
        use std::collections::BTreeMap;

        const OLD: &[u8] = b"password1";

        fn legacy(data: &[u8]) -> String {
            crate::compose::convert::sha256_hex(data)[..8].to_string()
        }

        /// A stack whose service `web` uses the secret `app_db` holding `data` (the file's
        /// labels `labels`), and the cluster running it under `name` (labels `found`), as a
        /// shoal before keyed versions left it, with the key `[7; 32]` written since.
        fn cluster(
            data: &[u8],
            labels: &[(&str, &str)],
            name: &str,
            found: &[(&str, &str)],
        ) -> (Desired, Observed) {
            let mut desired = desired_with(&[("m1", Role::Manager)]);
            let web = |secret: &str| {
                let mut web = service("app", "web", "nginx:1", 1);
                web.task_template.container_spec.secrets = vec![SecretReference {
                    secret_name: secret.into(),
                    ..Default::default()
                }];
                web
            };
            with_stack(&mut desired, "app", vec![web("app_db")]);
            let labels: BTreeMap<String, String> = labels
                .iter()
                .chain(&[(LABEL_STACK_NAMESPACE, "app")])
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            desired.stacks.get_mut("app").unwrap().secrets.insert(
                "app_db".into(),
                ObjectSpec {
                    name: "app_db".into(),
                    labels,
                    sha256: crate::compose::convert::sha256_hex(data),
                    source: "db.txt".into(),
                    data: data.to_vec(),
                    ..ObjectSpec::default()
                },
            );
            let mut observed = Observed::with_members_of(&desired);
            observed.swarm.as_mut().unwrap().content_key =
                SwarmContentKey::Key(ContentKey::from_bytes([7; 32]));
            running(&mut observed, vec![web(name)]);
            observed.secrets.insert(
                name.into(),
                ObservedObject {
                    id: "s1".into(),
                    labels: found
                        .iter()
                        .chain(&[(LABEL_STACK_NAMESPACE, "app")])
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    network: None,
                    content_sha256: None,
                },
            );
            (desired, observed)
        }

        fn planned((desired, observed): (Desired, Observed)) -> Plan {
            plan(&desired, &observed, &PlanOptions::default()).unwrap()
        }

        #[test]
        fn an_unkeyed_content_name_of_the_same_content_is_kept_with_a_warning() {
            let name = format!("app_db-{}", legacy(OLD));
            let plan = planned(cluster(OLD, &[], &name, &[]));
            assert!(steps(&plan).is_empty(), "{:?}", steps(&plan));
            assert!(
                plan.warnings.iter().any(|w| w.to_string().contains(&name)
                    && w.to_string().contains("not keyed")
                    && w.to_string().contains(LABEL_ROTATE)),
                "{:?}",
                plan.warnings
            );
        }

        #[test]
        fn a_cli_name_with_the_unkeyed_label_of_the_same_content_is_kept() {
            let version = legacy(OLD);
            let plan = planned(cluster(
                OLD,
                &[],
                "app_db",
                &[(LABEL_LEGACY_SHA256, &version)],
            ));
            assert!(steps(&plan).is_empty(), "{:?}", steps(&plan));
        }

        #[test]
        fn a_new_content_or_the_rotate_label_gives_a_keyed_version() {
            let key = ContentKey::from_bytes([7; 32]);
            let name = format!("app_db-{}", legacy(OLD));
            let changed = planned(cluster(b"password2", &[], &name, &[]));
            let keyed = format!("app_db-{}", key.version(b"password2", None));
            assert_eq!(
                steps(&changed),
                [
                    format!("create_secret {keyed}"),
                    "update_service app_web".to_string(),
                    format!("remove_secret {name}"),
                ]
            );
            let rotated = planned(cluster(OLD, &[(LABEL_ROTATE, "true")], &name, &[]));
            let keyed = format!("app_db-{}", key.version(OLD, None));
            assert_eq!(steps(&rotated)[0], format!("create_secret {keyed}"));
            let version = legacy(OLD);
            let rotated = planned(cluster(
                OLD,
                &[(LABEL_ROTATE, "true")],
                "app_db",
                &[(LABEL_LEGACY_SHA256, &version)],
            ));
            assert_eq!(steps(&rotated)[0], format!("create_secret {keyed}"));
        }
    }
}
