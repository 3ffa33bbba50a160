//! Unit tests of the dind driver's pure parts; the real-engine test is `tests/engine/dind_driver.rs`.

use super::demo::needs_loader;
use super::network::{free_subnet, Subnet};
use super::node::{
    capabilities_named, container_body, is_capability_error, missing_from_mask, next_security,
    NodeSpec, Security,
};
use super::nodeimage::{image_changes, parse_ldd, Entry, Rootfs};
use super::{DindOptions, Engine};
use crate::model::driver_options::DindSettings;
use crate::model::Role;
use crate::yaml::files::MemSource;
use std::path::{Path, PathBuf};

/// The dind options machines.yml gives with `options` (indented under `driver_options:`).
fn settings(options: &str) -> DindSettings {
    let machines =
        format!("driver: dind\ndriver_options:\n{options}machines:\n  m:\n    role: manager\n");
    let files = MemSource::new("c", [("machines.yml", machines.as_str())]);
    crate::config::load_machines(&files)
        .unwrap()
        .driver_options
        .dind
}

#[test]
fn options_default_and_read() {
    let options = DindOptions::from_settings(&DindSettings::default(), Path::new(".")).unwrap();
    assert_eq!(options.image, None);
    assert!(options.preload_images.is_empty());
    assert_eq!(options.engine, Engine::Host);
    let given = settings(
        "  image: my-node:1\n  preload_images: [dataservice:1, busybox:latest]\n  state_dir: /tmp/s\n  registry: {port: 5001, htpasswd: auth/htpasswd}\n",
    );
    let options = DindOptions::from_settings(&given, Path::new("/repo")).unwrap();
    assert_eq!(options.image.as_deref(), Some("my-node:1"));
    assert_eq!(options.preload_images, ["dataservice:1", "busybox:latest"]);
    assert_eq!(options.state_dir, PathBuf::from("/tmp/s"));
    let registry = options.registry.unwrap();
    assert_eq!(registry.port, 5001);
    assert_eq!(
        registry.htpasswd.as_deref(),
        Some(Path::new("/repo/auth/htpasswd"))
    );
    assert_eq!(registry.repository.as_deref(), Some(Path::new("/repo")));
}

#[test]
fn side_loaded_images_are_the_preloaded_ones_not_pushed_into_the_registry() {
    let given = settings(
        "  preload_images: [app:1, localhost:5001/app:2, 127.0.0.1:5001/db:3, localhost:5002/x:1]\n  registry: 5001\n",
    );
    let options = DindOptions::from_settings(&given, Path::new(".")).unwrap();
    assert_eq!(
        options.side_loaded_images(),
        ["app:1", "localhost:5002/x:1"]
    );
    let without = settings("  preload_images: [localhost:5001/app:2]\n");
    let without = DindOptions::from_settings(&without, Path::new(".")).unwrap();
    assert_eq!(without.side_loaded_images(), ["localhost:5001/app:2"]);
}

#[test]
fn options_of_the_wrong_type_are_refused_by_machines_yml() {
    for options in [
        "  preload_images: {a: 1}\n",
        "  preload_images: ['']\n",
        "  image: {a: 1}\n",
        "  image: ''\n",
        "  state_dir: ''\n",
        "  debian_mirror: ftp://x\n",
    ] {
        let machines =
            format!("driver: dind\ndriver_options:\n{options}machines:\n  m:\n    role: manager\n");
        let files = MemSource::new("c", [("machines.yml", machines.as_str())]);
        assert!(crate::config::load_machines(&files).is_err(), "{options}");
    }
}

#[test]
fn the_engine_is_host_by_default_and_named_as_text_or_number() {
    for (given, name) in [("\"28\"", "28"), ("26", "26"), ("host", "host")] {
        let given = settings(&format!(
            "  engine: {given}\n  debian_mirror: https://mirror.example/debian/\n"
        ));
        let options = DindOptions::from_settings(&given, Path::new(".")).unwrap();
        assert_eq!(options.engine.name(), name);
        assert_eq!(
            options.debian_mirror.as_deref(),
            Some("https://mirror.example/debian")
        );
    }
    let made_by_hand = DindSettings {
        engine: Some("27".into()),
        ..DindSettings::default()
    };
    let error = DindOptions::from_settings(&made_by_hand, Path::new(".")).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"driver_options.engine must be one of "host", "26", "28" for the dind driver, not `27`"#
    );
}

