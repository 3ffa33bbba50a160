//! Saved plans (`shoal plan --out FILE`, then `shoal apply FILE`): reading one, and refusing it
//! when it no longer is what planning gives now (pure; the caller reads the file).
//!
//! A saved plan is the plan as shown, secret values and credentials masked: apply carries out
//! the fresh plan it makes against the same revision and cluster, once it shows the same. For
//! a cluster whose swarm holds no content key yet, it also carries the key the plan versioned
//! secrets and configs with (`content_key`; `plan --json` never shows it), so that the fresh
//! plan names them as the saved one did.

use super::wire::{reads_format, seen_steps};
use super::{Plan, FORMAT_VERSION};

/// Why a saved plan's text cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedPlanError {
    /// Not JSON, or not the shape of a plan.
    #[error("{file}:{line}:{column}: not a shoal plan: {message}. Make one with `shoal plan --out FILE`")]
    Unreadable {
        /// The plan file.
        file: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// What the JSON reader said.
        message: String,
    },
    /// Written by a shoal with a plan format this one does not read.
    #[error("{file}: plan format {found} is not one this shoal reads (1 to {FORMAT_VERSION}): make the plan again with this version")]
    Format {
        /// The plan file.
        file: String,
        /// The format the file declares.
        found: u64,
    },
}

/// Why a saved plan is refused although it reads well.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The observed cluster's fingerprint changed.
    #[error("the saved plan is stale: the cluster changed since it was made. Run `shoal plan --out FILE` again and apply the new plan")]
    Cluster,
    /// The files are at another revision, or uncommitted files changed.
    #[error("the saved plan is stale: the files changed since it was made (revision {now} now). Run `shoal plan --out FILE` again")]
    Files {
        /// The revision now, or why there is none.
        now: String,
    },
    /// The plan was made for a cluster with no content key yet, and the file holds none: it is
    /// `plan --json`'s output, not a saved plan.
    #[error("the plan file holds no content key, and the cluster has none yet, so its secrets and configs would get other versions than the plan shows: it is `shoal plan --json`'s output, which leaves the key out. Save plans with `shoal plan --out FILE`")]
    NoContentKey,
    /// Same revision, same cluster, other steps: the file was edited (or `${VAR}`s differ).
    #[error("the saved plan's steps are not the ones revision {revision} gives for this cluster: the plan file was edited, or the variables for `${{VAR}}` differ from when it was made. Make it again with `shoal plan --out FILE`")]
    Edited {
        /// The revision both plans are of.
        revision: String,
    },
}

/// The text of the saved plan file of `plan` (`shoal plan --out FILE`, written 0600): the
/// plan as `plan --json` shows it, with the content key it versioned with when the swarm has
/// none yet (apply needs it to give the names the plan shows).
pub fn saved_text(plan: &Plan) -> String {
    let mut value = serde_json::to_value(plan).expect("a plan serializes");
    if let (Some(key), Some(fields)) = (&plan.new_content_key, value.as_object_mut()) {
        fields.insert("content_key".into(), key.to_label().into());
    }
    serde_json::to_string_pretty(&value).expect("a plan serializes") + "\n"
}

