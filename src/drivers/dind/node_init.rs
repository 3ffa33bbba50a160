//! The node's init: shoal's own binary, run inside a dind node as `shoal node-init`, turns the
//! container into something dockerd accepts as a host, then replaces itself with dockerd.
//!
//! It needs no shell and no tools in the image: mounts are system calls, files are written
//! directly, and only iptables (which the image carries for dockerd anyway) is run as a program.
//! `docker-init` runs as PID 1 and starts it. The same binary answers as `modprobe` (modules
//! cannot be loaded from inside a node: the host kernel must have them) and as
//! `shoal node-probe ipvs` (whether the kernel offers IPVS, for `shoal doctor`).
//!
//! Environment read by `node-init`:
//! - `SHOAL_STORAGE_DRIVER`: force a storage driver instead of probing overlay2;
//! - `SHOAL_IPTABLES`: force the iptables backend, `nft` or `legacy`;
//! - `SHOAL_SOCKET_GID`: group id given to the engine's sockets (the host's docker group);
//! - `SHOAL_REGISTRY_FORWARD`: `PORT:ADDRESS:TARGET_PORT`, so that the node's 127.0.0.1:PORT
//!   reaches the cluster's registry at ADDRESS:TARGET_PORT, as the host's does.
//!
//! Its arguments are passed on to dockerd. The pure parts (reading `/proc/mounts`, the rules
//! and arguments it makes) are functions over text, tested here; the rest is system calls.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The first argument that makes the shoal binary run as the node's init.
pub const NODE_INIT_COMMAND: &str = "node-init";
/// The first argument that makes the shoal binary answer a question about the node.
pub const NODE_PROBE_COMMAND: &str = "node-probe";
/// Where the node's engine puts the socket the host reaches.
const HOST_DIR: &str = "/run/shoal-host";
/// Where the iptables programs live in the node image.
const SBIN: &str = "/usr/sbin";
/// The iptables tools each multi-call binary answers to (the image links them, the init
/// points them at a backend).
pub(crate) const IPTABLES_TOOLS: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables",
    "ip6tables-save",
    "ip6tables-restore",
];

/// What the shoal binary was asked to be, judged from its name and first argument; `None` when
/// it is the ordinary command line.
pub fn node_role(args: &[String]) -> Option<NodeRole> {
    let name = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name == "modprobe" {
        return Some(NodeRole::Modprobe);
    }
    match args.get(1).map(String::as_str) {
        Some(NODE_INIT_COMMAND) => Some(NodeRole::Init(args[2..].to_vec())),
        Some(NODE_PROBE_COMMAND) => Some(NodeRole::Probe(args[2..].to_vec())),
        _ => None,
    }
}

/// The node-side roles of the shoal binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRole {
    /// `shoal node-init DOCKERD_ARGS...`: prepare the node and become dockerd.
    Init(Vec<String>),
    /// Called as `modprobe`: succeed without loading anything.
    Modprobe,
    /// `shoal node-probe WHAT`: answer with the exit code.
    Probe(Vec<String>),
}

/// Runs a node role; returns the process's exit code (`Init` returns only when it failed).
pub fn run_node_role(role: NodeRole) -> i32 {
    match role {
        NodeRole::Modprobe => 0,
        NodeRole::Probe(what) => probe(&what),
        NodeRole::Init(dockerd_args) => {
            let error = init(&dockerd_args);
            say(&error);
            1
        }
    }
}

/// `node-probe ipvs`: 0 when the kernel offers IPVS here, 1 when not, 2 for an unknown question.
fn probe(what: &[String]) -> i32 {
    match what.first().map(String::as_str) {
        Some("ipvs") => {
            let present = Path::new("/proc/net/ip_vs").exists()
                || Path::new("/proc/sys/net/ipv4/vs").is_dir();
            i32::from(!present)
        }
        _ => {
            say(&format!(
                "unknown probe {what:?}; the only one is `{NODE_PROBE_COMMAND} ipvs`"
            ));
            2
        }
    }
}

fn say(message: &str) {
    eprintln!("shoal-node: {message}");
}

