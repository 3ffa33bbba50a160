//! The dependency closure of a few packages in one suite, as apt would install it with
//! `--no-install-recommends`, less the packages whose only job is the maintainer scripts
//! shoal does not run. Pure.

use super::packages::{compare_versions, Dependency, Package};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Packages needed only by maintainer scripts, init systems or interactive configuration, never
/// by a running node: a dependency on them alone is dropped, and an alternative naming them is
/// passed over.
pub const NOT_NEEDED: &[&str] = &[
    "adduser",
    "debconf",
    "debconf-2.0",
    "cdebconf",
    "init-system-helpers",
    "systemd",
    "systemd-sysv",
    "systemd-sysusers",
    "systemd-standalone-sysusers",
    "sysvinit-utils",
    "lsb-base",
    "libpam-modules",
    "libpam-modules-bin",
    "libpam-runtime",
    "perl-base",
    "needrestart",
];

/// Why a closure cannot be made.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// A package asked for is not in the index.
    #[error("package {0} is not in the suite's Packages file")]
    Missing(String),
    /// No alternative of a dependency can be had.
    #[error("package {package} depends on `{wanted}`, which no package of the suite satisfies")]
    Unsatisfiable {
        /// The package whose dependency it is.
        package: String,
        /// The dependency as written.
        wanted: String,
    },
}

/// A suite's packages by name (the newest version of each), and who provides what.
#[derive(Debug, Default)]
pub struct Index {
    packages: BTreeMap<String, Package>,
    providers: BTreeMap<String, Vec<String>>,
}

impl Index {
    /// Indexes `packages`; where a name appears twice, the newer version is kept.
    pub fn new(packages: Vec<Package>) -> Index {
        let mut index = Index::default();
        for package in packages {
            let newer = index.packages.get(&package.name).is_none_or(|old| {
                compare_versions(&package.version, &old.version) == std::cmp::Ordering::Greater
            });
            if newer {
                index.packages.insert(package.name.clone(), package);
            }
        }
        for package in index.packages.values() {
            for provided in &package.provides {
                index
                    .providers
                    .entry(provided.name.clone())
                    .or_default()
                    .push(package.name.clone());
            }
        }
        index
    }

    /// The package of that name.
    pub fn get(&self, name: &str) -> Option<&Package> {
        self.packages.get(name)
    }

    /// The packages that satisfy `dependency`: the real one of that name first, then those that
    /// provide it (an unversioned Provides satisfies only an unversioned dependency).
    fn candidates<'a>(&'a self, dependency: &'a Dependency) -> impl Iterator<Item = &'a Package> {
        let real = self
            .packages
            .get(&dependency.name)
            .filter(|p| dependency.accepts(&p.version));
        let provided = (self.providers.get(&dependency.name).into_iter().flatten())
            .filter_map(|name| self.packages.get(name))
            .filter(|provider| {
                provider.provides.iter().any(|p| {
                    p.name == dependency.name
                        && match (&dependency.version, &p.version) {
                            (None, _) => true,
                            (Some(_), None) => false,
                            (Some(_), Some((_, version))) => dependency.accepts(version),
                        }
                })
            });
        real.into_iter().chain(provided)
    }
}

