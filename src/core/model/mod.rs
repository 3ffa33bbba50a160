//! Desired and observed cluster state: plain data in deterministic order, no I/O.

pub mod content_key;
pub mod desired;
pub mod driver_options;
pub mod engine_api;
pub mod notifications;
pub mod observed;
pub mod pause;
pub mod reference;
pub mod rollback;
pub mod spec;
pub mod timing;
pub mod unmodeled;
pub mod vm_network;

pub use desired::{
    Condition, Dependency, Desired, DriverKind, ImagePolicy, MachineAccess, MachineSpec, OnFailure,
    Policy, Role, SshAccess, Stack,
};
pub use driver_options::DriverOptions;
pub use observed::{
    Availability, MachineState, NetworkSettings, NodeState, Observed, ObservedMachine,
    ObservedNode, ObservedObject, ObservedService, Reachability,
};
pub use spec::{NetworkSpec, ObjectSpec, ServiceSpec};

use std::collections::BTreeMap;

/// Label naming the stack an object belongs to (set by `docker stack deploy` and shoal alike).
pub const LABEL_STACK_NAMESPACE: &str = "com.docker.stack.namespace";
/// Label holding the image as written in the compose file.
pub const LABEL_STACK_IMAGE: &str = "com.docker.stack.image";
/// Swarm label recording the revision shoal applied last.
pub const LABEL_REVISION: &str = "io.shoal.revision";
/// Label naming the cluster a machine belongs to; as a swarm label, the cluster whose swarm it is.
pub const LABEL_CLUSTER: &str = "io.shoal.cluster";
/// Label naming the machine a container or VM is; as a node label, the machine the node is
/// (written when it joins, so its node is known while its engine is silent).
pub const LABEL_MACHINE: &str = "io.shoal.machine";
/// Prefix of the labels shoal keeps for itself; on nodes they are never machines.yml's.
pub const LABEL_PREFIX: &str = "io.shoal.";

/// A node's labels as machines.yml owns them: all but shoal's own.
pub fn user_node_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(key, _)| !key.starts_with(LABEL_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The labels to store on a node: machines.yml's `wanted` ones, and shoal's own kept from
/// `current` (a label update never drops a node's identity).
pub fn node_labels_to_store(
    current: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = user_node_labels(wanted);
    labels.extend(
        current
            .iter()
            .filter(|(key, _)| key.starts_with(LABEL_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    labels
}

/// Label recording the role a machine was created for.
pub const LABEL_ROLE: &str = "io.shoal.role";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_update_keeps_the_nodes_identity() {
        let current = BTreeMap::from([
            (LABEL_MACHINE.to_string(), "m1".to_string()),
            ("zone".to_string(), "a".to_string()),
        ]);
        let wanted = BTreeMap::from([("zone".to_string(), "b".to_string())]);
        let stored = node_labels_to_store(&current, &wanted);
        assert_eq!(stored[LABEL_MACHINE], "m1");
        assert_eq!(stored["zone"], "b");
        assert_eq!(user_node_labels(&stored), wanted);
    }
}
