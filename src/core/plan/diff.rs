//! Field-level differences between two normalized service specs. The plan masks their secret
//! values and credentials ([`super::mask::mask_steps`]) before anything shows them.

use super::model::FieldChange;
use crate::model::spec::ServiceSpec;
use serde_json::Value;

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
}