/// Reads the saved plan `text` of file `file` (named in errors): its format version first, so
/// a plan of an unknown format is reported as such, then the plan (of any format this build
/// reads, into the current one).
pub fn parse_saved(file: &str, text: &str) -> Result<Plan, SavedPlanError> {
    let unreadable = |e: serde_json::Error| SavedPlanError::Unreadable {
        file: file.to_string(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(unreadable)?;
    if let Some(found) = value.get("format_version").and_then(|v| v.as_u64()) {
        if !reads_format(found) {
            return Err(SavedPlanError::Format {
                file: file.to_string(),
                found,
            });
        }
    }
    serde_json::from_str(text).map_err(unreadable)
}

/// The plan to apply when `saved` still is what planning gives now (`fresh`, made against the
/// cluster as it is, from the saved plan's revision), compared as both are shown (secret
/// values masked, so a saved plan need not hold them); otherwise why it is stale.
pub fn check_fresh(saved: &Plan, fresh: Plan) -> Result<Plan, Stale> {
    if saved.fingerprint != fresh.fingerprint {
        return Err(Stale::Cluster);
    }
    let now = || {
        fresh
            .revision
            .clone()
            .unwrap_or_else(|| "none, uncommitted changes".to_string())
    };
    if saved.revision != fresh.revision {
        return Err(Stale::Files { now: now() });
    }
    // Compared as shown: a saved plan holds no secret value (and a version-1 plan no more of
    // its reasons than their text), and a fresh plan that shows the same is the plan the user
    // saw.
    let same_steps = seen_steps(&saved.steps, &fresh.show_values)
        == seen_steps(&fresh.steps, &fresh.show_values);
    match (&fresh.revision, same_steps) {
        (_, true) => Ok(fresh),
        _ if saved.new_content_key.is_none() && fresh.new_content_key.is_some() => {
            Err(Stale::NoContentKey)
        }
        (Some(revision), false) => Err(Stale::Edited {
            revision: revision.clone(),
        }),
        (None, false) => Err(Stale::Files { now: now() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::content_key::ContentKey;
    use crate::plan::{plan, PlanOptions};
    use crate::yaml::files::MemSource;

    fn fresh(revision: Option<&str>) -> Plan {
        planned(
            revision,
            "machines:\n  m1: {role: manager}\n",
            "services:\n  web:\n    image: nginx:1.27\n",
        )
    }

    fn planned(revision: Option<&str>, machines: &str, compose: &str) -> Plan {
        planned_with(revision, machines, compose, None)
    }

    fn planned_with(
        revision: Option<&str>,
        machines: &str,
        compose: &str,
        content_key: Option<ContentKey>,
    ) -> Plan {
        let files = MemSource::new(
            "c",
            [("machines.yml", machines), ("docker-compose.yml", compose)],
        );
        let desired = crate::config::load(&files, &Default::default()).unwrap();
        let options = PlanOptions {
            revision: revision.map(str::to_string),
            allow_destroy_all: false,
            routing_mesh: Some(true),
            content_key,
        };
        plan(&desired, &Default::default(), &options).unwrap()
    }

    fn text(plan: &Plan) -> String {
        serde_json::to_string_pretty(plan).unwrap()
    }

    #[test]
    fn a_saved_plan_reads_back() {
        let plan = fresh(Some("abc"));
        let read = parse_saved("p.json", &text(&plan)).unwrap();
        assert_eq!(text(&read), text(&plan));
    }

    #[test]
    fn unreadable_and_foreign_plans_say_so() {
        let err = parse_saved("p.json", "{\"format_version\": 1,\n \"steps\": [").unwrap_err();
        assert!(
            matches!(err, SavedPlanError::Unreadable { line: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("p.json:2:"), "{err}");
        let err = parse_saved("p.json", "[1, 2]").unwrap_err();
        assert!(err.to_string().contains("not a shoal plan"), "{err}");
        let other =
            text(&fresh(None)).replacen("\"format_version\": 2", "\"format_version\": 7", 1);
        let err = parse_saved("p.json", &other).unwrap_err();
        assert_eq!(
            err,
            SavedPlanError::Format {
                file: "p.json".into(),
                found: 7
            }
        );
    }

    #[test]
    fn a_fresh_plan_is_applied() {
        let saved = fresh(Some("abc"));
        assert_eq!(
            text(&check_fresh(&saved, fresh(Some("abc"))).unwrap()),
            text(&saved)
        );
        let uncommitted = fresh(None);
        assert!(check_fresh(&uncommitted, fresh(None)).is_ok());
    }

    #[test]
    fn staleness_names_what_changed() {
        let saved = fresh(Some("abc"));
        let mut moved = fresh(Some("abc"));
        moved.fingerprint = "sha256:other".into();
        assert_eq!(check_fresh(&saved, moved).unwrap_err(), Stale::Cluster);
        assert_eq!(
            check_fresh(&saved, fresh(Some("def"))).unwrap_err(),
            Stale::Files { now: "def".into() }
        );
        assert!(matches!(
            check_fresh(&saved, fresh(None)).unwrap_err(),
            Stale::Files { .. }
        ));
    }

    #[test]
    fn an_edited_plan_is_not_blamed_on_the_files() {
        let mut edited = fresh(Some("abc"));
        edited.steps.pop();
        assert_eq!(
            check_fresh(&edited, fresh(Some("abc"))).unwrap_err(),
            Stale::Edited {
                revision: "abc".into()
            }
        );
        let mut uncommitted = fresh(None);
        uncommitted.steps.pop();
        assert!(matches!(
            check_fresh(&uncommitted, fresh(None)).unwrap_err(),
            Stale::Files { .. }
        ));
    }

    const SECRETS: &str = "services:\n  db:\n    image: mysql:8\n    environment:\n      DB_PASSWORD: hunter2\n      DATABASE_URL: postgres://app:hunter2@db/app\n      MODE: fast\n    command: [\"--api-token\", \"hunter2\"]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"mysqladmin ping -phunter2\"]\n";

    #[test]
    fn a_saved_plan_holds_no_secret_and_still_applies() {
        let machines = "machines:\n  m1: {role: manager}\n";
        let made = planned(Some("abc"), machines, SECRETS);
        let saved = text(&made);
        assert!(!saved.contains("hunter2"), "{saved}");
        assert!(saved.contains("DB_PASSWORD=(sensitive value)"), "{saved}");
        assert!(saved.contains("MODE=fast"), "{saved}");
        let read = parse_saved("p.json", &saved).unwrap();
        let applied = check_fresh(&read, planned(Some("abc"), machines, SECRETS)).unwrap();
        // What apply carries out is the fresh plan, whole.
        let spec = applied.steps.iter().find_map(|s| s.op.service()).unwrap();
        assert!(spec
            .task_template
            .container_spec
            .env
            .contains(&"DB_PASSWORD=hunter2".to_string()));
        // A change that shows is still refused.
        let other = planned(
            Some("abc"),
            machines,
            &SECRETS.replace("MODE: fast", "MODE: slow"),
        );
        assert!(matches!(
            check_fresh(&read, other),
            Err(Stale::Edited { .. })
        ));
    }

    #[test]
    fn shown_values_stay_shown_and_are_compared() {
        let machines = "machines:\n  m1: {role: manager}\npolicy:\n  show_values: [DB_PASSWORD]\n";
        let made = planned(Some("abc"), machines, SECRETS);
        let saved = text(&made);
        assert!(saved.contains("DB_PASSWORD=hunter2"), "{saved}");
        assert!(!saved.contains("app:hunter2@"), "{saved}");
        let read = parse_saved("p.json", &saved).unwrap();
        assert!(check_fresh(&read, planned(Some("abc"), machines, SECRETS)).is_ok());
        let other = planned(
            Some("abc"),
            machines,
            &SECRETS.replace("DB_PASSWORD: hunter2", "DB_PASSWORD: hunter3"),
        );
        assert!(check_fresh(&read, other).is_err());
    }

    #[test]
    fn a_saved_plan_of_a_cluster_without_a_key_carries_the_one_it_versioned_with() {
        let machines = "machines:\n  m1: {role: manager}\n";
        let compose = "services:\n  web:\n    image: nginx:1\n    secrets: [db]\nsecrets:\n  db:\n    file: ./db.txt\n";
        let files = |key| {
            let files = MemSource::new(
                "c",
                [
                    ("machines.yml", machines),
                    ("docker-compose.yml", compose),
                    ("db.txt", "password1"),
                ],
            );
            let desired = crate::config::load(&files, &Default::default()).unwrap();
            let options = PlanOptions {
                revision: Some("abc".into()),
                routing_mesh: Some(true),
                content_key: Some(key),
                ..PlanOptions::default()
            };
            plan(&desired, &Default::default(), &options).unwrap()
        };
        let key = ContentKey::from_bytes([9; 32]);
        let made = files(key.clone());
        let shown = text(&made);
        assert!(
            !shown.contains(&key.to_label()),
            "plan --json never shows it"
        );
        let saved = saved_text(&made);
        assert!(saved.contains(&key.to_label()), "{saved}");
        let read = parse_saved("p.json", &saved).unwrap();
        assert_eq!(read.new_content_key, Some(key.clone()));
        // apply plans with the key the file carries: the same names, so not stale.
        assert!(check_fresh(&read, files(key)).is_ok());
        // `plan --json`'s output has no key: a fresh key would give other versions.
        let printed = parse_saved("p.json", &shown).unwrap();
        let other = files(ContentKey::from_bytes([8; 32]));
        assert_eq!(
            check_fresh(&printed, other).unwrap_err(),
            Stale::NoContentKey
        );
    }
}
