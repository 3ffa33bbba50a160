//! The node image, built with no registry: from the host's own engine binaries (`engine: host`,
//! the default), or from Debian's packages of another Docker version (`engine: "26"` or `"28"`,
//! see [`super::debian`]).
//!
//! The host's root filesystem holds dockerd, containerd, its runc shim, runc, docker-init (tini),
//! docker-proxy and the iptables multi-binaries with their `ldd` closures and the xtables
//! extensions they load at run time, shoal's own binary as the node's init and `modprobe` stub
//! (see [`super::node_init`]; no shell, no busybox), and a few files under `/etc`. It is written
//! as a tar stream straight into `POST /images/create?fromSrc=-` and tagged
//! `shoal-node:<hash>`, where the hash covers every input file's path, size and modification
//! time and the node init's source: an upgraded docker package gives a new tag, and an existing
//! tag is reused as it is. The shoal binary is hashed by the node init's source, not by its
//! bytes, so rebuilding shoal does not rebuild the image unless the init changed.
//!
//! A Debian-built image holds the unpacked packages with the same folders and `/etc` files, and
//! shoal's binary under `/opt/shoal` with the host libraries it was built against (the image's
//! own libc is another one), run through the loader there. It is tagged
//! `shoal-node:<engine>-<hash>`, the hash covering the packages' names and versions and
//! everything shoal adds to them.

use super::debian::{self, DebianEngine};
use super::node_init::IPTABLES_TOOLS;
use super::upload;
use super::DindError;
use super::{is_not_found, NODE_HOST_DIR};
use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};
use bollard::Docker;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Repository of the built node images.
pub const NODE_IMAGE_REPO: &str = "shoal-node";
/// Label set on the built node images.
pub const NODE_IMAGE_LABEL: &str = "io.shoal.node-image";
/// The node init's source: what the shoal binary in the image is hashed by.
const NODE_INIT_SOURCE: &str = include_str!("node_init.rs");
/// Where shoal's binary lives in the image.
const SHOAL_PATH: &str = "usr/bin/shoal";
/// Environment variable naming the shoal executable to put in node images, for programs that
/// are not shoal itself (tests, examples); shoal uses its own executable.
pub const NODE_BINARY_ENV: &str = "SHOAL_NODE_BINARY";
/// Bumped whenever the layout below changes, so the tag changes with it.
const LAYOUT: &str = "shoal-node-layout-2";
/// Bumped whenever the layout of the Debian-built images changes.
const DEBIAN_LAYOUT: &str = "shoal-node-debian-layout-2";
/// The label value of the images built from the host's binaries.
const HOST_LABEL_VALUE: &str = "1";
/// Where a Debian-built image keeps shoal's binary and the host libraries it loads.
const OPT_SHOAL: &str = "opt/shoal";
/// The dynamic loader's name on x86-64, among those libraries.
const LOADER: &str = "ld-linux-x86-64.so.2";
/// Modification time given to generated entries (2020-01-01).
const GENERATED_MTIME: u64 = 1_577_836_800;
/// Folders searched for the host binaries, after `$PATH`.
const SEARCH_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/libexec/docker",
];
/// Engine binaries the node needs: (name in the image, names to look for on the host).
const ENGINE_BINARIES: &[(&str, &[&str])] = &[
    ("dockerd", &["dockerd"]),
    ("containerd", &["containerd"]),
    ("containerd-shim-runc-v2", &["containerd-shim-runc-v2"]),
    ("runc", &["runc"]),
    ("docker-init", &["docker-init", "tini-static", "tini"]),
    ("docker-proxy", &["docker-proxy"]),
];
/// The iptables multi-call binaries (at least one is needed).
const XTABLES: &[&str] = &["xtables-nft-multi", "xtables-legacy-multi"];
/// Host files copied into `/etc` when present.
const ETC_FROM_HOST: &[&str] = &["protocols", "services", "ethertypes"];

/// The Docker version a node runs: `driver_options.engine`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// The host's own engine binaries (the default).
    #[default]
    Host,
    /// A version built from Debian's packages.
    Debian(DebianEngine),
}

impl Engine {
    /// The engine named `name` (`host`, `26`, `28`).
    pub fn parse(name: &str) -> Option<Engine> {
        match name {
            "host" => Some(Engine::Host),
            other => debian::engine(other).map(Engine::Debian),
        }
    }

