//! Every case of `fixtures/invalid/` is refused by `validate`, `plan` and `apply` (exit 1) with
//! the located message and help its `expected.txt` lists, and nothing is written.

use crate::common;

use common::{crate_path, Repo};

#[test]
fn every_invalid_fixture_is_refused_before_any_write() {
    let root = crate_path("fixtures/invalid");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "{cases:?}");
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let repo = Repo::copy_of(&format!("fixtures/invalid/{name}"));
        let expected = std::fs::read_to_string(case.join("expected.txt"))
            .unwrap_or_else(|_| panic!("{name}: no expected.txt"));
        for args in [&["validate"][..], &["plan", "--json"], &["apply", "--yes"]] {
            let out = repo.shoal(args);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(1), "{name} {args:?}: {said}");
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    said.contains(line),
                    "{name} {args:?}: no {line:?} in\n{said}"
                );
            }
        }
        assert!(
            !repo.path().join(".shoal/sim.json").exists(),
            "{name}: a refused input wrote the sim's state"
        );
    }
}
