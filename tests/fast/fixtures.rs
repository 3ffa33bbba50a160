//! The fixture tier (DESIGN §6).
//!
//! Each folder of `fixtures/plan/` is one case: the user's files (`machines.yml`, compose files,
//! `.env`, secret and config files), `observed.json` (a serialized [`Observed`], as `observe`
//! reports it), optionally `options.json` (`{"allow_destroy_all": true}`, `{"revision": null}`),
//! and `plan.snap`, the expected plan. The test loads the desired state through the real config
//! layer, plans against the observed state, checks the invariants every plan must satisfy, and
//! compares a readable rendering with the snapshot (or, when planning must fail, the error text).
//!
//! Cases named `no_drift_*` must plan to nothing.
//!
//! Regenerate after an intended change with `INSTA_UPDATE=always cargo test --test fast fixtures::`,
//! then read every changed `plan.snap`.

use serde_json::Value;
use shoal::config::load;
use shoal::model::Observed;
use shoal::plan::{plan, Action, Plan, PlanOptions, Step, StepId, StepOp};
use shoal::render::{render_plan, Style};
use shoal::source::DirSource;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

/// The revision every case is planned at, unless its options.json says otherwise.
const REVISION: &str = "3f2c1e0d9b8a7c6e5f4a3b2c1d0e9f8a7b6c5d4e";

/// The process environment used for interpolation: fixed, so cases never depend on the host.
fn fixed_env() -> BTreeMap<String, String> {
    [
        ("DEPLOY_ENV", "production"),
        ("HOME", "/home/shoal"),
        ("USER", "shoal"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn read_options(dir: &Path) -> PlanOptions {
    let mut options = PlanOptions {
        revision: Some(REVISION.to_string()),
        // A fixed key, as if the cluster held it: the snapshots stay stable.
        content_key: Some(shoal::model::content_key::ContentKey::from_bytes(
            [0x5a; 32],
        )),
        ..PlanOptions::default()
    };
    let path = dir.join("options.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return options;
    };
    let value: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()));
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{}: expected an object", path.display()));
    for (key, value) in object {
        match key.as_str() {
            "allow_destroy_all" => {
                options.allow_destroy_all = value.as_bool().unwrap_or_else(|| {
                    panic!("{}: allow_destroy_all: expected a bool", path.display())
                })
            }
            "revision" => options.revision = value.as_str().map(str::to_string),
            "routing_mesh" => options.routing_mesh = value.as_bool(),
            other => panic!("{}: unknown option `{other}`", path.display()),
        }
    }
    options
}

/// One line per step: id, action, target, dependencies, then the detail apply needs, with the
/// bulky parts (service specs, field changes, object specs) cut down to what identifies them.
fn step_table(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.steps.is_empty() {
        out.push_str("(no steps)\n");
    }
    for step in &plan.steps {
        let deps: Vec<String> = step.depends_on.iter().map(StepId::to_string).collect();
        let _ = writeln!(
            out,
            "{:>3}  {:<17}  {:<32}  after [{}]  {}",
            step.id,
            step.action().as_str(),
            step.target,
            deps.join(","),
            compact_detail(step)
        );
    }
    out
}

fn compact_detail(step: &Step) -> String {
    let mut value = serde_json::to_value(step).expect("step serializes")["detail"].take();
    let object = value.as_object_mut().expect("detail is an object");
    if let Some(service) = step.op.service() {
        let mut summary = serde_json::Map::new();
        summary.insert(
            "image".into(),
            service.task_template.container_spec.image.clone().into(),
        );
        summary.insert("mode".into(), service.mode_name().into());
        if let Some(replicas) = service.replicas() {
            summary.insert("replicas".into(), replicas.into());
        }
        object.insert("service".into(), Value::Object(summary));
    }
    if !step.op.changes().is_empty() {
        let paths: Vec<Value> = step
            .op
            .changes()
            .iter()
            .map(|c| Value::String(c.path.clone()))
            .collect();
        object.insert("changes".into(), Value::Array(paths));
    }
    match &step.op {
        StepOp::CreateNetwork { network } => {
            object.insert(
                "network".into(),
                format!("{} ({})", network.name, network.driver).into(),
            );
        }
        StepOp::CreateSecret { object: spec } | StepOp::CreateConfig { object: spec } => {
            object.insert(
                "object".into(),
                format!("{} from {}", spec.name, spec.source).into(),
            );
        }
        _ => {}
    }
    serde_json::to_string(&value).expect("detail serializes")
}

fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "summary: {} to add, {} to change, {} to destroy",
        s.add, s.change, s.destroy
    );
    out.push_str("steps:\n");
    out.push_str(&step_table(plan));
    out.push_str("\n---- shoal plan ----\n");
    out.push_str(&render_plan(plan, Style::PLAIN));
    out
}

