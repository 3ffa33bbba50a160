//! Which kernel modules a VM image carries and in which order the first stage loads those that
//! reach the root disk: read from the kernel package's tree and the `modules.dep` that `depmod`
//! writes for it.

use std::collections::BTreeMap;

/// The folders of `kernel/` copied into the image: networking (bridges, VXLAN, IPVS,
/// netfilter), file systems (ext4, overlay), the libraries and crypto they use, and the virtio
/// devices. Sound, graphics and hardware drivers stay out.
pub const KERNEL_DIRS: &[&str] = &[
    "net",
    "fs",
    "lib",
    "crypto",
    "arch",
    "block",
    "mm",
    "virt",
    "drivers/virtio",
    "drivers/block",
    "drivers/char/hw_random",
    "drivers/net/vxlan",
    "drivers/net/ipvlan",
];
/// The single-file network drivers of `kernel/drivers/net` (virtio_net, veth, dummy, ...) are
/// copied too; their subfolders (hardware) are not.
pub const KERNEL_NET_FILES_DIR: &str = "drivers/net";
/// What the first stage loads to mount the root disk and bring up the network device.
/// `crc32c_generic` is ext4's soft dependency (the crypto API asks `modprobe` for it, which the
/// first stage does not have), so it is named here.
pub const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
    "virtio_net",
];
/// What the second stage loads before dockerd starts: swarm's overlay networks, the routing
/// mesh (IPVS) and dockerd's iptables rules. Anything else is loaded on demand by `modprobe`.
pub const RUN_MODULES: &[&str] = &[
    "overlay",
    "br_netfilter",
    "bridge",
    "veth",
    "vxlan",
    "ip_vs",
    "ip_vs_rr",
    "ip_vs_wrr",
    "ip_vs_sh",
    "xt_ipvs",
    "nf_nat",
    "iptable_nat",
    "iptable_filter",
    "iptable_mangle",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_mark",
    "xt_nat",
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "virtio_balloon",
    "virtio_rng",
];

/// `modules.dep`, read: each module's path (relative to the version folder) and the paths of
/// the modules it needs, by module name (`-` and `_` are one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleDeps {
    paths: BTreeMap<String, String>,
    needs: BTreeMap<String, Vec<String>>,
}

/// A module's name from its path: `kernel/fs/ext4/ext4.ko` → `ext4`, with `-` as `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

impl ModuleDeps {
    /// Reads `modules.dep` (`path: dep dep ...`, one module a line).
    pub fn parse(text: &str) -> ModuleDeps {
        let mut deps = ModuleDeps::default();
        for line in text.lines() {
            let Some((path, needs)) = line.split_once(':') else {
                continue;
            };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let name = module_name(path);
            deps.paths.insert(name.clone(), path.to_string());
            deps.needs
                .insert(name, needs.split_whitespace().map(str::to_string).collect());
        }
        deps
    }

    /// The paths of `names` and of everything they need, each before what needs it, each
    /// once; names unknown to `modules.dep` (built into the kernel, or absent) are returned
    /// apart.
    pub fn load_order(&self, names: &[&str]) -> (Vec<String>, Vec<String>) {
        let mut order = Vec::new();
        let mut unknown = Vec::new();
        for name in names {
            let name = name.replace('-', "_");
            if self.paths.contains_key(&name) {
                self.visit(&name, &mut order, &mut Vec::new());
            } else {
                unknown.push(name);
            }
        }
        (order, unknown)
    }

    /// Adds `name`'s needs, then `name`, to `order` (depth first; `visiting` breaks cycles).
    fn visit(&self, name: &str, order: &mut Vec<String>, visiting: &mut Vec<String>) {
        let Some(path) = self.paths.get(name) else {
            return;
        };
        if order.contains(path) || visiting.iter().any(|v| v == name) {
            return;
        }
        visiting.push(name.to_string());
        // modules.dep lists the direct and indirect needs, those needed last first.
        for needed in self.needs.get(name).into_iter().flatten().rev() {
            self.visit(&module_name(needed), order, visiting);
        }
        visiting.pop();
        order.push(path.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/jbd2/jbd2.ko:
kernel/fs/mbcache.ko:
kernel/lib/crc16.ko:
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/arch/x86/crypto/crc32c-intel.ko:
";

    #[test]
    fn needs_come_first_and_each_module_once() {
        let deps = ModuleDeps::parse(DEP);
        let (order, unknown) = deps.load_order(&["virtio_blk", "ext4", "virtio", "crc32c_intel"]);
        assert_eq!(
            order,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/block/virtio_blk.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko",
                "kernel/lib/crc16.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/arch/x86/crypto/crc32c-intel.ko",
            ]
        );
        assert!(unknown.is_empty());
    }

    #[test]
    fn built_in_or_missing_modules_are_named_apart() {
        let deps = ModuleDeps::parse(DEP);
        let (order, unknown) = deps.load_order(&["unix", "ext4"]);
        assert_eq!(
            order.last().map(String::as_str),
            Some("kernel/fs/ext4/ext4.ko")
        );
        assert_eq!(unknown, ["unix"]);
    }

    #[test]
    fn a_cycle_does_not_loop() {
        let deps = ModuleDeps::parse("a.ko: b.ko\nb.ko: a.ko\n");
        let (order, _) = deps.load_order(&["a"]);
        assert_eq!(order, ["b.ko", "a.ko"]);
    }

    #[test]
    fn names_come_from_paths() {
        assert_eq!(
            module_name("kernel/arch/x86/crypto/crc32c-intel.ko"),
            "crc32c_intel"
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko.xz"), "ext4");
    }
}
