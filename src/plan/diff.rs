//! Field-level differences between two normalized service specs, and the masking of the
//! values of secret-looking keys in them ([`mask_sensitive`]), as Terraform hides sensitive
//! values: the plan's diffs are shown, printed and saved, so they never hold such a value.

use super::model::{FieldChange, Step, StepOp};
use crate::model::spec::ServiceSpec;
use serde_json::Value;
use std::collections::BTreeMap;

/// The fields that differ between `before` and `after`, as dotted paths, in document order.
/// Objects are compared key by key; lists and scalars are compared whole.
pub fn field_changes(before: &ServiceSpec, after: &ServiceSpec) -> Vec<FieldChange> {
    let before = serde_json::to_value(before).unwrap_or(Value::Null);
    let after = serde_json::to_value(after).unwrap_or(Value::Null);
    let mut changes = Vec::new();
    collect("", &before, &after, &mut changes);
    changes
}

fn collect(path: &str, before: &Value, after: &Value, out: &mut Vec<FieldChange>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                collect(
                    &join(path, key),
                    b.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Null, Value::Object(a)) => {
            for (key, value) in a {
                collect(&join(path, key), &Value::Null, value, out);
            }
        }
        (Value::Object(b), Value::Null) => {
            for (key, value) in b {
                collect(&join(path, key), value, &Value::Null, out);
            }
        }
        _ => out.push(FieldChange {
            path: path.to_string(),
            before: before.clone(),
            after: after.clone(),
        }),
    }
}

/// Words that make a key's value secret, matched anywhere in the key, case-insensitively.
pub const SENSITIVE_WORDS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "CREDENTIAL",
    "PRIVATE",
    "AUTH",
    "SALT",
    "SIGNATURE",
];

/// What a masked value is shown as.
pub const MASKED: &str = "(sensitive value)";
/// What a masked value that changes is shown as, on the new side.
pub const MASKED_CHANGED: &str = "(sensitive value, changed)";

/// Whether the value of `key` is hidden: it holds one of [`SENSITIVE_WORDS`] and is not
/// listed in `show` (`policy.show_values` in machines.yml).
pub fn is_sensitive(key: &str, show: &[String]) -> bool {
    let upper = key.to_ascii_uppercase();
    SENSITIVE_WORDS.iter().any(|w| upper.contains(w)) && !show.iter().any(|s| s == key)
}

/// Masks, in the field changes of every `update_service` step, the values of secret-looking
/// keys: `KEY=value` entries of `Env`, and labels whose key looks secret (`db_password`). A masked value that changes stays visible as changed.
pub fn mask_steps(steps: &mut [Step], show: &[String]) {
    for step in steps {
        if let StepOp::UpdateService { changes, .. } = &mut step.op {
            for change in changes.iter_mut() {
                mask_change(change, show);
            }
        }
    }
}

/// Masks the secret-looking values of one field change (see [`mask_steps`]).
pub fn mask_change(change: &mut FieldChange, show: &[String]) {
    if change.path.ends_with(".Env") || change.path == "Env" {
        let before = env_pairs(&change.before);
        let after = env_pairs(&change.after);
        let masked = |side: &mut Value, other: &BTreeMap<String, String>, changed: &str| {
            let Value::Array(items) = side else { return };
            for item in items.iter_mut() {
                let Some((key, value)) = item.as_str().and_then(|t| t.split_once('=')) else {
                    continue;
                };
                if !is_sensitive(key, show) {
                    continue;
                }
                let shown = if other.get(key).is_some_and(|v| v != value) {
                    changed
                } else {
                    MASKED
                };
                *item = Value::String(format!("{key}={shown}"));
            }
        };
        masked(&mut change.before, &after, MASKED);
        masked(&mut change.after, &before, MASKED_CHANGED);
        return;
    }
    // Other keys the user names are label keys (`Labels.<key>`); the spec's own field names
    // (`Secrets`) are not values to hide.
    let Some((_, key)) = change.path.split_once("Labels.") else {
        return;
    };
    if is_sensitive(key, show) {
        let differ = !change.before.is_null() && !change.after.is_null();
        for (side, shown) in [
            (&mut change.before, MASKED),
            (
                &mut change.after,
                if differ { MASKED_CHANGED } else { MASKED },
            ),
        ] {
            if !side.is_null() {
                *side = Value::String(shown.to_string());
            }
        }
    }
}

/// The `KEY=value` entries of an `Env` list, by key.
fn env_pairs(value: &Value) -> BTreeMap<String, String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_changes_have_paths() {
        let mut a = ServiceSpec::default();
        a.task_template.container_spec.image = "web:1".into();
        let mut b = a.clone();
        b.task_template.container_spec.image = "web:2".into();
        b.task_template.container_spec.env = vec!["A=1".into()];
        let changes = field_changes(&a, &b);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "TaskTemplate.ContainerSpec.Env",
                "TaskTemplate.ContainerSpec.Image"
            ]
        );
        assert_eq!(changes[1].before, Value::String("web:1".into()));
    }

    #[test]
    fn secret_looking_values_are_masked_unless_shown() {
        let mut a = ServiceSpec::default();
        a.task_template.container_spec.env = vec![
            "DB_PASSWORD=hunter2".into(),
            "API_KEY=k1".into(),
            "MODE=fast".into(),
        ];
        let mut b = a.clone();
        b.task_template.container_spec.env = vec![
            "DB_PASSWORD=hunter3".into(),
            "API_KEY=k2".into(),
            "MODE=slow".into(),
        ];
        let mut change = field_changes(&a, &b).remove(0);
        mask_change(&mut change, &["API_KEY".to_string()]);
        let text = format!("{} {}", change.before, change.after);
        assert!(!text.contains("hunter"), "{text}");
        assert!(
            text.contains("DB_PASSWORD=(sensitive value, changed)"),
            "{text}"
        );
        assert!(
            text.contains("API_KEY=k1") && text.contains("MODE=slow"),
            "{text}"
        );
    }
}
