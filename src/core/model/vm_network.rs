//! The IPv4 network of a cluster's local VMs (`driver_options.qemu.subnet`): the host's
//! address on it and the addresses handed to VMs, as plain values.

use core::net::Ipv4Addr;

/// The shortest prefix accepted: a /16 already holds 65k addresses.
const SHORTEST_PREFIX: u8 = 16;
/// The longest prefix accepted: a /28 leaves 13 VMs after the host and the first addresses.
const LONGEST_PREFIX: u8 = 28;
/// The host part of the first VM's address (`.10` in a /24): the ones below are left for the
/// host's own use.
const FIRST_VM: u32 = 10;

/// A private IPv4 network, its host bits zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VmSubnet {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl VmSubnet {
    /// Reads `a.b.c.d/p`: a private (RFC 1918) network with a prefix of 16 to 28 and no host
    /// bits set.
    pub fn parse(text: &str) -> Result<VmSubnet, String> {
        let (address, prefix) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("`{text}` has no prefix length (`/24`)"))?;
        let network: Ipv4Addr = address
            .parse()
            .map_err(|_| format!("`{address}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| format!("`/{prefix}` is not a prefix length"))?;
        if !(SHORTEST_PREFIX..=LONGEST_PREFIX).contains(&prefix) {
            return Err(format!(
                "the prefix /{prefix} is outside /{SHORTEST_PREFIX} to /{LONGEST_PREFIX}"
            ));
        }
        if !network.is_private() {
            return Err(format!(
                "{network} is not in a private range (10/8, 172.16/12, 192.168/16)"
            ));
        }
        let subnet = VmSubnet { network, prefix };
        if u32::from(network) & !subnet.mask() != 0 {
            let base = Ipv4Addr::from(u32::from(network) & subnet.mask());
            return Err(format!(
                "{network}/{prefix} has host bits set: the network is {base}/{prefix}"
            ));
        }
        Ok(subnet)
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        u32::MAX << (32 - u32::from(self.prefix))
    }

    /// The host's own address on the network (the first one).
    pub fn host_address(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    /// The address of the `index`th VM (from 0), or `None` past the network's end.
    pub fn vm_address(&self, index: u32) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(self.prefix));
        let host = FIRST_VM.checked_add(index)?;
        (host < size - 1).then(|| Ipv4Addr::from(u32::from(self.network) + host))
    }

    /// Whether the two networks share an address.
    pub fn overlaps(&self, other_network: Ipv4Addr, other_prefix: u8) -> bool {
        let shorter = self.prefix.min(other_prefix);
        let mask = if shorter == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(shorter))
        };
        u32::from(self.network) & mask == u32::from(other_network) & mask
    }
}

impl std::fmt::Display for VmSubnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_network_is_read_with_its_addresses() {
        let subnet = VmSubnet::parse("10.213.7.0/24").unwrap();
        assert_eq!(subnet.to_string(), "10.213.7.0/24");
        assert_eq!(subnet.host_address(), Ipv4Addr::new(10, 213, 7, 1));
        assert_eq!(subnet.vm_address(0), Some(Ipv4Addr::new(10, 213, 7, 10)));
        assert_eq!(subnet.vm_address(244), Some(Ipv4Addr::new(10, 213, 7, 254)));
        assert_eq!(subnet.vm_address(245), None);
        let small = VmSubnet::parse("192.168.50.16/28").unwrap();
        assert_eq!(small.vm_address(4), Some(Ipv4Addr::new(192, 168, 50, 30)));
        assert_eq!(small.vm_address(5), None);
    }

    #[test]
    fn public_host_bits_and_odd_prefixes_are_refused() {
        for (text, says) in [
            ("8.8.8.0/24", "private"),
            ("10.213.7.5/24", "host bits"),
            ("10.213.7.0", "prefix length"),
            ("10.213.7.0/8", "outside"),
            ("10.213.7.0/30", "outside"),
            ("10.213.300.0/24", "not an IPv4"),
            ("10.213.7.0/x", "not a prefix"),
        ] {
            let problem = VmSubnet::parse(text).unwrap_err();
            assert!(problem.contains(says), "{text}: {problem}");
        }
    }

    #[test]
    fn overlaps_compare_the_shorter_prefix() {
        let subnet = VmSubnet::parse("10.213.7.0/24").unwrap();
        assert!(subnet.overlaps(Ipv4Addr::new(10, 0, 0, 0), 8));
        assert!(subnet.overlaps(Ipv4Addr::new(10, 213, 7, 128), 25));
        assert!(!subnet.overlaps(Ipv4Addr::new(10, 213, 8, 0), 24));
        assert!(subnet.overlaps(Ipv4Addr::new(0, 0, 0, 0), 0));
    }
}
