//! The plan file (DESIGN §3, format 2): a plan written to JSON reads back as the same plan, for
//! every action, every reason and every warning (a property test); and saved plans of format 1, as shoal wrote
//! them before, still read and still apply on the sim (`fixtures/plans/v1/`).

use crate::common::{crate_path, Repo};
use proptest::prelude::*;
use shoal::model::content_key::ContentKey;
use shoal::model::spec::{NetworkSpec, ObjectSpec, ServiceSpec};
use shoal::model::{Availability, Condition, DriverKind, NodeState, Role};
use shoal::plan::model::Wait;
use shoal::plan::reason::{DownNode, HealStage, LeaveStage, Loss};
use shoal::plan::saved::{parse_saved, saved_text};
use shoal::plan::{FieldChange, Plan, Reason, Step, StepId, StepOp, Summary, Unseen, Warning};
use std::collections::BTreeMap;

/// A name: nothing a mask would hide.
fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Manager), Just(Role::Worker)]
}

fn availability() -> impl Strategy<Value = Availability> {
    prop_oneof![
        Just(Availability::Active),
        Just(Availability::Pause),
        Just(Availability::Drain)
    ]
}

fn labels() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(
        prop::sample::select(vec!["zone", "tier", "rack"]),
        word(),
        0..3,
    )
    .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn service() -> impl Strategy<Value = Box<ServiceSpec>> {
    (word(), word(), labels()).prop_map(|(name, image, labels)| {
        let mut spec = ServiceSpec {
            name,
            labels,
            ..ServiceSpec::default()
        };
        spec.task_template.container_spec.image = image;
        Box::new(spec)
    })
}

/// A secret or config as a plan carries it: its content, digest and version are never written.
fn object() -> impl Strategy<Value = ObjectSpec> {
    (
        word(),
        labels(),
        word(),
        prop::option::of(Just("golang".to_string())),
    )
        .prop_map(|(name, labels, source, template_driver)| ObjectSpec {
            name,
            labels,
            source,
            template_driver,
            ..ObjectSpec::default()
        })
}

fn network() -> impl Strategy<Value = NetworkSpec> {
    (word(), labels(), any::<bool>(), any::<bool>()).prop_map(
        |(name, labels, attachable, internal)| NetworkSpec {
            name,
            driver: "overlay".into(),
            labels,
            attachable,
            internal,
            ..NetworkSpec::default()
        },
    )
}

fn change() -> impl Strategy<Value = FieldChange> {
    let value = prop_oneof![
        Just(serde_json::Value::Null),
        word().prop_map(serde_json::Value::from),
        any::<u32>().prop_map(serde_json::Value::from),
    ];
    (word(), value.clone(), value).prop_map(|(path, before, after)| FieldChange {
        path,
        before,
        after,
    })
}

/// Every operation.
fn op() -> impl Strategy<Value = StepOp> {
    let id = word;
    let digest = || prop::option::of(word());
    prop_oneof![
        (role(), labels()).prop_map(|(role, labels)| StepOp::CreateMachine { role, labels }),
        Just(StepOp::StartMachine {}),
        Just(StepOp::DestroyMachine {}),
        word().prop_map(|via| StepOp::InitSwarm { via }),
        (role(), labels(), word()).prop_map(|(role, labels, via)| StepOp::JoinSwarm {
            role,
            labels,
            via
        }),
        id().prop_map(|node_id| StepOp::PromoteNode { node_id }),
        id().prop_map(|node_id| StepOp::DemoteNode { node_id }),
        id().prop_map(|node_id| StepOp::DrainNode { node_id }),
        (labels(), availability(), prop::option::of(id())).prop_map(
            |(labels, availability, node_id)| StepOp::UpdateNode {
                labels,
                availability,
                node_id
            }
        ),
        (id(), any::<bool>()).prop_map(|(node_id, force)| StepOp::RemoveNode { node_id, force }),
        network().prop_map(|network| StepOp::CreateNetwork { network }),
        id().prop_map(|id| StepOp::RemoveNetwork { id }),
        object().prop_map(|object| StepOp::CreateSecret { object }),
        id().prop_map(|id| StepOp::RemoveSecret { id }),
        object().prop_map(|object| StepOp::CreateConfig { object }),
        id().prop_map(|id| StepOp::RemoveConfig { id }),
        service().prop_map(|spec| StepOp::CreateService { spec }),
        (
            id(),
            service(),
            prop::collection::vec(change(), 0..3),
            digest()
        )
            .prop_map(|(id, spec, changes, observed_spec)| StepOp::UpdateService {
                id,
                spec,
                changes,
                observed_spec
            }),
        (id(), any::<u64>(), digest()).prop_map(|(id, replicas, observed_spec)| {
            StepOp::ScaleService {
                id,
                replicas,
                observed_spec,
            }
        }),
        id().prop_map(|id| StepOp::RemoveService { id }),
        (any::<u64>(), id(), digest()).prop_map(|(force_update, id, observed_spec)| {
            StepOp::RebalanceService {
                force_update,
                id,
                observed_spec,
            }
        }),
        (
            prop::option::of(id()),
            service(),
            prop::collection::vec(change(), 0..3),
            digest()
        )
            .prop_map(|(id, spec, changes, observed_spec)| StepOp::RunJob {
                id,
                spec,
                changes,
                observed_spec
            }),
    ]
}

