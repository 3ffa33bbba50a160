//! A plan shown on a terminal is never carried out stale (DESIGN §3.6): while the user reads
//! it, the files change; answering `yes` then shows the new plan and asks again, and the old
//! one is not applied. With `--json`, the plan and the question go to standard error and the JSON
//! on standard output stays valid. `script` (util-linux) gives shoal a real terminal.

use crate::common;

use common::Repo;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROMPT: &str = "Only 'yes' will be accepted";

/// `shoal apply` on a pseudo-terminal, its output collected as it comes.
struct OnTerminal {
    child: Child,
    output: mpsc::Receiver<String>,
    seen: String,
}

impl OnTerminal {
    fn apply(repo: &Repo) -> OnTerminal {
        OnTerminal::run(&format!(
            "{} apply --repo {}",
            env!("CARGO_BIN_EXE_shoal"),
            repo.path().display()
        ))
    }

    /// The shell command line `command` on a pseudo-terminal.
    fn run(command: &str) -> OnTerminal {
        let mut child = Command::new("script")
            .args(["-qefc", command, "/dev/null"])
            .env("NO_COLOR", "1")
            .env_remove("SHOAL_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        let mut stdout = child.stdout.take().expect("stdout");
        let (send, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0
                    || send
                        .send(String::from_utf8_lossy(&buffer[..n]).into_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        OnTerminal {
            child,
            output,
            seen: String::new(),
        }
    }

    /// Waits until the output has shown `text` `times` times in all.
    fn wait_for(&mut self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.seen.matches(text).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(chunk) => self.seen.push_str(&chunk),
                Err(_) => panic!(
                    "waited for {text:?} ×{times}; the terminal showed:\n{}",
                    self.seen
                ),
            }
        }
    }

    fn answer(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("type");
        stdin.flush().expect("flush");
    }

    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait");
        while let Ok(chunk) = self.output.recv_timeout(Duration::from_secs(2)) {
            self.seen.push_str(&chunk);
        }
        assert!(
            status.code().is_some(),
            "shoal ended by a signal: {}",
            self.seen
        );
        std::mem::take(&mut self.seen)
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_plan_made_stale_while_the_user_decides_is_shown_again_not_carried_out() {
    let repo = Repo::copy_of("examples/dataapp");
    let mut terminal = OnTerminal::apply(&repo);
    terminal.wait_for(PROMPT, 1);
    assert!(
        terminal.seen.contains("create_machine  vm-worker1"),
        "{}",
        terminal.seen
    );

    // While the user reads, the files stop wanting the worker.
    repo.edit("machines.yml", "count: 1", "count: 0");
    terminal.answer("yes");
    terminal.wait_for(PROMPT, 2);
    assert!(
        terminal
            .seen
            .contains("The plan above is out of date: the files changed"),
        "{}",
        terminal.seen
    );
    let second = terminal
        .seen
        .rsplit("The plan now:")
        .next()
        .unwrap()
        .to_string();
    assert!(
        !second.contains("vm-worker1"),
        "the new plan wants no worker: {second}"
    );
    terminal.answer("no");
    let shown = terminal.finish();
    assert!(shown.contains("cancelled: nothing was changed"), "{shown}");
    assert!(
        repo.sim_state().is_empty() || !repo.sim_state().contains("vm-worker1"),
        "the stale plan's worker was created"
    );
    assert!(repo.steps().iter().all(|s| !s.contains("vm-worker1")));
    assert!(
        !repo.sim_state().contains("\"lock\":{"),
        "the lock is released after a cancelled apply: {}",
        repo.sim_state()
    );

    // Answered at once, the plan is carried out.
    let mut terminal = OnTerminal::apply(&repo);
    terminal.wait_for(PROMPT, 1);
    terminal.answer("yes");
    let shown = terminal.finish();
    assert!(shown.contains("Apply converged"), "{shown}");
    assert!(repo.steps().is_empty());
}

#[test]
fn apply_json_on_a_terminal_asks_on_standard_error_and_keeps_the_json_valid() {
    let repo = Repo::copy_of("examples/dataapp");
    let report = repo.path().join("report.json");
    let mut terminal = OnTerminal::run(&format!(
        "{} apply --json --repo {} > {}",
        env!("CARGO_BIN_EXE_shoal"),
        repo.path().display(),
        report.display()
    ));
    terminal.wait_for(PROMPT, 1);
    assert!(
        terminal.seen.contains("create_machine  vm-worker1"),
        "the plan is shown before the question: {}",
        terminal.seen
    );
    terminal.answer("yes");
    terminal.finish();
    let text = std::fs::read_to_string(&report).expect("the report");
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(json["converged"], true, "{json:#}");
    assert!(repo.steps().is_empty());
}

/// Issue 18: a hand change made to the cluster after the plan was shown and before `yes` is
/// kept: apply shows the new plan, writes nothing and exits 1.
#[test]
fn a_cluster_changed_by_hand_while_the_user_decides_is_kept_and_apply_exits_1() {
    let repo = Repo::copy_of("examples/dataapp");
    repo.apply();
    repo.edit("docker-compose.yml", "replicas: 5", "replicas: 7");
    let mut terminal = OnTerminal::apply(&repo);
    terminal.wait_for(PROMPT, 1);
    assert!(terminal.seen.contains("scale_service"), "{}", terminal.seen);

    // By hand, while the user reads.
    repo.ok(&["sim", "set-replicas", "dataapp_dataservice", "3"]);
    terminal.answer("yes");
    let shown = terminal.finish();
    assert!(
        shown.contains("The plan above is out of date: the cluster changed")
            && shown.contains("that change is kept: nothing was written"),
        "{shown}"
    );
    let status = repo.json(&["status", "--json"]);
    let service = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "dataapp_dataservice")
        .unwrap()
        .clone();
    assert_eq!(
        service["replicas"], 3,
        "the hand change is kept: {status:#}"
    );
}
