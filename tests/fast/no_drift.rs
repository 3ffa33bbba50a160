//! No false drift against real engine output: each `fixtures/no_drift/<case>/` holds a stack's
//! files and `engine.json`, what a real Docker Engine (20.10, API 1.41) answered after the stack
//! was deployed by shoal or by `docker stack deploy --resolve-image never` (captured by
//! `fixtures/no_drift/capture.sh`). Read the way the engine backend reads a live engine, each
//! must plan to nothing: normalization makes the engine's defaults and ordering equal to what
//! shoal sends, and shoal's conversion equal to the docker CLI's. The `adopt_*` cases are the
//! real-world corpus of `fixtures/no_drift/capture_adopt.sh` (issue 13), deployed by the CLI.
//! `engine.json` records the engine's API version (`api_version`; absent in the 20.10
//! captures, read as 1.41): what a cluster of that engine stores is what is planned. The
//! `engine28_*` and `engine20_*` cases (issue 20) are written by hand from the Engine API's
//! documented shapes, until captures from those engines replace them.

use crate::common;

use shoal::config::load;
use shoal::docker::EngineDump;
use shoal::plan::{plan, PlanOptions};
use shoal::source::DirSource;
use std::collections::BTreeMap;
use std::path::Path;

#[test]
fn captured_engine_output_plans_to_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/no_drift");
    let mut cases = 0;
    let mut adopted = 0;
    let mut failures = Vec::new();
    for entry in std::fs::read_dir(&root).expect("fixtures/no_drift") {
        let dir = entry.expect("entry").path();
        let engine = dir.join("engine.json");
        if !engine.exists() {
            continue;
        }
        cases += 1;
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        adopted += usize::from(name.starts_with("adopt_"));
        let desired = load(&DirSource(dir.clone()), &BTreeMap::new())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let dump: EngineDump =
            serde_json::from_str(&std::fs::read_to_string(&engine).unwrap()).unwrap();
        let services: usize = desired.stacks.values().map(|s| s.services.len()).sum();
        let observed = common::observed_from_dump(&desired, &dump);
        assert_eq!(
            observed.services.len(),
            services,
            "{name}: every service was captured"
        );
        let options = PlanOptions {
            content_key: Some(shoal::model::content_key::ContentKey::from_bytes([3; 32])),
            ..PlanOptions::default()
        };
        let plan = plan(&desired, &observed, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
        if let Some(said) = expected_warning(&name) {
            assert!(
                plan.warnings.iter().any(|w| w.to_string().contains(said)),
                "{name}: the plan says {said:?}: {:?}",
                plan.warnings
            );
        }
        if !plan.steps.is_empty() {
            failures.push(format!(
                "{name}:\n{}",
                shoal::render::render_plan(&plan, shoal::render::Style::PLAIN)
            ));
        }
    }
    assert!(cases >= 5, "expected the captured cases, found {cases}");
    assert!(
        adopted >= 15,
        "expected the adoption corpus (capture_adopt.sh), found {adopted} cases"
    );
    assert!(failures.is_empty(), "false drift:\n{}", failures.join("\n"));
}

/// What the plan of a case whose engine and files disagree must say instead of planning.
fn expected_warning(case: &str) -> Option<&'static str> {
    match case {
        // The 28.5 CLI drops oom_score_adj: adopted without a restart, and said.
        "engine28_cli_newer_fields" => Some("runs without oom_score_adj: 200"),
        // A 20.10 engine stores neither oom_score_adj nor healthcheck.start_interval.
        "engine20_shoal_newer_fields" => {
            Some("is not sent: the engines of this cluster (API 1.41)")
        }
        _ => None,
    }
}