    /// Its name in `driver_options.engine`.
    pub fn name(&self) -> &'static str {
        match self {
            Engine::Host => "host",
            Engine::Debian(engine) => engine.name,
        }
    }

    /// Every engine that can be named.
    pub fn all() -> Vec<Engine> {
        std::iter::once(Engine::Host)
            .chain(debian::ENGINES.iter().copied().map(Engine::Debian))
            .collect()
    }

    /// The value of [`NODE_IMAGE_LABEL`] on its images.
    fn label_value(&self) -> &'static str {
        match self {
            Engine::Host => HOST_LABEL_VALUE,
            Engine::Debian(engine) => engine.name,
        }
    }
}

/// A node image ready on the host engine.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeImage {
    /// `repo:tag`.
    pub tag: String,
    /// Whether this call built it (false when the tag existed, or the image was given).
    pub built: bool,
    /// Seconds spent making sure it exists (build time when built).
    pub seconds: f64,
    /// Bytes of root filesystem sent, when built.
    pub bytes: u64,
    /// Bytes of packages downloaded for the build (Debian-built engines).
    pub downloaded: u64,
}

/// One entry of the root filesystem, by path (relative, no leading `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A folder.
    Dir { mode: u32 },
    /// A copy of a host file (symlinks followed).
    File { source: PathBuf, mode: u32 },
    /// A copy of a host file hashed by `version` instead of its size and modification time.
    Versioned {
        source: PathBuf,
        mode: u32,
        version: String,
    },
    /// Generated content.
    Data { data: Vec<u8>, mode: u32 },
    /// A symbolic link.
    Symlink { target: String },
}

/// The node's root filesystem, as a sorted list of entries.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rootfs {
    pub entries: BTreeMap<String, Entry>,
}

impl Rootfs {
    fn add(&mut self, path: &str, entry: Entry) {
        let path = path
            .trim_start_matches('/')
            .trim_end_matches('/')
            .to_string();
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            let dir_text = dir.to_string_lossy().to_string();
            self.entries
                .entry(dir_text)
                .or_insert(Entry::Dir { mode: 0o755 });
            parent = dir.parent();
        }
        self.entries.insert(path, entry);
    }

    pub(crate) fn dir(&mut self, path: &str, mode: u32) {
        self.add(path, Entry::Dir { mode });
    }

    pub(crate) fn file(&mut self, path: &str, source: &Path, mode: u32) {
        self.add(
            path,
            Entry::File {
                source: source.to_path_buf(),
                mode,
            },
        );
    }

    pub(crate) fn data(&mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) {
        self.add(
            path,
            Entry::Data {
                data: data.into(),
                mode,
            },
        );
    }

    pub(crate) fn symlink(&mut self, path: &str, target: &str) {
        self.add(
            path,
            Entry::Symlink {
                target: target.to_string(),
            },
        );
    }

    /// A hash of everything that goes into the image: paths, modes, link targets, generated
    /// content, and each host file's path, size and modification time.
    pub(crate) fn fingerprint(&self) -> io::Result<String> {
        let mut hash = Sha256::new();
        hash.update(LAYOUT.as_bytes());
        for (path, entry) in &self.entries {
            hash.update(b"\0");
            hash.update(path.as_bytes());
            match entry {
                Entry::Dir { mode } => hash.update(format!("\0d{mode:o}")),
                Entry::File { source, mode } => {
                    let meta = std::fs::metadata(source)?;
                    hash.update(format!(
                        "\0f{mode:o}\0{}\0{}\0{}.{}",
                        source.display(),
                        meta.len(),
                        meta.mtime(),
                        meta.mtime_nsec()
                    ));
                }
                Entry::Versioned { mode, version, .. } => {
                    hash.update(format!("\0v{mode:o}\0"));
                    hash.update(Sha256::digest(version));
                }
                Entry::Data { data, mode } => {
                    hash.update(format!("\0c{mode:o}\0"));
                    hash.update(Sha256::digest(data));
                }
                Entry::Symlink { target } => hash.update(format!("\0l{target}")),
            }
        }
        Ok(hex::encode(hash.finalize())[..16].to_string())
    }

    /// Writes the root filesystem into the empty folder `dir` (files copied with their modes,
    /// owned by whoever runs this), for a file system image made from a folder.
    pub(crate) fn write_dir(&self, dir: &Path) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let context = |path: &Path, e: io::Error| {
            io::Error::new(e.kind(), format!("{}: {e}", path.display()))
        };
        for (path, entry) in &self.entries {
            let target = dir.join(path);
            match entry {
                Entry::Dir { mode } => {
                    std::fs::create_dir_all(&target).map_err(|e| context(&target, e))?;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| context(&target, e))?;
                }
                Entry::File { source, mode } | Entry::Versioned { source, mode, .. } => {
                    std::fs::copy(source, &target).map_err(|e| context(source, e))?;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| context(&target, e))?;
                }
                Entry::Data { data, mode } => {
                    std::fs::write(&target, data).map_err(|e| context(&target, e))?;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(*mode))
                        .map_err(|e| context(&target, e))?;
                }
                Entry::Symlink { target: link } => {
                    std::os::unix::fs::symlink(link, &target).map_err(|e| context(&target, e))?;
                }
            }
        }
        Ok(())
    }

    /// Writes the root filesystem as a tar archive (owner root, files with their host mtime).
    pub(crate) fn write_tar(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        for (path, entry) in &self.entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(GENERATED_MTIME);
            match entry {
                Entry::Dir { mode } => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(*mode);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                Entry::File { source, mode } | Entry::Versioned { source, mode, .. } => {
                    let file = std::fs::File::open(source).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", source.display()))
                    })?;
                    let meta = file.metadata()?;
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(meta.len());
                    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(GENERATED_MTIME));
                    builder.append_data(&mut header, path, io::Read::take(file, meta.len()))?;
                }
                Entry::Data { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                Entry::Symlink { target } => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        builder.into_inner()?.flush()
    }
}

