//! `shoal apply [PLANFILE]`: take the apply lock, plan (or check a saved plan is still fresh),
//! confirm, check again, apply, release the lock.
//!
//! The plan is made under the lock (DESIGN §3.6), so no other shoal changes the cluster between
//! the plan shown and the steps carried out. A person may take long to answer: after `yes`, the
//! files are read and the cluster observed again, and a plan that changed meanwhile is shown
//! and asked about anew instead of being carried out.

use super::common::{confirm, plan_repo, planning, source, style_for_stdout, Console, RepoDriver};
use super::ApplyArgs;
use anyhow::{bail, Context, Result};
use shoal::apply::progress::{Bar, Lines, Progress};
use shoal::apply::rollback::{roll_back, RolledBack};
use shoal::apply::{apply, exit_code, ApplyOptions};
use shoal::config::notifications::NotifyEvent;
use shoal::drivers::lock::LockHolder;
use shoal::model::rollback::Held;
use shoal::model::{DriverKind, Observed, OnFailure};
use shoal::notify::{
    notice_of_failed_rollback, notice_of_report, notices_of_rollback, Notice, Pacing, Sending,
};
use shoal::observe::{new_content_key, Planned, Planning};
use shoal::plan::report::ApplyReport;
use shoal::plan::rollback::{last_healthy, should_roll_back, Verdict};
use shoal::plan::saved::{check_fresh, parse_saved, Stale};
use shoal::plan::Plan;
use shoal::render::{render_plan, render_report};
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;
use tracing::Instrument;

/// How often a plan that keeps changing while the user decides is shown again.
const ASK_AGAIN: usize = 3;
/// How long apply waits, before it exits, for the notifications still being sent.
const NOTIFY_WAIT: Duration = Duration::from_secs(12);

/// Applies; exit 1 when a step failed, a service did not become healthy or the cluster did not
/// converge.
pub async fn run(repo: &Path, driver_override: Option<DriverKind>, args: ApplyArgs) -> Result<u8> {
    let saved = args.planfile.as_deref().map(read_plan).transpose()?;
    let rev = args
        .rev
        .rev
        .as_deref()
        .or(saved.as_ref().and_then(|p| p.revision.as_deref()))
        .map(str::to_string);
    let options = ApplyOptions {
        dry_run: args.dry_run,
        holder: LockHolder::this_process("shoal apply"),
        wait: (!args.no_wait).then_some(args.timeout),
        // Planned under the lock (but for a dry run): apply carries it on and releases it.
        lock_held: !args.dry_run,
        ..ApplyOptions::default()
    };
    let lock = (!args.dry_run).then(|| (options.holder.clone(), options.lock_ttl_seconds));
    // One content key for every plan of this run (a cluster without one versions alike before
    // and after the confirmation), the saved plan's when it carries one.
    let content_key = match saved.as_ref().and_then(|p| p.new_content_key.clone()) {
        Some(key) => key,
        None => new_content_key()?,
    };
    let replan = || {
        plan_repo(
            repo,
            rev.as_deref(),
            driver_override,
            args.allow_destroy_all,
            lock.clone(),
            Some(content_key.clone()),
        )
    };
    let planned = replan().await?;
    let driver = planned.driver.clone();
    let mut sending = Vec::new();
    let notify = !args.no_notify && !args.dry_run;
    // Whether the lock went to apply, which releases it.
    let handed_over = std::cell::Cell::new(false);
    let outcome = async {
        let planned = match &saved {
            None => planned,
            Some(saved) => Planned {
                plan: check_fresh(saved, planned.plan)?,
                ..planned
            },
        };
        refuse_paused(&planned, &args)?;
        let asks = !planned.plan.is_empty() && !args.dry_run && saved.is_none() && !args.yes;
        // With --json the plan is shown, on standard error, only to someone asked about it.
        let console = Console::beside_json(args.json);
        if !args.json || (asks && std::io::stdin().is_terminal()) {
            console.show(&render_plan(&planned.plan, console.style()))?;
        }
        let planned = if asks {
            confirmed(planned, console, &replan).await?
        } else {
            planned
        };
        refuse_paused(&planned, &args)?;
        let rollback = args.rollback_on_failure.then(|| Rollback {
            repo,
            planning: planning(
                driver_override,
                false,
                lock.clone(),
                Some(content_key.clone()),
            ),
        });
        handed_over.set(true);
        carry_out(
            planned,
            &options,
            args.json,
            args.dry_run,
            notify.then_some(&mut sending),
            rollback.as_ref(),
        )
        .await
    }
    .await;
    if let Some((holder, _)) = lock.as_ref().filter(|_| !handed_over.get()) {
        if let Err(e) = driver
            .unlock(holder)
            .instrument(shoal::phase!("unlock"))
            .await
        {
            eprintln!("warning: could not release the apply lock: {e}");
        }
    }
    // Each failed delivery is logged as a warning where it ends.
    shoal::notify::wait(sending, NOTIFY_WAIT).await;
    outcome
}

