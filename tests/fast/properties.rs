//! Property tests on random clusters: from a random starting cluster (built by an earlier apply,
//! then damaged by faults and drift), one plan + apply converges, and the swarm keeps quorum
//! after every step. The sim's own rules refuse unsafe demotions, so an unsafe order fails here.

use proptest::prelude::*;
use shoal::apply::progress::Progress;
use shoal::apply::{apply, ApplyOptions};
use shoal::config::{load, MemSource};
use shoal::drivers::sim::SimDriver;
use shoal::drivers::Driver;
use shoal::model::Desired;
use shoal::observe::observe;
use shoal::plan::report::StepReport;
use shoal::plan::{plan, PlanOptions, Step};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One random cluster as files.
#[derive(Clone, Debug)]
struct Cluster {
    managers: u8,
    workers: u8,
    /// (replicas or None for global, image tag) per service.
    services: Vec<(Option<u8>, u8)>,
}

fn cluster() -> impl Strategy<Value = Cluster> {
    (
        1u8..=5,
        0u8..=4,
        prop::collection::vec((prop::option::weighted(0.8, 0u8..=6), 1u8..=3), 0..=3),
    )
        .prop_map(|(managers, workers, services)| Cluster {
            managers,
            workers,
            services,
        })
}

/// A fault injected between the two applies.
#[derive(Clone, Debug)]
enum Fault {
    KillWorker(u8),
    KillManager(u8),
    Replicas(u8, u8),
}

fn faults() -> impl Strategy<Value = Vec<Fault>> {
    prop::collection::vec(
        prop_oneof![
            (1u8..=4).prop_map(Fault::KillWorker),
            (1u8..=5).prop_map(Fault::KillManager),
            (0u8..=2, 0u8..=9).prop_map(|(s, r)| Fault::Replicas(s, r)),
        ],
        0..=2,
    )
}

fn files(cluster: &Cluster) -> Desired {
    let mut machines = format!(
        "cluster: prop\ndriver: sim\nmachines:\n  mgr:\n    role: manager\n    count: {}\n",
        cluster.managers
    );
    machines.push_str(&format!(
        "  wrk:\n    role: worker\n    count: {}\n",
        cluster.workers
    ));
    let mut compose = String::from("services:\n");
    if cluster.services.is_empty() {
        compose = "services: {}\n".to_string();
    }
    for (i, (replicas, tag)) in cluster.services.iter().enumerate() {
        compose.push_str(&format!(
            "  svc{i}:\n    image: app{i}:{tag}\n    deploy:\n"
        ));
        match replicas {
            Some(r) => compose.push_str(&format!("      replicas: {r}\n")),
            None => compose.push_str("      mode: global\n"),
        }
    }
    machines.push_str("stacks:\n  app: docker-compose.yml\n");
    let source = MemSource {
        name: "prop".into(),
        files: BTreeMap::from([
            ("machines.yml".to_string(), machines.into_bytes()),
            ("docker-compose.yml".to_string(), compose.into_bytes()),
        ]),
    };
    load(&source, &BTreeMap::new()).expect("generated files are valid")
}

/// Checks quorum in the sim after every finished step.
struct QuorumWatch {
    sim: SimDriver,
    violations: Mutex<Vec<String>>,
}

impl Progress for QuorumWatch {
    fn started(&self, _: &Step, _: usize, _: usize) {}

    fn finished(&self, step: &Step, _: &StepReport, _: usize, _: usize) {
        let state = self.sim.snapshot();
        if let Some(swarm) = state.swarm() {
            if !swarm.has_quorum() {
                self.violations.lock().unwrap().push(format!(
                    "after {} {}",
                    step.action(),
                    step.target
                ));
            }
        }
    }
}

async fn converge(sim: &SimDriver, desired: &Desired) -> Result<(), String> {
    let driver: Arc<dyn Driver> = Arc::new(sim.clone());
    let observed = observe(&driver, 0).await.map_err(|e| e.to_string())?;
    let options = PlanOptions {
        allow_destroy_all: true,
        content_key: Some(shoal::model::content_key::ContentKey::from_bytes([1; 32])),
        ..PlanOptions::default()
    };
    let plan = plan(desired, &observed, &options).map_err(|e| format!("plan refused: {e}"))?;
    let watch = QuorumWatch {
        sim: sim.clone(),
        violations: Mutex::new(Vec::new()),
    };
    let apply_options = ApplyOptions {
        node_wait: std::time::Duration::from_secs(1),
        ..ApplyOptions::default()
    };
    let report = apply(&plan, desired, driver, &apply_options, &watch)
        .await
        .map_err(|e| e.to_string())?;
    let violations = watch.violations.into_inner().unwrap();
    if !violations.is_empty() {
        return Err(format!("quorum lost {violations:?}"));
    }
    if !report.converged {
        let failed: Vec<_> = report.steps.iter().filter(|s| s.error.is_some()).collect();
        return Err(format!("not converged: {failed:?}"));
    }
    Ok(())
}

fn inject(sim: &SimDriver, faults: &[Fault], before: &Cluster) {
    let mut killed_managers = 0;
    for fault in faults {
        match fault {
            Fault::KillWorker(i) if *i <= before.workers => {
                let _ = sim.kill_machine(&format!("wrk{i}"));
            }
            // Only faults the cluster survives: at most a minority of managers.
            Fault::KillManager(i)
                if *i <= before.managers
                    && (killed_managers + 1) * 2 < before.managers
                    && sim.kill_machine(&format!("mgr{i}")).is_ok() =>
            {
                killed_managers += 1;
            }
            Fault::Replicas(s, r)
                if before
                    .services
                    .get(*s as usize)
                    .is_some_and(|svc| svc.0.is_some()) =>
            {
                let _ = sim.set_replicas(&format!("app_svc{s}"), *r as u64);
            }
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn one_apply_converges_and_quorum_holds(before in cluster(), faults in faults(), after in cluster()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let sim = SimDriver::in_memory();
            converge(&sim, &files(&before)).await.map_err(|e| TestCaseError::fail(format!("first apply: {e}")))?;
            inject(&sim, &faults, &before);
            converge(&sim, &files(&after)).await.map_err(|e| TestCaseError::fail(format!("second apply: {e}")))?;
            let driver: Arc<dyn Driver> = Arc::new(sim.clone());
            let observed = observe(&driver, 0).await.unwrap();
            let again = plan(&files(&after), &observed, &PlanOptions::default()).unwrap();
            prop_assert!(again.steps.is_empty(), "plan after convergence: {:?}", again.steps);
            Ok(())
        })?;
    }
}
