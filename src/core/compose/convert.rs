//! A validated compose file → the swarm objects of a stack, field by field as docker/cli's
//! `cli/compose/convert` builds them for `docker stack deploy` (notes/swarm.md §1.2–1.4), so a
//! stack deployed by the docker CLI plans to nothing.
//!
//! Secrets and configs get the name `docker stack deploy` gives them here (`<stack>_<name>`);
//! the planner versions them after their content with the cluster's key
//! (`plan/rules/content_versions.rs`), because swarm cannot change their data in place, and its
//! adoption rule (`plan/rules/stack_objects.rs`) keeps the CLI's name when the swarm has no
//! version of the object yet or holds the same content under that name.

use super::types::{
    ComposeFile, DeployMode, FileObject, FileRef, Healthcheck, Reservations, RestartSettings,
    Service, ServiceVolume, UpdateSettings,
};
use crate::model::spec::content_sha256;
use crate::model::spec::{
    BindOptions, ConfigReference, ContainerSpec, DnsConfig, Driver, Empty, EndpointSpec,
    FileTarget, HealthConfig, Limit, LogDriver, Mount, NetworkAttachment, Placement,
    PlacementPreference, PortConfig, Privileges, ReplicatedJob, ReplicatedService, Reservation,
    Resources, RestartPolicy, SecretReference, ServiceMode, SpreadOver, TaskSpec, TmpfsOptions,
    Ulimit, UpdateConfig, VolumeOptions,
};
use crate::model::{
    NetworkSpec, ObjectSpec, ServiceSpec, Stack, LABEL_STACK_IMAGE, LABEL_STACK_NAMESPACE,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The compose network a service without `networks:` is attached to.
pub const DEFAULT_NETWORK: &str = "default";
/// The driver of networks that name none.
pub const DEFAULT_NETWORK_DRIVER: &str = "overlay";
/// Permission bits of secret and config files when the compose file gives none.
pub const DEFAULT_FILE_MODE: u32 = 0o444;

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The swarm name `docker stack deploy` gives a secret or config: `<stack>_<key>`, or the
/// compose file's explicit `name`. The planner appends `-<version>` to it for a new content.
pub fn object_name(stack: &str, key: &str, explicit: Option<&str>) -> String {
    match explicit {
        Some(name) => name.to_string(),
        None => scope(stack, key),
    }
}

/// Characters a version adds to an object's name (`-` and 8 hex).
pub const VERSION_SUFFIX_LEN: usize = 9;

/// The image reference as the docker client library sends it (`imageWithTagString`, applied to
/// every service create and update): in its familiar form (`docker.io/library/` dropped) and
/// tagged `latest` when it names neither tag nor digest. The stack image label keeps the
/// reference as written.
pub fn tagged_image(image: &str) -> String {
    let valid = !image.is_empty()
        && image
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
        && !image.bytes().any(|b| b.is_ascii_uppercase());
    if !valid {
        return image.to_string();
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    let last = name.rsplit('/').next().unwrap_or(name);
    let (path, tag) = match last.split_once(':') {
        Some((_, tag)) => (&name[..name.len() - tag.len() - 1], Some(tag)),
        None => (name, None),
    };
    let familiar = ["docker.io/", "index.docker.io/"]
        .iter()
        .find_map(|domain| path.strip_prefix(domain))
        .map(|rest| {
            rest.strip_prefix("library/")
                .filter(|short| !short.contains('/'))
                .unwrap_or(rest)
        })
        .unwrap_or(path);
    match (tag, digest) {
        (Some(tag), Some(digest)) => format!("{familiar}:{tag}@{digest}"),
        (None, Some(digest)) => format!("{familiar}@{digest}"),
        (Some(tag), None) => format!("{familiar}:{tag}"),
        (None, None) => format!("{familiar}:latest"),
    }
}

fn scope(stack: &str, name: &str) -> String {
    format!("{stack}_{name}")
}

fn with_stack_label(stack: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = labels.clone();
    labels.insert(LABEL_STACK_NAMESPACE.to_string(), stack.to_string());
    labels
}

fn non_zero<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

fn non_empty(words: &Option<Vec<String>>) -> Option<Vec<String>> {
    words.clone().filter(|w| !w.is_empty())
}

/// Converts compose file `file` of stack `stack`.
pub fn convert_stack(stack: &str, file: &str, compose: &ComposeFile) -> Stack {
    let mut out = Stack {
        name: stack.to_string(),
        file: file.to_string(),
        ..Stack::default()
    };
    for (name, service) in &compose.services {
        let spec = convert_service(stack, name, service, compose);
        out.services.insert(spec.name.clone(), spec);
    }
    let used: BTreeSet<&str> = compose
        .services
        .values()
        .flat_map(|s| {
            if s.networks.is_empty() {
                vec![DEFAULT_NETWORK]
            } else {
                s.networks.keys().map(String::as_str).collect()
            }
        })
        .collect();
    for key in used {
        let network = compose.networks.get(key).cloned().unwrap_or_default();
        if network.external {
            out.external_networks
                .push(network.name.unwrap_or_else(|| key.to_string()));
            continue;
        }
        let name = network.name.unwrap_or_else(|| scope(stack, key));
        let driver = if network.driver.is_empty() {
            DEFAULT_NETWORK_DRIVER.to_string()
        } else {
            network.driver
        };
        out.networks.insert(
            name.clone(),
            NetworkSpec {
                name,
                driver,
                labels: with_stack_label(stack, &network.labels),
                attachable: network.attachable,
                internal: network.internal,
                options: network.driver_opts,
                subnets: network.subnets,
            },
        );
    }
    out.external_networks.sort();
    out.external_networks.dedup();
    out.secrets = objects(stack, &compose.secrets);
    out.configs = objects(stack, &compose.configs);
    out
}

fn objects(stack: &str, defined: &BTreeMap<String, FileObject>) -> BTreeMap<String, ObjectSpec> {
    defined
        .iter()
        .filter(|(_, object)| !object.external)
        .map(|(key, object)| {
            let name = object_name(stack, key, object.name.as_deref());
            let spec = ObjectSpec {
                name: name.clone(),
                labels: with_stack_label(stack, &object.labels),
                sha256: content_sha256(&object.data, object.template_driver.as_deref()),
                version: String::new(),
                source: object.file.clone(),
                data: object.data.clone(),
                template_driver: object.template_driver.clone(),
            };
            (name, spec)
        })
        .collect()
}

/// The swarm name a service's reference to `key` resolves to.
fn referenced_name(stack: &str, key: &str, object: &FileObject) -> String {
    if object.external {
        object.name.clone().unwrap_or_else(|| key.to_string())
    } else {
        object_name(stack, key, object.name.as_deref())
    }
}

/// Converts service `name` of stack `stack` to its swarm spec.
pub fn convert_service(
    stack: &str,
    name: &str,
    service: &Service,
    compose: &ComposeFile,
) -> ServiceSpec {
    let deploy = &service.deploy;
    let mut labels = with_stack_label(stack, &deploy.labels);
    labels.insert(LABEL_STACK_IMAGE.to_string(), service.image.clone());
    let (capability_add, capability_drop) =
        effective_capabilities(&service.cap_add, &service.cap_drop);
    let container_spec = ContainerSpec {
        image: tagged_image(&service.image),
        labels: with_stack_label(stack, &service.labels),
        command: non_empty(&service.entrypoint),
        args: non_empty(&service.command),
        hostname: service.hostname.clone(),
        env: environment(&service.environment),
        dir: service.working_dir.clone(),
        user: service.user.clone(),
        groups: Vec::new(),
        tty: service.tty,
        open_stdin: service.stdin_open,
        read_only: service.read_only,
        mounts: service
            .volumes
            .iter()
            .map(|v| mount(stack, v, compose))
            .collect(),
        stop_signal: service.stop_signal.clone(),
        stop_grace_period: service.stop_grace_period,
        healthcheck: service.healthcheck.as_ref().map(healthcheck),
        hosts: service
            .extra_hosts
            .iter()
            .filter_map(|pair| pair.split_once(':'))
            .map(|(host, ip)| format!("{ip} {host}"))
            .collect(),
        dns_config: dns_config(service),
        secrets: secret_refs(stack, &service.secrets, &compose.secrets),
        configs: config_refs(stack, &service.configs, &compose.configs),
        init: service.init,
        sysctls: service.sysctls.clone(),
        capability_add,
        capability_drop,
        ulimits: service
            .ulimits
            .iter()
            .map(|(name, &(soft, hard))| Ulimit {
                name: name.clone(),
                soft,
                hard,
                ..Default::default()
            })
            .collect(),
        isolation: service.isolation.clone(),
        oom_score_adj: service.oom_score_adj,
        privileges: Some(Privileges::default()),
        extra: Default::default(),
    };
    let restart = deploy.restart_policy.as_ref().or(service.restart.as_ref());
    ServiceSpec {
        name: scope(stack, name),
        labels,
        task_template: TaskSpec {
            container_spec,
            resources: Some(resources(
                deploy.limits.as_ref(),
                deploy.reservations.as_ref(),
            )),
            restart_policy: restart.map(restart_policy),
            placement: Some(Placement {
                constraints: deploy.constraints.clone(),
                preferences: deploy
                    .preferences
                    .iter()
                    .map(|spread| PlacementPreference {
                        spread: SpreadOver {
                            spread_descriptor: spread.clone(),
                            ..Default::default()
                        },
                        ..Default::default()
                    })
                    .collect(),
                max_replicas: non_zero(deploy.max_replicas_per_node),
                ..Default::default()
            }),
            networks: networks(stack, name, service, compose),
            log_driver: service.logging.as_ref().map(|l| LogDriver {
                name: l.driver.clone(),
                options: l.options.clone(),
                ..Default::default()
            }),
            force_update: 0,
            extra: Default::default(),
        },
        mode: Some(mode(deploy.mode, deploy.replicas)),
        update_config: deploy.update_config.as_ref().map(update_config),
        rollback_config: deploy.rollback_config.as_ref().map(update_config),
        endpoint_spec: Some(endpoint(&deploy.endpoint_mode, service)),
        ..ServiceSpec::default()
    }
}

/// `K=V` (or a bare `K` for a missing value), sorted.
fn environment(environment: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut env: Vec<String> = environment
        .iter()
        .map(|(key, value)| match value {
            Some(value) => format!("{key}={value}"),
            None => key.clone(),
        })
        .collect();
    env.sort();
    env
}

/// docker's `opts.EffectiveCapAddCapDrop`: normalized to `CAP_X`, `ALL` wins, a capability
/// both added and dropped stays added, `RESET` is dropped; both sorted.
fn effective_capabilities(add: &[String], drop: &[String]) -> (Vec<String>, Vec<String>) {
    fn normalize(capability: &str) -> String {
        let capability = capability.trim().to_uppercase();
        if capability == "ALL" || capability == "RESET" || capability.starts_with("CAP_") {
            capability
        } else {
            format!("CAP_{capability}")
        }
    }
    let set = |caps: &[String]| -> BTreeSet<String> {
        let set: BTreeSet<String> = caps.iter().map(|c| normalize(c)).collect();
        if set.contains("ALL") {
            BTreeSet::from(["ALL".to_string()])
        } else {
            set
        }
    };
    let (add, drop) = (set(add), set(drop));
    let capability_drop = drop
        .iter()
        .filter(|c| !add.contains(*c) && *c != "RESET")
        .cloned()
        .collect();
    let capability_add = add.iter().filter(|c| *c != "RESET").cloned().collect();
    (capability_add, capability_drop)
}

fn dns_config(service: &Service) -> Option<DnsConfig> {
    if service.dns.is_empty() && service.dns_search.is_empty() && service.dns_opt.is_empty() {
        return None;
    }
    Some(DnsConfig {
        nameservers: service.dns.clone(),
        search: service.dns_search.clone(),
        options: service.dns_opt.clone(),
        ..Default::default()
    })
}

fn healthcheck(health: &Healthcheck) -> HealthConfig {
    if health.disable {
        return HealthConfig {
            test: vec!["NONE".to_string()],
            ..HealthConfig::default()
        };
    }
    HealthConfig {
        test: health.test.clone(),
        interval: health.interval.and_then(non_zero),
        timeout: health.timeout.and_then(non_zero),
        retries: health.retries.and_then(non_zero),
        start_period: health.start_period.and_then(non_zero),
        start_interval: health.start_interval.and_then(non_zero),
        ..Default::default()
    }
}

fn restart_policy(policy: &RestartSettings) -> RestartPolicy {
    RestartPolicy {
        condition: policy.condition.clone(),
        delay: policy.delay,
        max_attempts: policy.max_attempts,
        window: policy.window,
        ..Default::default()
    }
}

fn update_config(settings: &UpdateSettings) -> UpdateConfig {
    UpdateConfig {
        parallelism: settings.parallelism.unwrap_or(1),
        delay: non_zero(settings.delay),
        failure_action: settings.failure_action.clone(),
        monitor: non_zero(settings.monitor),
        max_failure_ratio: Some(settings.max_failure_ratio),
        order: settings.order.clone(),
        ..Default::default()
    }
}

fn resources(
    limits: Option<&super::types::Limits>,
    reservations: Option<&Reservations>,
) -> Resources {
    Resources {
        limits: limits.map(|l| Limit {
            nano_cpus: non_zero(l.nano_cpus),
            memory_bytes: non_zero(l.memory),
            pids: non_zero(l.pids),
            ..Default::default()
        }),
        reservations: reservations.map(|r| Reservation {
            nano_cpus: non_zero(r.nano_cpus),
            memory_bytes: non_zero(r.memory),
            generic_resources: r
                .generic_resources
                .iter()
                .map(|g| match g {
                    None => serde_json::json!({}),
                    Some((kind, value)) => {
                        let mut spec = serde_json::Map::new();
                        if !kind.is_empty() {
                            spec.insert("Kind".to_string(), kind.clone().into());
                        }
                        if *value != 0 {
                            spec.insert("Value".to_string(), (*value).into());
                        }
                        serde_json::json!({ "DiscreteResourceSpec": spec })
                    }
                })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mode(mode: DeployMode, replicas: Option<u64>) -> ServiceMode {
    match mode {
        DeployMode::Replicated => ServiceMode {
            replicated: Some(ReplicatedService {
                replicas,
                ..Default::default()
            }),
            ..ServiceMode::default()
        },
        DeployMode::Global => ServiceMode {
            global: Some(Empty {}),
            ..ServiceMode::default()
        },
        DeployMode::ReplicatedJob => ServiceMode {
            replicated_job: Some(ReplicatedJob {
                max_concurrent: replicas,
                total_completions: replicas,
                ..Default::default()
            }),
            ..ServiceMode::default()
        },
        DeployMode::GlobalJob => ServiceMode {
            global_job: Some(Empty {}),
            ..ServiceMode::default()
        },
    }
}

fn endpoint(endpoint_mode: &str, service: &Service) -> EndpointSpec {
    let mut ports: Vec<PortConfig> = service
        .ports
        .iter()
        .map(|p| PortConfig {
            name: p.name.clone(),
            protocol: p.protocol.clone(),
            target_port: p.target,
            published_port: non_zero(p.published),
            publish_mode: p.mode.clone(),
            ..Default::default()
        })
        .collect();
    ports.sort_by(|a, b| {
        (
            a.published_port,
            a.target_port,
            &a.protocol,
            &a.publish_mode,
        )
            .cmp(&(
                b.published_port,
                b.target_port,
                &b.protocol,
                &b.publish_mode,
            ))
    });
    EndpointSpec {
        mode: endpoint_mode.to_lowercase(),
        ports,
        ..Default::default()
    }
}

/// Whether a network name takes service aliases (docker's `NetworkMode.IsUserDefined`).
fn is_user_defined(target: &str) -> bool {
    !matches!(target, "default" | "bridge" | "host" | "none") && !target.starts_with("container:")
}

fn networks(
    stack: &str,
    name: &str,
    service: &Service,
    compose: &ComposeFile,
) -> Vec<NetworkAttachment> {
    let default = BTreeMap::from([(DEFAULT_NETWORK.to_string(), Default::default())]);
    let wanted = if service.networks.is_empty() {
        &default
    } else {
        &service.networks
    };
    let mut attachments: Vec<NetworkAttachment> = wanted
        .iter()
        .map(|(key, attachment)| {
            let target = compose
                .networks
                .get(key)
                .and_then(|n| n.name.clone())
                .unwrap_or_else(|| scope(stack, key));
            let mut aliases = attachment.aliases.clone();
            if is_user_defined(&target) {
                aliases.push(name.to_string());
            }
            NetworkAttachment {
                target,
                aliases,
                driver_opts: attachment.driver_opts.clone(),
                ..NetworkAttachment::default()
            }
        })
        .collect();
    attachments.sort_by(|a, b| a.target.cmp(&b.target));
    attachments
}

fn mount(stack: &str, volume: &ServiceVolume, compose: &ComposeFile) -> Mount {
    let mut mount = Mount {
        kind: volume.kind.clone(),
        source: volume.source.clone(),
        target: volume.target.clone(),
        read_only: volume.read_only,
        consistency: volume.consistency.clone(),
        ..Mount::default()
    };
    match volume.kind.as_str() {
        "volume" if !volume.source.is_empty() => {
            let defined = compose
                .volumes
                .get(&volume.source)
                .cloned()
                .unwrap_or_default();
            mount.source = defined
                .name
                .clone()
                .unwrap_or_else(|| scope(stack, &volume.source));
            let mut options = VolumeOptions {
                no_copy: volume.nocopy,
                subpath: volume.subpath.clone(),
                ..VolumeOptions::default()
            };
            if !defined.external {
                options.labels = with_stack_label(stack, &defined.labels);
                if !defined.driver.is_empty() || defined.driver_opts.is_some() {
                    options.driver_config = Some(Driver {
                        name: defined.driver.clone(),
                        options: defined.driver_opts.clone().unwrap_or_default(),
                        ..Default::default()
                    });
                }
            }
            mount.volume_options = Some(options);
        }
        "bind" | "npipe" => {
            mount.bind_options = volume.bind_propagation.as_ref().map(|p| BindOptions {
                propagation: p.clone(),
                ..Default::default()
            });
        }
        "tmpfs" => {
            mount.tmpfs_options = volume.tmpfs.map(|(size, mode)| TmpfsOptions {
                size_bytes: size.and_then(non_zero),
                mode,
                ..Default::default()
            });
        }
        _ => {}
    }
    mount
}

fn file_target(reference: &FileRef) -> FileTarget {
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    FileTarget {
        name: or(&reference.target, &reference.source),
        uid: or(&reference.uid, "0"),
        gid: or(&reference.gid, "0"),
        mode: reference.mode.unwrap_or(DEFAULT_FILE_MODE),
        ..Default::default()
    }
}

fn secret_refs(
    stack: &str,
    refs: &[FileRef],
    defined: &BTreeMap<String, FileObject>,
) -> Vec<SecretReference> {
    let mut out: Vec<SecretReference> = refs
        .iter()
        .filter_map(|r| {
            let object = defined.get(&r.source)?;
            Some(SecretReference {
                file: file_target(r),
                secret_id: String::new(),
                secret_name: referenced_name(stack, &r.source, object),
                ..Default::default()
            })
        })
        .collect();
    out.sort_by(|a, b| a.secret_name.cmp(&b.secret_name));
    out
}

fn config_refs(
    stack: &str,
    refs: &[FileRef],
    defined: &BTreeMap<String, FileObject>,
) -> Vec<ConfigReference> {
    let mut out: Vec<ConfigReference> = refs
        .iter()
        .filter_map(|r| {
            let object = defined.get(&r.source)?;
            Some(ConfigReference {
                file: file_target(r),
                config_id: String::new(),
                config_name: referenced_name(stack, &r.source, object),
                ..Default::default()
            })
        })
        .collect();
    out.sort_by(|a, b| a.config_name.cmp(&b.config_name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_normalized() {
        let (add, drop) = effective_capabilities(
            &["net_admin".into(), "CAP_SYS_TIME".into(), "chown".into()],
            &["chown".into(), "mknod".into(), "reset".into()],
        );
        assert_eq!(add, ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_TIME"]);
        assert_eq!(drop, ["CAP_MKNOD"]);
        let (add, _) = effective_capabilities(&["all".into(), "chown".into()], &[]);
        assert_eq!(add, ["ALL"]);
    }

    #[test]
    fn environment_is_sorted_as_strings() {
        let env = BTreeMap::from([
            ("A".to_string(), Some("1".to_string())),
            ("A-B".to_string(), Some("2".to_string())),
            ("BARE".to_string(), None),
        ]);
        assert_eq!(environment(&env), ["A-B=2", "A=1", "BARE"]);
    }

    #[test]
    fn images_are_tagged_as_the_docker_client_sends_them() {
        for (written, sent) in [
            ("redis", "redis:latest"),
            ("redis:7-alpine", "redis:7-alpine"),
            (
                "dockersamples/visualizer",
                "dockersamples/visualizer:latest",
            ),
            ("docker.io/library/nginx", "nginx:latest"),
            ("docker.io/traefik/whoami:v1", "traefik/whoami:v1"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            (
                "gcr.io/cadvisor/cadvisor:v0.47.2",
                "gcr.io/cadvisor/cadvisor:v0.47.2",
            ),
            ("nginx@sha256:abcd", "nginx@sha256:abcd"),
            ("nginx:1.25@sha256:abcd", "nginx:1.25@sha256:abcd"),
            ("Not/Valid", "Not/Valid"),
        ] {
            assert_eq!(tagged_image(written), sent, "{written}");
        }
    }

    #[test]
    fn object_names_are_the_clis_until_the_planner_versions_them() {
        assert_eq!(object_name("app", "db_password", None), "app_db_password");
        assert_eq!(object_name("app", "x", Some("shared")), "shared");
    }
}