/// All steps `id` depends on, directly or through other steps.
fn ancestors(plan: &Plan, id: StepId) -> BTreeSet<StepId> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![id];
    while let Some(current) = stack.pop() {
        let Some(step) = plan.steps.get(current.0 as usize - 1) else {
            continue;
        };
        for dep in &step.depends_on {
            if seen.insert(*dep) {
                stack.push(*dep);
            }
        }
    }
    seen
}

/// Invariants every plan must satisfy, whatever the case.
fn check_invariants(
    case: &str,
    plan: &Plan,
    observed: &Observed,
    secrets: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |text: String| problems.push(format!("{case}: {text}"));

    // Ids are 1..N in order; dependencies point to earlier steps, sorted and without repeats.
    for (index, step) in plan.steps.iter().enumerate() {
        let expected = StepId(index as u32 + 1);
        if step.id != expected {
            problem(format!("step #{} is at position {expected}", step.id));
        }
        for dep in &step.depends_on {
            if dep.0 == 0 || *dep >= step.id {
                problem(format!(
                    "step #{} ({} {}) depends on #{dep}, which is not an earlier step",
                    step.id,
                    step.action(),
                    step.target
                ));
            }
        }
        if step.depends_on.windows(2).any(|w| w[0] >= w[1]) {
            problem(format!(
                "step #{} has unsorted or repeated dependencies {:?}",
                step.id, step.depends_on
            ));
        }
        if step.reason.to_string().trim().is_empty() {
            problem(format!("step #{} has no reason", step.id));
        }
    }

    // The summary counts the steps.
    let count = |effect: shoal::plan::Effect| {
        plan.steps
            .iter()
            .filter(|s| s.action().effect() == effect)
            .count()
    };
    let s = plan.summary;
    if (s.add, s.change, s.destroy)
        != (
            count(shoal::plan::Effect::Add),
            count(shoal::plan::Effect::Change),
            count(shoal::plan::Effect::Destroy),
        )
    {
        problem(format!("summary {s:?} does not count the steps"));
    }
    if !plan.fingerprint.starts_with("sha256:") {
        problem(format!(
            "fingerprint {:?} is not sha256:<hex>",
            plan.fingerprint
        ));
    }

    if case.starts_with("no_drift_") && !plan.steps.is_empty() {
        let steps: Vec<String> = plan
            .steps
            .iter()
            .map(|s| format!("{} {}: {}", s.action(), s.target, s.reason))
            .collect();
        problem(format!(
            "a no_drift case must plan to nothing, got:\n    {}",
            steps.join("\n    ")
        ));
    }

    // Node removal: a manager is demoted first, an up node is drained (or demoted) first, and
    // its machine is destroyed only after the node is gone.
    let find = |action: Action, target: &str| {
        plan.steps
            .iter()
            .find(|s| s.action() == action && s.target == target)
            .map(|s| s.id)
    };
    for step in &plan.steps {
        let before = ancestors(plan, step.id);
        match step.action() {
            Action::RemoveNode => {
                let node = step.op.node_id().and_then(|id| observed.nodes.get(id));
                if let Some(node) = node {
                    if node.role == shoal::model::Role::Manager {
                        match find(Action::DemoteNode, &step.target) {
                            Some(demote) if before.contains(&demote) => {}
                            _ => problem(format!(
                                "remove_node {} removes a manager that is not demoted before",
                                step.target
                            )),
                        }
                    }
                    let up = node.state == shoal::model::NodeState::Ready;
                    if up
                        && node.availability != shoal::model::Availability::Drain
                        && !find(Action::DrainNode, &step.target)
                            .is_some_and(|d| before.contains(&d))
                    {
                        problem(format!(
                            "remove_node {} removes a live node that is not drained before",
                            step.target
                        ));
                    }
                }
            }
            Action::DestroyMachine => {
                if let Some(remove) = find(Action::RemoveNode, &step.target) {
                    if remove < step.id && !before.contains(&remove) {
                        problem(format!(
                            "destroy_machine {} does not wait for remove_node #{remove}",
                            step.target
                        ));
                    }
                }
            }
            Action::CreateService | Action::UpdateService => {
                let Some(service) = step.op.service() else {
                    problem(format!(
                        "{} {} carries no service spec",
                        step.action(),
                        step.target
                    ));
                    continue;
                };
                let container = &service.task_template.container_spec;
                let used = service
                    .task_template
                    .networks
                    .iter()
                    .map(|n| (Action::CreateNetwork, n.target.clone()))
                    .chain(
                        container
                            .secrets
                            .iter()
                            .map(|r| (Action::CreateSecret, r.secret_name.clone())),
                    )
                    .chain(
                        container
                            .configs
                            .iter()
                            .map(|r| (Action::CreateConfig, r.config_name.clone())),
                    );
                for (action, name) in used {
                    if let Some(created) = find(action, &name) {
                        if !before.contains(&created) {
                            problem(format!(
                                "{} {} does not wait for {action} {name} (#{created})",
                                step.action(),
                                step.target
                            ));
                        }
                    }
                }
            }
            Action::RemoveNetwork | Action::RemoveSecret | Action::RemoveConfig => {
                for service_step in plan
                    .steps
                    .iter()
                    .filter(|s| matches!(s.action(), Action::UpdateService | Action::RemoveService))
                {
                    if !before.contains(&service_step.id) {
                        problem(format!(
                            "{} {} does not wait for {} {} (#{})",
                            step.action(),
                            step.target,
                            service_step.action(),
                            service_step.target,
                            service_step.id
                        ));
                    }
                }
            }
            _ => {}
        }
    }

    // Manager membership changes run one at a time: each depends on the one before.
    let manager_changes: Vec<StepId> = plan
        .steps
        .iter()
        .filter(|s| match s.action() {
            Action::PromoteNode | Action::DemoteNode | Action::InitSwarm => true,
            Action::JoinSwarm => s.op.role() == Some(shoal::model::Role::Manager),
            _ => false,
        })
        .map(|s| s.id)
        .collect();
    for pair in manager_changes.windows(2) {
        if !ancestors(plan, pair[1]).contains(&pair[0]) {
            problem(format!(
                "manager change #{} does not wait for manager change #{}",
                pair[1], pair[0]
            ));
        }
    }

    // Swarm's routing mesh gives a published port to one service only: a service that takes a
    // port another one frees waits for that one's removal.
    for step in &plan.steps {
        let Some(service) = step.op.service() else {
            continue;
        };
        let wanted = ingress_ports(service);
        for removal in plan
            .steps
            .iter()
            .filter(|s| s.action() == Action::RemoveService && s.target != step.target)
        {
            let Some(gone) = observed.services.get(&removal.target) else {
                continue;
            };
            let shared: Vec<u32> = ingress_ports(&gone.spec)
                .intersection(&wanted)
                .copied()
                .collect();
            if !shared.is_empty() && !ancestors(plan, step.id).contains(&removal.id) {
                problem(format!(
                    "{} {} publishes port(s) {shared:?}, which remove_service {} (#{}) frees, but does not wait for it",
                    step.action(), step.target, removal.target, removal.id
                ));
            }
        }
    }

    // Quorum holds at every step, taken in id order (a valid order of execution).
    let managers_before: Vec<&shoal::model::ObservedNode> = observed
        .nodes
        .values()
        .filter(|n| n.role == shoal::model::Role::Manager)
        .collect();
    let mut managers = managers_before.len();
    let mut reachable = managers_before
        .iter()
        .filter(|n| n.is_reachable_manager())
        .count();
    let mut demoted: BTreeSet<&str> = BTreeSet::new();
    let node_of = |step: &shoal::plan::Step| {
        step.op
            .node_id()
            .and_then(|id| observed.nodes.get(id))
            .or_else(|| observed.node_of(&step.target))
    };
    for step in &plan.steps {
        match step.action() {
            Action::InitSwarm => (managers, reachable) = (1, 1),
            Action::JoinSwarm if step.op.role() == Some(shoal::model::Role::Manager) => {
                managers += 1;
                reachable += 1;
            }
            Action::PromoteNode => {
                managers += 1;
                if node_of(step).is_some_and(|n| n.state == shoal::model::NodeState::Ready) {
                    reachable += 1;
                }
            }
            Action::DemoteNode | Action::RemoveNode => {
                let Some(node) = node_of(step) else { continue };
                if node.role != shoal::model::Role::Manager || !demoted.insert(step.target.as_str())
                {
                    continue;
                }
                managers = managers.saturating_sub(1);
                if node.is_reachable_manager() {
                    reachable = reachable.saturating_sub(1);
                }
            }
            _ => continue,
        }
        if managers > 0 && reachable < managers / 2 + 1 {
            problem(format!(
                "after step #{} ({} {}), {reachable} of {managers} managers are reachable: quorum is lost",
                step.id, step.action(), step.target
            ));
        }
    }

    // A saved plan reads back as the same JSON, and secret data appears nowhere.
    let json = serde_json::to_string(plan).expect("plan serializes");
    match serde_json::from_str::<Plan>(&json) {
        Ok(back) => {
            if serde_json::to_string(&back).expect("plan serializes") != json {
                problem("the plan's JSON does not read back to the same plan".into());
            }
        }
        Err(e) => problem(format!("the plan's JSON does not read back: {e}")),
    }
    let text = render_plan(plan, Style::PLAIN);
    for secret in secrets {
        if json.contains(secret.as_str()) || text.contains(secret.as_str()) {
            problem("secret data appears in the plan".into());
        }
    }
    problems
}

