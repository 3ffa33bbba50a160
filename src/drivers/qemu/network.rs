//! The VMs' network on the host: a Linux bridge holding the host's address on the cluster's
//! subnet, one tap device per VM attached to it, and one firewall rule that lets the VMs reach
//! each other through the bridge (a host running Docker drops forwarded traffic, and bridged
//! frames pass the host's iptables once `br_netfilter` is loaded). The VMs get no route
//! beyond the subnet: they reach the host and each other, nothing else.
//!
//! Everything here is made with `ip` and `iptables` (which a host running Docker has) and
//! needs root. Device names are derived from the cluster's folder, so two clusters never share
//! one, and nothing is removed that this cluster's record does not name.

use super::QemuError;
use shoal_core::model::vm_network::VmSubnet;
use std::net::Ipv4Addr;

/// The first network tried is `10.213.<n>.0/24`, `n` from the cluster's hash.
const SUBNET_BASE: [u8; 2] = [10, 213];

/// One IPv4 route of the host: its destination and prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination network.
    pub network: Ipv4Addr,
    /// Its prefix length.
    pub prefix: u8,
}

/// Reads `/proc/net/route`: destinations and masks in the kernel's byte order (hex of the
/// address as stored, little-endian on x86).
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            Some(Route {
                network: Ipv4Addr::from(destination.to_le_bytes()),
                prefix: u8::try_from(mask.count_ones()).ok()?,
            })
        })
        .collect()
}

/// The first route of the host (but the default route) that `subnet` overlaps: a network the
/// host reaches already, which a bridge on `subnet` would hide.
pub fn overlapping_route(subnet: &VmSubnet, routes: &[Route]) -> Option<Route> {
    routes
        .iter()
        .find(|r| r.prefix > 0 && subnet.overlaps(r.network, r.prefix))
        .copied()
}

/// A free `/24` under `10.213.0.0/16` for the cluster whose hash starts with `seed`: the first
/// one from `seed` on that no route of the host (but the default route) overlaps.
pub fn choose_subnet(seed: u8, routes: &[Route]) -> Option<VmSubnet> {
    (0..=255u8).find_map(|step| {
        let third = seed.wrapping_add(step);
        let subnet = VmSubnet {
            network: Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], third, 0),
            prefix: 24,
        };
        overlapping_route(&subnet, routes)
            .is_none()
            .then_some(subnet)
    })
}

/// The host's IPv4 routes.
pub fn host_routes() -> Result<Vec<Route>, QemuError> {
    let text = std::fs::read_to_string("/proc/net/route")
        .map_err(|e| QemuError::io("cannot read /proc/net/route", e))?;
    Ok(parse_routes(&text))
}

/// What to install when `ip` or `iptables` is missing.
const NETWORK_TOOLS: &str = "the qemu driver needs iproute2 and iptables, and root";

/// Runs `program args` (`ip`, `iptables`), returning its standard output.
fn run(program: &str, args: &[&str]) -> Result<String, QemuError> {
    super::tool::run(program, args, NETWORK_TOOLS)
}

/// Whether the network device `name` exists.
pub fn device_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// The comment that marks the cluster's firewall rule.
fn rule_comment(bridge: &str) -> String {
    format!("shoal qemu {bridge}")
}

