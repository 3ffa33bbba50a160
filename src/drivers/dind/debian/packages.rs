//! Debian's package index, read as data: the stanzas of a `Packages` file, the SHA256 list of
//! a `Release`/`InRelease` file, dependency fields, and dpkg's version order. Pure functions.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// One package of a `Packages` file, with the fields the node image needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    /// `Package:`.
    pub name: String,
    /// `Version:`.
    pub version: String,
    /// `Depends:` then `Pre-Depends:`, each a list of alternatives.
    pub depends: Vec<Vec<Dependency>>,
    /// `Provides:`: the virtual packages it stands for, with a version when it names one.
    pub provides: Vec<Dependency>,
    /// `Filename:`, the path of the `.deb` under the archive's root.
    pub filename: String,
    /// `Size:` of the `.deb` in bytes.
    pub size: u64,
    /// `SHA256:` of the `.deb`, lowercase hex.
    pub sha256: String,
}

/// A version relation of a dependency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relation {
    /// `<<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `=`
    Equal,
    /// `>=`
    GreaterOrEqual,
    /// `>>`
    Greater,
}

/// One alternative of a dependency: a package name and an optional version constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dependency {
    /// The package (or virtual package) named, without an architecture qualifier.
    pub name: String,
    /// The version it must have, when constrained.
    pub version: Option<(Relation, String)>,
}

impl Dependency {
    /// Whether a package of `version` meets this dependency's constraint.
    pub fn accepts(&self, version: &str) -> bool {
        let Some((relation, wanted)) = &self.version else {
            return true;
        };
        let order = compare_versions(version, wanted);
        match relation {
            Relation::Less => order == Ordering::Less,
            Relation::LessOrEqual => order != Ordering::Greater,
            Relation::Equal => order == Ordering::Equal,
            Relation::GreaterOrEqual => order != Ordering::Less,
            Relation::Greater => order == Ordering::Greater,
        }
    }
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)?;
        if let Some((relation, version)) = &self.version {
            let op = match relation {
                Relation::Less => "<<",
                Relation::LessOrEqual => "<=",
                Relation::Equal => "=",
                Relation::GreaterOrEqual => ">=",
                Relation::Greater => ">>",
            };
            write!(f, " ({op} {version})")?;
        }
        Ok(())
    }
}

/// A malformed entry of an index file.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// A stanza lacks a field the image needs, or has one that cannot be read.
    #[error("package {package}: field {field} is missing or malformed in the Packages file")]
    Field {
        /// The package (or `?` when the stanza has no name).
        package: String,
        /// The field.
        field: &'static str,
    },
    /// A dependency field cannot be read.
    #[error("package {package}: cannot read dependency `{text}`")]
    Dependency {
        /// The package.
        package: String,
        /// The text of the alternative.
        text: String,
    },
}

/// The fields of one stanza (continuation lines joined with a space), by name.
fn stanza_fields(stanza: &str) -> BTreeMap<&str, String> {
    let mut fields: BTreeMap<&str, String> = BTreeMap::new();
    let mut last: Option<&str> = None;
    for line in stanza.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = last.and_then(|key| fields.get_mut(key)) {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            fields.insert(key, value.trim().to_string());
            last = Some(key);
        }
    }
    fields
}

/// Reads a dependency field (`a (>= 1) | b, c:any`) into groups of alternatives.
pub fn parse_dependencies(package: &str, text: &str) -> Result<Vec<Vec<Dependency>>, IndexError> {
    let mut groups = Vec::new();
    for group in text.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        let mut alternatives = Vec::new();
        for alternative in group.split('|').map(str::trim) {
            alternatives.push(parse_dependency(alternative).ok_or_else(|| {
                IndexError::Dependency {
                    package: package.to_string(),
                    text: alternative.to_string(),
                }
            })?);
        }
        groups.push(alternatives);
    }
    Ok(groups)
}

