//! `--timings`: where a run's time went, on standard error, without touching standard output;
//! and an apply that has nothing to do takes no second look at the cluster.

use crate::common;

use common::Repo;

/// The phase names (first word after the two figures) of a `--timings` table.
fn phases_in(stderr: &str) -> Vec<String> {
    let table = stderr
        .split_once("timings     start      took  phase\n")
        .unwrap_or_else(|| panic!("no timings table in:\n{stderr}"))
        .1;
    table
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let (start, took) = (words.next()?, words.next()?);
            (start.ends_with('s') && took.ends_with('s'))
                .then(|| words.collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[test]
fn timings_name_each_phase_on_stderr_and_leave_the_json_alone() {
    let repo = Repo::copy_of("examples/dataapp");
    let (stdout, stderr) = repo.ok_both(&["--timings", "plan", "--json"]);
    serde_json::from_str::<serde_json::Value>(&stdout).expect("stdout stays JSON");
    let phases = phases_in(&stderr);
    for phase in ["load files", "open driver", "observe", "plan"] {
        assert!(
            phases.iter().any(|p| p == phase),
            "no {phase:?} in {phases:?}"
        );
    }
    let (_, stderr) = repo.ok_both(&["--timings", "apply", "--yes", "--json"]);
    let phases = phases_in(&stderr);
    assert!(phases.iter().any(|p| p == "lock"), "{phases:?}");
    assert!(
        phases.iter().any(|p| p.starts_with("step create_service")),
        "each step is timed: {phases:?}"
    );
    assert!(phases.iter().any(|p| p == "observe after"), "{phases:?}");
}

#[test]
fn an_apply_with_nothing_to_do_looks_at_the_cluster_once() {
    let repo = Repo::copy_of("examples/dataapp");
    repo.apply();
    let (stdout, stderr) = repo.ok_both(&["--timings", "apply", "--yes", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["writes"], 0);
    assert_eq!(report["converged"], true);
    let phases = phases_in(&stderr);
    assert_eq!(
        phases.iter().filter(|p| *p == "observe").count(),
        1,
        "{phases:?}"
    );
    assert!(
        !phases.iter().any(|p| p == "observe after"),
        "a no-op observes again: {phases:?}"
    );
    assert!(
        report["health"]["dataapp_dataservice"].is_object()
            || report["health"]["dataapp_dataservice"].is_string(),
        "health still comes from the one observation: {report:#}"
    );
}

/// Runs git in the repository.
fn git(repo: &Repo, args: &[&str]) {
    let out = std::process::Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(args)
        .current_dir(repo.path())
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}");
}

/// Issue 25: a watcher pass that heals drift in a stack looks at the cluster once before its
/// steps (its machines probed once), reads only the swarm's objects after them (the machines
/// and engines did not change), and does not observe the cluster a third time for its status.
#[test]
fn a_watcher_pass_that_heals_a_service_probes_the_machines_once() {
    let repo = Repo::copy_of("examples/dataapp");
    std::fs::write(repo.path().join(".gitignore"), ".shoal/\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "tutorial"]);
    repo.ok(&["watch", "--once"]);
    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "2"]);
    let (_, stderr) = repo.ok_both(&["--timings", "watch", "--once"]);
    let phases = phases_in(&stderr);
    assert!(
        phases
            .iter()
            .any(|p| p == "step scale_service dataapp_dataservice"),
        "{phases:?}"
    );
    assert_eq!(
        phases.iter().filter(|p| *p == "probe vm-manager").count(),
        1,
        "{phases:?}"
    );
    assert!(phases.iter().any(|p| p == "read after"), "{phases:?}");
    assert!(!phases.iter().any(|p| p == "observe after"), "{phases:?}");
    let (status, _) = repo.ok_both(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["services"][0]["running"], 5, "{status:#}");
}
