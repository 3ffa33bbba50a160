//! What the commands share: reading the files, opening the driver, the planning pass, the
//! confirmation question and the output style.

use anyhow::{bail, Result};
use shoal::diag::Invalid;
use shoal::drivers::lock::LockHolder;
use shoal::drivers::{open_driver, Driver, DriverError};
use shoal::model::content_key::ContentKey;
use shoal::model::{Desired, DriverKind};
use shoal::observe::{load_and_plan, load_desired, OpenDriver, Planned, Planning, PlanningError};
use shoal::render::Style;
use shoal::source::{at_revision, interpolation_env, working_tree, Source};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

/// Colors on a terminal unless NO_COLOR is set.
pub fn style_for_stdout() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Where a question and what it is about are shown: standard output, or standard error when
/// standard output carries JSON (`apply --json`), which must stay valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl Console {
    /// Standard error when `json` is printed on standard output, else standard output.
    pub fn beside_json(json: bool) -> Console {
        if json {
            Console::Stderr
        } else {
            Console::Stdout
        }
    }

    /// Colors when this stream is a terminal, unless NO_COLOR is set.
    pub fn style(self) -> Style {
        match self {
            Console::Stdout => style_for_stdout(),
            Console::Stderr => Style {
                color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            },
        }
    }

    /// Writes `text` as it is and flushes.
    pub fn show(self, text: &str) -> Result<()> {
        match self {
            Console::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
            Console::Stderr => {
                let mut out = std::io::stderr().lock();
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// Asks on a terminal, on `console`; refuses without `--yes` elsewhere.
pub fn confirm(yes: bool, verb: &str, console: Console) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to {verb} without --yes: standard input is not a terminal, so nobody can confirm");
    }
    console.show(&format!(
        "\nDo you want to {verb}? Only 'yes' will be accepted: "
    ))?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        bail!("{verb} cancelled: nothing was changed");
    }
    Ok(())
}

/// The files of the working tree, or of commit `rev`.
pub fn source(repo: &Path, rev: Option<&str>) -> Result<Source> {
    Ok(match rev {
        Some(rev) => at_revision(repo, rev)?,
        None => working_tree(repo)?,
    })
}

/// Loads the whole desired state of the working tree; prints nothing. Invalid files stay an
/// [`Invalid`], which `main` prints as it is (each diagnostic says `error:` already).
pub fn load(repo: &Path, driver_override: Option<DriverKind>) -> Result<Desired> {
    let Source { files, .. } = source(repo, None)?;
    Ok(load_desired(
        files.as_ref(),
        &interpolation_env(),
        driver_override,
    )?)
}

/// The desired state for commands that act on the machines only (status, env, destroy, sim):
/// when a compose file is broken, machines.yml alone is enough, with a warning (DESIGN §2).
pub fn load_cluster(repo: &Path, driver_override: Option<DriverKind>) -> Result<Desired> {
    let Source { files, .. } = source(repo, None)?;
    let invalid = match load_desired(files.as_ref(), &interpolation_env(), driver_override) {
        Ok(desired) => return Ok(desired),
        Err(invalid) => invalid,
    };
    let Ok(mut desired) = shoal::config::load_machines(files.as_ref()) else {
        return Err(invalid.into());
    };
    eprintln!(
        "warning: the stacks' files are not valid ({} error(s), see `shoal validate`); going on with machines.yml alone",
        errors(&invalid)
    );
    if let Some(driver) = driver_override {
        desired.driver = driver;
    }
    Ok(desired)
}

fn errors(invalid: &Invalid) -> usize {
    invalid
        .diagnostics
        .iter()
        .filter(|d| d.severity == shoal::diag::Severity::Error)
        .count()
}

/// Opens the driver anew, keeping the sim driver's state in the repository folder.
pub struct RepoDriver<'a>(pub &'a Path);

#[async_trait::async_trait]
impl OpenDriver for RepoDriver<'_> {
    async fn open(&self, desired: &Desired) -> Result<Arc<dyn Driver>, DriverError> {
        open_driver(desired, self.0).await
    }
}

/// How the one-shot commands plan: with this process's environment for interpolation.
pub fn planning(
    driver_override: Option<DriverKind>,
    allow_destroy_all: bool,
    lock: Option<(LockHolder, u64)>,
    content_key: Option<ContentKey>,
) -> Planning {
    Planning {
        env: interpolation_env(),
        driver_override,
        allow_destroy_all,
        lock,
        content_key,
    }
}

/// Load → open the driver → (take the apply lock for `lock`) → observe → plan, for the files
/// of the working tree or of `rev`; secrets and configs versioned with `content_key` while the
/// swarm has no key (a new one when `None`).
pub async fn plan_repo(
    repo: &Path,
    rev: Option<&str>,
    driver_override: Option<DriverKind>,
    allow_destroy_all: bool,
    lock: Option<(LockHolder, u64)>,
    content_key: Option<ContentKey>,
) -> Result<Planned> {
    let planning = planning(driver_override, allow_destroy_all, lock, content_key);
    load_and_plan(source(repo, rev)?, &planning, &RepoDriver(repo))
        .await
        .map_err(|e| match e {
            PlanningError::Invalid(invalid) => invalid.into(),
            other => other.into(),
        })
}
