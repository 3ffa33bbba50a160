//! Node images of a given Docker version, made from Debian's package archive with nothing on
//! the host but this program: the suite's `InRelease` names the SHA256 of its `Packages.xz`,
//! which names the SHA256 of every `.deb`; the dependency closure of the engine's packages is
//! downloaded (cached under `$XDG_CACHE_HOME/shoal/debs/`), unpacked without running any
//! maintainer script, and laid into the node image's root filesystem.
//!
//! The archive is `driver_options.debian_mirror`, else `$SHOAL_DEBIAN_MIRROR`, else the
//! Debian archive this machine's apt sources name, else `http://deb.debian.org/debian`.
//! The release file's OpenPGP signature is not checked: the hashes chain from `InRelease`
//! fetched from that archive, so use an archive you trust (https where it offers it).

pub mod deb;
mod fetch;
pub mod packages;
pub mod resolve;
pub mod sources;

use super::nodeimage::Rootfs;
use deb::{Installed, Manifest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Environment variable naming the Debian archive to build node images from.
pub const MIRROR_ENV: &str = "SHOAL_DEBIAN_MIRROR";
/// Where the apt sources of this machine are.
const APT_SOURCES_DIR: &str = "/etc/apt/sources.list.d";
/// The one-line apt sources file.
const APT_SOURCES_LIST: &str = "/etc/apt/sources.list";
/// The index read in each suite.
const PACKAGES_INDEX: &str = "main/binary-amd64/Packages.xz";
/// Largest `InRelease` accepted.
const MAX_RELEASE: usize = 4 << 20;
/// What a node runs besides the engine: the docker CLI of the same version (for commands run
/// inside a node), iptables (which the node's init and dockerd run), and a shell with the
/// core tools (`/usr/bin/shoal` is a script, and `docker exec` users expect `sh`).
pub const PACKAGES: &[&str] = &[
    "docker.io",
    "docker-cli",
    "containerd",
    "runc",
    "iptables",
    "dash",
    "coreutils",
];

/// A Docker version that shoal builds node images of, and the suite that ships it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebianEngine {
    /// The name in `driver_options.engine`.
    pub name: &'static str,
    /// The Debian suite that ships it.
    pub suite: &'static str,
}

/// The engines that can be built: 26.1 from trixie, 28.5 from sid.
pub const ENGINES: &[DebianEngine] = &[
    DebianEngine {
        name: "26",
        suite: "trixie",
    },
    DebianEngine {
        name: "28",
        suite: "sid",
    },
];

/// Why a Debian-built node image cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum DebianError {
    /// The archive did not give a file.
    #[error("cannot fetch {url}: {problem}; is the Debian archive reachable from here? Set {MIRROR_ENV} or driver_options.debian_mirror to another mirror, or use engine: host")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// A file's hash is not the one its index names.
    #[error("{url} has SHA256 {found}, but {index} says {expected}; the mirror may be mid-update: try again later or another mirror")]
    Checksum {
        /// The URL.
        url: String,
        /// The index that names the hash.
        index: String,
        /// The hash named.
        expected: String,
        /// The hash found.
        found: String,
    },
    /// The suite's index cannot be read.
    #[error("suite {suite} at {archive}: {problem}")]
    Index {
        /// The suite.
        suite: String,
        /// The archive.
        archive: String,
        /// What is wrong.
        problem: String,
    },
    /// The suite does not have what is wanted any more, or not all it needs.
    #[error("suite {suite} cannot give {what}: {problem}")]
    Wanted {
        /// What was wanted (`Docker 26`, `the VM kernel`).
        what: String,
        /// The suite.
        suite: String,
        /// What is wrong.
        problem: String,
    },
    /// A package cannot be unpacked.
    #[error("package {package} ({path}): {source}")]
    Deb {
        /// The package.
        package: String,
        /// The downloaded file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: deb::DebError,
    },
    /// The cache folder cannot be used.
    #[error("{context}: {source}; set XDG_CACHE_HOME to a writable folder")]
    Cache {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn cache_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> DebianError {
    let context = context.into();
    move |source| DebianError::Cache { context, source }
}

/// The engine called `name` in `driver_options.engine`.
pub fn engine(name: &str) -> Option<DebianEngine> {
    ENGINES.iter().find(|e| e.name == name).copied()
}

/// The archive to use: the option, else [`MIRROR_ENV`], else this machine's apt sources, else
/// Debian's default.
pub fn archive_url(option: Option<&str>) -> String {
    if let Some(url) = option.filter(|u| !u.is_empty()) {
        return url.trim_end_matches('/').to_string();
    }
    if let Some(url) = std::env::var(MIRROR_ENV).ok().filter(|u| !u.is_empty()) {
        return url.trim_end_matches('/').to_string();
    }
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(APT_SOURCES_DIR) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => found.extend(sources::parse_deb822(&text)),
                Some("list") => found.extend(sources::parse_one_line(&text)),
                _ => {}
            }
        }
    }
    if let Ok(text) = std::fs::read_to_string(APT_SOURCES_LIST) {
        found.extend(sources::parse_one_line(&text));
    }
    sources::debian_archive(&found).unwrap_or_else(|| sources::DEFAULT_MIRROR.to_string())
}