/// Finds a host binary by any of `names`, in `$PATH` then the usual folders.
pub(crate) fn find_binary(names: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(SEARCH_DIRS.iter().map(PathBuf::from));
    names.iter().find_map(|name| {
        dirs.iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file() && is_executable(p))
    })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The libraries `ldd` lists for the given files: `(name as the loader asks for it, host path)`.
/// `ldd` exits 1 when a file is static; that is not an error.
pub(crate) fn parse_ldd(output: &str) -> Result<Vec<PathBuf>, String> {
    let mut libraries = Vec::new();
    for line in output.lines() {
        if !line.starts_with(char::is_whitespace) {
            continue;
        }
        let line = line.trim();
        let path = if let Some((name, rest)) = line.split_once("=>") {
            let rest = rest.trim();
            if rest.starts_with("not found") {
                return Err(format!("library {} not found", name.trim()));
            }
            rest.split_whitespace().next().unwrap_or_default()
        } else {
            line.split_whitespace().next().unwrap_or_default()
        };
        if path.starts_with('/') {
            let path = PathBuf::from(path);
            if !libraries.contains(&path) {
                libraries.push(path);
            }
        }
    }
    Ok(libraries)
}

fn ldd(files: &[PathBuf]) -> Result<Vec<PathBuf>, DindError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let output = Command::new("ldd").args(files).output().map_err(|e| {
        DindError::Unavailable(format!(
            "cannot run ldd to find the libraries of the host's binaries ({e}); install libc-bin, or set driver_options.image"
        ))
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_ldd(&text).map_err(|problem| {
        DindError::Unavailable(format!(
            "cannot build an image from the host's binaries: {problem} (run ldd on {} to see which)",
            files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(" ")
        ))
    })
}

/// The path a host file has in the image: its folder with symlinks resolved (so `/lib/x` on a
/// merged-/usr host becomes `usr/lib/x`), and its own name kept.
fn image_path(host: &Path) -> PathBuf {
    let parent = host
        .parent()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .unwrap_or_else(|| host.parent().map(Path::to_path_buf).unwrap_or_default());
    parent.join(host.file_name().unwrap_or_default())
}

fn image_path_text(host: &Path) -> String {
    image_path(host)
        .to_string_lossy()
        .trim_start_matches('/')
        .to_string()
}

/// The folder of iptables extensions next to libxtables (`…/xtables`), or a usual place.
fn xtables_dir(libraries: &[PathBuf]) -> Option<PathBuf> {
    let beside = libraries.iter().find_map(|lib| {
        let name = lib.file_name()?.to_str()?;
        name.starts_with("libxtables.so")
            .then(|| image_path(lib).parent().map(|p| p.join("xtables")))
            .flatten()
    });
    beside
        .into_iter()
        .chain(
            [
                "/usr/lib/x86_64-linux-gnu/xtables",
                "/usr/lib/aarch64-linux-gnu/xtables",
                "/usr/lib64/xtables",
                "/usr/lib/xtables",
                "/usr/libexec/xtables",
            ]
            .into_iter()
            .map(PathBuf::from),
        )
        .find(|d| d.is_dir())
}

/// Assembles the root filesystem from the host.
pub(crate) fn host_rootfs() -> Result<Rootfs, DindError> {
    let mut rootfs = Rootfs::default();
    add_layout(&mut rootfs);
    let mut elf_files = add_engine_binaries(&mut rootfs)?;
    elf_files.extend(add_xtables(&mut rootfs)?);
    elf_files.push(add_shoal(&mut rootfs)?);
    add_libraries(&mut rootfs, &elf_files)?;
    add_generated_files(&mut rootfs);
    Ok(rootfs)
}

/// The host's top-level links (`/bin` to `usr/bin` and so on), so that the dynamic loader and
/// the libraries are found where the host's binaries look for them.
pub(crate) fn add_top_links(rootfs: &mut Rootfs) {
    for top in ["bin", "sbin", "lib", "lib64"] {
        if let Ok(target) = std::fs::read_link(Path::new("/").join(top)) {
            rootfs.symlink(top, &target.to_string_lossy());
        }
    }
}

/// A host program under `usr/bin/<name>` with its `ldd` closure, found by any of `candidates`;
/// `None` when the host has none of them.
pub(crate) fn add_program(
    rootfs: &mut Rootfs,
    name: &str,
    candidates: &[&str],
) -> Result<Option<PathBuf>, DindError> {
    let Some(path) = find_binary(candidates) else {
        return Ok(None);
    };
    let real = std::fs::canonicalize(&path).unwrap_or(path);
    rootfs.file(&format!("usr/bin/{name}"), &real, 0o755);
    add_libraries(rootfs, std::slice::from_ref(&real))?;
    Ok(Some(real))
}

/// The folders of the node image, and the host's top-level links.
pub(crate) fn add_layout(rootfs: &mut Rootfs) {
    add_top_links(rootfs);
    add_folders(rootfs);
}

/// The folders every node image has.
fn add_folders(rootfs: &mut Rootfs) {
    for (dir, mode) in [
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("var/lib/docker", 0o711),
        ("var/log", 0o755),
    ] {
        rootfs.dir(dir, mode);
    }
    rootfs.symlink("var/run", "../run");
    rootfs.dir(NODE_HOST_DIR, 0o755);
}

/// The engine's binaries under `usr/bin`; returns their host paths, or names the missing ones.
pub(crate) fn add_engine_binaries(rootfs: &mut Rootfs) -> Result<Vec<PathBuf>, DindError> {
    let mut elf_files = Vec::new();
    let mut missing = Vec::new();
    for (name, candidates) in ENGINE_BINARIES {
        match find_binary(candidates) {
            Some(path) => {
                let real = std::fs::canonicalize(&path).unwrap_or(path);
                rootfs.file(&format!("usr/bin/{name}"), &real, 0o755);
                elf_files.push(real);
            }
            None => missing.push(*name),
        }
    }
    if !missing.is_empty() {
        return Err(DindError::Unavailable(format!(
            "cannot build the node image: the host lacks {} (install docker.io, or Docker CE, on this machine; or set driver_options.image to a node image)",
            missing.join(", ")
        )));
    }
    Ok(elf_files)
}

/// The host's iptables multi-binaries under `usr/sbin` with every tool name linked to them
/// (the first one found is the default); returns their host paths.
pub(crate) fn add_xtables(rootfs: &mut Rootfs) -> Result<Vec<PathBuf>, DindError> {
    let mut elf_files = Vec::new();
    let mut xtables_found = Vec::new();
    for name in XTABLES {
        if let Some(path) = find_binary(&[name]) {
            let real = std::fs::canonicalize(&path).unwrap_or(path);
            rootfs.file(&format!("usr/sbin/{name}"), &real, 0o755);
            elf_files.push(real);
            xtables_found.push(*name);
        }
    }
    let Some(default_xtables) = xtables_found.first() else {
        return Err(DindError::Unavailable(
            "cannot build the node image: the host has no iptables (xtables-nft-multi or xtables-legacy-multi); apt-get install iptables".to_string(),
        ));
    };
    for multi in &xtables_found {
        let backend = multi
            .trim_start_matches("xtables-")
            .trim_end_matches("-multi");
        for tool in IPTABLES_TOOLS {
            let (family, suffix) = tool.split_once('-').map_or((*tool, ""), |(f, s)| (f, s));
            let named = if suffix.is_empty() {
                format!("{family}-{backend}")
            } else {
                format!("{family}-{backend}-{suffix}")
            };
            rootfs.symlink(&format!("usr/sbin/{named}"), multi);
        }
    }
    for tool in IPTABLES_TOOLS {
        rootfs.symlink(&format!("usr/sbin/{tool}"), default_xtables);
    }
    Ok(elf_files)
}

/// The shared libraries `elf_files` load, with the xtables extensions (loaded at run time,
/// so invisible to `ldd`) and their own libraries.
pub(crate) fn add_libraries(rootfs: &mut Rootfs, elf_files: &[PathBuf]) -> Result<(), DindError> {
    let mut libraries = ldd(elf_files)?;
    if let Some(dir) = xtables_dir(&libraries) {
        let extensions = add_xtables_extensions(rootfs, &dir)?;
        for lib in ldd(&extensions)? {
            if !libraries.contains(&lib) {
                libraries.push(lib);
            }
        }
    }
    for lib in &libraries {
        let mode = if lib.to_string_lossy().contains("ld-linux") {
            0o755
        } else {
            0o644
        };
        rootfs.file(&image_path_text(lib), lib, mode);
    }
    Ok(())
}

/// The `.so` files of the xtables extensions folder `dir`, at the same path in the image
/// (links to a sibling kept as links); returns the host paths of the files copied, sorted.
fn add_xtables_extensions(rootfs: &mut Rootfs, dir: &Path) -> Result<Vec<PathBuf>, DindError> {
    let mut extensions = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| DindError::io(format!("cannot read {}", dir.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("so") {
            continue;
        }
        let in_image = image_path_text(&path);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(&path) {
                    if target.is_relative() && !target.to_string_lossy().contains('/') {
                        rootfs.symlink(&in_image, &target.to_string_lossy());
                        continue;
                    }
                }
                rootfs.file(&in_image, &path, 0o644);
                extensions.push(path);
            }
            Ok(_) => {
                rootfs.file(&in_image, &path, 0o644);
                extensions.push(path);
            }
            Err(_) => {}
        }
    }
    extensions.sort();
    Ok(extensions)
}

