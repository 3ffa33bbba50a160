//! One VM's qemu process: its command line (a pure function of what the VM is), starting it
//! in the background, and finding and stopping it again by its pid file, checked against the
//! process's command line so that a reused pid is never taken for the VM.

use super::QemuError;
use std::path::{Path, PathBuf};

/// How the VM's processor is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Linux's KVM.
    Kvm,
    /// macOS's Hypervisor.framework.
    Hvf,
    /// qemu's own emulation: slow, but works everywhere.
    Tcg,
}

impl Accel {
    /// The name `driver_options.qemu.accel` uses.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Hvf => "hvf",
            Accel::Tcg => "tcg",
        }
    }

    /// The accelerator named `name` (`auto` is decided elsewhere).
    pub fn named(name: &str) -> Option<Accel> {
        [Accel::Kvm, Accel::Hvf, Accel::Tcg]
            .into_iter()
            .find(|a| a.name() == name)
    }
}

/// The size of qemu's translation cache under emulation, in MiB. Measured on one idle swarm
/// manager: 64 MiB keeps retranslating dockerd's code (90% of a host core, 450 MB resident);
/// 192 MiB holds it (5% of a core, 600 MB); 512 MiB gains nothing more (12%, 960 MB).
pub const TCG_CACHE_MB: u32 = 192;

/// Everything a VM's command line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmLaunch {
    /// The VM's name, shown by qemu (`<cluster>-<machine>`).
    pub name: String,
    /// The accelerator.
    pub accel: Accel,
    /// Memory in MiB.
    pub memory: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The kernel.
    pub kernel: PathBuf,
    /// The VM's initramfs (the image's first stage and its settings).
    pub initrd: PathBuf,
    /// The VM's disk (a qcow2 overlay).
    pub disk: PathBuf,
    /// The host tap device its network card is plugged into.
    pub tap: String,
    /// Its network card's MAC address.
    pub mac: String,
    /// Where its serial console is written.
    pub console: PathBuf,
    /// Where qemu writes its pid.
    pub pidfile: PathBuf,
}

/// The qemu command line (without the program) that boots `vm` in the background: no display,
/// the kernel and initramfs given directly, one virtio disk, one virtio network card on the
/// tap, a balloon to give back memory, and the serial console to a file.
pub fn qemu_args(vm: &VmLaunch) -> Vec<String> {
    let accel = match vm.accel {
        Accel::Tcg => format!("tcg,tb-size={TCG_CACHE_MB}"),
        other => other.name().to_string(),
    };
    let cpu = match vm.accel {
        Accel::Tcg => "max",
        Accel::Kvm | Accel::Hvf => "host",
    };
    let text = |p: &Path| p.display().to_string();
    [
        "-name".to_string(),
        vm.name.clone(),
        "-machine".into(),
        "q35".into(),
        "-accel".into(),
        accel,
        "-cpu".into(),
        cpu.into(),
        "-smp".into(),
        vm.cpus.to_string(),
        "-m".into(),
        vm.memory.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-serial".into(),
        format!("file:{}", text(&vm.console)),
        "-kernel".into(),
        text(&vm.kernel),
        "-initrd".into(),
        text(&vm.initrd),
        "-append".into(),
        "console=ttyS0 panic=-1 quiet".into(),
        "-drive".into(),
        format!(
            "file={},if=virtio,format=qcow2,discard=unmap",
            text(&vm.disk)
        ),
        "-netdev".into(),
        format!("tap,id=net0,ifname={},script=no,downscript=no", vm.tap),
        "-device".into(),
        format!("virtio-net-pci,netdev=net0,mac={}", vm.mac),
        "-device".into(),
        "virtio-balloon".into(),
        "-device".into(),
        "virtio-rng-pci".into(),
        "-no-reboot".into(),
        "-pidfile".into(),
        text(&vm.pidfile),
        "-daemonize".into(),
    ]
    .to_vec()
}

/// The qemu program for x86-64 VMs.
pub const QEMU: &str = "qemu-system-x86_64";

/// Starts the VM in the background; returns once qemu has daemonized (the VM is booting).
pub async fn launch(vm: &VmLaunch) -> Result<(), QemuError> {
    let args = qemu_args(vm);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    super::tool::run_async(QEMU, &args, "apt-get install qemu-system-x86").await?;
    Ok(())
}