/// What a step waits for (compose `depends_on`).
fn waits() -> impl Strategy<Value = Vec<Wait>> {
    let condition = prop::sample::select(vec![
        Condition::ServiceStarted,
        Condition::ServiceHealthy,
        Condition::ServiceCompletedSuccessfully,
    ]);
    prop::collection::vec(
        (word(), condition, prop::option::of(1u32..20)).prop_map(|(service, condition, step)| {
            Wait {
                service,
                condition,
                step: step.map(StepId),
            }
        }),
        0..3,
    )
}

fn node_state() -> impl Strategy<Value = NodeState> {
    prop_oneof![
        Just(NodeState::Unknown),
        Just(NodeState::Down),
        Just(NodeState::Ready),
        Just(NodeState::Disconnected)
    ]
}

fn loss() -> impl Strategy<Value = Loss> {
    let state = node_state();
    prop_oneof![
        Just(Loss::Gone),
        Just(Loss::Incomplete),
        prop::option::of((state, any::<u64>())).prop_map(|node| Loss::Down {
            node: node.map(|(state, seconds)| DownNode { state, seconds })
        }),
    ]
}

fn kind() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["network", "secret", "config"])
}

fn mode() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["replicated", "global", "replicated-job", "global-job"])
}

/// Every reason, the text of a version-1 file included.
fn reason() -> impl Strategy<Value = Reason> {
    let heal_stage = prop::sample::select(vec![
        HealStage::FreeManagerSeat,
        HealStage::RemoveNode,
        HealStage::DestroyMachine,
        HealStage::CreateMachine,
    ]);
    let leave_stage = prop::sample::select(vec![
        LeaveStage::Drain,
        LeaveStage::Demote,
        LeaveStage::Remove,
    ]);
    let fields = || prop::collection::vec(word(), 1..3);
    prop_oneof![
        (word(), loss(), heal_stage).prop_map(|(machine, loss, stage)| Reason::SelfHeal {
            machine,
            loss,
            stage
        }),
        word().prop_map(|machine| Reason::Stopped { machine }),
        (role(), any::<usize>(), any::<usize>()).prop_map(|(role, wanted, existing)| {
            Reason::MissingMachines {
                role,
                wanted,
                existing,
            }
        }),
        word().prop_map(|machine| Reason::NoSwarm { machine }),
        (word(), role()).prop_map(|(machine, role)| Reason::NotInSwarm { machine, role }),
        word().prop_map(|machine| Reason::InitLabels { machine }),
        (word(), role()).prop_map(|(machine, role)| Reason::RoleChange { machine, role }),
        (any::<bool>(), prop::option::of(availability()))
            .prop_map(|(labels, inactive)| Reason::NodeSpecDrift { labels, inactive }),
        (word(), word()).prop_map(|(stack, network)| Reason::NetworkMissing { stack, network }),
        (kind(), word()).prop_map(|(kind, source)| Reason::ObjectMissing { kind, source }),
        (word(), word()).prop_map(|(stack, service)| Reason::ServiceMissing { stack, service }),
        Just(Reason::Rebalance),
        ".{0,20}".prop_map(|message| Reason::RolledBack { message }),
        (prop::option::of(any::<u64>()), any::<u64>())
            .prop_map(|(from, to)| Reason::Scale { from, to }),
        (mode(), mode()).prop_map(|(from, to)| Reason::ModeChange { from, to }),
        mode().prop_map(|mode| Reason::Recreated { mode }),
        fields().prop_map(|fields| Reason::SpecDrift { fields }),
        (word(), word()).prop_map(|(stack, service)| Reason::JobMissing { stack, service }),
        fields().prop_map(|fields| Reason::JobChanged { fields }),
        (word(), word()).prop_map(|(stack, service)| Reason::ServiceDropped { stack, service }),
        (word(), kind(), word()).prop_map(|(stack, kind, name)| Reason::ObjectDropped {
            stack,
            kind,
            name
        }),
        (kind(), word(), fields(), any::<bool>()).prop_map(|(kind, name, changes, removed)| {
            Reason::ObjectChanged {
                kind,
                name,
                changes,
                removed,
            }
        }),
        Just(Reason::TearDown),
        (word(), any::<bool>(), leave_stage).prop_map(|(target, orphan, stage)| {
            Reason::Leaving {
                target,
                orphan,
                stage,
            }
        }),
        (".{0,20}", any::<bool>()).prop_map(|(text, replaces)| Reason::Saved { text, replaces }),
    ]
}