/// The shoal executable that goes into node images: `$SHOAL_NODE_BINARY`, else this process's
/// own executable when it is shoal, else a `shoal` next to it or one folder up (where cargo puts
/// it beside test and example programs).
pub fn shoal_binary() -> Result<PathBuf, DindError> {
    if let Some(given) = std::env::var_os(NODE_BINARY_ENV).filter(|v| !v.is_empty()) {
        let given = PathBuf::from(given);
        return if given.is_file() && is_executable(&given) {
            Ok(given)
        } else {
            Err(DindError::Unavailable(format!(
                "{NODE_BINARY_ENV}={} is not an executable file; point it at the shoal program",
                given.display()
            )))
        };
    }
    let current = std::env::current_exe().map_err(|e| {
        DindError::io(
            "cannot find this program's own executable for the node image",
            e,
        )
    })?;
    if current.file_stem().is_some_and(|n| n == "shoal") {
        return Ok(current);
    }
    let beside = current.parent().map(Path::to_path_buf).unwrap_or_default();
    [beside.join("shoal"), beside.join("../shoal")]
        .into_iter()
        .find(|p| p.is_file() && is_executable(p))
        .ok_or_else(|| {
            DindError::Unavailable(format!(
                "cannot build the node image: it runs shoal's own binary as the node's init, and {} is not shoal and has none beside it; set {NODE_BINARY_ENV} to the shoal program",
                current.display()
            ))
        })
}

