//! Progress of an apply: one line per step, or a bar on a terminal.

use crate::plan::report::{StepReport, StepStatus};
use crate::plan::Step;
use indicatif::{ProgressBar, ProgressStyle};

/// Told when each step starts and ends.
pub trait Progress: Send + Sync {
    /// A step started; `index` counts from 1 out of `total`.
    fn started(&self, step: &Step, index: usize, total: usize);
    /// A step ended; `index` counts finished steps from 1.
    fn finished(&self, step: &Step, report: &StepReport, index: usize, total: usize);
    /// While apply waits for the services it changed: one of them changed state
    /// (`line` is `service: state: reason`).
    fn health(&self, line: &str) {
        eprintln!("{line}");
    }
}

/// Says nothing (tests, `--json` on a pipe when quiet is wanted).
pub struct Silent;

impl Progress for Silent {
    fn started(&self, _: &Step, _: usize, _: usize) {}
    fn finished(&self, _: &Step, _: &StepReport, _: usize, _: usize) {}
    fn health(&self, _: &str) {}
}

fn outcome(report: &StepReport) -> String {
    match report.status {
        StepStatus::Done => format!("done in {:.1}s", report.seconds),
        StepStatus::Failed => format!("FAILED: {}", report.error.as_deref().unwrap_or("")),
        StepStatus::Skipped => "skipped".to_string(),
    }
}

/// Plain lines on standard error, for logs and pipes.
pub struct Lines;

impl Progress for Lines {
    fn started(&self, _: &Step, _: usize, _: usize) {}

    fn finished(&self, step: &Step, report: &StepReport, index: usize, total: usize) {
        eprintln!(
            "[{index}/{total}] {} {}: {}",
            step.action(),
            step.target,
            outcome(report)
        );
    }
}

/// A bar with the running steps, on a terminal.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar for `total` steps.
    pub fn new(total: usize) -> Bar {
        let bar = ProgressBar::new(total as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} {elapsed} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar { bar }
    }
}

impl Progress for Bar {
    fn started(&self, step: &Step, _: usize, _: usize) {
        self.bar
            .set_message(format!("{} {}", step.action(), step.target));
    }

    fn finished(&self, step: &Step, report: &StepReport, _: usize, _: usize) {
        self.bar.println(format!(
            "{} {}: {}",
            step.action(),
            step.target,
            outcome(report)
        ));
        self.bar.inc(1);
        if self.bar.position() >= self.bar.length().unwrap_or(0) {
            self.bar.finish_and_clear();
        }
    }
}
