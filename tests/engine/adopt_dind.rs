//! Adoption on a real engine (issue 13), through the CLI as a user would, on one dind cluster:
//! stacks of the real-world corpus (`fixtures/no_drift/src/`) deployed with
//! `docker stack deploy --resolve-image never` plan to nothing in shoal (their CLI-named configs
//! and secrets adopted, not rotated); and stacks shoal deployed, re-deployed by
//! `docker stack deploy`, keep every task. The corpus images are replaced by the preloaded demo
//! image so that tasks run and their IDs can be compared.
//!
//! Needs Docker: fails, saying so, when no engine answers. The
//! cluster is destroyed when the test ends, failed or not.

use crate::common;

use common::{crate_path, DindCluster, Repo};
use std::time::{Duration, Instant};

/// Corpus stacks whose services run with the demo image: secrets, logging options without a
/// driver through an anchor, resources, global mode, placement.
const CASES: &[&str] = &["wordpress", "logging_anchors"];

/// A one-manager dind cluster whose repository holds the corpus cases under `cli_<case>/` and
/// `shoal_<case>/`; destroyed on drop.
struct AdoptionCluster {
    dind: DindCluster,
}

impl AdoptionCluster {
    fn new() -> AdoptionCluster {
        common::build_demo_image();
        let cluster = AdoptionCluster {
            dind: DindCluster::new(Repo::empty(), "adopt"),
        };
        for case in CASES {
            for side in ["cli", "shoal"] {
                let from = crate_path(&format!("fixtures/no_drift/src/{case}"));
                let to = cluster.dind.repo.path().join(format!("{side}_{case}"));
                std::fs::create_dir_all(&to).unwrap();
                for entry in std::fs::read_dir(from).unwrap() {
                    let entry = entry.unwrap();
                    let text = std::fs::read_to_string(entry.path()).unwrap();
                    let text = if entry.file_name() == "docker-compose.yml" {
                        // The two copies publish different ports.
                        let text = demo_images(&text);
                        if side == "shoal" {
                            text.replace("\"8002:", "\"8012:")
                        } else {
                            text
                        }
                    } else {
                        text
                    };
                    std::fs::write(to.join(entry.file_name()), text).unwrap();
                }
            }
        }
        cluster.stacks(&[]);
        cluster
    }

    /// Writes machines.yml naming the stacks of `sides`.
    fn stacks(&self, sides: &[&str]) {
        let mut stacks = String::new();
        for side in sides {
            for case in CASES {
                stacks.push_str(&format!(
                    "  {}: {side}_{case}/docker-compose.yml\n",
                    stack(side, case)
                ));
            }
        }
        let stacks = if stacks.is_empty() {
            "stacks: {}\n".to_string()
        } else {
            format!("stacks:\n{stacks}")
        };
        std::fs::write(
            self.dind.repo.path().join("machines.yml"),
            format!(
                "cluster: {}\ndriver: dind\ndriver_options:\n  preload_images: [dataservice:1]\nmachines:\n  m:\n    role: manager\n{stacks}",
                self.dind.name
            ),
        )
        .unwrap();
    }

    fn deploy_by_cli(&self, side: &str) {
        for case in CASES {
            let compose = format!("{side}_{case}/docker-compose.yml");
            self.dind
                .deploy_by_cli("m", &[], &[&compose], &stack(side, case));
        }
    }

    /// The IDs of the tasks meant to run, of every stack of `side`, once they all run.
    fn running_tasks(&self, side: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let status = self.dind.repo.json(&["status", "--json"]);
            let services = status["services"].as_array().unwrap();
            let ours = services
                .iter()
                .filter(|s| s["stack"].as_str().is_some_and(|n| n.starts_with(side)));
            if ours.clone().count() > 0 && ours.into_iter().all(|s| s["running"] == s["replicas"]) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "tasks did not all start: {status:#}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let mut ids = Vec::new();
        for case in CASES {
            let listed = self.dind.docker(
                "m",
                &[
                    "stack",
                    "ps",
                    &stack(side, case),
                    "-q",
                    "--filter",
                    "desired-state=running",
                ],
            );
            ids.extend(listed.lines().map(str::to_string));
        }
        ids.sort();
        ids
    }
}

fn stack(side: &str, case: &str) -> String {
    format!("{side}{}", case.replace('_', ""))
}

/// The compose file with every image replaced by the preloaded demo image.
fn demo_images(compose: &str) -> String {
    compose
        .lines()
        .map(|line| match line.split_once("image: ") {
            Some((indent, _)) if indent.trim().is_empty() => {
                format!("{indent}image: dataservice:1")
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn stacks_move_between_the_docker_cli_and_shoal_without_restarts() {
    let _turn = common::engine_turn("the adoption scenario");
    let cluster = AdoptionCluster::new();
    cluster.dind.repo.apply();

    // docker stack deploy first: shoal adopts, and plans nothing.
    cluster.deploy_by_cli("cli");
    let before = cluster.running_tasks("cli");
    cluster.stacks(&["cli"]);
    let plan = cluster.dind.repo.plan();
    let steps = common::steps_of(&plan);
    assert!(
        steps.is_empty(),
        "a stack deployed by the docker CLI must plan to nothing: {steps:?}"
    );
    let warnings = plan["warnings"].to_string();
    assert!(
        warnings.contains("cliwordpress_db_password"),
        "the CLI's secret is adopted with a warning: {warnings}"
    );
    assert!(warnings.contains("cannot be read back"), "{warnings}");

    // shoal first: docker stack deploy re-deploys without restarting a task.
    cluster.stacks(&["cli", "shoal"]);
    cluster.dind.repo.apply();
    assert_eq!(
        cluster.running_tasks("cli"),
        before,
        "shoal restarted adopted tasks"
    );
    let deployed = cluster.running_tasks("shoal");
    cluster.deploy_by_cli("shoal");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cluster.running_tasks("shoal"),
        deployed,
        "docker stack deploy restarted tasks of stacks shoal deployed"
    );
    let steps = common::steps_of(&cluster.dind.repo.plan());
    assert!(
        steps.is_empty(),
        "after the CLI's re-deploy, shoal plans nothing: {steps:?}"
    );
}
