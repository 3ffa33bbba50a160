//! Fields `docker stack deploy` drops: a service that lacks one only because the CLI deployed
//! it is not restarted for that alone (pure).
//!
//! The docker CLI reads `oom_score_adj` into a field its loader never fills (docker/cli
//! `cli/compose/types/types.go`: no `mapstructure` name, so the key `oom_score_adj` matches
//! nothing; 28.0 through today), and CLIs before 28 refuse the key. So a stack deployed by the
//! CLI runs without it whatever the file says. shoal sends it (on engines that store it), but
//! when the running service lacks it and that is the only difference, adopting the service
//! must not restart it: the field waits for the service's next update, and the plan says so.
//! A value the service does have (set by shoal or by hand) that differs from the file's is an
//! ordinary difference. The same holds for a tmpfs mount's `tmpfs.mode`: the CLI's tmpfs
//! options hold only `size`, so it never sends a `Mode`.

use crate::model::ServiceSpec;

/// A field the CLI drops that the running service lacks: its compose key and the file's value.
pub type Missing = (String, String);

/// `want` (normalized) without the CLI-dropped fields it sets and `have` (normalized) lacks,
/// and those fields with the values the file gives them. The services rule plans against the
/// first when nothing else but replicas differs, so such a field alone never restarts a
/// service; any other change sends the whole of `want`.
pub fn without_missing(want: &ServiceSpec, have: &ServiceSpec) -> (ServiceSpec, Vec<Missing>) {
    let mut relaxed = want.clone();
    let mut missing = Vec::new();
    oom_score_adj(&mut relaxed, have, &mut missing);
    tmpfs_mode(&mut relaxed, have, &mut missing);
    (relaxed, missing)
}

/// `oom_score_adj`: the CLI's loader never fills it (see the module's text).
fn oom_score_adj(want: &mut ServiceSpec, have: &ServiceSpec, missing: &mut Vec<Missing>) {
    let wanted = &mut want.task_template.container_spec.oom_score_adj;
    if *wanted != 0 && have.task_template.container_spec.oom_score_adj == 0 {
        missing.push(("oom_score_adj".to_string(), wanted.to_string()));
        *wanted = 0;
    }
}

/// A tmpfs mount's `tmpfs.mode`: the CLI's tmpfs options hold only `size` (20.10 through
/// today), so it sends no `Mode`.
fn tmpfs_mode(want: &mut ServiceSpec, have: &ServiceSpec, missing: &mut Vec<Missing>) {
    let had = &have.task_template.container_spec.mounts;
    for mount in &mut want.task_template.container_spec.mounts {
        let Some(options) = mount.tmpfs_options.as_mut() else {
            continue;
        };
        let Some(mode) = options.mode else {
            continue;
        };
        let lacks = had.iter().any(|m| {
            m.target == mount.target && m.tmpfs_options.as_ref().is_none_or(|o| o.mode.is_none())
        });
        if lacks {
            missing.push((
                format!("tmpfs.mode of {}", mount.target),
                format!("{mode:o}"),
            ));
            options.mode = None;
            if *options == Default::default() {
                mount.tmpfs_options = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Observed, Role};
    use crate::plan::testing::{desired_with, running, service, steps, with_stack};
    use crate::plan::{plan, PlanOptions};

    fn with_oom(oom: i64, image: &str) -> ServiceSpec {
        let mut spec = service("app", "web", image, 2);
        spec.task_template.container_spec.oom_score_adj = oom;
        spec
    }

    fn planned(have: ServiceSpec, want: ServiceSpec) -> crate::plan::Plan {
        let mut desired = desired_with(&[("m1", Role::Manager)]);
        let mut observed = Observed::with_members_of(&desired);
        running(&mut observed, vec![have]);
        with_stack(&mut desired, "app", vec![want]);
        plan(&desired, &observed, &PlanOptions::default()).unwrap()
    }

    #[test]
    fn adopting_a_cli_deployed_service_does_not_restart_it_for_oom_score_adj() {
        // Before: `update_service app_web` (OomScoreAdj + 200), a restart at adoption.
        let plan = planned(with_oom(0, "web:1"), with_oom(200, "web:1"));
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(
            plan.warnings.iter().any(|w| w.to_string().contains(
                "service app_web runs without oom_score_adj: 200 (docker stack deploy drops these keys)"
            )),
            "{:?}",
            plan.warnings
        );
    }

    #[test]
    fn the_next_update_sends_it_and_a_different_value_is_a_difference() {
        let plan = planned(with_oom(0, "web:1"), with_oom(200, "web:2"));
        assert_eq!(steps(&plan), ["update_service app_web"]);
        let changes: Vec<_> = plan.steps[0]
            .op
            .changes()
            .iter()
            .map(|c| c.path.clone())
            .collect();
        assert!(
            changes.iter().any(|p| p.contains("OomScoreAdj")),
            "{changes:?}"
        );
        let plan = planned(with_oom(100, "web:1"), with_oom(200, "web:1"));
        assert_eq!(steps(&plan), ["update_service app_web"]);
        let plan = planned(with_oom(100, "web:1"), with_oom(0, "web:1"));
        assert_eq!(steps(&plan), ["update_service app_web"]);
    }

    #[test]
    fn a_tmpfs_mode_the_cli_did_not_send_does_not_restart() {
        use crate::model::spec::{Mount, TmpfsOptions};
        let tmpfs = |mode: Option<u32>| {
            let mut spec = with_oom(0, "web:1");
            spec.task_template.container_spec.mounts.push(Mount {
                kind: "tmpfs".into(),
                target: "/cache".into(),
                tmpfs_options: Some(TmpfsOptions {
                    size_bytes: Some(1 << 20),
                    mode,
                    ..Default::default()
                }),
                ..Default::default()
            });
            spec
        };
        let plan = planned(tmpfs(None), tmpfs(Some(0o1777)));
        assert!(plan.steps.is_empty(), "{:?}", steps(&plan));
        assert!(
            plan.warnings.iter().any(|w| w
                .to_string()
                .contains("runs without tmpfs.mode of /cache: 1777")),
            "{:?}",
            plan.warnings
        );
        let plan = planned(tmpfs(Some(0o700)), tmpfs(Some(0o1777)));
        assert_eq!(steps(&plan), ["update_service app_web"]);
    }

    #[test]
    fn replicas_alone_still_scale_without_a_restart() {
        let mut want = with_oom(200, "web:1");
        want.set_replicas(5);
        let plan = planned(with_oom(0, "web:1"), want);
        assert_eq!(steps(&plan), ["scale_service app_web"]);
        assert!(plan
            .warnings
            .iter()
            .any(|w| w.to_string().contains("runs without oom_score_adj")));
    }
}