/// Refuses to write to a paused cluster (`shoal pause`) unless `--ignore-pause`; a dry run,
/// which writes nothing, goes on.
fn refuse_paused(planned: &Planned, args: &ApplyArgs) -> Result<()> {
    match planned.observed.pause() {
        Some(pause) if !args.ignore_pause && !args.dry_run => bail!(
            "cluster {} is {}: nothing was written ({} step(s) pending; `shoal plan` shows them). Run `shoal resume` when the pause is over, or `shoal apply --ignore-pause` to write anyway",
            planned.desired.cluster,
            pause.line(&shoal::drivers::lock::local_time(pause.since)),
            planned.plan.steps.len()
        ),
        _ => Ok(()),
    }
}

/// Asks for confirmation on `console`; after `yes` plans again (still under the lock). When the
/// files changed while the user decided (their own edit), shows the new plan and asks again; when
/// the cluster changed (someone else's hand, another tool), shows the new plan and stops with
/// exit 1, so that change is kept until someone has looked at it.
async fn confirmed<F, Fut>(mut planned: Planned, console: Console, replan: F) -> Result<Planned>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Planned>>,
{
    for _ in 0..ASK_AGAIN {
        confirm(false, "apply", console)?;
        let fresh = replan().await?;
        match check_fresh(&planned.plan, fresh.plan.clone()) {
            Ok(_) => return Ok(fresh),
            Err(why) => {
                let what = match why {
                    Stale::Cluster => "the cluster changed",
                    Stale::Files { .. } | Stale::Edited { .. } | Stale::NoContentKey => {
                        "the files changed"
                    }
                };
                console.show(&format!(
                    "\nThe plan above is out of date: {what} while you decided. Nothing was changed. The plan now:\n\n{}",
                    render_plan(&fresh.plan, console.style())
                ))?;
                if why == Stale::Cluster && !fresh.plan.is_empty() {
                    bail!("the cluster changed while you decided (by hand, or through another tool), and that change is kept: nothing was written. Read the plan above, then run apply again to carry it out");
                }
                if fresh.plan.is_empty() {
                    return Ok(fresh);
                }
                planned = fresh;
            }
        }
    }
    bail!("the files or the cluster kept changing while you decided; nothing was changed: run apply again")
}

/// What `--rollback-on-failure` needs to plan a rollback: the repository (the healthy
/// revision's files are read from its git history) and how this run plans.
struct Rollback<'a> {
    repo: &'a Path,
    planning: Planning,
}

