//! `shoal doctor` for the qemu driver: the programs it runs, the rights it needs, the image
//! (built when missing, with the time it took), and which accelerator VMs get here.

use super::image;
use super::vm::{Accel, QEMU};
use super::{AccelChoice, QemuOptions};
use crate::drivers::dind::nodeimage::find_binary;
use crate::drivers::dind::{CheckStatus, DoctorReport};
use crate::model::driver_options::QemuSettings;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long a kernel has to print its banner under KVM before KVM is taken as not working.
const KVM_PROBE_WAIT: Duration = Duration::from_secs(20);

/// Whether `/dev/kvm` can be opened for reading and writing.
fn kvm_openable() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Boots `kernel` under KVM with no root disk: it works when the kernel prints its banner.
async fn boots_with_kvm(kernel: &Path) -> Result<(), String> {
    let mut child = tokio::process::Command::new(QEMU)
        .args([
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            "-nodefaults",
            "-no-user-config",
        ])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
        ])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {QEMU}: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no output")?;
    let read = async {
        let mut seen = Vec::new();
        let mut buffer = [0u8; 4096];
        loop {
            let n = stdout.read(&mut buffer).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("qemu ended before the kernel printed anything".to_string());
            }
            seen.extend_from_slice(&buffer[..n]);
            if String::from_utf8_lossy(&seen).contains("Linux version") {
                return Ok(());
            }
        }
    };
    let result = match tokio::time::timeout(KVM_PROBE_WAIT, read).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "the kernel printed nothing within {} s",
            KVM_PROBE_WAIT.as_secs()
        )),
    };
    let _ = child.kill().await;
    if result.is_err() {
        let mut stderr = String::new();
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut stderr).await;
        }
        if !stderr.trim().is_empty() {
            return Err(stderr.trim().to_string());
        }
    }
    result
}

/// The file beside the kernel that keeps what [`probe_accel`] found, so that each shoal process
/// does not boot a kernel again to know (`shoal doctor` probes anew).
const ACCEL_FOUND: &str = "accel";

/// The accelerator `auto` picks, as found before for this kernel, else probed.
pub async fn chosen_accel(kernel: &Path) -> Accel {
    let found = kernel.with_file_name(ACCEL_FOUND);
    if let Some(accel) = std::fs::read_to_string(&found)
        .ok()
        .and_then(|text| Accel::named(text.trim()))
    {
        return accel;
    }
    let accel = probe_accel(kernel).await;
    if let Err(e) = std::fs::write(&found, accel.name()) {
        tracing::debug!(
            "cannot keep the accelerator found in {}: {e}",
            found.display()
        );
    }
    accel
}

/// The accelerator `auto` picks: KVM when `/dev/kvm` opens and boots `kernel`, else TCG
/// (with a warning when KVM is there but cannot boot it).
pub async fn probe_accel(kernel: &Path) -> Accel {
    if !kvm_openable() {
        tracing::info!("no usable /dev/kvm: VMs run under emulation (tcg), which is slow");
        return Accel::Tcg;
    }
    match boots_with_kvm(kernel).await {
        Ok(()) => Accel::Kvm,
        Err(problem) => {
            tracing::warn!("/dev/kvm is there but cannot boot the VM kernel ({problem}): VMs run under emulation (tcg), which is slow; set driver_options.qemu.accel to silence this");
            Accel::Tcg
        }
    }
}

/// A program's first line of `--version`, or `None` when it cannot be run.
async fn version_of(program: &str) -> Option<String> {
    let text = super::tool::run_async(program, &["--version"], "")
        .await
        .ok()?;
    Some(text.lines().next().unwrap_or_default().trim().to_string())
}

/// What `shoal doctor` says of the qemu driver here.
pub async fn doctor(settings: &QemuSettings, base: &Path) -> DoctorReport {
    let options = QemuOptions::from_settings(settings, base);
    let mut report = DoctorReport {
        checks: Vec::new(),
        ipvs: None,
        verdict: String::new(),
    };
    for (program, package) in [(QEMU, "qemu-system-x86"), ("qemu-img", "qemu-utils")] {
        match version_of(program).await {
            Some(version) => report.push(program, CheckStatus::Ok, version),
            None => report.push(
                program,
                CheckStatus::Fail,
                format!("not found: apt-get install {package}"),
            ),
        }
    }
    for (program, package) in [
        ("mke2fs", "e2fsprogs"),
        ("depmod", "kmod"),
        ("ip", "iproute2"),
        ("iptables", "iptables"),
    ] {
        if find_binary(&[program]).is_some() {
            report.push(program, CheckStatus::Ok, "found");
        } else {
            report.push(
                program,
                CheckStatus::Fail,
                format!("not found: apt-get install {package}"),
            );
        }
    }
    if Path::new("/bin/busybox").is_file() {
        report.push("busybox", CheckStatus::Ok, "/bin/busybox");
    } else {
        report.push(
            "busybox",
            CheckStatus::Fail,
            "not found: apt-get install busybox-static",
        );
    }
    if rustix::process::getuid().is_root() && Path::new("/dev/net/tun").exists() {
        report.push(
            "network",
            CheckStatus::Ok,
            "root, /dev/net/tun: a bridge and tap devices per cluster",
        );
    } else {
        report.push(
            "network",
            CheckStatus::Fail,
            "the qemu driver makes a bridge and tap devices: run shoal as root, with /dev/net/tun",
        );
    }
    if !report.ok() {
        report.verdict =
            "install what is missing (see above), then run `shoal doctor` again".to_string();
        return report;
    }
    let ensured = image::ensure_image(
        options.image.as_deref(),
        options.disk_bytes,
        options.debian_mirror.as_deref(),
    )
    .await;
    let kernel = match ensured {
        Ok(ensured) => {
            let what = if ensured.built {
                format!(
                    "built in {:.1} s ({} MB downloaded) at {}",
                    ensured.seconds,
                    ensured.downloaded / 1_000_000,
                    ensured.image.dir.display()
                )
            } else {
                format!("ready at {}", ensured.image.dir.display())
            };
            let kernel = ensured.image.kernel_version.clone().unwrap_or_default();
            report.push("image", CheckStatus::Ok, format!("{what}; kernel {kernel}"));
            ensured.image.kernel()
        }
        Err(e) => {
            report.push("image", CheckStatus::Fail, e.to_string());
            report.verdict = "the VM image cannot be built here (see above)".to_string();
            return report;
        }
    };
    let accel = match options.accel {
        AccelChoice::Fixed(accel) => accel,
        AccelChoice::Auto => {
            let accel = probe_accel(&kernel).await;
            let _ = std::fs::write(kernel.with_file_name(ACCEL_FOUND), accel.name());
            accel
        }
    };
    let (status, detail) = match accel {
        Accel::Tcg => (
            CheckStatus::Warn,
            "tcg (emulation): VMs boot in 15 to 60 s and run several times slower than with KVM",
        ),
        Accel::Kvm | Accel::Hvf => (CheckStatus::Ok, accel.name()),
    };
    report.push("accelerator", status, detail);
    report.ipvs = Some(true);
    report.push(
        "routing mesh",
        CheckStatus::Ok,
        "VM kernels have IPVS: the ingress routing mesh works",
    );
    report.verdict = format!("the qemu driver works here ({})", accel.name());
    report
}