/// Where downloaded packages and resolved indexes are kept: `$XDG_CACHE_HOME/shoal/debs`.
pub fn cache_dir() -> PathBuf {
    crate::source::remote::cache_root().join("debs")
}

/// One package of a resolved closure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    /// The package.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its path under the archive's root.
    pub filename: String,
    /// Its SHA256.
    pub sha256: String,
}

/// The packages a node image of one engine is made of, as one index named them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    /// The suite.
    pub suite: String,
    /// The archive.
    pub archive: String,
    /// The version of the main package (docker.io, the kernel).
    #[serde(alias = "engine_version")]
    pub version: String,
    /// The packages, sorted by name.
    pub packages: Vec<Pinned>,
}

impl Closure {
    /// A hash of the package names and versions.
    pub fn digest(&self) -> String {
        let mut hash = Sha256::new();
        for package in &self.packages {
            hash.update(format!("{}={}\n", package.name, package.version));
        }
        hex::encode(hash.finalize())
    }
}

/// Picks packages from a suite's index, given [`Wanted::arg`]: the version of the main one,
/// and the packages.
pub type Select =
    for<'a> fn(&'a resolve::Index, &str) -> Result<(String, Vec<&'a packages::Package>), String>;

/// What to take from one suite's index: a name for messages and the cache, and the choice of
/// packages.
#[derive(Clone)]
pub struct Wanted {
    /// The suite.
    pub suite: &'static str,
    /// What is wanted, in messages (`Docker 26`, `the VM kernel`).
    pub what: String,
    /// The cache's name for it.
    pub key: &'static str,
    /// What `select` is given.
    pub arg: &'static str,
    /// Picks the packages from the suite's index.
    pub select: Select,
}

impl Wanted {
    /// The packages of a node image of `engine`: the closure of [`PACKAGES`], its docker.io of
    /// the engine's major version.
    pub fn engine(engine: DebianEngine) -> Wanted {
        Wanted {
            suite: engine.suite,
            what: format!("Docker {}", engine.name),
            key: "docker",
            arg: engine.name,
            select: engine_packages,
        }
    }
}

/// The closure of [`PACKAGES`] in `index`, whose docker.io must be of the `major` version.
fn engine_packages<'a>(
    index: &'a resolve::Index,
    major: &str,
) -> Result<(String, Vec<&'a packages::Package>), String> {
    let docker = index
        .get("docker.io")
        .ok_or_else(|| "it has no docker.io package".to_string())?;
    let found = docker.version.split(['.', ':']).next().unwrap_or_default();
    if found != major {
        return Err(format!(
            "its docker.io is {} now; pick the engine of that version, or engine: host",
            docker.version
        ));
    }
    let chosen = resolve::closure(index, PACKAGES).map_err(|e| e.to_string())?;
    Ok((docker.version.clone(), chosen))
}

/// The closure of [`PACKAGES`] in the engine's suite, as the archive's current index names it.
pub async fn closure(engine: DebianEngine, archive: &str) -> Result<Closure, DebianError> {
    resolve_wanted(Wanted::engine(engine), archive).await
}

