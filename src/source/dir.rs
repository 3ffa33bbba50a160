//! [`DirSource`]: the files of a directory on disk, the one place the desired state's files are
//! read from the file system.

use crate::yaml::files::FileSource;
use std::io::{Error, ErrorKind, Read};
use std::path::{Component, Path, PathBuf};

/// Largest file [`DirSource`] reads; bigger files are refused before being read.
pub const MAX_READ_BYTES: u64 = 8 * 1024 * 1024;

/// The files of a directory (a working tree). Paths that are absolute, hold `..`, or lead
/// outside the directory through a symbolic link are refused.
#[derive(Clone, Debug)]
pub struct DirSource(pub PathBuf);

impl DirSource {
    fn checked_path(&self, path: &str) -> std::io::Result<PathBuf> {
        let relative = Path::new(path);
        let refused = path.is_empty()
            || relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
        if refused {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("`{path}` is not a path inside the repository"),
            ));
        }
        Ok(self.0.join(relative))
    }
}

impl FileSource for DirSource {
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        let full = self.checked_path(path)?;
        let real = match full.canonicalize() {
            Ok(real) => real,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !real.starts_with(self.0.canonicalize()?) {
            return Err(Error::new(
                ErrorKind::PermissionDenied,
                format!("`{path}` leads outside the repository"),
            ));
        }
        // Opening a FIFO blocks until a writer comes, so the kind is checked before opening
        // (and again on the opened file, in case the path was swapped in between).
        refuse_irregular(path, &std::fs::metadata(&real)?)?;
        let file = std::fs::File::open(&real)?;
        let metadata = file.metadata()?;
        refuse_irregular(path, &metadata)?;
        if metadata.len() > MAX_READ_BYTES {
            return Err(Error::new(
                ErrorKind::InvalidData,
                format!(
                    "`{path}` is too large ({} bytes; the limit is {MAX_READ_BYTES})",
                    metadata.len()
                ),
            ));
        }
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        file.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    fn read_outside(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        read_local(path)
    }

    fn root_name(&self) -> String {
        let real = self.0.canonicalize().unwrap_or_else(|_| self.0.clone());
        real.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// A file of this machine by absolute path, as the drivers read it: `None` when it does not
/// exist; a folder, FIFO or device, or a file over [`MAX_READ_BYTES`], is refused.
///
/// # Errors
///
/// The file cannot be read, or is refused.
pub fn read_local(path: &str) -> std::io::Result<Option<Vec<u8>>> {
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    refuse_irregular(path, &metadata)?;
    if metadata.len() > MAX_READ_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("`{path}` is too large ({} bytes)", metadata.len()),
        ));
    }
    std::fs::read(path).map(Some)
}

/// Refuses what is not a regular file: a folder, and a FIFO, socket or device, which would
/// block or never end when read.
fn refuse_irregular(path: &str, metadata: &std::fs::Metadata) -> std::io::Result<()> {
    if metadata.is_dir() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("`{path}` is a folder, not a file"),
        ));
    }
    if !metadata.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("`{path}` is not a regular file (a FIFO, socket or device); replace it with a regular file"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_outside_the_repository_are_read_when_present_and_folders_refused() {
        let real = tempfile::tempdir().unwrap();
        let folder = real.path().display().to_string();
        let source = DirSource(real.path().to_path_buf());
        assert_eq!(
            source.read_outside(&format!("{folder}/missing")).unwrap(),
            None
        );
        assert!(source.read_outside(&folder).is_err(), "a folder is refused");
    }

    #[test]
    fn dir_source_reads_inside_and_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), b"hello").unwrap();
        let source = DirSource(dir.path().to_path_buf());
        assert_eq!(source.read("sub/a.txt").unwrap(), Some(b"hello".to_vec()));
        assert_eq!(source.read("./sub/a.txt").unwrap(), Some(b"hello".to_vec()));
        assert_eq!(source.read("missing.txt").unwrap(), None);
        assert!(source.read("../etc/passwd").is_err());
        assert!(source.read("sub/../../x").is_err());
        assert!(source.read("/etc/passwd").is_err());
        assert!(source.read("sub").is_err());
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().unwrap();
            std::fs::write(outside.path().join("secret"), b"x").unwrap();
            std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("link"))
                .unwrap();
            assert!(source.read("link").is_err());
        }
        assert!(!source.root_name().is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(".env");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = DirSource(dir.path().to_path_buf())
            .read(".env")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
