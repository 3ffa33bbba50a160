//! Desired and observed cluster state: plain data in deterministic order, no I/O.

pub mod desired;
pub mod observed;
pub mod spec;

pub use desired::{
    Desired, DriverKind, ImagePolicy, MachineAccess, MachineSpec, Policy, Role, SshAccess, Stack,
};
pub use observed::{
    Availability, MachineState, NodeState, Observed, ObservedMachine, ObservedNode, ObservedObject,
    ObservedService, Reachability,
};
pub use spec::{NetworkSpec, ObjectSpec, ServiceSpec};

/// Label naming the stack an object belongs to (set by `docker stack deploy` and shoal alike).
pub const LABEL_STACK_NAMESPACE: &str = "com.docker.stack.namespace";
/// Label holding the image as written in the compose file.
pub const LABEL_STACK_IMAGE: &str = "com.docker.stack.image";
/// Swarm label recording the revision shoal applied last.
pub const LABEL_REVISION: &str = "io.shoal.revision";
/// Label naming the cluster a machine belongs to.
pub const LABEL_CLUSTER: &str = "io.shoal.cluster";
/// Label naming the machine a container or VM is.
pub const LABEL_MACHINE: &str = "io.shoal.machine";
/// Label recording the role a machine was created for.
pub const LABEL_ROLE: &str = "io.shoal.role";
