//! The Terraform-like human rendering of a plan and of an apply report.

use super::Style;
use crate::plan::report::{ApplyReport, StepStatus};
use crate::plan::{Effect, FieldChange, Plan, Step, StepOp};
use similar::{ChangeTag, TextDiff};
use std::fmt::Write;
use std::time::Duration;

/// The symbol of a step: `+` add, `~` change, `-` destroy, `-/+` part of a replacement.
pub(crate) fn symbol(step: &Step) -> &'static str {
    match (step.reason.replaces(), step.effect()) {
        (true, _) => "-/+",
        (_, Effect::Add) => "+",
        (_, Effect::Change) => "~",
        (_, Effect::Destroy) => "-",
    }
}

/// Renders the plan for people.
pub fn render_plan(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    for warning in &plan.warnings {
        let warning = warning.to_string();
        let warning = warning.strip_prefix("warning: ").unwrap_or(&warning);
        let _ = writeln!(out, "{} {warning}", style.yellow("Warning:"));
    }
    if !plan.warnings.is_empty() {
        out.push('\n');
    }
    let revision = plan
        .revision
        .as_deref()
        .map(|r| format!("revision {}", &r[..r.len().min(12)]))
        .unwrap_or_else(|| "the working tree (uncommitted changes)".to_string());
    if !plan.saw_everything() {
        let _ = writeln!(
            out,
            "{} this plan covers only what answered:",
            style.red("Not everything could be seen:")
        );
        for part in &plan.unseen {
            let _ = writeln!(out, "  - {}: {}", part.what, part.why);
        }
        out.push('\n');
        if plan.is_empty() {
            let _ = writeln!(
                out,
                "No changes to what could be seen; whether the rest matches {revision} is unknown."
            );
            return out;
        }
    }
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "{} The cluster matches {revision}.",
            style.green("No changes.")
        );
        return out;
    }
    let _ = writeln!(
        out,
        "shoal will carry out these steps to match {revision}:\n"
    );
    let width = plan
        .steps
        .iter()
        .map(|s| s.action().as_str().len())
        .max()
        .unwrap_or(0);
    for step in &plan.steps {
        let sym = symbol(step);
        let painted = match step.effect() {
            _ if sym == "-/+" => style.yellow(sym),
            Effect::Add => style.green(sym),
            Effect::Change => style.yellow(sym),
            Effect::Destroy => style.red(sym),
        };
        let deps = match after(step) {
            Some(after) => format!("  {after}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:>3}. {painted:<3} {:<width$}  {}{}",
            step.id,
            step.action().as_str(),
            style.bold(&step.target),
            extra(step),
        );
        let _ = writeln!(out, "          {}{deps}", step.reason);
        for change in step.op.changes() {
            render_change(&mut out, change, style);
        }
    }
    let s = &plan.summary;
    let _ = writeln!(
        out,
        "\n{} {} to add, {} to change, {} to destroy.",
        style.bold("Plan:"),
        s.add,
        s.change,
        s.destroy
    );
    out
}

/// `(after #1, #3 is healthy)`: the steps `step` waits for, each with the condition its
/// service must reach (compose `depends_on`) when it has one; `None` when it waits for none.
pub(crate) fn after(step: &Step) -> Option<String> {
    if step.depends_on.is_empty() {
        return None;
    }
    let ids: Vec<String> = (step.depends_on.iter())
        .map(|d| match step.waits.iter().find(|w| w.step == Some(*d)) {
            Some(wait) => format!("#{d} {}", wait.condition.reached()),
            None => format!("#{d}"),
        })
        .collect();
    Some(format!("(after {})", ids.join(", ")))
}

/// Short facts shown next to the target.
pub(crate) fn extra(step: &Step) -> String {
    match &step.op {
        StepOp::CreateMachine { role, .. } => format!(" ({role})"),
        StepOp::JoinSwarm { role, via, .. } => format!(" as {role}, through {via}"),
        StepOp::InitSwarm { via, .. } => format!(" on {via}"),
        StepOp::ScaleService { replicas, .. } => format!(" to {replicas} replicas"),
        StepOp::CreateService { spec } | StepOp::RunJob { id: None, spec, .. } => format!(
            " ({}, {})",
            spec.task_template.container_spec.image,
            spec.mode_name()
        ),
        _ => String::new(),
    }
}