/// The code of each reason: a reason added without a generator above fails to compile here.
fn generated(reason: &Reason) -> bool {
    match reason {
        Reason::SelfHeal { .. }
        | Reason::Stopped { .. }
        | Reason::MissingMachines { .. }
        | Reason::NoSwarm { .. }
        | Reason::NotInSwarm { .. }
        | Reason::InitLabels { .. }
        | Reason::RoleChange { .. }
        | Reason::NodeSpecDrift { .. }
        | Reason::NetworkMissing { .. }
        | Reason::ObjectMissing { .. }
        | Reason::ServiceMissing { .. }
        | Reason::Rebalance
        | Reason::RolledBack { .. }
        | Reason::Scale { .. }
        | Reason::ModeChange { .. }
        | Reason::Recreated { .. }
        | Reason::SpecDrift { .. }
        | Reason::JobMissing { .. }
        | Reason::JobChanged { .. }
        | Reason::ServiceDropped { .. }
        | Reason::ObjectDropped { .. }
        | Reason::ObjectChanged { .. }
        | Reason::TearDown
        | Reason::Leaving { .. }
        | Reason::Saved { .. } => true,
    }
}

fn driver() -> impl Strategy<Value = DriverKind> {
    prop::sample::select(DriverKind::ALL.to_vec())
}

/// Every warning, the text of a file written before warnings were typed included.
fn warning() -> impl Strategy<Value = Warning> {
    let words = || prop::collection::vec(word(), 1..3);
    let text = || ".{0,30}";
    prop_oneof![
        text().prop_map(Warning::files),
        text().prop_map(Warning::external),
        (word(), words(), word(), word(), word()).prop_map(
            |(field, services, api, needs_api, docker)| Warning::FieldNotSent {
                field,
                services,
                api,
                needs_api,
                docker,
            }
        ),
        (kind(), word(), word(), word(), word()).prop_map(|(kind, name, stack, source, file)| {
            Warning::ObjectUnverified {
                kind: kind.to_string(),
                name,
                stack,
                source,
                file,
            }
        }),
        (word(), word(), word(), word()).prop_map(|(name, stack, source, file)| {
            Warning::SecretUnkeyed {
                name,
                stack,
                source,
                file,
            }
        }),
        (word(), text()).prop_map(|(by, reason)| Warning::Paused { by, reason }),
        words().prop_map(|machines| Warning::NoQuorumWhileStopped { machines }),
        words().prop_map(|machines| Warning::NoManagerAnswers { machines }),
        (word(), driver()).prop_map(|(machine, driver)| Warning::HostWaited { machine, driver }),
        word().prop_map(|machine| Warning::GoneWithoutSelfHeal { machine }),
        (word(), any::<u64>())
            .prop_map(|(machine, seconds)| Warning::NodeDownEngineAnswers { machine, seconds }),
        word().prop_map(|machine| Warning::StoppedWithoutSelfHeal { machine }),
        word().prop_map(|machine| Warning::Unreachable { machine }),
        word().prop_map(|machine| Warning::IncompleteWithoutSelfHeal { machine }),
        word().prop_map(|machine| Warning::IncompleteNodeReady { machine }),
        (word(), any::<u64>(), any::<u64>()).prop_map(|(machine, seconds, grace)| {
            Warning::IncompleteWithinGrace {
                machine,
                seconds,
                grace,
            }
        }),
        (word(), driver()).prop_map(|(machine, driver)| Warning::HostNotFound { machine, driver }),
        (word(), word())
            .prop_map(|(stack, network)| Warning::ExternalNetworkMissing { stack, network }),
        (word(), kind(), word()).prop_map(|(stack, kind, name)| Warning::ExternalObjectMissing {
            stack,
            kind: kind.to_string(),
            name,
        }),
        (word(), words())
            .prop_map(|(service, ports)| Warning::IngressWithoutMesh { service, ports }),
        (word(), text(), any::<bool>()).prop_map(|(service, why, replaced)| {
            Warning::UnreadableService {
                service,
                why,
                replaced,
            }
        }),
        (word(), prop::collection::vec((word(), word()), 1..3))
            .prop_map(|(service, fields)| Warning::CliDroppedFields { service, fields }),
        word().prop_map(|stack| Warning::StackKept { stack }),
        (word(), word()).prop_map(|(hostname, id)| Warning::NodeOfNoMachine { hostname, id }),
        (word(), word(), node_state(), word()).prop_map(|(hostname, id, state, machines)| {
            Warning::NodeMayBeUnseen {
                hostname,
                id,
                state,
                machines,
            }
        }),
        driver().prop_map(|driver| Warning::HostsNotDestroyed { driver }),
        text().prop_map(|text| Warning::Saved { text }),
    ]
}

