//! Fields the cluster's engines cannot store (by the API version agreed with them, see
//! [`crate::model::engine_api`]): a field the engine would drop unseen is not planned nor
//! sent, and said once in a warning, so a cluster of older engines converges instead of
//! sending the same update at every apply; a field whose absence changes what runs (a volume
//! `subpath`: without it the whole volume is mounted) is refused with the way out.

use super::Ctx;
use crate::model::engine_api::{EngineCaps, EngineField};
use crate::model::{Desired, ServiceSpec};
use crate::plan::warning::Warning;
use crate::plan::PlanError;

/// Refuses a service that mounts a volume's `subpath` on engines that do not store it: they
/// would mount the whole volume instead, with no error.
pub fn refuse_unstored_subpath(ctx: &Ctx) -> Result<(), PlanError> {
    let field = EngineField::VolumeSubpath;
    let Some(has) = ctx.observed.api_version.filter(|v| *v < field.since()) else {
        return Ok(());
    };
    for stack in ctx.desired.stacks.values() {
        for (name, spec) in &stack.services {
            let mounts = &spec.task_template.container_spec.mounts;
            let Some(mount) = mounts.iter().find(|m| {
                m.volume_options
                    .as_ref()
                    .is_some_and(|o| !o.subpath.is_empty())
            }) else {
                continue;
            };
            return Err(PlanError::EngineTooOld {
                file: stack.file.clone(),
                service: name.clone(),
                place: format!("the mount at {}", mount.target),
                field,
                has,
            });
        }
    }
    Ok(())
}

/// `desired` without the service fields `caps` says the engines drop unseen, and one warning
/// per such field naming the services that set it.
pub fn drop_unstored_fields(desired: &Desired, caps: EngineCaps) -> (Desired, Vec<Warning>) {
    let mut desired = desired.clone();
    let mut warnings = Vec::new();
    for field in [EngineField::HealthStartInterval, EngineField::OomScoreAdj] {
        if caps.stores(field) {
            continue;
        }
        let mut services = Vec::new();
        for stack in desired.stacks.values_mut() {
            for (name, spec) in &mut stack.services {
                if drop_field(spec, field) {
                    services.push(name.clone());
                }
            }
        }
        if services.is_empty() {
            continue;
        }
        warnings.push(Warning::FieldNotSent {
            field: field.compose_key().to_string(),
            services,
            api: caps.api_version.map(|v| v.to_string()).unwrap_or_default(),
            needs_api: field.since().to_string(),
            docker: field.docker_release().to_string(),
        });
    }
    (desired, warnings)
}

/// Clears `field` in `spec`; whether it was set.
fn drop_field(spec: &mut ServiceSpec, field: EngineField) -> bool {
    let container = &mut spec.task_template.container_spec;
    match field {
        EngineField::OomScoreAdj => std::mem::take(&mut container.oom_score_adj) != 0,
        EngineField::HealthStartInterval => container
            .healthcheck
            .as_mut()
            .and_then(|h| h.start_interval.take())
            .is_some(),
        EngineField::VolumeSubpath => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::model::engine_api::ApiVersion;
    use crate::model::spec::{HealthConfig, Mount, VolumeOptions};
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, running, service, steps, with_stack};
    use crate::plan::{plan, PlanError, PlanOptions};

    /// A web service setting `oom_score_adj` and a health check `start_interval`.
    fn web(oom: i64) -> crate::model::ServiceSpec {
        let mut spec = service("app", "web", "web:1", 2);
        let container = &mut spec.task_template.container_spec;
        container.oom_score_adj = oom;
        container.healthcheck = Some(HealthConfig {
            test: vec!["CMD".into(), "true".into()],
            start_interval: Some(1_000_000_000),
            ..Default::default()
        });
        spec
    }

    /// What a 20.10 engine (API 1.41) stores of `web`: neither field.
    fn as_stored_by_20_10(mut spec: crate::model::ServiceSpec) -> crate::model::ServiceSpec {
        let container = &mut spec.task_template.container_spec;
        container.oom_score_adj = 0;
        container.healthcheck.as_mut().unwrap().start_interval = None;
        spec
    }

    fn planned(api: &str, have: crate::model::ServiceSpec) -> Result<crate::plan::Plan, PlanError> {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        observed.api_version = ApiVersion::parse(api);
        running(&mut observed, vec![have]);
        with_stack(&mut desired, "app", vec![web(200)]);
        plan(&desired, &observed, &PlanOptions::default())
    }

    #[test]
    fn fields_an_old_engine_drops_are_not_planned_and_said_once() {
        // Before: every apply sent the same update to a 20.10 engine, which dropped both.
        let plan = planned("1.41", as_stored_by_20_10(web(200))).unwrap();
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        let said: Vec<_> = plan
            .warnings
            .iter()
            .filter(|w| w.to_string().contains("is not sent"))
            .collect();
        assert_eq!(said.len(), 2, "{:?}", plan.warnings);
        assert!(said[0]
            .to_string()
            .contains("healthcheck.start_interval of service(s) app_web"));
        assert!(
            said[0].to_string().contains("API 1.41")
                && said[0].to_string().contains("needs API 1.44")
        );
        assert!(
            said[1].to_string().contains("oom_score_adj")
                && said[1].to_string().contains("needs API 1.46")
        );
    }

    #[test]
    fn an_engine_that_stores_them_gets_them() {
        let plan = planned("1.51", as_stored_by_20_10(web(0))).unwrap();
        assert_eq!(steps(&plan), ["update_service app_web"]);
        let plan = planned("1.51", web(200)).unwrap();
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(!plan
            .warnings
            .iter()
            .any(|w| w.to_string().contains("is not sent")));
    }

    #[test]
    fn a_subpath_on_an_engine_before_1_45_is_refused() {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        let mut spec = service("app", "db", "db:1", 1);
        spec.task_template.container_spec.mounts.push(Mount {
            kind: "volume".into(),
            source: "app_data".into(),
            target: "/etc/app".into(),
            volume_options: Some(VolumeOptions {
                subpath: "conf".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        with_stack(&mut desired, "app", vec![spec]);
        observed.api_version = ApiVersion::parse("1.41");
        let error = plan(&desired, &observed, &PlanOptions::default()).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, PlanError::EngineTooOld { .. }), "{text}");
        assert!(text.contains("service app_db"), "{text}");
        assert!(text.contains("volumes[].volume.subpath"), "{text}");
        assert!(
            text.contains("API 1.45") && text.contains("API 1.41"),
            "{text}"
        );
        observed.api_version = ApiVersion::parse("1.45");
        assert!(plan(&desired, &observed, &PlanOptions::default()).is_ok());
    }
}
