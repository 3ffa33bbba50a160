//! Normalized service specs: what the engine fills in or reorders is made equal to what shoal sends.
//!
//! Comparison happens only on fields shoal owns (those of [`ServiceSpec`]); engine defaults that
//! mean the same as an absent field are removed, so a converged cluster plans to nothing. Engine
//! fields shoal does not model (the `extra` of every part of a spec, see
//! [`crate::model::unmodeled`]) are not compared; an update carries them.

use crate::model::spec::{
    EndpointSpec, Placement, Privileges, ReplicatedService, Resources, ServiceMode, ServiceSpec,
};
use crate::model::unmodeled::Unmodeled;
use crate::model::LABEL_STACK_IMAGE;

/// Returns `spec` with engine defaults and IDs removed, in the form used for comparison.
pub fn normalize_service(spec: &ServiceSpec) -> ServiceSpec {
    let mut spec = spec.clone();
    spec.clear_unmodeled();
    spec.unreadable = None;
    let task = &mut spec.task_template;
    task.force_update = 0;
    let container = &mut task.container_spec;
    for secret in &mut container.secrets {
        secret.secret_id.clear();
    }
    for config in &mut container.configs {
        config.config_id.clear();
    }
    container.sort_references();
    if container.privileges.as_ref() == Some(&Privileges::default()) {
        container.privileges = None;
    }
    if container.isolation == "default" {
        container.isolation.clear();
    }
    for mount in &mut container.mounts {
        if mount
            .volume_options
            .as_ref()
            .is_some_and(|o| o == &Default::default())
        {
            mount.volume_options = None;
        }
    }
    if let Some(restart) = &mut task.restart_policy {
        if restart.condition.is_empty() {
            restart.condition = "any".to_string();
        }
        if restart.max_attempts == Some(0) {
            restart.max_attempts = None;
        }
    }
    if task.resources.as_ref().is_some_and(resources_are_empty) {
        task.resources = None;
    }
    if task.placement.as_ref() == Some(&Placement::default()) {
        task.placement = None;
    }
    task.networks.sort_by(|a, b| a.target.cmp(&b.target));
    if let Some(endpoint) = &mut spec.endpoint_spec {
        for port in &mut endpoint.ports {
            if port.protocol.is_empty() {
                port.protocol = "tcp".to_string();
            }
            if port.publish_mode.is_empty() {
                port.publish_mode = "ingress".to_string();
            }
        }
        endpoint
            .ports
            .sort_by_key(|p| (p.published_port, p.target_port, p.protocol.clone()));
        if endpoint.mode == "vip" {
            endpoint.mode.clear();
        }
        if *endpoint == EndpointSpec::default() {
            spec.endpoint_spec = None;
        }
    }
    for config in [&mut spec.update_config, &mut spec.rollback_config]
        .into_iter()
        .flatten()
    {
        if config.failure_action.is_empty() {
            config.failure_action = "pause".to_string();
        }
        if config.order.is_empty() {
            config.order = "stop-first".to_string();
        }
    }
    match &mut spec.mode {
        None => {
            spec.mode = Some(ServiceMode {
                replicated: Some(ReplicatedService {
                    replicas: Some(1),
                    ..Default::default()
                }),
                ..ServiceMode::default()
            })
        }
        Some(ServiceMode {
            replicated: Some(replicated),
            ..
        }) if replicated.replicas.is_none() => replicated.replicas = Some(1),
        Some(_) => {}
    }
    spec
}

fn resources_are_empty(resources: &Resources) -> bool {
    resources
        .limits
        .as_ref()
        .is_none_or(|l| l == &Default::default())
        && resources
            .reservations
            .as_ref()
            .is_none_or(|r| r == &Default::default())
}

/// The spec to send to update `observed` to `desired`: the desired spec, keeping the observed
/// force-update counter, the observed fields shoal does not model, and, when the compose image
/// is unchanged, the observed (digest-pinned) image, as `docker stack deploy` does.
pub fn spec_to_send(desired: &ServiceSpec, observed: &ServiceSpec) -> ServiceSpec {
    let mut spec = desired.clone();
    spec.task_template.force_update = observed.task_template.force_update;
    if observed.unreadable.is_none() {
        spec.keep_unmodeled(observed);
    }
    if same_image(desired, observed) {
        spec.task_template.container_spec.image =
            observed.task_template.container_spec.image.clone();
    }
    spec
}

