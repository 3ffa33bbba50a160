//! The VM image, built offline from what this machine has and Debian's package archive: the
//! kernel of Debian's `linux-image-amd64` (with the modules swarm needs), a root disk holding
//! the host's engine binaries (as the dind node image does), busybox, kmod and the VM's init,
//! and a first-stage initramfs that mounts that disk. Built once into
//! `$XDG_CACHE_HOME/shoal/qemu/<hash>/` (`vmlinuz`, `initrd.img`, `root.img`, `image.json`);
//! every VM's disk is a copy-on-write overlay on `root.img`.
//!
//! The hash covers the kernel package, every file laid into the root disk (path, size and
//! modification time, as for the node image), the init scripts and the disk size: an upgraded
//! docker package or kernel gives a new image, and an existing one is reused as it is.

use super::cpio::{self, CpioEntry};
use super::modules::{self, ModuleDeps};
use super::{tool, QemuError};
use crate::drivers::dind::debian::{self, packages::Package, resolve::Index, Wanted};
use crate::drivers::dind::nodeimage::{self, Rootfs};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The suite the kernel comes from.
pub const KERNEL_SUITE: &str = "bookworm";
/// The package that names the suite's current kernel.
pub const KERNEL_META: &str = "linux-image-amd64";
/// Bumped whenever the layout below changes, so the hash changes with it.
const LAYOUT: &str = "shoal-vm-layout-1";
/// The first stage: `/init` of the initramfs.
pub const BOOT_SCRIPT: &str = include_str!("boot.sh");
/// The second stage, on the root disk.
pub const INIT_SCRIPT: &str = include_str!("init.sh");
/// Where the second stage lives on the root disk.
const INIT_PATH: &str = "usr/sbin/shoal-vm-init";
/// The static busybox of Debian's busybox-static: the shell and tools of both stages.
const BUSYBOX: &str = "/bin/busybox";
/// The busybox applets the scripts use, linked under `usr/bin` of the root disk.
const APPLETS: &[&str] = &[
    "sh", "mount", "umount", "mkdir", "hostname", "ip", "cat", "echo", "sleep", "printf", "ls",
    "ps", "sysctl", "rm", "cp", "grep", "df", "free", "ln", "uname",
];
/// The kmod tools, linked to the `kmod` binary.
const KMOD_TOOLS: &[&str] = &["modprobe", "insmod", "rmmod", "lsmod", "depmod", "modinfo"];
/// The files of a built image.
pub const IMAGE_FILES: [&str; 3] = ["vmlinuz", "initrd.img", "root.img"];
/// The record of a finished build.
const MANIFEST: &str = "image.json";

/// A VM image ready to boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmImage {
    /// The folder holding it.
    pub dir: PathBuf,
    /// The kernel's version (`6.1.0-57-amd64`), when known.
    pub kernel_version: Option<String>,
    /// Size of the root disk in bytes.
    pub disk_bytes: u64,
}

impl VmImage {
    /// The kernel.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(IMAGE_FILES[0])
    }

    /// The first-stage initramfs.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join(IMAGE_FILES[1])
    }

    /// The root disk every VM's overlay is made on.
    pub fn root(&self) -> PathBuf {
        self.dir.join(IMAGE_FILES[2])
    }

    /// The image in a folder given by `driver_options.qemu.image`.
    pub fn given(dir: &Path) -> Result<VmImage, QemuError> {
        let missing: Vec<&str> = IMAGE_FILES
            .iter()
            .copied()
            .filter(|f| !dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(QemuError::Unavailable(format!(
                "driver_options.qemu.image {}: {} missing; name a folder made by shoal (as under ~/.cache/shoal/qemu/), or remove the key",
                dir.display(),
                missing.join(", ")
            )));
        }
        let recorded: Option<VmImage> = std::fs::read(dir.join(MANIFEST))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let disk_bytes = std::fs::metadata(dir.join(IMAGE_FILES[2]))
            .map(|m| m.len())
            .unwrap_or_default();
        Ok(VmImage {
            dir: dir.to_path_buf(),
            kernel_version: recorded.and_then(|r| r.kernel_version),
            disk_bytes,
        })
    }
}