/// The firewall rule that lets the VMs on `bridge` reach each other.
fn forward_rule(bridge: &str) -> Vec<String> {
    [
        "FORWARD",
        "-i",
        bridge,
        "-o",
        bridge,
        "-m",
        "comment",
        "--comment",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([rule_comment(bridge), "-j".into(), "ACCEPT".into()])
    .collect()
}

/// Makes the bridge with the host's address on `subnet`, up, and the forwarding rule, where
/// they are missing.
pub fn ensure_bridge(bridge: &str, subnet: &VmSubnet) -> Result<(), QemuError> {
    if !device_exists(bridge) {
        // Made meanwhile by another process of the cluster's: fine.
        if let Err(e) = run("ip", &["link", "add", bridge, "type", "bridge"]) {
            if !device_exists(bridge) {
                return Err(e);
            }
        }
    }
    let address = format!("{}/{}", subnet.host_address(), subnet.prefix);
    let shown = run("ip", &["-4", "-o", "addr", "show", "dev", bridge])?;
    if !shown.contains(&format!(" {address} ")) {
        run("ip", &["addr", "add", &address, "dev", bridge])?;
    }
    run("ip", &["link", "set", bridge, "up"])?;
    let rule = forward_rule(bridge);
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    let mut check = vec!["-w", "-C"];
    check.extend(&rule);
    if run("iptables", &check).is_err() {
        let mut insert = vec!["-w", "-I"];
        insert.push(rule[0]);
        insert.push("1");
        insert.extend(&rule[1..]);
        run("iptables", &insert)?;
    }
    Ok(())
}

/// Removes the bridge and its forwarding rule (each only when present).
pub fn remove_bridge(bridge: &str) -> Result<(), QemuError> {
    let rule = forward_rule(bridge);
    let rule: Vec<&str> = rule.iter().map(String::as_str).collect();
    let mut delete = vec!["-w", "-D"];
    delete.extend(&rule);
    while run("iptables", &delete).is_ok() {}
    if device_exists(bridge) {
        run("ip", &["link", "del", bridge])?;
    }
    Ok(())
}

/// Makes the tap device `tap` on `bridge`, up, where it is missing.
pub fn ensure_tap(tap: &str, bridge: &str) -> Result<(), QemuError> {
    if !device_exists(tap) {
        if let Err(e) = run("ip", &["tuntap", "add", "dev", tap, "mode", "tap"]) {
            if !device_exists(tap) {
                return Err(e);
            }
        }
    }
    run("ip", &["link", "set", tap, "master", bridge])?;
    run("ip", &["link", "set", tap, "up"])?;
    Ok(())
}

/// Removes the tap device `tap` when present.
pub fn remove_tap(tap: &str) -> Result<(), QemuError> {
    if device_exists(tap) {
        run("ip", &["link", "del", tap])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
shq1\t0007D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
";

    #[test]
    fn routes_are_read_in_the_kernels_byte_order() {
        let routes = parse_routes(ROUTES);
        assert_eq!(routes.len(), 4);
        assert_eq!(
            routes[1],
            Route {
                network: Ipv4Addr::new(172, 17, 0, 0),
                prefix: 16
            }
        );
        assert_eq!(routes[3].network, Ipv4Addr::new(10, 213, 7, 0));
        assert_eq!(routes[0].prefix, 0);
    }

    #[test]
    fn a_subnet_is_chosen_past_those_in_use_never_for_the_default_route() {
        let routes = parse_routes(ROUTES);
        assert_eq!(
            choose_subnet(6, &routes).unwrap().to_string(),
            "10.213.6.0/24"
        );
        assert_eq!(
            choose_subnet(7, &routes).unwrap().to_string(),
            "10.213.8.0/24"
        );
        let everything = [Route {
            network: Ipv4Addr::new(10, 0, 0, 0),
            prefix: 8,
        }];
        assert_eq!(choose_subnet(7, &everything), None);
    }

    #[test]
    fn a_given_subnet_that_hides_a_host_route_is_named() {
        let routes = parse_routes(ROUTES);
        let docker = VmSubnet::parse("172.17.5.0/24").unwrap();
        assert_eq!(
            overlapping_route(&docker, &routes),
            Some(Route {
                network: Ipv4Addr::new(172, 17, 0, 0),
                prefix: 16
            })
        );
        let free = VmSubnet::parse("10.213.9.0/24").unwrap();
        assert_eq!(overlapping_route(&free, &routes), None);
    }

    #[test]
    fn the_forwarding_rule_is_marked_with_the_bridge() {
        let rule = forward_rule("shq-1a2b3c4d");
        assert_eq!(
            rule.join(" "),
            "FORWARD -i shq-1a2b3c4d -o shq-1a2b3c4d -m comment --comment shoal qemu shq-1a2b3c4d -j ACCEPT"
        );
    }
}
