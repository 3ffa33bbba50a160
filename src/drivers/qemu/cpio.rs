//! The initramfs format: a `newc` cpio archive, the one the Linux kernel unpacks at boot.
//! Archives may be concatenated: a VM's initramfs is the image's (the first stage) followed by
//! one holding that VM's settings.

use std::io::{self, Write};

/// One entry of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CpioEntry {
    /// A folder.
    Dir {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Content.
        data: Vec<u8>,
    },
    /// A character device (`/dev/console`, which the kernel opens before any `/dev` exists).
    CharDevice {
        /// Path without a leading `/`.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;
/// The name of the entry that ends an archive.
const TRAILER: &str = "TRAILER!!!";

/// Writes `entries` (parents before children) as one `newc` archive, owned by root.
pub fn write_archive(entries: &[CpioEntry], out: &mut dyn Write) -> io::Result<()> {
    for (index, entry) in entries.iter().enumerate() {
        let inode = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let (path, mode, data, rdev): (&str, u32, &[u8], (u32, u32)) = match entry {
            CpioEntry::Dir { path, mode } => (path, S_IFDIR | mode, &[], (0, 0)),
            CpioEntry::File { path, mode, data } => (path, S_IFREG | mode, data, (0, 0)),
            CpioEntry::CharDevice {
                path,
                mode,
                major,
                minor,
            } => (path, S_IFCHR | mode, &[], (*major, *minor)),
        };
        let nlink = if matches!(entry, CpioEntry::Dir { .. }) {
            2
        } else {
            1
        };
        write_entry(out, inode, mode, nlink, path, data, rdev)?;
    }
    write_entry(out, 0, 0, 1, TRAILER, &[], (0, 0))?;
    out.flush()
}

/// One header, name and content, each padded to 4 bytes.
fn write_entry(
    out: &mut dyn Write,
    inode: u32,
    mode: u32,
    nlink: u32,
    path: &str,
    data: &[u8],
    (rdev_major, rdev_minor): (u32, u32),
) -> io::Result<()> {
    let path = path.trim_start_matches('/');
    let size = u32::try_from(data.len()).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{path} is over 4 GiB"))
    })?;
    let name_size = path.len() + 1;
    let fields = [
        inode,
        mode,
        0,
        0,
        nlink,
        0,
        size,
        0,
        0,
        rdev_major,
        rdev_minor,
        u32::try_from(name_size).unwrap_or(u32::MAX),
        0,
    ];
    let mut header = String::from("070701");
    for field in fields {
        header.push_str(&format!("{field:08x}"));
    }
    out.write_all(header.as_bytes())?;
    out.write_all(path.as_bytes())?;
    out.write_all(&[0])?;
    let head = header.len() + name_size;
    out.write_all(&[0; 3][..padding(head)])?;
    out.write_all(data)?;
    out.write_all(&[0; 3][..padding(data.len())])
}

/// Bytes that pad `length` to a multiple of 4.
fn padding(length: usize) -> usize {
    (4 - length % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, content, device numbers.
    type ReadEntry = (String, u32, Vec<u8>, (u32, u32));

    /// Reads an archive back, trailer excluded.
    fn read_back(bytes: &[u8]) -> Vec<ReadEntry> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let start = at + 6 + i * 8;
                u32::from_str_radix(std::str::from_utf8(&bytes[start..start + 8]).unwrap(), 16)
                    .unwrap()
            };
            let (mode, size, name_size) = (field(1), field(6) as usize, field(11) as usize);
            let rdev = (field(9), field(10));
            let name_start = at + 110;
            let name = std::str::from_utf8(&bytes[name_start..name_start + name_size - 1])
                .unwrap()
                .to_string();
            let data_start = name_start + name_size + padding(110 + name_size);
            let data = bytes[data_start..data_start + size].to_vec();
            at = data_start + size + padding(size);
            if name == TRAILER {
                assert_eq!(at, bytes.len());
                return entries;
            }
            entries.push((name, mode, data, rdev));
        }
    }

    #[test]
    fn entries_are_written_in_newc_with_padding_and_a_trailer() {
        let entries = vec![
            CpioEntry::Dir {
                path: "dev".into(),
                mode: 0o755,
            },
            CpioEntry::CharDevice {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
            CpioEntry::File {
                path: "/init".into(),
                mode: 0o755,
                data: b"#!/bin/sh\n".to_vec(),
            },
            CpioEntry::File {
                path: "e".into(),
                mode: 0o644,
                data: Vec::new(),
            },
        ];
        let mut bytes = Vec::new();
        write_archive(&entries, &mut bytes).unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let read = read_back(&bytes);
        assert_eq!(read.len(), 4);
        assert_eq!(read[0].0, "dev");
        assert_eq!(read[0].1, 0o040_755);
        assert_eq!((read[1].1, read[1].3), (0o020_600, (5, 1)));
        assert_eq!(read[2].0, "init");
        assert_eq!(read[2].2, b"#!/bin/sh\n");
        assert_eq!(read[3].2, b"");
    }

    #[test]
    fn archives_concatenate_on_four_byte_boundaries() {
        let one = |path: &str, data: &[u8]| {
            let mut bytes = Vec::new();
            let entry = CpioEntry::File {
                path: path.into(),
                mode: 0o644,
                data: data.to_vec(),
            };
            write_archive(&[entry], &mut bytes).unwrap();
            bytes
        };
        let first = one("a", b"12345");
        let second = one("shoal/vm.env", b"X=1\n");
        assert_eq!(first.len() % 4, 0);
        assert_eq!(&second[..6], b"070701");
        assert_eq!(read_back(&second)[0].0, "shoal/vm.env");
    }
}