/// What [`ensure_image`] did, for logs and figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Ensured {
    /// The image.
    pub image: VmImage,
    /// Whether this call built it.
    pub built: bool,
    /// Seconds spent (the build's, when built).
    pub seconds: f64,
    /// Bytes downloaded from the archive.
    pub downloaded: u64,
}

/// Where built images are kept.
pub fn cache_dir() -> PathBuf {
    crate::source::remote::cache_root().join("qemu")
}

/// The kernel wanted from [`KERNEL_SUITE`].
pub fn kernel_wanted() -> Wanted {
    Wanted {
        suite: KERNEL_SUITE,
        what: format!("the VM kernel ({KERNEL_META})"),
        key: "kernel",
        arg: KERNEL_META,
        select: kernel_package,
    }
}

/// The versioned kernel package `meta` depends on (`linux-image-6.1.0-57-amd64`), alone: the
/// VM needs its files, not what its maintainer scripts would run.
fn kernel_package<'a>(index: &'a Index, meta: &str) -> Result<(String, Vec<&'a Package>), String> {
    let package = index
        .get(meta)
        .ok_or_else(|| format!("it has no {meta} package"))?;
    let kernel = package
        .depends
        .iter()
        .flatten()
        .find(|d| d.name.starts_with("linux-image-"))
        .and_then(|d| index.get(&d.name))
        .ok_or_else(|| format!("{meta} {} names no kernel package it has", package.version))?;
    Ok((kernel.version.clone(), vec![kernel]))
}

/// The image to boot: the one `given` names, else the cached build for this machine's
/// binaries and the archive's current kernel, built when missing.
pub async fn ensure_image(
    given: Option<&Path>,
    disk_bytes: u64,
    mirror: Option<&str>,
) -> Result<Ensured, QemuError> {
    let started = Instant::now();
    if let Some(dir) = given {
        return Ok(Ensured {
            image: VmImage::given(dir)?,
            built: false,
            seconds: 0.0,
            downloaded: 0,
        });
    }
    let archive = debian::archive_url(mirror);
    let closure = debian::resolve_wanted(kernel_wanted(), &archive).await?;
    let (unpacked, downloaded) = debian::unpack_all(&closure).await?;
    let kernel = unpacked.first().ok_or_else(|| {
        QemuError::Unavailable(format!("{archive}: no kernel package was resolved"))
    })?;
    let kernel_dir = kernel.dir.clone();
    let kernel_sha = closure.packages[0].sha256.clone();
    let built =
        tokio::task::spawn_blocking(move || build_cached(&kernel_dir, &kernel_sha, disk_bytes))
            .await
            .map_err(|e| {
                QemuError::Unavailable(format!("building the VM image panicked: {e}"))
            })??;
    Ok(Ensured {
        image: built.0,
        built: built.1,
        seconds: started.elapsed().as_secs_f64(),
        downloaded,
    })
}

/// The cached image for these inputs, built under the cache's lock when missing.
fn build_cached(
    kernel_dir: &Path,
    kernel_sha: &str,
    disk_bytes: u64,
) -> Result<(VmImage, bool), QemuError> {
    use fs4::fs_std::FileExt;
    let version = kernel_version(kernel_dir)?;
    let rootfs = root_disk_files(kernel_dir, &version)?;
    let fingerprint = rootfs
        .fingerprint()
        .map_err(|e| QemuError::io("cannot read the files of the VM image", e))?;
    let mut hash = Sha256::new();
    hash.update(format!(
        "{LAYOUT}\0{kernel_sha}\0{fingerprint}\0{disk_bytes}\0"
    ));
    hash.update(BOOT_SCRIPT);
    hash.update(modules::BOOT_MODULES.join(" "));
    let hash = hex::encode(hash.finalize())[..16].to_string();
    let cache = cache_dir();
    std::fs::create_dir_all(&cache)
        .map_err(|e| QemuError::io(format!("cannot create {}", cache.display()), e))?;
    let dir = cache.join(&hash);
    let lock_path = cache.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .and_then(|file| file.lock_exclusive().map(|()| file))
        .map_err(|e| QemuError::io(format!("cannot lock {}", lock_path.display()), e))?;
    let built = if dir.join(MANIFEST).is_file() {
        false
    } else {
        build(&rootfs, kernel_dir, &version, disk_bytes, &dir)?;
        true
    };
    drop(lock);
    Ok((VmImage::given(&dir)?, built))
}

