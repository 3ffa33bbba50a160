//! The engine fields shoal does not model, at every level of a service spec: left out of
//! comparisons, and carried over by updates (pure).
//!
//! Every struct of a [`ServiceSpec`] keeps what the engine wrote that shoal has no field for in
//! its `extra` (a per-network `DriverOpts` set by a newer CLI, a `BindOptions.NonRecursive`, a
//! `Resources.SwapBytes`, ...). [`Unmodeled::clear_unmodeled`] removes them before two specs
//! are compared; [`Unmodeled::keep_unmodeled`] copies them from the observed spec into the one
//! sent, matching list items by what identifies them (a mount by its target, a port by its
//! published and target port and protocol, a network by its target, ...), so an update never
//! strips what shoal does not own.

use super::spec::{
    BindOptions, ConfigReference, ContainerSpec, DnsConfig, Driver, EndpointSpec, Extra,
    FileTarget, HealthConfig, Limit, LogDriver, Mount, NetworkAttachment, Placement,
    PlacementPreference, PortConfig, Privileges, ReplicatedJob, ReplicatedService, Reservation,
    Resources, RestartPolicy, SecretReference, ServiceMode, ServiceSpec, SpreadOver, TaskSpec,
    TmpfsOptions, Ulimit, UpdateConfig, VolumeOptions,
};

/// A spec part holding engine fields shoal does not model, in itself and below.
pub trait Unmodeled: Clone + Default + PartialEq {
    /// Removes the unmodeled fields, here and below.
    fn clear_unmodeled(&mut self);
    /// Adds the unmodeled fields of `observed` (this part as the engine has it) that this one
    /// does not set, here and below.
    fn keep_unmodeled(&mut self, observed: &Self);
}