fn yaml(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => format!("{s}\n"),
        other => serde_yaml::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// A field's change as a line diff of its YAML values: each line with whether it was removed,
/// added or kept.
pub(crate) fn change_lines(change: &FieldChange) -> Vec<(ChangeTag, String)> {
    let before = yaml(&change.before);
    let after = yaml(&change.after);
    let diff = TextDiff::from_lines(&before, &after);
    diff.iter_all_changes()
        .map(|line| {
            let text = line.value().trim_end_matches('\n').to_string();
            (line.tag(), text)
        })
        .collect()
}

/// A field's change as a line diff of its YAML values.
fn render_change(out: &mut String, change: &FieldChange, style: Style) {
    let _ = writeln!(out, "          {}:", change.path);
    for (tag, text) in change_lines(change) {
        let _ = match tag {
            ChangeTag::Delete => writeln!(out, "            {}", style.red(&format!("- {text}"))),
            ChangeTag::Insert => writeln!(out, "            {}", style.green(&format!("+ {text}"))),
            ChangeTag::Equal => writeln!(out, "              {text}"),
        };
    }
}

/// Renders what apply did for people; `wait` is how long apply waited at most for the services
/// it changed to become healthy (`--timeout`), `None` when it did not wait (`--no-wait`).
pub fn render_report(report: &ApplyReport, wait: Option<Duration>, style: Style) -> String {
    let mut out = String::new();
    if !report.dry_run_writes.is_empty() {
        let _ = writeln!(out, "Dry run: these writes would be sent, in order:");
        for (i, write) in report.dry_run_writes.iter().enumerate() {
            let _ = writeln!(out, "  {:>3}. {write}", i + 1);
        }
        out.push('\n');
    }
    let done = report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Done)
        .count();
    let failed: Vec<_> = report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .collect();
    let skipped = report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Skipped)
        .count();
    for step in &failed {
        let _ = writeln!(
            out,
            "{} {} {}: {}",
            style.red("Failed:"),
            step.action,
            step.target,
            step.error.as_deref().unwrap_or("unknown error")
        );
    }
    for step in report
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Skipped)
    {
        let _ = writeln!(
            out,
            "{} {} {}: {}",
            style.yellow("Skipped:"),
            step.action,
            step.target,
            step.error.as_deref().unwrap_or("not reached")
        );
    }
    if !report.converged && report.dry_run_writes.is_empty() {
        for left in &report.remaining {
            let _ = writeln!(out, "{} {left}", style.yellow("Still to do:"));
        }
    }
    if !report.dry_run_writes.is_empty() {
        let _ = writeln!(
            out,
            "Dry run: {done} step(s) walked, {} failed, {skipped} skipped, {} write(s) recorded and none sent; the cluster is unchanged.",
            failed.len(),
            report.dry_run_writes.len(),
        );
        return out;
    }
    for line in &report.drift {
        let _ = writeln!(
            out,
            "{} {line} (changed while apply waited; plan again, or let the watcher bring it back)",
            style.yellow("Changed since:")
        );
    }
    let unhealthy = report.unhealthy();
    for (name, health) in &unhealthy {
        let _ = writeln!(out, "{} {name}: {}", style.red("Unhealthy:"), health.line());
    }
    if unhealthy.is_empty() && !report.waited_for.is_empty() {
        let _ = writeln!(
            out,
            "{} {}",
            style.green("Healthy:"),
            report.waited_for.join(", ")
        );
    }
    let still_progressing = unhealthy.iter().any(|(_, health)| !health.settled);
    let verdict = if !unhealthy.is_empty() {
        let ran_out = match wait {
            Some(timeout) if still_progressing => {
                format!("the --timeout of {} ran out with ", span(timeout))
            }
            _ => String::new(),
        };
        style.red(&format!(
            "failed ({ran_out}{} service(s) not healthy)",
            unhealthy.len()
        ))
    } else if wait.is_none() {
        style.yellow("sent without waiting (--no-wait: the services' health was not awaited)")
    } else if report.converged {
        style.green("converged")
    } else {
        style.yellow("not converged")
    };
    let _ = writeln!(
        out,
        "Apply {}: {done} step(s) done, {} failed, {skipped} skipped, {} write(s), {:.1}s.",
        verdict,
        failed.len(),
        report.writes,
        report.seconds
    );
    out
}