/// The package's modules folder: unpacked with merged `/usr`, so `usr/lib/modules`.
fn modules_root(kernel_dir: &Path) -> PathBuf {
    let merged = kernel_dir.join("usr/lib/modules");
    if merged.is_dir() {
        merged
    } else {
        kernel_dir.join("lib/modules")
    }
}

/// The one kernel version under the package's modules folder.
fn kernel_version(kernel_dir: &Path) -> Result<String, QemuError> {
    let modules = modules_root(kernel_dir);
    let entries = std::fs::read_dir(&modules)
        .map_err(|e| QemuError::io(format!("cannot read {}", modules.display()), e))?;
    entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|name| kernel_dir.join(format!("boot/vmlinuz-{name}")).is_file())
        .ok_or_else(|| {
            QemuError::Unavailable(format!(
                "{}: the kernel package holds no boot/vmlinuz-VERSION with lib/modules/VERSION",
                kernel_dir.display()
            ))
        })
}

/// Everything on the root disk but the kernel modules: the node image's engine binaries,
/// libraries and folders, busybox and its applets, kmod and its tools, the second stage and
/// the list of modules it loads.
fn root_disk_files(kernel_dir: &Path, version: &str) -> Result<Rootfs, QemuError> {
    let mut rootfs = Rootfs::default();
    nodeimage::add_layout(&mut rootfs);
    let mut elf_files = nodeimage::add_engine_binaries(&mut rootfs)?;
    elf_files.extend(nodeimage::add_xtables(&mut rootfs)?);
    nodeimage::add_libraries(&mut rootfs, &elf_files)?;
    nodeimage::add_generated_files(&mut rootfs);
    if !Path::new(BUSYBOX).is_file() {
        return Err(QemuError::Unavailable(format!(
            "cannot build the VM image: {BUSYBOX} is missing; apt-get install busybox-static"
        )));
    }
    rootfs.file("usr/bin/busybox", Path::new(BUSYBOX), 0o755);
    for applet in APPLETS {
        rootfs.symlink(&format!("usr/bin/{applet}"), "busybox");
    }
    if nodeimage::add_program(&mut rootfs, "kmod", &["kmod"])?.is_none() {
        return Err(QemuError::Unavailable(
            "cannot build the VM image: the host has no kmod (modprobe and depmod for the VM's kernel); apt-get install kmod".to_string(),
        ));
    }
    for tool in KMOD_TOOLS {
        rootfs.symlink(&format!("usr/sbin/{tool}"), "../bin/kmod");
    }
    for (top, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin")] {
        rootfs
            .entries
            .entry(top.to_string())
            .or_insert(nodeimage::Entry::Symlink {
                target: target.to_string(),
            });
    }
    rootfs.data(INIT_PATH, INIT_SCRIPT, 0o755);
    rootfs.data(
        "etc/shoal/modules",
        modules::RUN_MODULES.join("\n") + "\n",
        0o644,
    );
    rootfs.dir("etc/shoal/tls", 0o700);
    rootfs.data(
        "etc/shoal/kernel",
        format!("{version} {}\n", kernel_dir.display()),
        0o644,
    );
    Ok(rootfs)
}