/// Prepares the node and executes dockerd; returns why it could not.
fn init(dockerd_args: &[String]) -> String {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Err(e) = prepare_tmp() {
        return e;
    }
    make_writable();
    nest_cgroup_v2();
    if let Err(e) = mount(None, "/", None, libc::MS_REC | libc::MS_SHARED, None) {
        return format!("cannot make / a shared mount: {e}");
    }
    clear_stale_files();
    choose_iptables(env("SHOAL_IPTABLES").as_deref());
    if let Some(forward) = env("SHOAL_REGISTRY_FORWARD") {
        if let Err(e) = forward_registry(&forward) {
            return e;
        }
    }
    let driver = match env("SHOAL_STORAGE_DRIVER") {
        Some(driver) => driver,
        None => probe_storage_driver(),
    };
    let args = dockerd_command(env("SHOAL_SOCKET_GID").as_deref(), &driver, dockerd_args);
    let error = Command::new("dockerd")
        .args(&args)
        .env("container", "docker")
        .exec();
    format!("cannot start dockerd: {error}")
}

/// One line of `/proc/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MountLine {
    pub target: String,
    pub fstype: String,
    pub options: Vec<String>,
}

impl MountLine {
    fn read_only(&self) -> bool {
        self.options.first().is_some_and(|o| o == "ro")
    }
}

