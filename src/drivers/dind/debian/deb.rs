//! A `.deb` taken apart without dpkg: the `ar` archive, its `data.tar.{xz,zst,gz}`, and the
//! list of what it installs (a [`Manifest`]), with the files written under a folder. No
//! maintainer script runs; paths are mapped to the merged-`/usr` layout and documentation is
//! left out.

use std::io::{self, Read};
use std::path::Path;

/// The magic that starts an `ar` archive.
const AR_MAGIC: &[u8] = b"!<arch>\n";
/// Size of an `ar` member header.
const AR_HEADER: usize = 60;
/// Folders whose content a node never reads.
const LEFT_OUT: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bug",
];
/// Top-level folders that merged `/usr` turns into links to their `usr/` twin.
const MERGED: &[&str] = &["bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// What a `.deb` could not give.
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    /// The `ar` container is malformed.
    #[error("not a Debian package: {0}")]
    Ar(String),
    /// No `data.tar` member, or one compressed in a way shoal does not read.
    #[error("no readable data.tar member (members: {0})")]
    NoData(String),
    /// Reading the data archive or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> DebError {
    let context = context.into();
    move |source| DebError::Io { context, source }
}

/// One member of an `ar` archive.
#[derive(Debug, PartialEq, Eq)]
pub struct ArMember<'a> {
    /// Its name (GNU's trailing `/` removed).
    pub name: String,
    /// Its bytes.
    pub data: &'a [u8],
}

/// The members of an `ar` archive, in order.
pub fn ar_members(bytes: &[u8]) -> Result<Vec<ArMember<'_>>, DebError> {
    let mut rest = bytes
        .strip_prefix(AR_MAGIC)
        .ok_or_else(|| DebError::Ar("no `!<arch>` magic".to_string()))?;
    let mut members = Vec::new();
    while !rest.is_empty() {
        if rest.len() < AR_HEADER {
            return Err(DebError::Ar("truncated member header".to_string()));
        }
        let (header, body) = rest.split_at(AR_HEADER);
        if &header[58..60] != b"`\n" {
            return Err(DebError::Ar("bad member header terminator".to_string()));
        }
        let name = String::from_utf8_lossy(&header[..16])
            .trim_end()
            .trim_end_matches('/')
            .to_string();
        let size: usize = String::from_utf8_lossy(&header[48..58])
            .trim()
            .parse()
            .map_err(|_| DebError::Ar(format!("bad size of member {name}")))?;
        if body.len() < size {
            return Err(DebError::Ar(format!("member {name} is truncated")));
        }
        members.push(ArMember {
            name,
            data: &body[..size],
        });
        let padded = (size + size % 2).min(body.len());
        rest = &body[padded..];
    }
    Ok(members)
}

/// The decompressed `data.tar` of a package.
pub fn data_tar<'a>(members: &[ArMember<'a>]) -> Result<Box<dyn Read + 'a>, DebError> {
    for member in members {
        let data = member.data;
        let reader: Box<dyn Read + 'a> = match member.name.as_str() {
            "data.tar.xz" => Box::new(xz2::read::XzDecoder::new(data)),
            "data.tar.zst" => Box::new(
                ruzstd::decoding::StreamingDecoder::new(data)
                    .map_err(|e| DebError::Ar(format!("bad zstd stream in data.tar.zst: {e}")))?,
            ),
            "data.tar.gz" => Box::new(flate2::read::GzDecoder::new(data)),
            "data.tar" => Box::new(data),
            _ => continue,
        };
        return Ok(reader);
    }
    Err(DebError::NoData(
        members
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    ))
}

/// What one entry of a package installs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installed {
    /// A folder with its mode.
    Dir(u32),
    /// A regular file with its mode, written under the package's folder at the same path.
    File(u32),
    /// A symbolic link to the target.
    Symlink(String),
    /// A second name of a file installed earlier (its image path).
    Hardlink(String),
}