/// Builds the image into `dir` through a fresh `<dir>.building` folder.
fn build(
    rootfs: &Rootfs,
    kernel_dir: &Path,
    version: &str,
    disk_bytes: u64,
    dir: &Path,
) -> Result<(), QemuError> {
    let started = Instant::now();
    let building = PathBuf::from(format!("{}.building", dir.display()));
    let _ = std::fs::remove_dir_all(&building);
    let staging = building.join("root");
    std::fs::create_dir_all(&staging)
        .map_err(|e| QemuError::io(format!("cannot create {}", staging.display()), e))?;
    rootfs
        .write_dir(&staging)
        .map_err(|e| QemuError::io("cannot lay out the VM's root disk", e))?;
    let modules_dir = copy_modules(kernel_dir, version, &staging)?;
    tool::run(
        "depmod",
        &["-b", &staging.to_string_lossy(), version],
        "apt-get install kmod",
    )?;
    let deps_path = modules_dir.join("modules.dep");
    let deps = std::fs::read_to_string(&deps_path)
        .map_err(|e| QemuError::io(format!("cannot read {}", deps_path.display()), e))?;
    let (boot_order, _built_in) = ModuleDeps::parse(&deps).load_order(modules::BOOT_MODULES);
    write_initrd(&modules_dir, &boot_order, &building.join(IMAGE_FILES[1]))?;
    let vmlinuz = kernel_dir.join(format!("boot/vmlinuz-{version}"));
    std::fs::copy(&vmlinuz, building.join(IMAGE_FILES[0]))
        .map_err(|e| QemuError::io(format!("cannot copy {}", vmlinuz.display()), e))?;
    let root = building.join(IMAGE_FILES[2]);
    tool::run(
        "mke2fs",
        &[
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "shoal-root",
            "-d",
            &staging.to_string_lossy(),
            &root.to_string_lossy(),
            &format!("{}k", disk_bytes / 1024),
        ],
        "apt-get install e2fsprogs",
    )?;
    std::fs::remove_dir_all(&staging)
        .map_err(|e| QemuError::io(format!("cannot remove {}", staging.display()), e))?;
    let image = VmImage {
        dir: dir.to_path_buf(),
        kernel_version: Some(version.to_string()),
        disk_bytes,
    };
    let manifest = serde_json::to_vec_pretty(&image).unwrap_or_default();
    std::fs::write(building.join(MANIFEST), manifest)
        .map_err(|e| QemuError::io("cannot write the VM image's record", e))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&building, dir)
        .map_err(|e| QemuError::io(format!("cannot move the VM image to {}", dir.display()), e))?;
    tracing::info!(
        dir = %dir.display(),
        kernel = version,
        seconds = started.elapsed().as_secs_f64(),
        "built the VM image"
    );
    Ok(())
}

/// Copies [`modules::KERNEL_DIRS`] and the single-file network drivers of the kernel package,
/// with its module lists, under the staging root's `lib/modules/VERSION`; returns that folder.
fn copy_modules(kernel_dir: &Path, version: &str, staging: &Path) -> Result<PathBuf, QemuError> {
    let from = modules_root(kernel_dir).join(version);
    let to = staging.join("lib/modules").join(version);
    for dir in modules::KERNEL_DIRS {
        copy_tree(&from.join("kernel").join(dir), &to.join("kernel").join(dir))?;
    }
    let net_from = from.join("kernel").join(modules::KERNEL_NET_FILES_DIR);
    let net_to = to.join("kernel").join(modules::KERNEL_NET_FILES_DIR);
    let entries = std::fs::read_dir(&net_from)
        .map_err(|e| QemuError::io(format!("cannot read {}", net_from.display()), e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_file() {
            copy_file(&path, &net_to.join(entry.file_name()))?;
        }
    }
    for list in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        if from.join(list).is_file() {
            copy_file(&from.join(list), &to.join(list))?;
        }
    }
    Ok(to)
}