/// Whether the command line `cmdline` (`/proc/PID/cmdline`: NUL-separated) is qemu's running
/// the disk `disk`.
pub fn is_vm_process(cmdline: &[u8], disk: &Path) -> bool {
    let wanted = format!("file={},", disk.display());
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_qemu = args
        .first()
        .and_then(|a| std::str::from_utf8(a).ok())
        .and_then(|a| Path::new(a).file_name()?.to_str())
        .is_some_and(|name| name.starts_with("qemu-system"));
    is_qemu
        && args
            .iter()
            .any(|a| std::str::from_utf8(a).is_ok_and(|a| a.starts_with(&wanted)))
}

/// The pid of the VM's qemu process, when it runs: the pid file's, when that process is qemu
/// running `disk`.
pub fn running_pid(pidfile: &Path, disk: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    is_vm_process(&cmdline, disk).then_some(pid)
}

/// Stops the VM's qemu process at once (a power cut: the disk's journal is replayed at the next
/// boot) and waits until it is gone.
pub async fn kill(pidfile: &Path, disk: &Path) -> Result<(), QemuError> {
    let Some(pid) = running_pid(pidfile, disk) else {
        return Ok(());
    };
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        rustix::process::kill_process(pid, rustix::process::Signal::KILL)
            .map_err(|e| QemuError::io(format!("cannot stop qemu process {pid:?}"), e.into()))?;
    }
    for _ in 0..100 {
        if running_pid(pidfile, disk).is_none() {
            let _ = std::fs::remove_file(pidfile);
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(QemuError::Unavailable(format!(
        "qemu process {pid} of {} did not end after SIGKILL",
        disk.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch_of(accel: Accel) -> VmLaunch {
        VmLaunch {
            name: "web-m1".into(),
            accel,
            memory: 768,
            cpus: 1,
            kernel: "/c/vmlinuz".into(),
            initrd: "/s/m1/initrd.img".into(),
            disk: "/s/m1/disk.qcow2".into(),
            tap: "sq1a2b3c4d".into(),
            mac: "52:54:00:12:34:56".into(),
            console: "/s/m1/console.log".into(),
            pidfile: "/s/m1/qemu.pid".into(),
        }
    }

    #[test]
    fn the_command_line_boots_the_kernel_on_the_overlay_in_the_background() {
        let args = qemu_args(&launch_of(Accel::Tcg)).join(" ");
        for part in [
            "-accel tcg,tb-size=192 -cpu max -smp 1 -m 768",
            "-kernel /c/vmlinuz -initrd /s/m1/initrd.img",
            "file=/s/m1/disk.qcow2,if=virtio,format=qcow2",
            "tap,id=net0,ifname=sq1a2b3c4d,script=no,downscript=no",
            "mac=52:54:00:12:34:56",
            "-serial file:/s/m1/console.log",
            "-pidfile /s/m1/qemu.pid -daemonize",
        ] {
            assert!(args.contains(part), "{part} in {args}");
        }
        let kvm = qemu_args(&launch_of(Accel::Kvm)).join(" ");
        assert!(kvm.contains("-accel kvm -cpu host"), "{kvm}");
    }

    #[test]
    fn only_qemu_running_that_disk_is_the_vm() {
        let disk = Path::new("/s/m1/disk.qcow2");
        let qemu = b"qemu-system-x86_64\0-drive\0file=/s/m1/disk.qcow2,if=virtio\0";
        assert!(is_vm_process(qemu, disk));
        let other_disk = b"/usr/bin/qemu-system-x86_64\0-drive\0file=/s/m10/disk.qcow2,if=virtio\0";
        assert!(!is_vm_process(other_disk, disk));
        let not_qemu = b"bash\0-c\0file=/s/m1/disk.qcow2,\0";
        assert!(!is_vm_process(not_qemu, disk));
    }

    #[test]
    fn accelerators_are_named() {
        assert_eq!(Accel::named("kvm"), Some(Accel::Kvm));
        assert_eq!(Accel::named("auto"), None);
        assert_eq!(Accel::Tcg.name(), "tcg");
    }
}