/// What a package installs, by image path (no leading `/`), in archive order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The entries.
    pub entries: Vec<(String, Installed)>,
}

impl Manifest {
    /// One line per entry: `kind TAB mode-or-target TAB path`.
    pub fn to_text(&self) -> String {
        let mut text = String::new();
        for (path, installed) in &self.entries {
            let (kind, detail) = match installed {
                Installed::Dir(mode) => ('d', format!("{mode:o}")),
                Installed::File(mode) => ('f', format!("{mode:o}")),
                Installed::Symlink(target) => ('l', target.clone()),
                Installed::Hardlink(target) => ('h', target.clone()),
            };
            text.push_str(&format!("{kind}\t{detail}\t{path}\n"));
        }
        text
    }

    /// Reads what [`Manifest::to_text`] wrote; `None` when it is damaged.
    pub fn from_text(text: &str) -> Option<Manifest> {
        let mut entries = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, '\t');
            let (kind, detail, path) = (parts.next()?, parts.next()?, parts.next()?);
            let mode = || u32::from_str_radix(detail, 8).ok();
            let installed = match kind {
                "d" => Installed::Dir(mode()?),
                "f" => Installed::File(mode()?),
                "l" => Installed::Symlink(detail.to_string()),
                "h" => Installed::Hardlink(detail.to_string()),
                _ => return None,
            };
            entries.push((path.to_string(), installed));
        }
        Some(Manifest { entries })
    }
}

/// Where an archive path goes in the node image: `./bin/x` → `usr/bin/x` (merged `/usr`);
/// `None` for the root itself and for what is left out (documentation, manuals, translations).
pub fn image_path(raw: &str) -> Option<String> {
    let path = raw.trim_start_matches("./").trim_matches('/');
    if path.is_empty() || path == "." {
        return None;
    }
    let top = path.split('/').next().unwrap_or_default();
    let path = if MERGED.contains(&top) {
        format!("usr/{path}")
    } else {
        path.to_string()
    };
    let left_out = LEFT_OUT
        .iter()
        .any(|dir| path == *dir || path.starts_with(&format!("{dir}/")));
    (!left_out).then_some(path)
}

/// Unpacks the package `deb` into `dir` (its regular files, at their image paths) and returns
/// its manifest.
pub fn unpack(deb: &[u8], dir: &Path) -> Result<Manifest, DebError> {
    let members = ar_members(deb)?;
    let mut archive = tar::Archive::new(data_tar(&members)?);
    let mut manifest = Manifest::default();
    let entries = archive
        .entries()
        .map_err(io_error("cannot read the data archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_error("cannot read the data archive"))?;
        let raw = entry
            .path()
            .map_err(io_error("cannot read a path in the data archive"))?
            .to_string_lossy()
            .to_string();
        let Some(path) = image_path(&raw) else {
            continue;
        };
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let installed = match entry.header().entry_type() {
            tar::EntryType::Directory => Installed::Dir(mode),
            tar::EntryType::Symlink => Installed::Symlink(link_of(&entry, &raw)?),
            tar::EntryType::Link => match image_path(&link_of(&entry, &raw)?) {
                Some(target) => Installed::Hardlink(target),
                None => continue,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let target = dir.join(&path);
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(io_error(format!("cannot create {}", parent.display())))?;
                }
                let mut file = std::fs::File::create(&target)
                    .map_err(io_error(format!("cannot write {}", target.display())))?;
                io::copy(&mut entry, &mut file)
                    .map_err(io_error(format!("cannot unpack {raw}")))?;
                Installed::File(mode)
            }
            _ => continue,
        };
        manifest.entries.push((path, installed));
    }
    Ok(manifest)
}

