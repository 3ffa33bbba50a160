//! The cluster's bridge network: one per cluster, on a /24 that no other Docker network uses and
//! that stays clear of 10.0.0.0/8 (swarm's overlay pool) and of the inner engines' 172.17/172.18.

use super::{is_not_found, status_of, DindError};
use crate::model::LABEL_CLUSTER;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::{InspectNetworkOptions, ListNetworksOptions};
use bollard::Docker;
use std::net::Ipv4Addr;

/// An IPv4 subnet: network address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// Parses `a.b.c.d/n`; `None` for IPv6 or anything malformed.
    pub(crate) fn parse(text: &str) -> Option<Subnet> {
        let (address, prefix) = text.trim().split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= 32).then(|| Subnet {
            base: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    /// The first address from `.10` on that is not in `taken`: node addresses, fixed at create
    /// so they survive restarts. `.1` is the bridge's gateway; the low ones stay free for it.
    pub(crate) fn free_host(self, taken: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        let size = 1u32 << (32 - u32::from(self.prefix.min(30)));
        (10..size - 1)
            .map(|offset| Ipv4Addr::from(self.base + offset))
            .find(|ip| !taken.contains(ip))
    }

    /// The address `offset` hosts into the subnet (`.2` for 2 in a /24).
    pub(crate) fn address_at(self, offset: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.base + offset)
    }

    /// Whether the two subnets share any address.
    pub(crate) fn overlaps(self, other: Subnet) -> bool {
        let common = mask(self.prefix.min(other.prefix));
        self.base & common == other.base & common
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// The subnets tried for a cluster network, in order: 172.30.0.0/24 … 172.31.255.0/24, then
/// 192.168.0.0/24 … 192.168.255.0/24.
pub(crate) fn candidates() -> impl Iterator<Item = Subnet> {
    let private_172 = (30u32..=31).flat_map(|second| {
        (0u32..=255).map(move |third| Subnet {
            base: (172 << 24) | (second << 16) | (third << 8),
            prefix: 24,
        })
    });
    let private_192 = (0u32..=255).map(|third| Subnet {
        base: (192 << 24) | (168 << 16) | (third << 8),
        prefix: 24,
    });
    private_172.chain(private_192)
}

/// The first candidate that overlaps none of `taken`.
pub(crate) fn free_subnet(taken: &[Subnet], skip: &[Subnet]) -> Option<Subnet> {
    candidates().find(|c| !skip.contains(c) && !taken.iter().any(|t| t.overlaps(*c)))
}

/// The cluster network's subnet and the addresses its containers hold now, to pick a node's
/// fixed address from.
pub(crate) async fn addresses_in_use(
    docker: &Docker,
    name: &str,
) -> Result<(Subnet, Vec<Ipv4Addr>), DindError> {
    let network = docker
        .inspect_network(name, None::<InspectNetworkOptions>)
        .await
        .map_err(|e| DindError::docker(format!("cannot inspect network {name}"), e))?;
    let subnet = network
        .ipam
        .as_ref()
        .and_then(|i| i.config.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| Subnet::parse(c.subnet.as_deref()?))
        .ok_or_else(|| {
            DindError::Unavailable(format!(
                "network {name} has no IPv4 subnet; remove it (docker network rm {name}) and apply again"
            ))
        })?;
    let taken = network
        .containers
        .unwrap_or_default()
        .values()
        .filter_map(|c| c.ipv4_address.as_deref())
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .collect();
    Ok((subnet, taken))
}

/// Makes sure the bridge network `name` exists for `cluster`; creates it on a free subnet if
/// it is missing. A network of that name not labelled for the cluster is refused.
pub(crate) async fn ensure(docker: &Docker, name: &str, cluster: &str) -> Result<(), DindError> {
    let mut refused: Vec<Subnet> = Vec::new();
    for _ in 0..16 {
        match docker
            .inspect_network(name, None::<InspectNetworkOptions>)
            .await
        {
            Ok(network) => {
                let labels = network.labels.unwrap_or_default();
                return if labels.get(LABEL_CLUSTER).map(String::as_str) == Some(cluster) {
                    Ok(())
                } else {
                    Err(DindError::Unavailable(format!(
                        "a network named {name} exists but was not made by shoal for cluster {cluster}; remove or rename it"
                    )))
                };
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(DindError::docker(
                    format!("cannot inspect network {name}"),
                    e,
                ))
            }
        }
        let networks = docker
            .list_networks(None::<ListNetworksOptions>)
            .await
            .map_err(|e| DindError::docker("cannot list the engine's networks", e))?;
        let taken: Vec<Subnet> = networks
            .iter()
            .filter_map(|n| n.ipam.as_ref()?.config.as_ref())
            .flatten()
            .filter_map(|c| Subnet::parse(c.subnet.as_deref()?))
            .collect();
        let Some(subnet) = free_subnet(&taken, &refused) else {
            return Err(DindError::Unavailable(
                "no free /24 left in 172.30.0.0/15 or 192.168.0.0/16 for the cluster network"
                    .to_string(),
            ));
        };
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".to_string()),
            ipam: Some(Ipam {
                driver: Some("default".to_string()),
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                options: None,
            }),
            labels: Some(super::labels_for(cluster, [])),
            ..Default::default()
        };
        match docker.create_network(request).await {
            Ok(_) => {
                tracing::info!(network = name, %subnet, "created the cluster network");
                return Ok(());
            }
            Err(e) if status_of(&e) == Some(409) => continue,
            Err(e) if status_of(&e) == Some(403) || e.to_string().contains("overlap") => {
                refused.push(subnet);
                continue;
            }
            Err(e) => {
                return Err(DindError::docker(
                    format!("cannot create network {name}"),
                    e,
                ))
            }
        }
    }
    Err(DindError::Other(format!(
        "could not create network {name}: the engine kept refusing the subnets tried"
    )))
}
