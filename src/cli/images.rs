//! `shoal images [update [--commit] [--push]]`: the image policies of machines.yml (DESIGN §9),
//! what the compose files name and what the registries offer; `update` rewrites the references
//! in the working tree (only the tag or digest), `--commit` commits them as `shoal`, `--push`
//! pushes the commit to the branch's remote.

use anyhow::{anyhow, bail, Context, Result};
use shoal::registry::policies::{pass, Pass};
use shoal::source::{self, publish};
use shoal_core::images::update::TrackReport;
use std::path::Path;

/// What `shoal images update` does beyond rewriting the files.
#[derive(Clone, Copy, Debug, Default)]
pub struct UpdateFlags {
    /// Commit the rewritten files.
    pub commit: bool,
    /// Push the commit.
    pub push: bool,
}

/// Lists the policies (`update: None`) or updates the files; exit 0, 1 on an error.
pub async fn run(repo: &Path, json: bool, update: Option<UpdateFlags>) -> Result<u8> {
    let tree = source::working_tree(repo)?;
    let done = pass(tree.files.as_ref()).await?;
    for warning in &done.scan.warnings {
        eprintln!("{warning}");
    }
    let Some(flags) = update else {
        if json {
            println!("{}", serde_json::to_string_pretty(&done.report)?);
        } else {
            print!("{}", listing(&done.report));
        }
        return Ok(exit_for(&done.report));
    };
    for report in &done.report {
        if let Some(error) = &report.error {
            eprintln!(
                "warning: {}: the registry could not be asked: {error}",
                report.repository
            );
        }
    }
    if done.changes.is_empty() {
        if json {
            println!("{}", serde_json::json!({"changes": [], "commit": null}));
        } else {
            println!("Images are up to date: nothing to change.");
        }
        return Ok(exit_for(&done.report));
    }
    let commit = write(repo, &done, flags)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"changes": done.changes, "commit": commit})
            )?
        );
    } else {
        for change in &done.changes {
            println!(
                "{}:{}: {}: {} → {}",
                change.file, change.line, change.service, change.from, change.to
            );
        }
        if let Some(commit) = &commit {
            println!(
                "Committed {} as shoal:\n{}",
                &commit[..12.min(commit.len())],
                done.message()
            );
        }
    }
    Ok(exit_for(&done.report))
}

/// 1 when a registry could not be asked, else 0.
fn exit_for(report: &[TrackReport]) -> u8 {
    u8::from(report.iter().any(|r| r.error.is_some()))
}

/// The listing of `shoal images`.
fn listing(report: &[TrackReport]) -> String {
    if report.is_empty() {
        return "No image policies: add `images:` to machines.yml (see README, \"Image policies\").\n"
            .to_string();
    }
    let mut out = String::new();
    for track in report {
        out.push_str(&format!("{} ({})\n", track.repository, track.policy));
        if track.written.is_empty() {
            out.push_str("  no compose file names it\n");
        }
        for written in &track.written {
            let update = match &written.update {
                Some(to) => format!("  → {to}"),
                None => String::new(),
            };
            out.push_str(&format!(
                "  {}:{} {}: {}{update}\n",
                written.file, written.line, written.service, written.image
            ));
        }
        match (&track.error, &track.newest) {
            (Some(error), _) => out.push_str(&format!("  registry: cannot be asked: {error}\n")),
            (None, Some(newest)) => out.push_str(&format!("  registry offers: {newest}\n")),
            (None, None) => out.push_str("  registry offers: nothing within the policy\n"),
        }
    }
    out
}

/// Writes the new files into the working tree and, with `--commit`, commits them (and pushes
/// with `--push`); the commit's id.
fn write(repo: &Path, done: &Pass, flags: UpdateFlags) -> Result<Option<String>> {
    let located = (flags.commit || flags.push)
        .then(|| source::locate(repo))
        .flatten();
    if (flags.commit || flags.push) && located.is_none() {
        bail!("{} is not inside a git repository, so the change cannot be committed: run `git init` there, or leave out --commit", repo.display());
    }
    if let Some((git, prefix)) = &located {
        refuse_local_changes(git, prefix, done)?;
    }
    for (file, text) in &done.files {
        std::fs::write(repo.join(file), text)
            .with_context(|| format!("cannot write {}", repo.join(file).display()))?;
    }
    let Some((git, prefix)) = located else {
        return Ok(None);
    };
    let head = git.head().and_then(|h| h.peel_to_commit()).map_err(|e| {
        anyhow!(
            "{}: HEAD has no commit to build on ({})",
            repo.display(),
            e.message()
        )
    })?;
    let made = publish::commit_files(
        &git,
        head.id(),
        &prefix,
        &done.files,
        &done.message(),
        Some("HEAD"),
    )?;
    let mut index = git.index()?;
    for file in done.files.keys() {
        let path = if prefix.is_empty() {
            file.clone()
        } else {
            format!("{prefix}/{file}")
        };
        index.add_path(Path::new(&path))?;
    }
    index.write()?;
    if flags.push {
        let branch = git
            .head()?
            .shorthand()
            .map(str::to_string)
            .filter(|b| b != "HEAD")
            .ok_or_else(|| {
                anyhow!(
                    "HEAD of {} is detached: check out the branch to push to",
                    repo.display()
                )
            })?;
        let remote_name = git
            .branch_upstream_remote(&format!("refs/heads/{branch}"))
            .ok()
            .and_then(|r| r.as_str().map(str::to_string))
            .unwrap_or_else(|| "origin".to_string());
        let remote = git.find_remote(&remote_name).map_err(|_| {
            anyhow!("{} has no remote `{remote_name}` to push to: `git remote add {remote_name} URL`, or leave out --push", repo.display())
        })?;
        let url = remote
            .url()
            .ok_or_else(|| anyhow!("the URL of remote `{remote_name}` is not UTF-8"))?
            .to_string();
        publish::push(&git, &url, made, &branch)?;
        println!("Pushed to {} ({branch}).", source::remote::redact(&url));
    }
    Ok(Some(made.to_string()))
}

/// Refuses when a file to rewrite differs from HEAD: the commit would carry the user's edits.
fn refuse_local_changes(git: &git2::Repository, prefix: &str, done: &Pass) -> Result<()> {
    let head = git.head().and_then(|h| h.peel_to_tree()).ok();
    for file in done.files.keys() {
        let path = if prefix.is_empty() {
            file.clone()
        } else {
            format!("{prefix}/{file}")
        };
        let status = git
            .status_file(Path::new(&path))
            .unwrap_or(git2::Status::WT_NEW);
        if status != git2::Status::CURRENT || head.is_none() {
            bail!("{path} has changes that are not committed: commit or stash them first, so that shoal's commit holds only the image change");
        }
    }
    Ok(())
}