/// shoal's binary as `usr/bin/shoal` (the node's init) and `usr/sbin/modprobe` (a stub);
/// returns its host path, whose libraries the caller adds.
fn add_shoal(rootfs: &mut Rootfs) -> Result<PathBuf, DindError> {
    let shoal = shoal_binary()?;
    let shoal = std::fs::canonicalize(&shoal).unwrap_or(shoal);
    rootfs.add(SHOAL_PATH, shoal_entry(&shoal));
    rootfs.symlink("usr/sbin/modprobe", &format!("/{SHOAL_PATH}"));
    Ok(shoal)
}

/// The image entry of shoal's binary: hashed by the node init's source.
fn shoal_entry(shoal: &Path) -> Entry {
    Entry::Versioned {
        source: shoal.to_path_buf(),
        mode: 0o755,
        version: NODE_INIT_SOURCE.to_string(),
    }
}

/// shoal's binary for an image whose libraries are not the host's: `opt/shoal/bin/shoal` with
/// its `ldd` closure in `opt/shoal/lib` (the loader among them), `usr/bin/shoal` a script that
/// runs it through that loader, and a `modprobe` stub that succeeds (modules cannot be loaded
/// from inside a node).
fn add_shoal_apart(rootfs: &mut Rootfs) -> Result<(), DindError> {
    let shoal = shoal_binary()?;
    let shoal = std::fs::canonicalize(&shoal).unwrap_or(shoal);
    rootfs.add(&format!("{OPT_SHOAL}/bin/shoal"), shoal_entry(&shoal));
    let libraries = ldd(std::slice::from_ref(&shoal))?;
    if !libraries
        .iter()
        .any(|lib| lib.file_name().is_some_and(|n| n == LOADER))
    {
        return Err(DindError::Unavailable(format!(
            "cannot build a Debian-based node image: {} does not load {LOADER} (only x86-64 glibc builds of shoal are supported); use engine: host",
            shoal.display()
        )));
    }
    for lib in &libraries {
        let name = lib.file_name().unwrap_or_default().to_string_lossy();
        rootfs.file(&format!("{OPT_SHOAL}/lib/{name}"), lib, 0o755);
    }
    rootfs.data(
        SHOAL_PATH,
        format!(
            "#!/bin/sh\n# shoal, with the host libraries it was built against.\nexec {} \"$@\"\n",
            apart_command().join(" ")
        ),
        0o755,
    );
    rootfs.data(
        "usr/sbin/modprobe",
        "#!/bin/sh\n# Modules cannot be loaded from inside a node; the host kernel must have them.\nexit 0\n",
        0o755,
    );
    Ok(())
}