/// Reads `/proc/mounts` text (octal escapes such as `\040` decoded in the target).
pub(crate) fn parse_mounts(text: &str) -> Vec<MountLine> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _source = fields.next()?;
            let target = unescape_octal(fields.next()?);
            let fstype = fields.next()?.to_string();
            let options = fields.next()?.split(',').map(str::to_string).collect();
            Some(MountLine {
                target,
                fstype,
                options,
            })
        })
        .collect()
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = bytes[at] == b'\\'
            && bytes.len() >= at + 4
            && bytes[at + 1..at + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b));
        if escaped {
            let value = bytes[at + 1..at + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            at += 4;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A read-only mount the node must make writable, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Remount {
    pub target: String,
    /// A bind remount: a plain remount of a cgroup mount fails with EBUSY, a bind remount works.
    pub bind: bool,
    /// The flags to keep (nosuid, nodev, noexec).
    pub keep: libc::c_ulong,
}

/// Without `--privileged` (the capability-list fallback), /sys and the cgroup mounts arrive
/// read-only; these are the remounts that make them writable.
pub(crate) fn read_only_remounts(mounts: &[MountLine]) -> Vec<Remount> {
    let keep = |line: &MountLine| {
        line.options.iter().fold(0, |flags, option| {
            flags
                | match option.as_str() {
                    "nosuid" => libc::MS_NOSUID,
                    "nodev" => libc::MS_NODEV,
                    "noexec" => libc::MS_NOEXEC,
                    _ => 0,
                }
        })
    };
    let sys = mounts
        .iter()
        .filter(|m| m.target == "/sys" && m.fstype == "sysfs" && m.read_only())
        .map(|m| Remount {
            target: m.target.clone(),
            bind: false,
            keep: keep(m),
        });
    let cgroups = mounts
        .iter()
        .filter(|m| m.target.starts_with("/sys/fs/cgroup") && m.read_only())
        .map(|m| Remount {
            target: m.target.clone(),
            bind: true,
            keep: keep(m),
        });
    sys.chain(cgroups).collect()
}

/// /tmp must be a fresh tmpfs; the driver mounts one, this covers hand-made runs.
fn prepare_tmp() -> Result<(), String> {
    let mounts = parse_mounts(&std::fs::read_to_string("/proc/mounts").unwrap_or_default());
    if mounts.iter().any(|m| m.target == "/tmp") {
        return Ok(());
    }
    mount(Some("tmpfs"), "/tmp", Some("tmpfs"), 0, Some("mode=1777"))
        .map_err(|e| format!("cannot mount a tmpfs on /tmp: {e}"))
}

fn make_writable() {
    let mounts = parse_mounts(&std::fs::read_to_string("/proc/mounts").unwrap_or_default());
    for remount in read_only_remounts(&mounts) {
        let mut flags = libc::MS_REMOUNT | remount.keep;
        if remount.bind {
            flags |= libc::MS_BIND;
        }
        if let Err(e) = mount(None, &remount.target, None, flags, None) {
            say(&format!(
                "could not remount {} read-write: {e}",
                remount.target
            ));
        }
    }
}

/// The line written to `cgroup.subtree_control` to delegate every controller listed in
/// `cgroup.controllers` (`None` when there is none).
pub(crate) fn delegation_line(controllers: &str) -> Option<String> {
    let wanted: Vec<String> = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    (!wanted.is_empty()).then(|| wanted.join(" "))
}

/// cgroup v2: a cgroup that holds processes cannot enable controllers for its children. Park
/// every process of the root cgroup in a leaf, then delegate all controllers.
fn nest_cgroup_v2() {
    let top = Path::new("/sys/fs/cgroup");
    let Ok(controllers) = std::fs::read_to_string(top.join("cgroup.controllers")) else {
        return;
    };
    let Some(line) = delegation_line(&controllers) else {
        return;
    };
    let leaf = top.join("shoal-entry");
    if let Err(e) = std::fs::create_dir_all(&leaf) {
        say(&format!("cannot make {}: {e}", leaf.display()));
        return;
    }
    for _attempt in 0..50 {
        let procs = std::fs::read_to_string(top.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _moved_or_gone = std::fs::write(leaf.join("cgroup.procs"), pid);
        }
        if std::fs::write(top.join("cgroup.subtree_control"), &line).is_ok() {
            return;
        }
    }
    say("could not delegate cgroup controllers; inner containers get no limits");
}

/// Leftovers of an earlier run: pid files under /run and the host-facing socket.
fn clear_stale_files() {
    remove_pid_files(Path::new("/run"));
    let _ = std::fs::create_dir_all(HOST_DIR);
    let _ = std::fs::remove_file(Path::new(HOST_DIR).join("docker.sock"));
}

fn remove_pid_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            remove_pid_files(&path);
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "pid") {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// The iptables backend to use: the one asked for, else nft when `nft_works`, else legacy when
/// present, else nft.
pub(crate) fn iptables_backend(asked: Option<&str>, nft_works: bool, legacy_present: bool) -> &str {
    match asked {
        Some(backend) => backend,
        None if nft_works => "nft",
        None if legacy_present => "legacy",
        None => "nft",
    }
}

/// Points the iptables tools at a backend the kernel supports.
fn choose_iptables(asked: Option<&str>) {
    let multi = |backend: &str| PathBuf::from(SBIN).join(format!("xtables-{backend}-multi"));
    let nft_works = asked.is_none()
        && multi("nft").exists()
        && Command::new(multi("nft"))
            .args(["iptables", "-w", "-n", "-L"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    let backend = iptables_backend(asked, nft_works, multi("legacy").exists());
    let target = format!("xtables-{backend}-multi");
    if !multi(backend).exists() {
        return;
    }
    for tool in IPTABLES_TOOLS {
        let link = Path::new(SBIN).join(tool);
        let _ = std::fs::remove_file(&link);
        if let Err(e) = std::os::unix::fs::symlink(&target, &link) {
            say(&format!("cannot link {} to {target}: {e}", link.display()));
        }
    }
}

/// The iptables rules (table, chain, rule) that send the node's locally made connections to
/// 127.0.0.1:PORT on to the registry at ADDRESS:TARGET_PORT, from `PORT:ADDRESS:TARGET_PORT`.
/// The INPUT rule keeps other hosts and task containers from reaching the node's loopback
/// services through it (as kube-proxy does).
pub(crate) fn registry_forward_rules(forward: &str) -> Result<Vec<[String; 3]>, String> {
    let bad = || {
        format!("SHOAL_REGISTRY_FORWARD={forward:?} is not PORT:ADDRESS:TARGET_PORT (the dind driver sets it)")
    };
    let (port, target) = forward.split_once(':').ok_or_else(bad)?;
    let (address, target_port) = target.rsplit_once(':').ok_or_else(bad)?;
    if port.parse::<u16>().is_err()
        || target_port.parse::<u16>().is_err()
        || address.parse::<std::net::IpAddr>().is_err()
    {
        return Err(bad());
    }
    let rule =
        |table: &str, chain: &str, rule: String| [table.to_string(), chain.to_string(), rule];
    Ok(vec![
        rule(
            "filter",
            "INPUT",
            "! -i lo -d 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
                .to_string(),
        ),
        rule(
            "nat",
            "OUTPUT",
            format!("-d 127.0.0.1/32 -p tcp --dport {port} -j DNAT --to-destination {target}"),
        ),
        rule(
            "nat",
            "POSTROUTING",
            format!("-s 127.0.0.1/32 -d {address}/32 -p tcp -j MASQUERADE"),
        ),
    ])
}

/// route_localnet lets forwarded connections leave with a loopback source; then the rules.
fn forward_registry(forward: &str) -> Result<(), String> {
    let rules = registry_forward_rules(forward)?;
    let refused = |what: String| {
        format!("cannot forward 127.0.0.1 to the cluster's registry ({forward}): {what}")
    };
    std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1")
        .map_err(|e| refused(format!("/proc/sys/net/ipv4/conf/all/route_localnet: {e}")))?;
    for [table, chain, rule] in &rules {
        let iptables = |check: &str| {
            Command::new("iptables")
                .args(["-w", "-t", table, check, chain])
                .args(rule.split(' '))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !iptables("-C") && !iptables("-A") {
            return Err(refused(format!(
                "iptables refused `-t {table} -A {chain} {rule}`"
            )));
        }
    }
    Ok(())
}

/// overlay2 needs /var/lib/docker on a real filesystem (the driver mounts a volume there);
/// when an overlay mount cannot be made there, vfs.
fn probe_storage_driver() -> String {
    let probe = Path::new("/var/lib/docker/.shoal-overlay-probe");
    let _ = std::fs::remove_dir_all(probe);
    let dirs = ["lower", "upper", "work", "merged"].map(|d| probe.join(d));
    let made = dirs.iter().all(|d| std::fs::create_dir_all(d).is_ok());
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display()
    );
    let merged = dirs[3].to_string_lossy().into_owned();
    let overlay = made
        && mount(
            Some("shoal-probe"),
            &merged,
            Some("overlay"),
            0,
            Some(&options),
        )
        .is_ok();
    if overlay {
        let _ = rustix::mount::unmount(merged.as_str(), rustix::mount::UnmountFlags::empty());
    } else {
        say("overlay mounts fail on /var/lib/docker; using the vfs storage driver (slow, every layer is copied)");
    }
    let _ = std::fs::remove_dir_all(probe);
    if overlay { "overlay2" } else { "vfs" }.to_string()
}

/// dockerd's arguments: both sockets (the node's own and the host-facing one), their group
/// (root's unless the host's docker group id is given), the storage driver, then `extra`.
pub(crate) fn dockerd_command(
    socket_gid: Option<&str>,
    storage_driver: &str,
    extra: &[String],
) -> Vec<String> {
    let mut args = vec![
        "-H".to_string(),
        "unix:///var/run/docker.sock".to_string(),
        "-H".to_string(),
        format!("unix://{HOST_DIR}/docker.sock"),
        "--group".to_string(),
        socket_gid.unwrap_or("0").to_string(),
        "--storage-driver".to_string(),
        storage_driver.to_string(),
    ];
    args.extend(extra.iter().cloned());
    args
}

/// mount(2), with text arguments and the kernel's `MS_*` flags (a missing source or file system
/// type is passed as an empty string, which the kernel ignores for remounts and propagation
/// changes: the only calls without them).
fn mount(
    source: Option<&str>,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), std::io::Error> {
    let data = data
        .map(|d| CString::new(d).map_err(|e| std::io::Error::other(e.to_string())))
        .transpose()?;
    let flags = rustix::mount::MountFlags::from_bits_retain(
        u32::try_from(flags).map_err(|e| std::io::Error::other(e.to_string()))?,
    );
    rustix::mount::mount(
        source.unwrap_or(""),
        target,
        fstype.unwrap_or(""),
        flags,
        data.as_deref(),
    )
    .map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roles_come_from_the_name_and_the_first_argument() {
        assert_eq!(
            node_role(&args(&["/usr/sbin/modprobe", "-va", "br_netfilter"])),
            Some(NodeRole::Modprobe)
        );
        assert_eq!(
            node_role(&args(&["/usr/bin/shoal", "node-init", "--debug"])),
            Some(NodeRole::Init(args(&["--debug"])))
        );
        assert_eq!(
            node_role(&args(&["shoal", "node-probe", "ipvs"])),
            Some(NodeRole::Probe(args(&["ipvs"])))
        );
        assert_eq!(node_role(&args(&["shoal", "plan", "node-init"])), None);
        assert_eq!(node_role(&args(&["shoal"])), None);
    }

    #[test]
    fn mounts_are_read_with_escaped_targets() {
        let mounts = parse_mounts(
            "overlay / overlay rw,relatime 0 0\ntmpfs /my\\040dir tmpfs ro,nosuid 0 0\n",
        );
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[1].target, "/my dir");
        assert!(mounts[1].read_only());
        assert!(!mounts[0].read_only());
    }

    #[test]
    fn read_only_sys_and_cgroups_are_remounted_keeping_their_flags() {
        let mounts = parse_mounts(
            "sysfs /sys sysfs ro,nosuid,nodev,noexec,relatime 0 0\n\
             cgroup /sys/fs/cgroup/memory cgroup ro,nosuid,nodev,noexec,memory 0 0\n\
             cgroup /sys/fs/cgroup/cpu cgroup rw,nosuid,cpu 0 0\n\
             proc /proc proc ro 0 0\n",
        );
        let remounts = read_only_remounts(&mounts);
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        assert_eq!(
            remounts,
            [
                Remount {
                    target: "/sys".to_string(),
                    bind: false,
                    keep: flags
                },
                Remount {
                    target: "/sys/fs/cgroup/memory".to_string(),
                    bind: true,
                    keep: flags
                },
            ]
        );
    }

    #[test]
    fn every_controller_is_delegated() {
        assert_eq!(
            delegation_line("cpuset cpu io memory pids\n").as_deref(),
            Some("+cpuset +cpu +io +memory +pids")
        );
        assert_eq!(delegation_line("\n"), None);
    }

    #[test]
    fn iptables_backend_prefers_what_was_asked_then_working_nft() {
        assert_eq!(iptables_backend(Some("legacy"), true, true), "legacy");
        assert_eq!(iptables_backend(None, true, true), "nft");
        assert_eq!(iptables_backend(None, false, true), "legacy");
        assert_eq!(iptables_backend(None, false, false), "nft");
    }

    #[test]
    fn registry_forward_makes_three_rules() {
        let rules = registry_forward_rules("5001:172.30.0.2:5000").unwrap();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0][1], "INPUT");
        assert_eq!(
            rules[1][2],
            "-d 127.0.0.1/32 -p tcp --dport 5001 -j DNAT --to-destination 172.30.0.2:5000"
        );
        assert_eq!(
            rules[2][2],
            "-s 127.0.0.1/32 -d 172.30.0.2/32 -p tcp -j MASQUERADE"
        );
    }

    #[test]
    fn a_malformed_registry_forward_is_refused_not_half_applied() {
        for bad in [
            "5001",
            "5001:172.30.0.2",
            "x:172.30.0.2:5000",
            "5001:host:5000; rm",
            "5001:1.2.3.4:99999",
        ] {
            let error = registry_forward_rules(bad).unwrap_err();
            assert!(error.contains("PORT:ADDRESS:TARGET_PORT"), "{bad}: {error}");
        }
    }

    #[test]
    fn dockerd_gets_both_sockets_the_group_and_the_driver_first() {
        assert_eq!(
            dockerd_command(
                Some("998"),
                "overlay2",
                &args(&["--insecure-registry", "x"])
            ),
            args(&[
                "-H",
                "unix:///var/run/docker.sock",
                "-H",
                "unix:///run/shoal-host/docker.sock",
                "--group",
                "998",
                "--storage-driver",
                "overlay2",
                "--insecure-registry",
                "x",
            ])
        );
        assert_eq!(dockerd_command(None, "vfs", &[])[5], "0");
    }
}