/// The closure of `roots` under Depends and Pre-Depends: for each dependency, one already
/// chosen package that satisfies it, else the first alternative that the suite satisfies and
/// that is not in [`NOT_NEEDED`]; a dependency whose every alternative is not needed is dropped.
/// Returns the packages sorted by name.
pub fn closure<'a>(index: &'a Index, roots: &[&str]) -> Result<Vec<&'a Package>, ResolveError> {
    let mut chosen: BTreeMap<&str, &Package> = BTreeMap::new();
    let mut queue: VecDeque<&Package> = VecDeque::new();
    for root in roots {
        let package = index
            .get(root)
            .ok_or_else(|| ResolveError::Missing((*root).to_string()))?;
        if chosen.insert(&package.name, package).is_none() {
            queue.push_back(package);
        }
    }
    let not_needed: BTreeSet<&str> = NOT_NEEDED.iter().copied().collect();
    while let Some(package) = queue.pop_front() {
        for group in &package.depends {
            let wanted: Vec<&Dependency> = group
                .iter()
                .filter(|d| !not_needed.contains(d.name.as_str()))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let met = wanted.iter().any(|dependency| {
                index
                    .candidates(dependency)
                    .any(|c| chosen.contains_key(c.name.as_str()))
            });
            if met {
                continue;
            }
            let pick = wanted
                .iter()
                .find_map(|dependency| {
                    index
                        .candidates(dependency)
                        .find(|c| !not_needed.contains(c.name.as_str()))
                })
                .ok_or_else(|| ResolveError::Unsatisfiable {
                    package: package.name.clone(),
                    wanted: group
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" | "),
                })?;
            chosen.insert(&pick.name, pick);
            queue.push_back(pick);
        }
    }
    Ok(chosen.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::super::packages::parse_packages;
    use super::*;

    /// Stanzas trimmed from sid's Packages file: docker.io's dependencies as they are written
    /// there, and a virtual package.
    const SUITE: &str = "\
Package: docker.io
Version: 28.5.2+dfsg4-5
Depends: debconf (>= 0.5) | debconf-2.0, systemd | systemd-standalone-sysusers | systemd-sysusers, libc6 (>= 2.34), containerd (>= 1.4~), iptables, runc (>= 1.0.0~rc8~), tini-static
Filename: pool/main/d/docker.io/docker.io_28.5.2+dfsg4-5_amd64.deb
Size: 19311940
SHA256: 69a59cc77a1fb8ee9ad6859abc2e6de5d76b70887405595c2b1307818fecf682

Package: containerd
Version: 2.1.9+ds1-5
Depends: runc (>= 0.1.0~), libc6 (>= 2.34)
Filename: pool/main/c/containerd/containerd_2.1.9+ds1-5_amd64.deb
Size: 29547080
SHA256: 01

Package: runc
Version: 1.3.6+ds1-1
Depends: libc6 (>= 2.38), libseccomp2 (>= 2.5.0)
Filename: pool/main/r/runc/runc_1.3.6+ds1-1_amd64.deb
Size: 6707796
SHA256: 02

Package: libseccomp2
Version: 2.6.0-2
Depends: libc6 (>= 2.14)
Filename: pool/main/libs/libseccomp/libseccomp2_2.6.0-2_amd64.deb
Size: 49000
SHA256: 03

Package: tini-static
Version: 0.19.0-6+b2
Filename: pool/main/t/tini/tini-static_0.19.0-6+b2_amd64.deb
Size: 280000
SHA256: 04

Package: iptables
Version: 1.8.13-1
Depends: libxtables12 (= 1.8.13-1), netbase (>= 6.0), libc6 (>= 2.38)
Filename: pool/main/i/iptables/iptables_1.8.13-1_amd64.deb
Size: 360768
SHA256: 05

Package: libxtables12
Version: 1.8.13-1
Depends: libc6 (>= 2.38)
Filename: pool/main/i/iptables/libxtables12_1.8.13-1_amd64.deb
Size: 30468
SHA256: 06

Package: netbase
Version: 6.5
Filename: pool/main/n/netbase/netbase_6.5_all.deb
Size: 12000
SHA256: 07

Package: libc6
Version: 2.43-7
Depends: libgcc-s1
Filename: pool/main/g/glibc/libc6_2.43-7_amd64.deb
Size: 1866392
SHA256: 08

Package: libgcc-s1
Version: 16-1
Depends: gcc-16-base (= 16-1), libc6 (>= 2.35)
Filename: pool/main/g/gcc-16/libgcc-s1_16-1_amd64.deb
Size: 70000
SHA256: 09

Package: gcc-16-base
Version: 16-1
Filename: pool/main/g/gcc-16/gcc-16-base_16-1_amd64.deb
Size: 50000
SHA256: 10

Package: debconf
Version: 1.5.91
Pre-Depends: perl-base (>= 5.20.1-3~)
Filename: pool/main/d/debconf/debconf_1.5.91_all.deb
Size: 120000
SHA256: 11

Package: awk-provider
Version: 1.0
Provides: awk
Filename: pool/main/a/awk/awk-provider_1.0_amd64.deb
Size: 100
SHA256: 12

Package: uses-awk
Version: 1.0
Depends: awk | gawk
Filename: pool/main/u/uses-awk/uses-awk_1.0_amd64.deb
Size: 100
SHA256: 13
";

    fn index() -> Index {
        Index::new(parse_packages(SUITE).0)
    }

    fn names(packages: &[&Package]) -> Vec<String> {
        packages.iter().map(|p| p.name.clone()).collect()
    }

    #[test]
    fn the_engine_closure_leaves_out_what_only_maintainer_scripts_need() {
        let index = index();
        let packages = closure(&index, &["docker.io"]).unwrap();
        assert_eq!(
            names(&packages),
            [
                "containerd",
                "docker.io",
                "gcc-16-base",
                "iptables",
                "libc6",
                "libgcc-s1",
                "libseccomp2",
                "libxtables12",
                "netbase",
                "runc",
                "tini-static"
            ]
        );
    }

    #[test]
    fn a_virtual_package_is_met_by_its_provider() {
        let index = index();
        let packages = closure(&index, &["uses-awk"]).unwrap();
        assert_eq!(names(&packages), ["awk-provider", "uses-awk"]);
    }

    #[test]
    fn a_missing_root_and_an_unmet_version_are_named() {
        let index = index();
        assert_eq!(
            closure(&index, &["docker-ce"]).unwrap_err(),
            ResolveError::Missing("docker-ce".into())
        );
        let strict = format!(
            "{SUITE}\nPackage: wants-new-libc\nVersion: 1\nDepends: libc6 (>= 3.0)\nFilename: x.deb\nSize: 1\nSHA256: 14\n"
        );
        let index = Index::new(parse_packages(&strict).0);
        assert_eq!(
            closure(&index, &["wants-new-libc"]).unwrap_err().to_string(),
            "package wants-new-libc depends on `libc6 (>= 3.0)`, which no package of the suite satisfies"
        );
    }
}