/// The code of each warning: a warning added without a generator above fails to compile here.
fn generated_warning(warning: &Warning) -> bool {
    match warning {
        Warning::Files { .. }
        | Warning::External { .. }
        | Warning::FieldNotSent { .. }
        | Warning::ObjectUnverified { .. }
        | Warning::SecretUnkeyed { .. }
        | Warning::Paused { .. }
        | Warning::NoQuorumWhileStopped { .. }
        | Warning::NoManagerAnswers { .. }
        | Warning::HostWaited { .. }
        | Warning::GoneWithoutSelfHeal { .. }
        | Warning::NodeDownEngineAnswers { .. }
        | Warning::StoppedWithoutSelfHeal { .. }
        | Warning::Unreachable { .. }
        | Warning::IncompleteWithoutSelfHeal { .. }
        | Warning::IncompleteNodeReady { .. }
        | Warning::IncompleteWithinGrace { .. }
        | Warning::HostNotFound { .. }
        | Warning::ExternalNetworkMissing { .. }
        | Warning::ExternalObjectMissing { .. }
        | Warning::IngressWithoutMesh { .. }
        | Warning::UnreadableService { .. }
        | Warning::CliDroppedFields { .. }
        | Warning::StackKept { .. }
        | Warning::NodeOfNoMachine { .. }
        | Warning::NodeMayBeUnseen { .. }
        | Warning::HostsNotDestroyed { .. }
        | Warning::Saved { .. } => true,
    }
}

fn plan() -> impl Strategy<Value = Plan> {
    let step = (
        word(),
        prop::collection::vec(1u32..20, 0..3),
        reason(),
        op(),
        waits(),
    );
    (
        prop::option::of("[0-9a-f]{40}"),
        "sha256:[0-9a-f]{64}",
        prop::collection::vec(warning(), 0..3),
        prop::collection::vec((word(), ".{0,20}"), 0..2),
        prop::collection::vec(step, 0..6),
        prop::option::of(any::<[u8; 32]>()),
    )
        .prop_map(
            |(revision, fingerprint, warnings, unseen, steps, key)| Plan {
                format_version: shoal::plan::FORMAT_VERSION,
                revision,
                fingerprint,
                summary: Summary {
                    add: steps.len(),
                    change: 0,
                    destroy: 0,
                },
                warnings,
                unseen: unseen
                    .into_iter()
                    .map(|(what, why)| Unseen { what, why })
                    .collect(),
                steps: steps
                    .into_iter()
                    .enumerate()
                    .map(|(i, (target, deps, reason, op, waits))| Step {
                        id: StepId(i as u32 + 1),
                        target,
                        depends_on: deps.into_iter().map(StepId).collect(),
                        waits,
                        reason,
                        op,
                    })
                    .collect(),
                show_values: Vec::new(),
                new_content_key: key.map(ContentKey::from_bytes),
            },
        )
}

