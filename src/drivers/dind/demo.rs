//! The demo service image `dataservice:1`: one static binary (`examples/dataservice.rs`) as the
//! only file of an imported image, the API equivalent of
//! `tar c dataservice | docker import -c 'ENTRYPOINT ["/dataservice"]' - dataservice:1`.

use super::{connect_host, upload, DindError};
use std::io::Read;
use std::path::Path;

/// The demo image's name.
pub const DEMO_IMAGE: &str = "dataservice:1";

/// ELF program header type of the dynamic loader request.
const PT_INTERP: u32 = 3;

/// Whether an ELF file asks for a dynamic loader (`None` when it is not a 64-bit ELF file).
pub(crate) fn needs_loader(elf: &[u8]) -> Option<bool> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_le_bytes(
            elf.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    let offset = usize::try_from(u64::from_le_bytes(elf.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let size = u16_at(0x36)?;
    let count = u16_at(0x38)?;
    for index in 0..count {
        let at = offset.checked_add(index.checked_mul(size)?)?;
        let kind = u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?);
        if kind == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

/// Imports `binary` (a statically linked dataservice build) as [`DEMO_IMAGE`] on the local engine
/// and returns the image name. Refuses dynamically linked builds: the image has no libc.
pub async fn build_demo_image(binary: &Path) -> Result<String, DindError> {
    let mut head = Vec::new();
    std::fs::File::open(binary)
        .and_then(|f| f.take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| DindError::io(format!("cannot read {}", binary.display()), e))?;
    match needs_loader(&head) {
        None => {
            return Err(DindError::Unavailable(format!(
                "{} is not a 64-bit little-endian ELF executable",
                binary.display()
            )))
        }
        Some(true) => {
            return Err(DindError::Unavailable(format!(
                "{} is dynamically linked and cannot run alone in an image; build it with RUSTFLAGS=\"-C target-feature=+crt-static\" and --target x86_64-unknown-linux-gnu (see images/dataservice/build.sh)",
                binary.display()
            )))
        }
        Some(false) => {}
    }
    let docker = connect_host().await?;
    let source = binary.to_path_buf();
    let (repo, tag) = DEMO_IMAGE.split_once(':').unwrap_or((DEMO_IMAGE, "latest"));
    let changes = vec![
        r#"ENTRYPOINT ["/dataservice"]"#.to_string(),
        "EXPOSE 8080/tcp".to_string(),
        "LABEL io.shoal.demo=1".to_string(),
    ];
    upload::import(&docker, repo, tag, changes, move |out| {
        let file = std::fs::File::open(&source)?;
        let size = file.metadata()?.len();
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o755);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(size);
        header.set_mtime(1_577_836_800);
        let mut builder = tar::Builder::new(out);
        builder.append_data(&mut header, "dataservice", file.take(size))?;
        builder.into_inner()?.flush()
    })
    .await?;
    Ok(DEMO_IMAGE.to_string())
}
