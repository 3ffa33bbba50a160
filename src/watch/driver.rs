//! When the watcher opens its driver anew.

use crate::model::Desired;

/// What identifies an open driver: a change of any of these opens a new one.
pub(crate) fn driver_key(desired: &Desired) -> String {
    format!(
        "{}\n{}\n{}",
        desired.driver.as_str(),
        desired.cluster,
        serde_json::to_string(&desired.driver_options).unwrap_or_default()
    )
}
