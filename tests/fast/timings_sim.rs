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