fn parse_dependency(text: &str) -> Option<Dependency> {
    // Build profiles (`<!nocheck>`) and architecture lists (`[amd64]`) only appear in source
    // packages; they are cut off all the same (after the constraint, which may hold `<=`).
    let after_constraint = text.find(')').map_or(0, |at| at + 1);
    let text = match text[after_constraint..].find(['<', '[']) {
        Some(at) if after_constraint > 0 || !text.contains('(') => {
            text[..after_constraint + at].trim()
        }
        _ => text.trim(),
    };
    let (name, constraint) = match text.split_once('(') {
        Some((name, rest)) => (name.trim(), Some(rest.trim_end().strip_suffix(')')?.trim())),
        None => (text, None),
    };
    let name = name.split(':').next()?.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let version = match constraint {
        None => None,
        Some(constraint) => {
            let operators = [
                ("<<", Relation::Less),
                ("<=", Relation::LessOrEqual),
                (">=", Relation::GreaterOrEqual),
                (">>", Relation::Greater),
                ("=", Relation::Equal),
                ("<", Relation::LessOrEqual),
                (">", Relation::GreaterOrEqual),
            ];
            let (relation, rest) = operators
                .iter()
                .find_map(|(op, relation)| constraint.strip_prefix(op).map(|r| (*relation, r)))?;
            let version = rest.trim();
            if version.is_empty() {
                return None;
            }
            Some((relation, version.to_string()))
        }
    };
    Some(Dependency {
        name: name.to_string(),
        version,
    })
}

/// Reads every stanza of a `Packages` file: the packages read, and the problems of the
/// stanzas that could not be (a package that is never needed must not stop a build).
pub fn parse_packages(text: &str) -> (Vec<Package>, Vec<IndexError>) {
    let mut packages = Vec::new();
    let mut problems = Vec::new();
    for stanza in text.split("\n\n").filter(|s| !s.trim().is_empty()) {
        match parse_stanza(stanza) {
            Ok(package) => packages.push(package),
            Err(problem) => problems.push(problem),
        }
    }
    (packages, problems)
}

fn parse_stanza(stanza: &str) -> Result<Package, IndexError> {
    {
        let fields = stanza_fields(stanza);
        let name = fields.get("Package").cloned().unwrap_or_default();
        let missing = |field: &'static str| IndexError::Field {
            package: if name.is_empty() {
                "?".to_string()
            } else {
                name.clone()
            },
            field,
        };
        if name.is_empty() {
            return Err(missing("Package"));
        }
        let get = |field: &'static str| {
            fields
                .get(field)
                .filter(|v| !v.is_empty())
                .cloned()
                .ok_or_else(|| missing(field))
        };
        let mut depends = Vec::new();
        for field in ["Depends", "Pre-Depends"] {
            if let Some(text) = fields.get(field) {
                depends.extend(parse_dependencies(&name, text)?);
            }
        }
        let provides = match fields.get("Provides") {
            Some(text) => parse_dependencies(&name, text)?
                .into_iter()
                .flatten()
                .collect(),
            None => Vec::new(),
        };
        Ok(Package {
            version: get("Version")?,
            filename: get("Filename")?,
            size: get("Size")?.parse().map_err(|_| missing("Size"))?,
            sha256: get("SHA256")?.to_ascii_lowercase(),
            depends,
            provides,
            name,
        })
    }
}

impl IndexError {
    /// The package the problem is about.
    pub fn package(&self) -> &str {
        match self {
            IndexError::Field { package, .. } | IndexError::Dependency { package, .. } => package,
        }
    }
}

/// The `SHA256:` list of a `Release` or `InRelease` file: path → (hash, size).
pub fn release_sha256(text: &str) -> BTreeMap<String, (String, u64)> {
    let mut files = BTreeMap::new();
    let mut inside = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            inside = line.trim_end() == "SHA256:";
            continue;
        }
        if !inside {
            continue;
        }
        let mut parts = line.split_whitespace();
        if let (Some(hash), Some(size), Some(path)) = (parts.next(), parts.next(), parts.next()) {
            if let Ok(size) = size.parse() {
                files.insert(path.to_string(), (hash.to_ascii_lowercase(), size));
            }
        }
    }
    files
}