fn link_of<R: Read>(entry: &tar::Entry<'_, R>, raw: &str) -> Result<String, DebError> {
    Ok(entry
        .link_name()
        .map_err(io_error(format!("cannot read the link {raw}")))?
        .map(|l| l.to_string_lossy().to_string())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `ar` archive as dpkg-deb writes it, with an odd-sized member (padded).
    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            out.extend(
                format!(
                    "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    0,
                    0,
                    0,
                    100644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend_from_slice(data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    fn data_tar_gz() -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add =
            |path: &str, kind: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(kind);
                header.set_mode(mode);
                header.set_size(data.len() as u64);
                match link {
                    Some(link) => builder.append_link(&mut header, path, link).unwrap(),
                    None => builder.append_data(&mut header, path, data).unwrap(),
                }
            };
        add("./", tar::EntryType::Directory, 0o755, b"", None);
        add("./bin/", tar::EntryType::Directory, 0o755, b"", None);
        add(
            "./bin/dash",
            tar::EntryType::Regular,
            0o755,
            b"\x7fELF",
            None,
        );
        add(
            "./bin/sh",
            tar::EntryType::Symlink,
            0o777,
            b"",
            Some("dash"),
        );
        add(
            "./usr/bin/ash",
            tar::EntryType::Link,
            0o755,
            b"",
            Some("./bin/dash"),
        );
        add(
            "./usr/share/doc/dash/copyright",
            tar::EntryType::Regular,
            0o644,
            b"c",
            None,
        );
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn ar_members_are_read_with_padding() {
        let bytes = ar(&[
            ("debian-binary", b"2.0\n"),
            ("control.tar.xz/", b"abc"),
            ("data.tar.gz", b"xy"),
        ]);
        let members = ar_members(&bytes).unwrap();
        let names: Vec<&str> = members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["debian-binary", "control.tar.xz", "data.tar.gz"]);
        assert_eq!(members[1].data, b"abc");
        assert_eq!(members[2].data, b"xy");
    }

    #[test]
    fn a_file_that_is_not_an_ar_archive_is_refused() {
        assert!(matches!(
            ar_members(b"<html>not found</html>"),
            Err(DebError::Ar(_))
        ));
        let mut truncated = ar(&[("data.tar.xz", b"0123456789")]);
        truncated.truncate(truncated.len() - 4);
        assert!(ar_members(&truncated).is_err());
    }

    #[test]
    fn paths_follow_merged_usr_and_leave_docs_out() {
        assert_eq!(image_path("./bin/dash").as_deref(), Some("usr/bin/dash"));
        assert_eq!(
            image_path("./lib64/ld-linux-x86-64.so.2").as_deref(),
            Some("usr/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(
            image_path("./etc/default/docker").as_deref(),
            Some("etc/default/docker")
        );
        assert_eq!(image_path("./usr/share/doc/x/copyright"), None);
        assert_eq!(image_path("./"), None);
    }

    #[test]
    fn a_package_unpacks_into_files_and_a_manifest() {
        let deb = ar(&[("debian-binary", b"2.0\n"), ("data.tar.gz", &data_tar_gz())]);
        let dir = tempfile::tempdir().unwrap();
        let manifest = unpack(&deb, dir.path()).unwrap();
        assert_eq!(
            manifest.entries,
            vec![
                ("usr/bin".to_string(), Installed::Dir(0o755)),
                ("usr/bin/dash".to_string(), Installed::File(0o755)),
                ("usr/bin/sh".to_string(), Installed::Symlink("dash".into())),
                (
                    "usr/bin/ash".to_string(),
                    Installed::Hardlink("usr/bin/dash".into())
                ),
            ]
        );
        assert_eq!(
            std::fs::read(dir.path().join("usr/bin/dash")).unwrap(),
            b"\x7fELF"
        );
        assert_eq!(Manifest::from_text(&manifest.to_text()), Some(manifest));
        let no_data = ar(&[("debian-binary", b"2.0\n"), ("data.tar.lz4", b"x")]);
        assert_eq!(
            unpack(&no_data, dir.path()).unwrap_err().to_string(),
            "no readable data.tar member (members: debian-binary, data.tar.lz4)"
        );
    }
}
