//! Real-world stacks through the CLI on the sim: they plan, apply and converge with no false
//! drift, and a changed secret file rotates the secret without its data appearing anywhere.

use crate::common;

use common::Repo;

fn converge(example: &str) -> Repo {
    let mut repo = Repo::copy_of(&format!("fixtures/compose/{example}"));
    repo.extra_args = vec!["--driver".into(), "sim".into()];
    repo.ok(&["validate"]);
    repo.apply();
    assert!(repo.steps().is_empty(), "false drift after apply");
    repo
}

#[test]
fn real_world_stacks_converge_without_false_drift() {
    for example in ["webshop", "monitoring"] {
        let repo = converge(example);
        let report = repo.apply();
        assert_eq!(
            report["writes"], 0,
            "{example}: a converged apply must send nothing"
        );
    }
}

#[test]
fn a_changed_secret_is_rotated_and_never_shown() {
    let repo = converge("webshop");
    let secret = "s3cr3t-rotated-value";
    std::fs::write(repo.path().join("secrets/db_password.txt"), secret).unwrap();
    let plan = repo.steps();
    let creates: Vec<&String> = plan
        .iter()
        .filter(|s| s.starts_with("create_secret"))
        .collect();
    let removes: Vec<&String> = plan
        .iter()
        .filter(|s| s.starts_with("remove_secret"))
        .collect();
    assert_eq!(creates.len(), 1, "{plan:?}");
    assert_eq!(removes.len(), 1, "{plan:?}");
    let updates = plan
        .iter()
        .filter(|s| s.starts_with("update_service"))
        .count();
    assert!(
        updates >= 2,
        "the services using the secret are updated: {plan:?}"
    );
    let created = plan
        .iter()
        .position(|s| s.starts_with("create_secret"))
        .unwrap();
    let removed = plan
        .iter()
        .position(|s| s.starts_with("remove_secret"))
        .unwrap();
    assert!(created < removed);
    for args in [
        &["plan"][..],
        &["plan", "--json"][..],
        &["apply", "--yes"][..],
        &["apply", "--yes", "--json"][..],
        &["status", "--json"][..],
    ] {
        let (stdout, stderr) = repo.ok_both(args);
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{args:?} printed the secret"
        );
    }
    assert!(
        !repo.sim_state().contains(secret),
        "the sim must not store secret data"
    );
    assert!(repo.steps().is_empty());
}

/// Issue 18: with `prune: false`, a stack dropped from machines.yml keeps its services and stays
/// remembered (status lists it), so that turning prune on later removes them (past the
/// destroy guard, which asks for --allow-destroy-all since the whole stack goes).
#[test]
fn a_stack_dropped_while_prune_is_off_is_remembered_and_pruned_later() {
    let repo = Repo::empty();
    let write = |stacks: &str, prune: bool| {
        std::fs::write(
            repo.path().join("machines.yml"),
            format!("cluster: keep\ndriver: sim\nmachines:\n  m1:\n    role: manager\nstacks:\n{stacks}policy:\n  prune: {prune}\n"),
        )
        .unwrap();
    };
    for name in ["app", "extra"] {
        std::fs::write(
            repo.path().join(format!("{name}.yml")),
            "services:\n  web:\n    image: nginx:1\n",
        )
        .unwrap();
    }
    write("  app: app.yml\n  extra: extra.yml\n", false);
    repo.apply();
    common::drop_a_stack_then_prune(&repo, &write);
}

#[test]
fn changed_object_settings_replace_an_unused_object_and_refuse_a_used_one() {
    let repo = Repo::empty();
    std::fs::write(
        repo.path().join("machines.yml"),
        "cluster: objects\ndriver: sim\nmachines:\n  m1:\n    role: manager\nstacks:\n  app: app.yml\n",
    )
    .unwrap();
    std::fs::write(repo.path().join("token.txt"), "t0ken").unwrap();
    std::fs::write(
        repo.path().join("app.yml"),
        "services:\n  web:\n    image: nginx:1\n    networks: [front]\nnetworks:\n  front:\n    driver: overlay\nsecrets:\n  token:\n    file: token.txt\n    labels: {team: a}\n",
    )
    .unwrap();
    repo.apply();
    assert!(repo.steps().is_empty(), "false drift after apply");

    repo.edit("app.yml", "team: a", "team: b");
    let plan = repo.plan();
    let steps = common::steps_of(&plan);
    assert_eq!(steps.len(), 2, "{plan:#}");
    assert!(steps[0].starts_with("remove_secret app_token"), "{steps:?}");
    assert!(steps[1].starts_with("create_secret app_token"), "{steps:?}");
    assert!(plan.to_string().contains("labels"), "{plan:#}");
    repo.apply();
    assert!(repo.steps().is_empty(), "the new labels are kept");

    repo.edit(
        "app.yml",
        "driver: overlay",
        "driver: overlay\n    attachable: true",
    );
    let refused = repo.shoal(&["plan"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    for words in ["network app_front", "attachable", "app_web", "new name"] {
        assert!(stderr.contains(words), "{words}: {stderr}");
    }
}