/// Whether the observed service runs the image the desired spec names: the same string, or the
/// same compose image recorded in the stack image label (the stored one may be digest-pinned or
/// tagged `latest` by the docker client), as `docker stack deploy` decides it. A desired image
/// pinned to a digest (`policy.images: pin`) is the same only with that very digest, so a tag
/// that moved is a difference.
pub fn same_image(desired: &ServiceSpec, observed: &ServiceSpec) -> bool {
    let wanted = &desired.task_template.container_spec.image;
    let have = &observed.task_template.container_spec.image;
    if wanted.contains('@') {
        return wanted == have;
    }
    let label = observed.labels.get(LABEL_STACK_IMAGE);
    wanted == have
        || label == Some(wanted)
        || label.is_some() && label == desired.labels.get(LABEL_STACK_IMAGE)
}

/// Normalized pair for comparison: both sides normalized, the observed image replaced by the
/// desired one when [`same_image`] holds.
pub fn comparable(desired: &ServiceSpec, observed: &ServiceSpec) -> (ServiceSpec, ServiceSpec) {
    let desired_n = normalize_service(desired);
    let mut observed_n = normalize_service(observed);
    if same_image(desired, observed) {
        observed_n.task_template.container_spec.image =
            desired_n.task_template.container_spec.image.clone();
    }
    (desired_n, observed_n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::{PortConfig, ReplicatedService};

    #[test]
    fn engine_defaults_compare_equal() {
        let mut desired = ServiceSpec {
            name: "s_web".into(),
            ..Default::default()
        };
        desired.task_template.container_spec.image = "web:1".into();
        desired.endpoint_spec = Some(EndpointSpec {
            mode: String::new(),
            ports: vec![PortConfig {
                target_port: 80,
                published_port: Some(8080),
                ..Default::default()
            }],
            ..Default::default()
        });
        desired.mode = Some(ServiceMode {
            replicated: Some(ReplicatedService {
                replicas: None,
                ..Default::default()
            }),
            ..Default::default()
        });
        let mut observed = desired.clone();
        observed.task_template.container_spec.image = "web:1@sha256:abc".into();
        observed
            .labels
            .insert(LABEL_STACK_IMAGE.into(), "web:1".into());
        desired
            .labels
            .insert(LABEL_STACK_IMAGE.into(), "web:1".into());
        observed.task_template.force_update = 3;
        observed.task_template.container_spec.isolation = "default".into();
        observed.task_template.resources = Some(Resources::default());
        observed.mode = Some(ServiceMode {
            replicated: Some(ReplicatedService {
                replicas: Some(1),
                ..Default::default()
            }),
            ..Default::default()
        });
        let endpoint = observed.endpoint_spec.as_mut().unwrap();
        endpoint.mode = "vip".into();
        endpoint.ports[0].protocol = "tcp".into();
        endpoint.ports[0].publish_mode = "ingress".into();
        let (d, o) = comparable(&desired, &observed);
        assert_eq!(d, o);
        let sent = spec_to_send(&desired, &observed);
        assert_eq!(sent.task_template.container_spec.image, "web:1@sha256:abc");
        assert_eq!(sent.task_template.force_update, 3);
    }

    #[test]
    fn a_moved_tag_is_a_difference_and_the_same_digest_is_not() {
        let mut desired = ServiceSpec::default();
        desired.task_template.container_spec.image = "web:1@sha256:new".into();
        desired
            .labels
            .insert(LABEL_STACK_IMAGE.to_string(), "web:1".to_string());
        let mut observed = desired.clone();
        observed.task_template.container_spec.image = "web:1@sha256:old".into();
        assert!(!same_image(&desired, &observed));
        let (want, have) = comparable(&desired, &observed);
        assert_ne!(want, have);
        let sent = spec_to_send(&desired, &observed);
        assert_eq!(sent.task_template.container_spec.image, "web:1@sha256:new");
        observed.task_template.container_spec.image = "web:1@sha256:new".into();
        let (want, have) = comparable(&desired, &observed);
        assert_eq!(want, have);
    }

    #[test]
    fn a_new_image_is_a_difference() {
        let mut desired = ServiceSpec::default();
        desired.task_template.container_spec.image = "web:2".into();
        let mut observed = ServiceSpec::default();
        observed.task_template.container_spec.image = "web:1@sha256:abc".into();
        observed
            .labels
            .insert(LABEL_STACK_IMAGE.into(), "web:1".into());
        let (d, o) = comparable(&desired, &observed);
        assert_ne!(d, o);
        assert_eq!(
            spec_to_send(&desired, &observed)
                .task_template
                .container_spec
                .image,
            "web:2"
        );
    }
}