/// A duration as `--timeout` takes it: `90s`, `5m`, `2h`.
fn span(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{}ms", duration.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Health, HealthState};

    fn report(health: Option<Health>) -> ApplyReport {
        ApplyReport {
            revision: None,
            steps: Vec::new(),
            writes: 1,
            converged: true,
            seconds: 9.0,
            remaining: Vec::new(),
            dry_run_writes: Vec::new(),
            waited_for: health.iter().map(|_| "app_web".to_string()).collect(),
            drift: Vec::new(),
            health: health
                .into_iter()
                .map(|h| ("app_web".to_string(), h))
                .collect(),
        }
    }

    #[test]
    fn waits_read_after_their_steps() {
        use crate::model::Condition;
        use crate::plan::{Reason, StepId, Wait};
        let wait = |service: &str, condition, step| Wait {
            service: service.into(),
            condition,
            step,
        };
        let step = Step {
            id: StepId(4),
            target: "app_web".into(),
            depends_on: vec![StepId(1), StepId(3)],
            waits: vec![
                wait(
                    "app_migrate",
                    Condition::ServiceCompletedSuccessfully,
                    Some(StepId(3)),
                ),
                wait("app_db", Condition::ServiceHealthy, None),
            ],
            reason: Reason::Rebalance,
            op: StepOp::RemoveService { id: "x".into() },
        };
        assert_eq!(after(&step).unwrap(), "(after #1, #3 completed)");
        let mut healthy = step.clone();
        healthy.waits[0].condition = Condition::ServiceHealthy;
        assert_eq!(after(&healthy).unwrap(), "(after #1, #3 is healthy)");
    }

    #[test]
    fn skipped_steps_say_why() {
        use crate::plan::{Action, StepId};
        let mut report = report(None);
        report.steps.push(crate::plan::report::StepReport {
            id: StepId(3),
            action: Action::CreateService,
            target: "app_web".into(),
            status: StepStatus::Skipped,
            seconds: 0.0,
            error: Some("it waits for #2 (run_job app_migrate), which failed: boom".into()),
        });
        let text = render_report(&report, None, Style::PLAIN);
        assert!(
            text.contains("Skipped: create_service app_web: it waits for #2 (run_job app_migrate), which failed: boom"),
            "{text}"
        );
    }

    fn verdict(report: &ApplyReport, wait: Option<Duration>) -> String {
        let text = render_report(report, wait, Style::PLAIN);
        text.lines()
            .find(|l| l.starts_with("Apply "))
            .unwrap_or_else(|| panic!("no verdict: {text}"))
            .to_string()
    }

    #[test]
    fn a_timeout_that_ran_out_says_so() {
        let progressing = Health::new(HealthState::Progressing, "1/2 tasks running");
        let said = verdict(&report(Some(progressing)), Some(Duration::from_secs(8)));
        assert!(
            said.starts_with(
                "Apply failed (the --timeout of 8s ran out with 1 service(s) not healthy)"
            ),
            "{said}"
        );
        let mut rolled_back = Health::new(HealthState::Degraded, "update rolled back");
        rolled_back.settled = true;
        let said = verdict(&report(Some(rolled_back)), Some(Duration::from_secs(300)));
        assert!(
            said.starts_with("Apply failed (1 service(s) not healthy)"),
            "{said}"
        );
    }

    #[test]
    fn no_wait_says_it_did_not_wait() {
        let said = verdict(&report(None), None);
        assert!(
            said.starts_with("Apply sent without waiting (--no-wait"),
            "{said}"
        );
        assert!(!said.contains("converged"), "{said}");
        let said = verdict(&report(None), Some(Duration::from_secs(300)));
        assert!(said.starts_with("Apply converged"), "{said}");
    }

    #[test]
    fn spans_read_as_typed() {
        assert_eq!(span(Duration::from_secs(8)), "8s");
        assert_eq!(span(Duration::from_secs(300)), "5m");
        assert_eq!(span(Duration::from_secs(7200)), "2h");
        assert_eq!(span(Duration::from_millis(500)), "500ms");
    }
}
