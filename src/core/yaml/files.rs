//! Where file content comes from: the [`FileSource`] trait (a working tree or a git commit, at
//! the edge in `crate::source`), an in-memory [`MemSource`] for tests, and pure helpers for the
//! repository-relative paths files name.

use crate::diag::Diagnostic;
use std::collections::BTreeMap;

/// Where the repository's files come from (working tree or a git commit); paths are relative, '/'-separated.
pub trait FileSource: Send + Sync {
    /// The file's bytes, Ok(None) when it does not exist.
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// The repository folder's name (default cluster name).
    fn root_name(&self) -> String;
    /// A file outside the repository, by absolute path (a machine's TLS folder or ssh files,
    /// which the driver reads where shoal runs); Ok(None) when it does not exist. By default
    /// the source's own file at that path.
    fn read_outside(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.read(path)
    }
}

/// Files held in memory, by '/'-separated path (for tests).
#[derive(Clone, Debug, Default)]
pub struct MemSource {
    /// The repository folder's name.
    pub name: String,
    /// File contents by path.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl MemSource {
    /// A repository named `name` holding `files` (path, text).
    pub fn new<'a>(name: &str, files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        MemSource {
            name: name.to_string(),
            files: files
                .into_iter()
                .map(|(path, text)| (path.to_string(), text.as_bytes().to_vec()))
                .collect(),
        }
    }
}

impl FileSource for MemSource {
    fn read(&self, path: &str) -> std::io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(path).cloned())
    }

    fn root_name(&self) -> String {
        self.name.clone()
    }
}

/// An error for a file that exists but could not be read.
pub fn read_error(file: &str, error: &std::io::Error) -> Diagnostic {
    Diagnostic::error(file, 0, 0, format!("cannot read the file: {error}"))
}

/// The folder part of a '/'-separated path (`""` for a file at the root).
pub fn parent_dir(path: &str) -> &str {
    path.rfind('/').map_or("", |at| &path[..at])
}

/// Joins `relative` onto the folder `base` and normalizes `.` and `..`; refuses absolute paths
/// and paths that leave the repository.
pub fn resolve_path(base: &str, relative: &str) -> Result<String, String> {
    let is_windows_absolute = relative.len() > 1
        && relative.as_bytes()[1] == b':'
        && relative.as_bytes()[0].is_ascii_alphabetic();
    if relative.starts_with('/') || relative.starts_with('\\') || is_windows_absolute {
        return Err(format!(
            "`{relative}` is an absolute path; shoal reads files from the repository only"
        ));
    }
    if relative.is_empty() {
        return Err("the path is empty".to_string());
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("`{relative}` points outside the repository"));
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{relative}` is a folder, not a file"));
    }
    Ok(parts.join("/"))
}