#[test]
fn ldd_output_is_parsed_and_static_binaries_give_nothing() {
    let output = "/usr/sbin/dockerd:\n\
        \tlinux-vdso.so.1 (0x00007ffd)\n\
        \tlibsystemd.so.0 => /lib/x86_64-linux-gnu/libsystemd.so.0 (0x00007f)\n\
        \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
        \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n\
        /usr/bin/tini-static:\n\
        \tstatically linked\n\
        /usr/sbin/runc:\n\
        \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n";
    let libraries = parse_ldd(output).unwrap();
    assert_eq!(
        libraries,
        [
            PathBuf::from("/lib/x86_64-linux-gnu/libsystemd.so.0"),
            PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
            PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
        ]
    );
    assert!(parse_ldd("").unwrap().is_empty());
    let error = parse_ldd("x:\n\tlibfoo.so.1 => not found\n").unwrap_err();
    assert!(error.contains("libfoo.so.1"), "{error}");
}

#[test]
fn subnets_overlap_and_free_ones_are_found() {
    let a = Subnet::parse("172.30.0.0/24").unwrap();
    let b = Subnet::parse("172.16.0.0/12").unwrap();
    let c = Subnet::parse("192.168.0.0/20").unwrap();
    assert!(a.overlaps(b) && b.overlaps(a));
    assert!(!a.overlaps(c));
    assert_eq!(Subnet::parse("fd00::/64"), None);
    assert_eq!(
        Subnet::parse("172.30.0.7/24").unwrap().to_string(),
        "172.30.0.0/24"
    );

    assert_eq!(free_subnet(&[], &[]).unwrap().to_string(), "172.30.0.0/24");
    let taken = [
        Subnet::parse("172.17.0.0/16").unwrap(),
        Subnet::parse("172.30.0.0/24").unwrap(),
    ];
    assert_eq!(
        free_subnet(&taken, &[]).unwrap().to_string(),
        "172.30.1.0/24"
    );
    let refused = [Subnet::parse("172.30.1.0/24").unwrap()];
    assert_eq!(
        free_subnet(&taken, &refused).unwrap().to_string(),
        "172.30.2.0/24"
    );
    assert_eq!(
        free_subnet(&[b], &[]).unwrap().to_string(),
        "192.168.0.0/24",
        "all of 172.16/12 taken"
    );
    let everything = [Subnet::parse("0.0.0.0/0").unwrap()];
    assert_eq!(free_subnet(&everything, &[]), None);
}

#[test]
fn capability_errors_are_recognised_and_names_read() {
    let message = "Error response from daemon: OCI runtime create failed: container_linux.go:380: starting container process caused: unable to apply caps: operation not permitted: unknown";
    assert!(is_capability_error(message));
    assert!(!is_capability_error("no such image"));
    assert_eq!(
        capabilities_named("unknown capability: \"CAP_CHECKPOINT_RESTORE\", and CAP_BPF"),
        ["CHECKPOINT_RESTORE", "BPF"]
    );
    assert!(capabilities_named("CAP_NOT_A_THING").is_empty());
}

#[test]
fn the_missing_bits_of_the_bounding_set_become_drops() {
    assert_eq!(missing_from_mask(0x1ff_feff_ffff, 40), ["SYS_RESOURCE"]);
    assert!(missing_from_mask(0x1ff_ffff_ffff, 40).is_empty());
    assert_eq!(
        missing_from_mask(0xff_ffff_ffff, 40),
        ["CHECKPOINT_RESTORE"]
    );
    assert!(
        missing_from_mask(0xff_ffff_ffff, 39).is_empty(),
        "older kernel"
    );
    assert_eq!(
        missing_from_mask(0x3f_ffff_ffff, 40),
        ["PERFMON", "BPF", "CHECKPOINT_RESTORE"]
    );
}