/// docs/cli.md, which lists every reason code.
fn cli_docs() -> &'static str {
    static DOCS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOCS.get_or_init(|| std::fs::read_to_string(crate_path("docs/cli.md")).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// plan → saved file → plan is the identity, and so is plan → `plan --json` → plan for
    /// all but the content key (which only the saved file carries).
    #[test]
    fn a_plan_reads_back_from_its_file_as_it_was(plan in plan()) {
        prop_assert!(plan.steps.iter().all(|s| generated(&s.reason)));
        prop_assert!(plan.warnings.iter().all(generated_warning));
        let saved = saved_text(&plan);
        let written: serde_json::Value = serde_json::from_str(&saved).unwrap();
        for step in written["steps"].as_array().unwrap() {
            if let Some(code) = step["reason"]["code"].as_str() {
                prop_assert!(cli_docs().contains(&format!("`{code}`")), "docs/cli.md lists no reason code `{}`", code);
            }
        }
        for (warning, written) in plan.warnings.iter().zip(written["warnings"].as_array().unwrap()) {
            let text = written.as_str().or_else(|| written["text"].as_str());
            let said = warning.to_string();
            prop_assert_eq!(text, Some(said.as_str()));
            if let Some(code) = written["code"].as_str() {
                prop_assert!(cli_docs().contains(&format!("`{code}`")), "docs/cli.md lists no warning code `{}`", code);
            }
        }
        let back = parse_saved("plan.json", &saved).map_err(|e| TestCaseError::fail(format!("{e}\n{saved}")))?;
        prop_assert_eq!(&back, &plan);
        let shown = serde_json::to_string(&plan).unwrap();
        let back: Plan = serde_json::from_str(&shown).unwrap();
        prop_assert_eq!(back, Plan { new_content_key: None, ..plan });
    }
}

/// A copy of examples/dataapp (sim driver) with the sim's state `state` of fixtures/plans/v1.
fn dataapp_with(state: Option<&str>) -> Repo {
    let repo = Repo::copy_of("examples/dataapp");
    if let Some(state) = state {
        let dir = repo.path().join(".shoal");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            crate_path(&format!("fixtures/plans/v1/{state}")),
            dir.join("sim.json"),
        )
        .unwrap();
    }
    repo
}

fn v1_file(name: &str) -> String {
    crate_path(&format!("fixtures/plans/v1/{name}"))
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn a_version_one_plan_file_applies_on_the_sim() {
    let repo = dataapp_with(None);
    let out = repo.ok(&["apply", "--yes", &v1_file("create.json")]);
    assert!(out.contains("Apply converged: 6 step(s) done"), "{out}");
    assert!(repo.steps().is_empty());
}

#[test]
fn a_version_one_replacement_applies_and_shows_as_one() {
    let repo = dataapp_with(Some("applied-sim.json"));
    repo.edit(
        "docker-compose.yml",
        "      replicas: 5",
        "      mode: global",
    );
    let out = repo.ok(&["apply", "--yes", &v1_file("mode.json")]);
    assert!(out.contains("-/+ remove_service"), "{out}");
    assert!(out.contains("Apply converged: 2 step(s) done"), "{out}");
    assert!(repo.steps().is_empty());

    let repo = dataapp_with(Some("killed-sim.json"));
    let out = repo.ok(&["apply", "--yes", &v1_file("heal.json")]);
    assert!(out.contains("-/+ create_machine  vm-worker1"), "{out}");
    assert!(repo.steps().is_empty());
}

#[test]
fn a_version_one_plan_file_goes_stale_as_any_other() {
    let repo = dataapp_with(Some("applied-sim.json"));
    // The files were not changed to `mode: global`: the plan is not what they give now.
    let out = repo.shoal(&["apply", "--yes", &v1_file("mode.json")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("stale"));
}

#[test]
fn a_saved_plan_of_this_version_says_its_codes_and_applies() {
    let repo = dataapp_with(None);
    let file = repo.path().join("plan.json");
    let file = file.to_str().unwrap();
    repo.ok(&["plan", "--out", file]);
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert_eq!(saved["format_version"], 2);
    let step = &saved["steps"][0];
    assert_eq!(step["action"], "create_machine");
    assert_eq!(step["reason"]["code"], "missing_machines");
    assert_eq!(step["reason"]["role"], "manager");
    assert_eq!(
        step["reason"]["text"],
        "machines.yml wants 1 manager(s), 0 exist"
    );
    assert_eq!(step["replace"], false);
    repo.ok(&["apply", "--yes", file]);
    assert!(repo.steps().is_empty());
}