/// Applies the plan, waits for the services it changed (unless `--no-wait`) and prints the
/// report; exit 1 when a step failed, a service it changed did not become healthy, or (unless
/// `--no-wait`) the cluster did not converge.
///
/// With `rollback` (`--rollback-on-failure`), a service the apply changed that ends degraded
/// rolls the stacks back to the last healthy revision ([`should_roll_back`]): that report is
/// printed after the failed one (with `--json`, under `rollback`), and the exit code is 1.
///
/// When `sending` is given, the `notify:` webhooks are told the outcome (`applied`, `failed`
/// or `degraded`; `failed` then `rolled_back` for a rollback) in the background, their tasks
/// added to it; an empty plan tells nothing.
async fn carry_out(
    planned: Planned,
    options: &ApplyOptions,
    json: bool,
    dry_run: bool,
    sending: Option<&mut Vec<Sending>>,
    rollback: Option<&Rollback<'_>>,
) -> Result<u8> {
    let plan = &planned.plan;
    let options = &ApplyOptions {
        observation: Some(planned.observed.clone()),
        ..options.clone()
    };
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() && !json {
        Box::new(Bar::new(plan.steps.len()))
    } else {
        Box::new(Lines)
    };
    let applied = apply(
        plan,
        &planned.desired,
        planned.driver.clone(),
        options,
        progress.as_ref(),
    )
    .await;
    let desired = &planned.desired;
    let mut notices = Vec::new();
    let mut rolled = None;
    let held = match (&applied, rollback) {
        (Ok(report), Some(_)) => held_after(&planned.observed, plan, report),
        _ => None,
    };
    match (&applied, rollback, held) {
        (Err(e), _, _) => notices.push(Notice::new(
            &desired.cluster,
            plan.revision.as_deref(),
            NotifyEvent::Failed,
            &format!("apply failed: {e}"),
            plan.summary,
            "apply",
        )),
        (Ok(report), Some(rollback), Some(held)) => {
            if !json {
                print!(
                    "\n{}",
                    render_report(report, options.wait, style_for_stdout())
                );
            }
            let (told, outcome) =
                roll_back_once(rollback, &planned, report, held, options, progress.as_ref()).await;
            notices.extend(told);
            rolled = Some(outcome);
        }
        (Ok(report), _, _) => notices.push(notice_of_report(
            &desired.cluster,
            plan.summary,
            report,
            "apply",
        )),
    }
    if let Some(sending) = sending.filter(|_| !plan.is_empty()) {
        sending.extend(shoal::notify::spawn_in_order(
            &desired.notify,
            &notices,
            Pacing::default(),
        ));
    }
    let report = applied?;
    if let Some(rolled) = rolled {
        let rolled = rolled?;
        print_rollback(&report, &rolled.report, options, json)?;
        return Ok(1);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !plan.is_empty() || dry_run {
        print!(
            "\n{}",
            render_report(&report, options.wait, style_for_stdout())
        );
    }
    Ok(exit_code(&report, dry_run, options.wait.is_some()))
}

/// The hold to roll `report`'s apply back to (`--rollback-on-failure`), when the rule
/// [`should_roll_back`] says so; says why not when it cannot.
fn held_after(before: &Observed, plan: &Plan, report: &ApplyReport) -> Option<Held> {
    let healthy = last_healthy(before, plan.revision.as_deref());
    match should_roll_back(OnFailure::Rollback, report, healthy.as_deref()) {
        Verdict::Stay => None,
        Verdict::Cannot { failing, why } => {
            eprintln!("warning: {failing}; it is not rolled back: {why}");
            None
        }
        Verdict::RollBack { to, failing } => Some(Held {
            at: to,
            failed: plan.revision.clone().unwrap_or_default(),
            reason: failing,
        }),
    }
}

/// Rolls the apply of `planned` (its `report`) back to `held.at`, read from the repository's
/// history; the notices to send and how it went.
async fn roll_back_once(
    rollback: &Rollback<'_>,
    planned: &Planned,
    report: &ApplyReport,
    held: Held,
    options: &ApplyOptions,
    progress: &dyn Progress,
) -> (Vec<Notice>, Result<RolledBack>) {
    let (desired, summary) = (&planned.desired, planned.plan.summary);
    let failing = held.reason.clone();
    eprintln!(
        "\n{failing}: rolling back to the last healthy revision {} (--rollback-on-failure)\n",
        short(&held.at)
    );
    let rolled = match source(rollback.repo, Some(&held.at)) {
        Ok(files) => roll_back(
            files,
            desired,
            held,
            &rollback.planning,
            &RepoDriver(rollback.repo),
            options,
            progress,
        )
        .await
        .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    let notices = match &rolled {
        Ok(rolled) => notices_of_rollback(
            &desired.cluster,
            summary,
            report,
            &failing,
            &rolled.report,
            "apply",
        )
        .to_vec(),
        Err(e) => vec![notice_of_failed_rollback(
            &desired.cluster,
            summary,
            report,
            &failing,
            &format!("{e:#}"),
            "apply",
        )],
    };
    (notices, rolled)
}

/// Prints a rollback: with `json`, the failed apply's report with the rollback's under
/// `rollback`; else the rollback's report (the failed one is printed already) and the hold.
fn print_rollback(
    failed: &ApplyReport,
    rollback: &ApplyReport,
    options: &ApplyOptions,
    json: bool,
) -> Result<()> {
    if json {
        let mut value = serde_json::to_value(failed)?;
        value["rollback"] = serde_json::to_value(rollback)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    print!(
        "\nRollback:\n{}",
        render_report(rollback, options.wait, style_for_stdout())
    );
    println!(
        "Rolled back to {}; commit {} is marked failed (`shoal status` shows it; a watcher applies it again only when the branch moves).",
        short(rollback.revision.as_deref().unwrap_or("")),
        short(failed.revision.as_deref().unwrap_or("the working tree"))
    );
    Ok(())
}

/// The first 12 characters of a commit hash.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Reads a saved plan; [`parse_saved`] checks it.
fn read_plan(path: &Path) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the plan file {}", path.display()))?;
    Ok(parse_saved(&path.display().to_string(), &text)?)
}