/// Copies the regular files of `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) -> Result<(), QemuError> {
    let entries = match std::fs::read_dir(from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(QemuError::io(format!("cannot read {}", from.display()), e)),
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_tree(&path, &target)?;
        } else if path.is_file() {
            copy_file(&path, &target)?;
        }
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path) -> Result<(), QemuError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| QemuError::io(format!("cannot create {}", parent.display()), e))?;
    }
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| QemuError::io(format!("cannot copy {}", from.display()), e))
}

/// The first stage's initramfs: busybox, `/init`, `/dev/console`, and the modules that reach
/// the root disk with `/boot-modules` listing them in load order.
fn write_initrd(modules_dir: &Path, order: &[String], path: &Path) -> Result<(), QemuError> {
    let busybox = std::fs::read(BUSYBOX).map_err(|e| {
        QemuError::io(
            format!("cannot read {BUSYBOX}; apt-get install busybox-static"),
            e,
        )
    })?;
    let mut entries = vec![
        dir_entry("bin"),
        CpioEntry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox,
        },
        CpioEntry::File {
            path: "init".into(),
            mode: 0o755,
            data: BOOT_SCRIPT.as_bytes().to_vec(),
        },
        dir_entry("dev"),
        CpioEntry::CharDevice {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        dir_entry("modules"),
        CpioEntry::File {
            path: "boot-modules".into(),
            mode: 0o644,
            data: (order.join("\n") + "\n").into_bytes(),
        },
    ];
    let mut made = std::collections::BTreeSet::new();
    for module in order {
        let mut parent = String::from("modules");
        for part in module
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, d)| d)
        {
            parent = format!("{parent}/{part}");
            if made.insert(parent.clone()) {
                entries.push(dir_entry(&parent));
            }
        }
        let source = modules_dir.join(module);
        let data = std::fs::read(&source)
            .map_err(|e| QemuError::io(format!("cannot read {}", source.display()), e))?;
        entries.push(CpioEntry::File {
            path: format!("modules/{module}"),
            mode: 0o644,
            data,
        });
    }
    let mut bytes = Vec::new();
    cpio::write_archive(&entries, &mut bytes)
        .map_err(|e| QemuError::io("cannot write the initramfs", e))?;
    std::fs::write(path, bytes)
        .map_err(|e| QemuError::io(format!("cannot write {}", path.display()), e))
}

/// A folder entry of an initramfs.
pub(super) fn dir_entry(path: &str) -> CpioEntry {
    CpioEntry::Dir {
        path: path.to_string(),
        mode: 0o755,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::dind::debian::packages::parse_packages;

    #[test]
    fn the_kernel_is_the_package_the_meta_package_names_alone() {
        let text = "Package: linux-image-amd64\nVersion: 6.1.192-3\nDepends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\nFilename: pool/m.deb\nSize: 1\nSHA256: aa\n\nPackage: linux-image-6.1.0-57-amd64\nVersion: 6.1.192-3\nDepends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\nFilename: pool/k.deb\nSize: 2\nSHA256: bb\n";
        let (packages, problems) = parse_packages(text);
        assert!(problems.is_empty());
        let index = Index::new(packages);
        let (version, chosen) = kernel_package(&index, KERNEL_META).unwrap();
        assert_eq!(version, "6.1.192-3");
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].name, "linux-image-6.1.0-57-amd64");
        let missing = Index::new(
            parse_packages(&text.replace("Package: linux-image-6.1.0-57-amd64", "Package: other"))
                .0,
        );
        assert!(kernel_package(&missing, KERNEL_META)
            .unwrap_err()
            .contains("names no kernel package"));
    }

    #[test]
    fn a_given_image_names_its_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vmlinuz"), b"k").unwrap();
        let problem = VmImage::given(dir.path()).unwrap_err().to_string();
        assert!(
            problem.contains("initrd.img, root.img missing"),
            "{problem}"
        );
    }
}