#[test]
fn privileged_falls_back_then_adjusts_to_what_the_error_names() {
    let caps_error = "unable to apply caps: operation not permitted";
    let next = next_security(&Security::Privileged, caps_error, || {
        vec!["SYS_RESOURCE".to_string()]
    });
    assert_eq!(
        next,
        Some(Security::Capabilities {
            dropped: vec!["SYS_RESOURCE".to_string()]
        })
    );
    let current = next.unwrap();
    let named = next_security(
        &current,
        "cannot apply CAP_SYS_TIME: operation not permitted",
        Vec::new,
    );
    assert_eq!(
        named,
        Some(Security::Capabilities {
            dropped: vec!["SYS_RESOURCE".to_string(), "SYS_TIME".to_string()]
        })
    );
    let unknown = Security::Capabilities {
        dropped: vec!["SYS_RESOURCE".to_string(), "CHECKPOINT_RESTORE".to_string()],
    };
    assert_eq!(
        next_security(
            &unknown,
            "unknown capability: \"CAP_CHECKPOINT_RESTORE\"",
            Vec::new
        ),
        Some(Security::Capabilities {
            dropped: vec!["SYS_RESOURCE".to_string()]
        })
    );
    assert_eq!(
        next_security(&current, caps_error, Vec::new),
        None,
        "nothing new to try"
    );
    assert_eq!(
        next_security(&Security::Privileged, "no such image", Vec::new),
        None
    );
}

fn spec(host_dir: &Path) -> NodeSpec<'_> {
    NodeSpec {
        cluster: "demo",
        machine: "vm1",
        role: Role::Worker,
        container: "demo-vm1".to_string(),
        image: "shoal-node:abc",
        network: "demo-net",
        volume: "demo-vm1-data".to_string(),
        host_dir,
        socket: host_dir.join("docker.sock"),
        socket_gid: Some(998),
        address: Some(std::net::Ipv4Addr::new(172, 30, 0, 10)),
        registry: None,
    }
}

#[test]
fn nodes_of_a_cluster_with_a_registry_forward_to_it_and_use_it_as_their_mirror() {
    let dir = PathBuf::from("/tmp/shoal-dind/demo/vm1");
    let plain = container_body(&spec(&dir), &Security::Privileged);
    assert!(plain.cmd.is_none());
    assert!(!plain
        .env
        .unwrap()
        .iter()
        .any(|e| e.starts_with("SHOAL_REGISTRY_FORWARD=")));
    let with_registry = NodeSpec {
        registry: Some((
            "5001:172.30.0.2:5000".to_string(),
            vec!["--registry-mirror=http://localhost:5001".to_string()],
        )),
        ..spec(&dir)
    };
    let body = container_body(&with_registry, &Security::Privileged);
    let env = body.env.unwrap();
    assert!(env.contains(&"SHOAL_REGISTRY_FORWARD=5001:172.30.0.2:5000".to_string()));
    assert!(
        !env.contains(&"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1".to_string()),
        "nodes with a registry pull"
    );
    assert_eq!(
        body.cmd.unwrap(),
        ["--registry-mirror=http://localhost:5001"]
    );
}

#[test]
fn node_containers_carry_labels_mounts_and_the_security_mode() {
    let dir = PathBuf::from("/tmp/shoal-dind/demo/vm1");
    let spec = spec(&dir);
    let body = container_body(&spec, &Security::Privileged);
    assert_eq!(body.hostname.as_deref(), Some("vm1"));
    let labels = body.labels.clone().unwrap();
    assert_eq!(labels["io.shoal.cluster"], "demo");
    assert_eq!(labels["io.shoal.machine"], "vm1");
    assert_eq!(labels["io.shoal.role"], "worker");
    let env = body.env.clone().unwrap();
    assert!(env.contains(&"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1".to_string()));
    assert!(env.contains(&"SHOAL_SOCKET_GID=998".to_string()));
    let host = body.host_config.clone().unwrap();
    assert_eq!(host.privileged, Some(true));
    assert!(host.cap_add.is_none());
    assert!(host
        .binds
        .unwrap()
        .contains(&"/tmp/shoal-dind/demo/vm1:/run/shoal-host".to_string()));
    let tmpfs = host.tmpfs.unwrap();
    assert!(tmpfs.contains_key("/run") && tmpfs.contains_key("/tmp"));
    let mount = &host.mounts.unwrap()[0];
    assert_eq!(mount.source.as_deref(), Some("demo-vm1-data"));
    assert_eq!(mount.target.as_deref(), Some("/var/lib/docker"));
    assert_eq!(host.network_mode.as_deref(), Some("demo-net"));

    let fallback = Security::Capabilities {
        dropped: vec!["SYS_RESOURCE".to_string()],
    };
    let host = container_body(&spec, &fallback).host_config.unwrap();
    assert_eq!(host.privileged, None);
    assert_eq!(host.cap_add.unwrap(), ["ALL"]);
    assert_eq!(host.cap_drop.unwrap(), ["CAP_SYS_RESOURCE"]);
    assert_eq!(host.device_cgroup_rules.unwrap(), ["a *:* rwm"]);
    assert_eq!(
        host.security_opt.unwrap(),
        ["seccomp=unconfined", "apparmor=unconfined"]
    );
    assert_eq!(
        host.masked_paths,
        Some(Vec::new()),
        "systempaths=unconfined"
    );
    assert_eq!(host.readonly_paths, Some(Vec::new()));
}