/// The command that runs shoal's binary kept apart under `/opt/shoal`.
fn apart_command() -> Vec<String> {
    vec![
        format!("/{OPT_SHOAL}/lib/{LOADER}"),
        "--library-path".to_string(),
        format!("/{OPT_SHOAL}/lib"),
        format!("/{OPT_SHOAL}/bin/shoal"),
    ]
}

/// The files written for the image: a minimal `/etc` and the few `/etc` files copied from the
/// host.
pub(crate) fn add_generated_files(rootfs: &mut Rootfs) {
    add_etc(rootfs, "shoal node (host engine binaries)");
    for name in ETC_FROM_HOST {
        let host = Path::new("/etc").join(name);
        if let Ok(content) = std::fs::read(&host) {
            rootfs.data(&format!("etc/{name}"), content, 0o644);
        }
    }
}

/// The minimal `/etc` every node image gets, its os-release calling the image `pretty_name`.
fn add_etc(rootfs: &mut Rootfs, pretty_name: &str) {
    rootfs.data("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    rootfs.data("etc/group", "root:x:0:\n", 0o644);
    rootfs.data("etc/nsswitch.conf", "hosts: files dns\n", 0o644);
    rootfs.data(
        "etc/os-release",
        format!("NAME=\"shoal node\"\nID=shoal-node\nPRETTY_NAME=\"{pretty_name}\"\n"),
        0o644,
    );
}

/// What shoal lays over the packages of a Debian-built image: merged-`/usr` links, the
/// node's folders, what the maintainer scripts would have made (the iptables alternatives,
/// `/bin/sh`), shoal's binary kept apart, and `/etc`.
fn debian_overlay(closure: &debian::Closure) -> Result<Rootfs, DindError> {
    let mut overlay = Rootfs::default();
    for top in ["bin", "sbin", "lib", "lib64"] {
        overlay.symlink(top, &format!("usr/{top}"));
    }
    add_folders(&mut overlay);
    for tool in IPTABLES_TOOLS {
        overlay.symlink(&format!("usr/sbin/{tool}"), "xtables-nft-multi");
    }
    overlay.symlink("usr/bin/sh", "dash");
    add_shoal_apart(&mut overlay)?;
    add_etc(
        &mut overlay,
        &format!(
            "shoal node (Debian {} docker.io {})",
            closure.suite, closure.version
        ),
    );
    Ok(overlay)
}

/// The `changes` given to the import: how the image of `engine` runs.
pub(super) fn image_changes(engine: Engine, label: Option<&str>) -> Vec<String> {
    let shoal = match engine {
        Engine::Host => vec![format!("/{SHOAL_PATH}")],
        Engine::Debian(_) => apart_command(),
    };
    let entrypoint: Vec<String> = ["/usr/bin/docker-init".to_string(), "--".to_string()]
        .into_iter()
        .chain(shoal)
        .chain([super::node_init::NODE_INIT_COMMAND.to_string()])
        .collect();
    let mut changes = vec![
        format!(
            "ENTRYPOINT {}",
            serde_json::to_string(&entrypoint).unwrap_or_default()
        ),
        "VOLUME /var/lib/docker".to_string(),
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    ];
    if let Some(value) = label {
        changes.push(format!("LABEL {NODE_IMAGE_LABEL}={value}"));
    }
    changes
}

/// Held while a node image is looked up and built, so that drivers in one process build it once.
static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Makes sure the node image of `engine` exists on the engine, building it when its tag is
/// missing: `shoal-node:<hash of the host's inputs>` for the host's binaries,
/// `shoal-node:<engine>-<hash>` for a Debian-built one (from the archive `mirror`, see
/// [`debian::archive_url`]).
pub async fn ensure_node_image(
    docker: &Docker,
    engine: Engine,
    mirror: Option<&str>,
) -> Result<NodeImage, DindError> {
    match engine {
        Engine::Host => ensure_host_image(docker).await,
        Engine::Debian(debian_engine) => ensure_debian_image(docker, debian_engine, mirror).await,
    }
}

/// The image from the host's binaries.
async fn ensure_host_image(docker: &Docker) -> Result<NodeImage, DindError> {
    let started = Instant::now();
    let rootfs = tokio::task::spawn_blocking(host_rootfs)
        .await
        .map_err(|e| DindError::Other(format!("the node image scan panicked: {e}")))??;
    let rootfs = std::sync::Arc::new(rootfs);
    let hash = {
        let rootfs = rootfs.clone();
        tokio::task::spawn_blocking(move || rootfs.fingerprint())
            .await
            .map_err(|e| DindError::Other(format!("the node image hash panicked: {e}")))?
            .map_err(|e| DindError::io("cannot read the node image's host files", e))?
    };
    let _one_build_at_a_time = BUILDING.lock().await;
    if let Some(present) = present(docker, &hash, started).await? {
        return Ok(present);
    }
    tracing::info!(image = %format!("{NODE_IMAGE_REPO}:{hash}"), "building the node image from the host's docker binaries");
    build(docker, Engine::Host, &hash, rootfs, started, 0).await
}

/// The image of a Debian-built engine.
async fn ensure_debian_image(
    docker: &Docker,
    engine: DebianEngine,
    mirror: Option<&str>,
) -> Result<NodeImage, DindError> {
    let started = Instant::now();
    let archive = debian::archive_url(mirror);
    let _one_build_at_a_time = BUILDING.lock().await;
    let closure = match debian::closure(engine, &archive).await {
        Ok(closure) => closure,
        Err(error @ debian::DebianError::Fetch { .. }) => {
            // Offline, an image of the engine built earlier is better than none.
            let built = cached_images(docker).await.unwrap_or_default();
            if let Some((_, tag)) = built.into_iter().find(|(name, _)| name == engine.name) {
                tracing::warn!(image = %tag, %error, "the Debian archive cannot be reached; using the engine's image built earlier");
                return Ok(NodeImage {
                    tag,
                    built: false,
                    seconds: started.elapsed().as_secs_f64(),
                    bytes: 0,
                    downloaded: 0,
                });
            }
            return Err(DindError::Unavailable(format!(
                "cannot build the node image of engine {}: {error}",
                engine.name
            )));
        }
        Err(error) => {
            return Err(DindError::Unavailable(format!(
                "cannot build the node image of engine {}: {error}",
                engine.name
            )))
        }
    };
    let overlay = debian_overlay(&closure)?;
    let overlay_hash = overlay
        .fingerprint()
        .map_err(|e| DindError::io("cannot read the node image's host files", e))?;
    let mut hash = Sha256::new();
    hash.update(format!(
        "{DEBIAN_LAYOUT}\0{}\0{overlay_hash}",
        closure.digest()
    ));
    let hash = format!("{}-{}", engine.name, &hex::encode(hash.finalize())[..16]);
    if let Some(present) = present(docker, &hash, started).await? {
        return Ok(present);
    }
    tracing::info!(
        image = %format!("{NODE_IMAGE_REPO}:{hash}"),
        suite = closure.suite,
        docker = closure.version,
        packages = closure.packages.len(),
        archive = %archive,
        "building the node image from Debian's packages"
    );
    let (unpacked, downloaded) = debian::unpack_all(&closure).await.map_err(|e| {
        DindError::Unavailable(format!(
            "cannot build the node image of engine {}: {e}",
            engine.name
        ))
    })?;
    let mut rootfs = Rootfs::default();
    debian::add_packages(&mut rootfs, &unpacked);
    rootfs.entries.extend(overlay.entries);
    build(
        docker,
        Engine::Debian(engine),
        &hash,
        std::sync::Arc::new(rootfs),
        started,
        downloaded,
    )
    .await
}

/// The image `shoal-node:<tag>` when it exists.
async fn present(
    docker: &Docker,
    tag: &str,
    started: Instant,
) -> Result<Option<NodeImage>, DindError> {
    let reference = format!("{NODE_IMAGE_REPO}:{tag}");
    match docker.inspect_image(&reference).await {
        Ok(_) => Ok(Some(NodeImage {
            tag: reference,
            built: false,
            seconds: started.elapsed().as_secs_f64(),
            bytes: 0,
            downloaded: 0,
        })),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(DindError::docker(
            format!("cannot inspect image {reference}"),
            e,
        )),
    }
}

/// Imports `rootfs` as `shoal-node:<tag>` (without the label when the engine refuses labels
/// on imports) and removes the engine's older images.
async fn build(
    docker: &Docker,
    engine: Engine,
    tag: &str,
    rootfs: std::sync::Arc<Rootfs>,
    started: Instant,
    downloaded: u64,
) -> Result<NodeImage, DindError> {
    let label = engine.label_value();
    let mut result = import_rootfs(docker, engine, tag, rootfs.clone(), Some(label)).await;
    if let Err(DindError::Docker { source, .. }) = &result {
        if source.to_string().to_ascii_lowercase().contains("label") {
            result = import_rootfs(docker, engine, tag, rootfs, None).await;
        }
    }
    let bytes = result?;
    let seconds = started.elapsed().as_secs_f64();
    let reference = format!("{NODE_IMAGE_REPO}:{tag}");
    tracing::info!(image = %reference, seconds, bytes, downloaded, "built the node image");
    remove_older_images(
        docker,
        NODE_IMAGE_REPO,
        &format!("{NODE_IMAGE_LABEL}={label}"),
        &reference,
    )
    .await;
    Ok(NodeImage {
        tag: reference,
        built: true,
        seconds,
        bytes,
        downloaded,
    })
}

/// The node images on the engine, as `(engine name, tag)`, for `shoal doctor`.
pub async fn cached_images(docker: &Docker) -> Result<Vec<(String, String)>, DindError> {
    let options = ListImagesOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![NODE_IMAGE_LABEL.to_string()],
        )])),
        ..Default::default()
    };
    let images = docker
        .list_images(Some(options))
        .await
        .map_err(|e| DindError::docker("cannot list the node images", e))?;
    let mut found: Vec<(String, String)> = images
        .into_iter()
        .flat_map(|image| {
            let engine = match image.labels.get(NODE_IMAGE_LABEL).map(String::as_str) {
                Some(HOST_LABEL_VALUE) | None => "host".to_string(),
                Some(other) => other.to_string(),
            };
            (image.repo_tags.into_iter())
                .filter(|t| t.starts_with(&format!("{NODE_IMAGE_REPO}:")))
                .map(move |t| (engine.clone(), t))
        })
        .collect();
    found.sort();
    Ok(found)
}