/// The packages `wanted` picks in its suite, as the archive's current index names them;
/// resolved once per index (kept in the cache by the index's hash). When the archive cannot be
/// reached, the packages resolved last for that suite are used, with a warning.
pub async fn resolve_wanted(wanted: Wanted, archive: &str) -> Result<Closure, DebianError> {
    let dir = cache_dir().join("index");
    std::fs::create_dir_all(&dir)
        .map_err(cache_error(format!("cannot create {}", dir.display())))?;
    let latest = dir.join(format!("{}-{}-latest.json", wanted.suite, wanted.key));
    let release_url = format!("{archive}/dists/{}/InRelease", wanted.suite);
    let release = match fetch::bytes(&release_url, MAX_RELEASE).await {
        Ok(release) => release,
        Err(problem) => {
            if let Some(closure) = read_closure(&latest).filter(|c| c.archive == archive) {
                tracing::warn!(url = %release_url, problem = %problem, "the Debian archive does not answer; using the packages resolved last for {} ({})", wanted.what, wanted.suite);
                return Ok(closure);
            }
            return Err(DebianError::Fetch {
                url: release_url,
                problem,
            });
        }
    };
    let release = String::from_utf8_lossy(&release);
    let index_error = |problem: String| DebianError::Index {
        suite: wanted.suite.to_string(),
        archive: archive.to_string(),
        problem,
    };
    let (sha256, _size) = packages::release_sha256(&release)
        .remove(PACKAGES_INDEX)
        .ok_or_else(|| {
            index_error(format!(
                "{release_url} lists no SHA256 for {PACKAGES_INDEX}"
            ))
        })?;
    let resolved = dir.join(format!(
        "{}-{}-{}.json",
        wanted.suite,
        wanted.key,
        &sha256[..16]
    ));
    if let Some(closure) = read_closure(&resolved).filter(|c| c.archive == archive) {
        return Ok(closure);
    }
    let index_url = format!("{archive}/dists/{}/{PACKAGES_INDEX}", wanted.suite);
    let compressed = fetch::bytes(&index_url, 256 << 20)
        .await
        .map_err(|problem| DebianError::Fetch {
            url: index_url.clone(),
            problem,
        })?;
    let found = hex::encode(Sha256::digest(&compressed));
    if found != sha256 {
        return Err(DebianError::Checksum {
            url: index_url,
            index: release_url,
            expected: sha256,
            found,
        });
    }
    let closure = tokio::task::spawn_blocking({
        let archive = archive.to_string();
        move || resolve_index(wanted, &archive, &compressed)
    })
    .await
    .map_err(|e| index_error(format!("resolving panicked: {e}")))??;
    let text = serde_json::to_string_pretty(&closure).unwrap_or_default();
    for path in [&resolved, &latest] {
        std::fs::write(path, &text)
            .map_err(cache_error(format!("cannot write {}", path.display())))?;
    }
    Ok(closure)
}

/// Whether the archive serves the engine's suite: fetches its `InRelease` (for `shoal doctor`).
pub async fn probe(engine: DebianEngine, archive: &str) -> Result<(), DebianError> {
    let url = format!("{archive}/dists/{}/InRelease", engine.suite);
    fetch::bytes(&url, MAX_RELEASE)
        .await
        .map(|_| ())
        .map_err(|problem| DebianError::Fetch { url, problem })
}

fn read_closure(path: &Path) -> Option<Closure> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// Reads a compressed `Packages` index and picks `wanted`'s packages in it.
fn resolve_index(wanted: Wanted, archive: &str, compressed: &[u8]) -> Result<Closure, DebianError> {
    let index_error = |problem: String| DebianError::Index {
        suite: wanted.suite.to_string(),
        archive: archive.to_string(),
        problem,
    };
    let mut text = String::new();
    xz2::read::XzDecoder::new(compressed)
        .read_to_string(&mut text)
        .map_err(|e| index_error(format!("cannot decompress {PACKAGES_INDEX}: {e}")))?;
    let (read, problems) = packages::parse_packages(&text);
    if read.is_empty() {
        return Err(index_error(format!("{PACKAGES_INDEX} holds no package")));
    }
    let index = resolve::Index::new(read);
    let (version, chosen) = (wanted.select)(&index, wanted.arg).map_err(|problem| {
        // A package left out for a malformed stanza is told as that.
        let cause = problems.iter().find(|p| {
            problem
                .split([' ', '|', '`', ','])
                .any(|word| word == p.package())
        });
        DebianError::Wanted {
            what: wanted.what.clone(),
            suite: wanted.suite.to_string(),
            problem: match cause {
                Some(cause) => format!("{problem} ({cause})"),
                None => problem,
            },
        }
    })?;
    Ok(Closure {
        suite: wanted.suite.to_string(),
        archive: archive.to_string(),
        version,
        packages: chosen
            .into_iter()
            .map(|p| Pinned {
                name: p.name.clone(),
                version: p.version.clone(),
                filename: p.filename.clone(),
                sha256: p.sha256.clone(),
            })
            .collect(),
    })
}

