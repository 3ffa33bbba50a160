//! `shoal plan`: show what apply would change, and save the plan for `shoal apply FILE` (as
//! shown, secret values masked, readable by its owner only; with the content key of a cluster
//! that has none yet, which `--json` never shows); as text, JSON or a Markdown review comment.

use super::common::{plan_repo, style_for_stdout};
use super::{PlanArgs, PlanFormat};
use anyhow::{Context, Result};
use shoal::model::DriverKind;
use shoal::plan::saved::saved_text;
use shoal::render::{render_plan, render_plan_markdown, CommentContext};
use std::path::Path;

/// Plans, saves and prints; the exit code tells changes apart with `--detailed-exitcode`.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, args: PlanArgs) -> Result<u8> {
    let planned = plan_repo(
        repo,
        args.rev.rev.as_deref(),
        driver_override,
        args.allow_destroy_all,
        None,
        None,
    )
    .await?;
    let missing_applied = if args.against_applied {
        Some(match planned.observed.revision() {
            Some(applied) => shoal::source::commits_missing(repo, applied, args.rev.rev.as_deref())
                .with_context(|| {
                    format!("cannot compare with the cluster's applied revision {applied}")
                })?,
            None => Vec::new(),
        })
    } else {
        None
    };
    let cluster = planned.desired.cluster.clone();
    let plan = planned.plan;
    if let Some(path) = &args.out {
        write_private(path, &saved_text(&plan))
            .with_context(|| format!("cannot write the plan to {}", path.display()))?;
    }
    let format = if args.json {
        PlanFormat::Json
    } else {
        args.format
    };
    match format {
        PlanFormat::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        PlanFormat::Markdown => print!(
            "{}",
            render_plan_markdown(
                &plan,
                &CommentContext {
                    cluster: &cluster,
                    missing_applied,
                }
            )
        ),
        PlanFormat::Text => {
            if let Some(missing) = missing_applied.filter(|m| !m.is_empty()) {
                println!(
                    "Warning: the cluster's applied revision has {} commit(s) this revision lacks; applying it would undo them:",
                    missing.len()
                );
                for line in missing {
                    println!("  - {line}");
                }
                println!();
            }
            print!("{}", render_plan(&plan, style_for_stdout()));
            if let Some(path) = &args.out {
                println!(
                    "\nSaved the plan to {}: apply it with `shoal apply {}`.",
                    path.display(),
                    path.display()
                );
            }
        }
    }
    Ok(
        match (
            args.detailed_exitcode,
            plan.saw_everything(),
            plan.is_empty(),
        ) {
            // Unseen is not in sync: CI must not conclude that all is well.
            (true, false, _) => 1,
            (true, true, false) => 2,
            _ => 0,
        },
    )
}

/// Writes `text` to `path`, readable by its owner only (0600 whatever the umask, also when the
/// file existed): a plan shows the cluster's layout to whoever reads it.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())
}