/// Ports a service publishes through the routing mesh.
fn ingress_ports(spec: &shoal::model::ServiceSpec) -> BTreeSet<u32> {
    spec.endpoint_spec
        .iter()
        .flat_map(|e| &e.ports)
        .filter(|p| p.publish_mode.is_empty() || p.publish_mode == "ingress")
        .filter_map(|p| p.published_port)
        .filter(|p| *p != 0)
        .collect()
}

/// The contents of the case's secret files, which must never appear in a plan.
fn secret_contents(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.join("secrets")) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
        .collect()
}

#[test]
fn fixtures() {
    let mut problems: Vec<String> = Vec::new();
    let mut cases = 0;
    insta::glob!("../../fixtures/plan", "*/machines.yml", |path| {
        let dir = path.parent().expect("case folder");
        let case = dir
            .file_name()
            .expect("case name")
            .to_string_lossy()
            .into_owned();
        cases += 1;

        let desired = match load(&DirSource(dir.to_path_buf()), &fixed_env()) {
            Ok(desired) => desired,
            Err(invalid) => {
                let message = format!("{case}: the files do not load:\n{invalid}");
                eprintln!("{message}");
                problems.push(message);
                return;
            }
        };
        let observed_path = dir.join("observed.json");
        let observed: Observed = serde_json::from_str(
            &std::fs::read_to_string(&observed_path)
                .unwrap_or_else(|e| panic!("{}: {e}", observed_path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: not an Observed: {e}", observed_path.display()));
        let options = read_options(dir);

        let snapshot = match plan(&desired, &observed, &options) {
            Ok(plan) => {
                let found = check_invariants(&case, &plan, &observed, &secret_contents(dir));
                for message in &found {
                    eprintln!("{message}");
                }
                problems.extend(found);
                render(&plan)
            }
            Err(error) => {
                if case.starts_with("no_drift_") {
                    problems.push(format!("{case}: a no_drift case must plan, got: {error}"));
                }
                format!("error: {error}\n")
            }
        };

        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(dir);
        settings.set_prepend_module_to_snapshot(false);
        settings.remove_snapshot_suffix();
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!("plan", snapshot));
    });
    if std::env::var_os("INSTA_GLOB_FILTER").is_none() {
        assert!(cases >= 30, "only {cases} fixture cases found");
    }
    assert!(
        problems.is_empty(),
        "{} invariant violation(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