/// Removes the images of `repo` labelled `label` (`key=value`) that older builds left (tagged,
/// or untagged by a build racing this one), except `keep` and those containers still use: the
/// engine refuses those without force.
pub(crate) async fn remove_older_images(docker: &Docker, repo: &str, label: &str, keep: &str) {
    let options = ListImagesOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![label.to_string()],
        )])),
        ..Default::default()
    };
    let Ok(images) = docker.list_images(Some(options)).await else {
        return;
    };
    let prefix = format!("{repo}:");
    for image in images {
        let tags: Vec<&String> = image
            .repo_tags
            .iter()
            .filter(|t| t.as_str() != "<none>:<none>")
            .collect();
        if tags.iter().any(|t| t.as_str() == keep) {
            continue;
        }
        let tag = match tags.as_slice() {
            [] => image.id.clone(),
            [tag] if tag.starts_with(&prefix) => (*tag).clone(),
            _ => continue,
        };
        match docker
            .remove_image(&tag, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => tracing::info!(image = %tag, "removed an older image"),
            Err(e) => tracing::debug!(image = %tag, error = %e, "older image kept"),
        }
    }
}

async fn import_rootfs(
    docker: &Docker,
    engine: Engine,
    tag: &str,
    rootfs: std::sync::Arc<Rootfs>,
    label: Option<&str>,
) -> Result<u64, DindError> {
    let (bytes, _id) = upload::import(
        docker,
        NODE_IMAGE_REPO,
        tag,
        image_changes(engine, label),
        move |out| rootfs.write_tar(out),
    )
    .await?;
    Ok(bytes)
}

/// A node image named in `driver_options.image`: it must be on the host engine already.
pub(crate) async fn given_image(docker: &Docker, image: &str) -> Result<NodeImage, DindError> {
    let started = Instant::now();
    match docker.inspect_image(image).await {
        Ok(_) => Ok(NodeImage {
            tag: image.to_string(),
            built: false,
            seconds: started.elapsed().as_secs_f64(),
            bytes: 0,
            downloaded: 0,
        }),
        Err(e) if is_not_found(&e) => Err(DindError::Unavailable(format!(
            "driver_options.image {image} is not on the host engine; load or build it first, or leave the option out to build shoal's own node image"
        ))),
        Err(e) => Err(DindError::docker(format!("cannot inspect image {image}"), e)),
    }
}
