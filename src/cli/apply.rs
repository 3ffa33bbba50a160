//! `shoal apply [PLANFILE]`: plan (or check a saved plan is still fresh), confirm, apply.

use super::common::{confirm, plan_repo, style_for_stdout};
use super::ApplyArgs;
use anyhow::{Context, Result};
use shoal::apply::progress::{Bar, Lines, Progress};
use shoal::apply::{apply, ApplyOptions};
use shoal::model::DriverKind;
use shoal::plan::saved::{check_fresh, parse_saved};
use shoal::plan::Plan;
use shoal::render::{render_plan, render_report};
use std::io::IsTerminal;
use std::path::Path;

/// Applies; exit 1 when a step failed.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, args: ApplyArgs) -> Result<u8> {
    let saved = args.planfile.as_deref().map(read_plan).transpose()?;
    let rev = args
        .rev
        .rev
        .as_deref()
        .or(saved.as_ref().and_then(|p| p.revision.as_deref()));
    let planned = plan_repo(repo, rev, driver_override, args.allow_destroy_all).await?;
    let plan = match &saved {
        None => planned.plan,
        Some(saved) => check_fresh(saved, planned.plan)?,
    };
    let style = style_for_stdout();
    if !args.json {
        print!("{}", render_plan(&plan, style));
    }
    if !plan.is_empty() && !args.dry_run && saved.is_none() {
        confirm(args.yes, "apply")?;
    }
    let options = ApplyOptions {
        dry_run: args.dry_run,
        ..ApplyOptions::default()
    };
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() && !args.json {
        Box::new(Bar::new(plan.steps.len()))
    } else {
        Box::new(Lines)
    };
    let report = apply(
        &plan,
        &planned.desired,
        planned.driver,
        &options,
        progress.as_ref(),
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !plan.is_empty() || args.dry_run {
        print!("\n{}", render_report(&report, style));
    }
    let failed = report
        .steps
        .iter()
        .any(|s| s.status != shoal::plan::report::StepStatus::Done);
    Ok(if failed { 1 } else { 0 })
}

/// Reads a saved plan; [`parse_saved`] checks it.
fn read_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan file {}", path.display()))?;
    Ok(parse_saved(&path.display().to_string(), &text)?)
}