/// Adds the fields of `observed` that `desired` does not set.
fn carry(desired: &mut Extra, observed: &Extra) {
    for (key, value) in observed {
        desired.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

/// Clears an optional part.
fn clear_option<T: Unmodeled>(part: &mut Option<T>) {
    if let Some(part) = part {
        part.clear_unmodeled();
    }
}

/// Keeps the unmodeled fields of an optional part. When the desired spec leaves it out and the
/// observed one holds nothing shoal models in it, only unmodeled fields, it is kept whole: the
/// file says nothing of it, so it stays as the engine has it.
fn keep_option<T: Unmodeled>(desired: &mut Option<T>, observed: &Option<T>) {
    match (desired.as_mut(), observed) {
        (Some(desired), Some(observed)) => desired.keep_unmodeled(observed),
        (None, Some(observed)) => {
            let mut modeled = observed.clone();
            modeled.clear_unmodeled();
            if modeled == T::default() && modeled != *observed {
                *desired = Some(observed.clone());
            }
        }
        _ => {}
    }
}

/// Clears each item of a list.
fn clear_list<T: Unmodeled>(items: &mut [T]) {
    for item in items {
        item.clear_unmodeled();
    }
}

/// Keeps the unmodeled fields of each desired item from the observed item with the same `key`.
fn keep_list<T: Unmodeled, K: PartialEq>(desired: &mut [T], observed: &[T], key: impl Fn(&T) -> K) {
    for item in desired {
        let wanted = key(item);
        if let Some(found) = observed.iter().find(|o| key(o) == wanted) {
            item.keep_unmodeled(found);
        }
    }
}

/// Implements [`Unmodeled`] for a part: its own `extra`, then the parts always below it
/// (`part`), its optional parts (`opt`) and its lists, each item found by a key (`list`).
macro_rules! unmodeled {
    ($ty:ty $(, part: [$($part:ident),*])? $(, opt: [$($opt:ident),*])? $(, list: [$($list:ident by $key:expr),*])?) => {
        impl Unmodeled for $ty {
            fn clear_unmodeled(&mut self) {
                self.extra.clear();
                $($(self.$part.clear_unmodeled();)*)?
                $($(clear_option(&mut self.$opt);)*)?
                $($(clear_list(&mut self.$list);)*)?
            }
            fn keep_unmodeled(&mut self, observed: &Self) {
                carry(&mut self.extra, &observed.extra);
                $($(self.$part.keep_unmodeled(&observed.$part);)*)?
                $($(keep_option(&mut self.$opt, &observed.$opt);)*)?
                $($(keep_list(&mut self.$list, &observed.$list, $key);)*)?
            }
        }
    };
}

unmodeled!(ServiceSpec, part: [task_template], opt: [mode, update_config, rollback_config, endpoint_spec]);
unmodeled!(ServiceMode, opt: [replicated, replicated_job]);
unmodeled!(ReplicatedService);
unmodeled!(ReplicatedJob);
unmodeled!(UpdateConfig);
unmodeled!(EndpointSpec, list: [ports by |p: &PortConfig| (p.published_port, p.target_port, p.protocol.clone())]);
unmodeled!(PortConfig);
unmodeled!(
    TaskSpec,
    part: [container_spec],
    opt: [resources, restart_policy, placement, log_driver],
    list: [networks by |n: &NetworkAttachment| n.target.clone()]
);
unmodeled!(NetworkAttachment);
unmodeled!(Resources, opt: [limits, reservations]);
unmodeled!(Limit);
unmodeled!(Reservation);
unmodeled!(RestartPolicy);
unmodeled!(Placement, list: [preferences by |p: &PlacementPreference| p.spread.spread_descriptor.clone()]);
unmodeled!(LogDriver);
unmodeled!(
    ContainerSpec,
    opt: [healthcheck, dns_config, privileges],
    list: [
        mounts by |m: &Mount| m.target.clone(),
        secrets by |s: &SecretReference| (s.secret_name.clone(), s.file.name.clone()),
        configs by |c: &ConfigReference| (c.config_name.clone(), c.file.name.clone()),
        ulimits by |u: &Ulimit| u.name.clone()
    ]
);
unmodeled!(HealthConfig);
unmodeled!(DnsConfig);
unmodeled!(Privileges);
unmodeled!(Mount, opt: [bind_options, volume_options, tmpfs_options]);
unmodeled!(BindOptions);
unmodeled!(VolumeOptions, opt: [driver_config]);
unmodeled!(Driver);
unmodeled!(TmpfsOptions);
unmodeled!(Ulimit);

unmodeled!(PlacementPreference, part: [spread]);
unmodeled!(SpreadOver);

unmodeled!(SecretReference, part: [file]);
unmodeled!(ConfigReference, part: [file]);
unmodeled!(FileTarget);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A service as a newer engine returns it, with fields shoal does not model at several
    /// levels (written by hand from the Engine API's documented shapes).
    fn observed() -> ServiceSpec {
        serde_json::from_value(json!({
            "Name": "app_web",
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": "web:1",
                    "Mounts": [{"Type": "bind", "Source": "/srv", "Target": "/srv",
                                "BindOptions": {"Propagation": "rprivate", "NonRecursive": true}}],
                    "Privileges": {"NoNewPrivileges": false, "Seccomp": {"Mode": "default"}}
                },
                "Resources": {"SwapBytes": 1024},
                "Networks": [{"Target": "app_default", "Aliases": ["web"],
                              "DriverOpts": {"com.docker.network.driver.mtu": "1400"},
                              "Future": 1}]
            },
            "EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080,
                                        "Protocol": "tcp", "PublishMode": "ingress", "Future": "x"}]}
        }))
        .unwrap()
    }

    #[test]
    fn unmodeled_fields_at_every_level_are_read_and_cleared() {
        let mut spec = observed();
        let network = &spec.task_template.networks[0];
        assert_eq!(network.extra["Future"], json!(1));
        assert_eq!(
            spec.task_template.container_spec.mounts[0]
                .bind_options
                .as_ref()
                .unwrap()
                .extra["NonRecursive"],
            json!(true)
        );
        spec.clear_unmodeled();
        let text = serde_json::to_string(&spec).unwrap();
        for unmodeled in ["Future", "NonRecursive", "Seccomp", "SwapBytes"] {
            assert!(!text.contains(unmodeled), "{unmodeled} in {text}");
        }
        assert!(
            text.contains("com.docker.network.driver.mtu"),
            "modeled: {text}"
        );
    }

    #[test]
    fn an_update_keeps_what_shoal_does_not_own_at_every_level() {
        let have = observed();
        let mut want = have.clone();
        want.clear_unmodeled();
        want.task_template.resources = None;
        want.task_template.container_spec.image = "web:2".into();
        want.keep_unmodeled(&have);
        let sent = serde_json::to_value(&want).unwrap();
        let task = &sent["TaskTemplate"];
        assert_eq!(task["ContainerSpec"]["Image"], json!("web:2"));
        assert_eq!(task["Resources"], json!({"SwapBytes": 1024}));
        assert_eq!(task["Networks"][0]["Future"], json!(1));
        assert_eq!(
            task["ContainerSpec"]["Mounts"][0]["BindOptions"]["NonRecursive"],
            json!(true)
        );
        assert_eq!(
            task["ContainerSpec"]["Privileges"]["Seccomp"],
            json!({"Mode": "default"})
        );
        assert_eq!(sent["EndpointSpec"]["Ports"][0]["Future"], json!("x"));
    }

    #[test]
    fn what_the_file_drops_is_not_brought_back() {
        let have = observed();
        let mut want = have.clone();
        want.clear_unmodeled();
        want.task_template.networks.clear();
        want.task_template.container_spec.mounts.clear();
        want.keep_unmodeled(&have);
        assert!(want.task_template.networks.is_empty());
        assert!(want.task_template.container_spec.mounts.is_empty());
    }
}