/// dpkg's order of versions (`[epoch:]upstream[-revision]`, `~` before everything).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (epoch_a, rest_a) = split_epoch(a);
    let (epoch_b, rest_b) = split_epoch(b);
    epoch_a.cmp(&epoch_b).then_with(|| {
        let (upstream_a, revision_a) = rest_a.rsplit_once('-').unwrap_or((rest_a, "0"));
        let (upstream_b, revision_b) = rest_b.rsplit_once('-').unwrap_or((rest_b, "0"));
        compare_part(upstream_a, upstream_b).then_with(|| compare_part(revision_a, revision_b))
    })
}

fn split_epoch(version: &str) -> (u64, &str) {
    match version.split_once(':') {
        Some((epoch, rest)) => (epoch.parse().unwrap_or(0), rest),
        None => (0, version),
    }
}

/// The weight of a character in the non-digit parts: `~` lowest, then the end, then letters,
/// then everything else.
fn weight(c: Option<u8>) -> i32 {
    match c {
        Some(b'~') => -1,
        None => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    while !a.is_empty() || !b.is_empty() {
        loop {
            let (ca, cb) = (a.first().copied(), b.first().copied());
            let a_text = ca.is_some_and(|c| !c.is_ascii_digit());
            let b_text = cb.is_some_and(|c| !c.is_ascii_digit());
            if !a_text && !b_text {
                break;
            }
            match weight(ca.filter(|_| a_text)).cmp(&weight(cb.filter(|_| b_text))) {
                Ordering::Equal => {
                    a = &a[1..];
                    b = &b[1..];
                }
                other => return other,
            }
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (na, nb) = (digits(a), digits(b));
        let number = |s: &[u8]| {
            let text = std::str::from_utf8(s)
                .unwrap_or("0")
                .trim_start_matches('0');
            (text.len(), text.to_string())
        };
        match number(&a[..na]).cmp(&number(&b[..nb])) {
            Ordering::Equal => {}
            other => return other,
        }
        a = &a[na..];
        b = &b[nb..];
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stanzas as sid's Packages file has them (fields the image does not read trimmed).
    pub(crate) const STANZAS: &str = "\
Package: docker-cli
Version: 28.5.2+dfsg4-5
Installed-Size: 40129
Architecture: amd64
Depends: libc6 (>= 2.34)
Description: Linux container runtime -- client
Filename: pool/main/d/docker.io/docker-cli_28.5.2+dfsg4-5_amd64.deb
Size: 8260348
SHA256: 5e7bd5a3b4c6bbf3dbd1f7e5b1f0b8c2e1f4b1e8f3f7a6a2c9c3f8d1a2b3c4d5

Package: dash
Version: 0.5.12-12
Depends: debianutils (>= 5.6-0.1)
Pre-Depends: libc6 (>= 2.38)
Description: POSIX-compliant shell
 The Debian Almquist Shell (dash) is a POSIX-compliant shell derived
 from ash.
Filename: pool/main/d/dash/dash_0.5.12-12_amd64.deb
Size: 98504
SHA256: ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789
";

    #[test]
    fn stanzas_give_names_versions_dependencies_and_hashes() {
        let (packages, problems) = parse_packages(STANZAS);
        assert_eq!(problems, []);
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "docker-cli");
        assert_eq!(packages[0].size, 8_260_348);
        let dash = &packages[1];
        assert_eq!(dash.version, "0.5.12-12");
        assert_eq!(
            dash.depends,
            vec![
                vec![Dependency {
                    name: "debianutils".into(),
                    version: Some((Relation::GreaterOrEqual, "5.6-0.1".into()))
                }],
                vec![Dependency {
                    name: "libc6".into(),
                    version: Some((Relation::GreaterOrEqual, "2.38".into()))
                }],
            ]
        );
        assert!(dash.sha256.starts_with("abcdef"));
    }

    #[test]
    fn a_stanza_without_a_hash_names_the_package_and_field() {
        let (packages, problems) = parse_packages(&format!(
            "Package: x\nVersion: 1\nFilename: x.deb\nSize: 3\n\n{STANZAS}"
        ));
        assert_eq!(packages.len(), 2);
        assert_eq!(
            problems[0].to_string(),
            "package x: field SHA256 is missing or malformed in the Packages file"
        );
        assert_eq!(problems[0].package(), "x");
    }

    #[test]
    fn alternatives_qualifiers_and_provides_are_read() {
        let groups = parse_dependencies(
            "docker.io",
            "debconf (>= 0.5) | debconf-2.0, systemd | systemd-sysusers, python3:any, libc6 (>> 2.3), 0ad-data (<= 0.28.0-3), foo [amd64] <!nocheck>",
        )
        .unwrap();
        assert_eq!(groups.len(), 6);
        assert_eq!(
            groups[4][0].version,
            Some((Relation::LessOrEqual, "0.28.0-3".into()))
        );
        assert_eq!(groups[5][0].name, "foo");
        assert_eq!(groups[0][1].name, "debconf-2.0");
        assert_eq!(groups[2][0].name, "python3");
        assert_eq!(
            groups[3][0].version,
            Some((Relation::Greater, "2.3".into()))
        );
        assert!(parse_dependencies("x", "a (>= )").is_err());
    }

    #[test]
    fn versions_follow_dpkg_order() {
        let less = [
            ("1.0", "1.1"),
            ("1.0~rc1", "1.0"),
            ("1.0", "1.0+dfsg"),
            ("1.0-1", "1.0-2"),
            ("2.9", "2.10"),
            ("1:0.1", "2:0.0"),
            ("9.9", "1:0"),
            ("26.1.5+dfsg1-9", "26.1.5+dfsg1-9+deb13u1+b1"),
            ("1.4~", "2.1.9+ds1-5"),
            ("1.0a", "1.0b"),
            ("1.0", "1.0a"),
        ];
        for (a, b) in less {
            assert_eq!(compare_versions(a, b), Ordering::Less, "{a} < {b}");
            assert_eq!(compare_versions(b, a), Ordering::Greater, "{b} > {a}");
        }
        assert_eq!(compare_versions("1.01", "1.1"), Ordering::Equal);
        assert_eq!(compare_versions("0:1.0", "1.0"), Ordering::Equal);
    }

    #[test]
    fn constraints_accept_versions() {
        let dep = |relation, version: &str| Dependency {
            name: "x".into(),
            version: Some((relation, version.into())),
        };
        assert!(dep(Relation::GreaterOrEqual, "1.4~").accepts("2.1.9+ds1-5"));
        assert!(!dep(Relation::Less, "1.0").accepts("1.0"));
        assert!(dep(Relation::Equal, "1.8.13-1").accepts("1.8.13-1"));
        assert!(Dependency {
            name: "x".into(),
            version: None
        }
        .accepts("0"));
    }

    #[test]
    fn release_files_list_sha256_by_path() {
        let release = "Origin: Debian\nMD5Sum:\n aa 10 main/binary-amd64/Packages.xz\nSHA256:\n 28476C95 10824484 main/binary-amd64/Packages.xz\n 71e5 15001303 main/binary-amd64/Packages.gz\nAcquire-By-Hash: yes\n";
        let files = release_sha256(release);
        assert_eq!(
            files.get("main/binary-amd64/Packages.xz"),
            Some(&("28476c95".to_string(), 10_824_484))
        );
        assert_eq!(files.len(), 2);
    }
}