/// A package downloaded and unpacked: its folder of files and what it installs.
#[derive(Debug)]
pub struct Unpacked {
    /// The package.
    pub name: String,
    /// Where its regular files are, at their image paths.
    pub dir: PathBuf,
    /// What it installs.
    pub manifest: Manifest,
}

/// Downloads (when not cached) and unpacks (when not unpacked yet) every package of `closure`.
/// Returns them in the closure's order and the bytes downloaded.
pub async fn unpack_all(closure: &Closure) -> Result<(Vec<Unpacked>, u64), DebianError> {
    let cache = cache_dir();
    let _only_this_process = lock_cache(&cache).await?;
    let mut unpacked = Vec::new();
    let mut downloaded = 0;
    for package in &closure.packages {
        let file = package
            .filename
            .rsplit('/')
            .next()
            .unwrap_or(&package.filename);
        let stem = file.trim_end_matches(".deb");
        let dir = cache.join(stem);
        let manifest_path = dir.join(".shoal-manifest");
        if let Some(manifest) = std::fs::read_to_string(&manifest_path)
            .ok()
            .and_then(|t| Manifest::from_text(&t))
        {
            unpacked.push(Unpacked {
                name: package.name.clone(),
                dir,
                manifest,
            });
            continue;
        }
        let deb_path = cache.join(file);
        let have = std::fs::read(&deb_path)
            .ok()
            .filter(|bytes| hex::encode(Sha256::digest(bytes)) == package.sha256);
        let bytes = match have {
            Some(bytes) => bytes,
            None => {
                downloaded += download(closure, package, &deb_path).await?;
                std::fs::read(&deb_path)
                    .map_err(cache_error(format!("cannot read {}", deb_path.display())))?
            }
        };
        let manifest = tokio::task::spawn_blocking({
            let dir = dir.clone();
            let deb_path = deb_path.clone();
            let name = package.name.clone();
            move || unpack_into(&name, &bytes, &deb_path, &dir)
        })
        .await
        .map_err(|e| DebianError::Cache {
            context: format!("unpacking {} panicked", package.name),
            source: std::io::Error::other(e.to_string()),
        })??;
        std::fs::write(&manifest_path, manifest.to_text()).map_err(cache_error(format!(
            "cannot write {}",
            manifest_path.display()
        )))?;
        unpacked.push(Unpacked {
            name: package.name.clone(),
            dir,
            manifest,
        });
    }
    Ok((unpacked, downloaded))
}

/// An exclusive lock of the cache folder, held while this process downloads and unpacks into
/// it (released when the file is dropped), so that two shoal processes never write one file.
async fn lock_cache(cache: &Path) -> Result<std::fs::File, DebianError> {
    use fs4::fs_std::FileExt;
    std::fs::create_dir_all(cache)
        .map_err(cache_error(format!("cannot create {}", cache.display())))?;
    let path = cache.join(".lock");
    let context = format!("cannot lock {}", path.display());
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock_exclusive()?;
        Ok(file)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|locked| locked)
    .map_err(cache_error(context))
}

/// Downloads one package to `path` and checks its hash; returns its size.
async fn download(closure: &Closure, package: &Pinned, path: &Path) -> Result<u64, DebianError> {
    let url = format!("{}/{}", closure.archive, package.filename);
    let partial = path.with_extension("deb.partial");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(cache_error(format!("cannot create {}", parent.display())))?;
    }
    let size = fetch::to_file(&url, &partial)
        .await
        .map_err(|problem| DebianError::Fetch {
            url: url.clone(),
            problem,
        })?;
    let bytes = std::fs::read(&partial)
        .map_err(cache_error(format!("cannot read {}", partial.display())))?;
    let found = hex::encode(Sha256::digest(&bytes));
    if found != package.sha256 {
        let _ = std::fs::remove_file(&partial);
        return Err(DebianError::Checksum {
            url,
            index: format!(
                "{}/dists/{}/{PACKAGES_INDEX}",
                closure.archive, closure.suite
            ),
            expected: package.sha256.clone(),
            found,
        });
    }
    std::fs::rename(&partial, path)
        .map_err(cache_error(format!("cannot write {}", path.display())))?;
    Ok(size)
}