#[test]
fn the_rootfs_tar_has_parents_first_and_a_stable_fingerprint() {
    let mut rootfs = Rootfs::default();
    rootfs.entries.insert(
        "usr/bin/hello".to_string(),
        Entry::Data {
            data: b"#!/bin/sh\necho hi\n".to_vec(),
            mode: 0o755,
        },
    );
    rootfs
        .entries
        .insert("usr".to_string(), Entry::Dir { mode: 0o755 });
    rootfs
        .entries
        .insert("usr/bin".to_string(), Entry::Dir { mode: 0o755 });
    rootfs.entries.insert(
        "usr/bin/sh".to_string(),
        Entry::Symlink {
            target: "busybox".to_string(),
        },
    );
    let first = rootfs.fingerprint().unwrap();
    assert_eq!(first, rootfs.fingerprint().unwrap());
    assert_eq!(first.len(), 16);

    let mut tar_bytes = Vec::new();
    rootfs.write_tar(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let names: Vec<(String, tar::EntryType)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().to_string(),
                e.header().entry_type(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("usr/".to_string(), tar::EntryType::Directory),
            ("usr/bin/".to_string(), tar::EntryType::Directory),
            ("usr/bin/hello".to_string(), tar::EntryType::Regular),
            ("usr/bin/sh".to_string(), tar::EntryType::Symlink),
        ]
    );

    rootfs.entries.insert(
        "usr/bin/hello".to_string(),
        Entry::Data {
            data: b"#!/bin/sh\necho bye\n".to_vec(),
            mode: 0o755,
        },
    );
    assert_ne!(first, rootfs.fingerprint().unwrap(), "content is hashed");
}

#[test]
fn static_and_dynamic_elf_files_are_told_apart() {
    let mut elf = vec![0u8; 64 + 2 * 56];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[5] = 1;
    elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    elf[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    elf[64..68].copy_from_slice(&1u32.to_le_bytes());
    elf[64 + 56..64 + 60].copy_from_slice(&6u32.to_le_bytes());
    assert_eq!(needs_loader(&elf), Some(false));
    elf[64 + 56..64 + 60].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(needs_loader(&elf), Some(true));
    assert_eq!(needs_loader(b"#!/bin/sh\n"), None);
}

#[test]
fn node_addresses_start_at_ten_and_skip_taken_ones() {
    let subnet = Subnet::parse("172.30.4.0/24").unwrap();
    let ip = |last: u8| std::net::Ipv4Addr::new(172, 30, 4, last);
    assert_eq!(subnet.free_host(&[]), Some(ip(10)));
    assert_eq!(subnet.free_host(&[ip(10), ip(11), ip(13)]), Some(ip(12)));
    let all: Vec<_> = (10..=254).map(ip).collect();
    assert_eq!(subnet.free_host(&all), None);
}

#[test]
fn node_containers_come_back_after_a_host_restart_at_the_same_address() {
    let dir = tempfile::tempdir().unwrap();
    let body = container_body(&spec(dir.path()), &Security::Privileged);
    let host = body.host_config.unwrap();
    assert_eq!(
        host.restart_policy.unwrap().name,
        Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED)
    );
    let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["demo-net"];
    assert_eq!(
        endpoint
            .ipam_config
            .as_ref()
            .unwrap()
            .ipv4_address
            .as_deref(),
        Some("172.30.0.10")
    );
}

#[test]
fn debian_built_images_run_shoal_through_the_loader_kept_beside_it() {
    let engine = Engine::parse("28").unwrap();
    let changes = image_changes(engine, Some("28"));
    assert_eq!(
        changes[0],
        r#"ENTRYPOINT ["/usr/bin/docker-init","--","/opt/shoal/lib/ld-linux-x86-64.so.2","--library-path","/opt/shoal/lib","/opt/shoal/bin/shoal","node-init"]"#
    );
    assert!(changes.contains(&"LABEL io.shoal.node-image=28".to_string()));
    assert_eq!(
        image_changes(Engine::Host, None)[0],
        r#"ENTRYPOINT ["/usr/bin/docker-init","--","/usr/bin/shoal","node-init"]"#
    );
}