/// Unpacks into a fresh folder beside `dir`, then moves it into place.
fn unpack_into(
    name: &str,
    bytes: &[u8],
    deb_path: &Path,
    dir: &Path,
) -> Result<Manifest, DebianError> {
    let fresh = PathBuf::from(format!("{}.unpacking", dir.display()));
    let _ = std::fs::remove_dir_all(&fresh);
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(&fresh)
        .map_err(cache_error(format!("cannot create {}", fresh.display())))?;
    let manifest = deb::unpack(bytes, &fresh).map_err(|source| DebianError::Deb {
        package: name.to_string(),
        path: deb_path.to_path_buf(),
        source,
    })?;
    std::fs::rename(&fresh, dir).map_err(cache_error(format!("cannot write {}", dir.display())))?;
    Ok(manifest)
}

/// Lays the packages' files, folders and links into `rootfs`, in order (a later package's
/// entry replaces an earlier one's at the same path, as dpkg's would with `--force-overwrite`).
pub(crate) fn add_packages(rootfs: &mut Rootfs, unpacked: &[Unpacked]) {
    for package in unpacked {
        for (path, installed) in &package.manifest.entries {
            match installed {
                Installed::Dir(mode) => {
                    if !rootfs.entries.contains_key(path) {
                        rootfs.dir(path, *mode);
                    }
                }
                Installed::File(mode) => rootfs.file(path, &package.dir.join(path), *mode),
                Installed::Symlink(target) => rootfs.symlink(path, target),
                Installed::Hardlink(target) => {
                    let mode = package
                        .manifest
                        .entries
                        .iter()
                        .find_map(|(p, i)| match i {
                            Installed::File(mode) if p == target => Some(*mode),
                            _ => None,
                        })
                        .unwrap_or(0o755);
                    rootfs.file(path, &package.dir.join(target), mode);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::dind::nodeimage::Entry;

    #[test]
    fn packages_are_laid_in_order_with_hard_links_as_copies() {
        let first = Unpacked {
            name: "dash".into(),
            dir: PathBuf::from("/cache/dash"),
            manifest: Manifest {
                entries: vec![
                    ("usr/bin".into(), Installed::Dir(0o755)),
                    ("usr/bin/dash".into(), Installed::File(0o755)),
                    ("usr/bin/sh".into(), Installed::Symlink("dash".into())),
                    (
                        "usr/bin/ash".into(),
                        Installed::Hardlink("usr/bin/dash".into()),
                    ),
                ],
            },
        };
        let second = Unpacked {
            name: "other".into(),
            dir: PathBuf::from("/cache/other"),
            manifest: Manifest {
                entries: vec![
                    ("usr/bin".into(), Installed::Dir(0o700)),
                    ("usr/bin/sh".into(), Installed::File(0o755)),
                ],
            },
        };
        let mut rootfs = Rootfs::default();
        add_packages(&mut rootfs, &[first, second]);
        assert_eq!(rootfs.entries["usr/bin"], Entry::Dir { mode: 0o755 });
        assert_eq!(
            rootfs.entries["usr/bin/ash"],
            Entry::File {
                source: PathBuf::from("/cache/dash/usr/bin/dash"),
                mode: 0o755
            }
        );
        assert_eq!(
            rootfs.entries["usr/bin/sh"],
            Entry::File {
                source: PathBuf::from("/cache/other/usr/bin/sh"),
                mode: 0o755
            }
        );
    }

    #[test]
    fn a_closure_digest_covers_names_and_versions() {
        let pinned = |version: &str| Pinned {
            name: "docker.io".into(),
            version: version.into(),
            filename: "pool/d.deb".into(),
            sha256: "00".into(),
        };
        let closure = |version: &str| Closure {
            suite: "sid".into(),
            archive: "http://deb.debian.org/debian".into(),
            version: version.into(),
            packages: vec![pinned(version)],
        };
        assert_eq!(closure("28.5.2").digest(), closure("28.5.2").digest());
        assert_ne!(closure("28.5.2").digest(), closure("28.5.3").digest());
        assert_eq!(engine("28").map(|e| e.suite), Some("sid"));
        assert_eq!(engine("27"), None);
    }

    #[test]
    fn validate_knows_every_engine() {
        let names: Vec<&str> = std::iter::once("host")
            .chain(ENGINES.iter().map(|e| e.name))
            .collect();
        assert_eq!(names, crate::config::machines::DIND_ENGINES);
    }
}
